//! One int8 module's `forward` on an input already quantized, on the plain CPU device:
//! `int8-infer-convtranspose2d-b8`, a U-Net decoder's up-convolution (64 -> 32 channels,
//! kernel 2, stride 2, on [8, 64, 16, 16]). Per-tensor weights with zero point 0, what
//! PyTorch's quantized transposed conv takes on both of its engines.

use std::iter::successors;

use super::{BenchOptions, BenchResult, measure};
use burn_qat::error::{QatError, Result};
use burn_qat::nn::ConvTranspose2dOptions;
use burn_qat::nn::quantized::{ActivationQParams, ConvTranspose2d, Int8Weight, LayerQParams, QTensor};

/// `len` values of a fixed pseudo-random sequence (xorshift), so that every run times the same
/// integers; their values do not change the work.
fn bytes(len: usize, seed: u32) -> impl Iterator<Item = u8> {
    successors(Some(seed.max(1)), |&s| {
        let s = s ^ (s << 13);
        let s = s ^ (s >> 17);
        Some(s ^ (s << 5))
    })
    .map(|s| (s >> 11) as u8)
    .take(len)
}

pub fn conv_transpose2d(case: &str, batch: usize, options: BenchOptions) -> Result<BenchResult> {
    if options.device != burn_qat::device::Accelerator::Cpu {
        return Err(QatError::invalid(
            "--device",
            format!("{case}: the int8 engine runs on the CPU; --device {} applies to the training cases", options.device),
        ));
    }
    let up = ConvTranspose2dOptions::new(64, 32, 2).with_stride(2);
    let weight: Vec<i8> = bytes(64 * 32 * 2 * 2, 7).map(|b| b as i8).collect();
    let input = ActivationQParams { scale: 1.0 / 255.0, zero_point: 0, quant_min: 0, quant_max: 255 };
    let output = ActivationQParams { scale: 0.05, zero_point: 128, quant_min: 0, quant_max: 255 };
    let bias: Vec<f32> = (0..32).map(|o| (o as f32 - 16.0) * 0.01).collect();
    let m =
        ConvTranspose2d::new(up, Int8Weight::new(weight, vec![0.002; 32], vec![0; 32]), &bias, LayerQParams::new(input, output, false))?;
    let x = QTensor { values: bytes(batch * 64 * 16 * 16, 11).collect(), shape: vec![batch, 64, 16, 16], qparams: input };
    measure(case, options, || {
        m.forward(&x)?;
        Ok(())
    })
}
