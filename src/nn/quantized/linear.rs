use rayon::prelude::*;

use super::conv_parts::{GemmRows, check_input_qparams, check_parts, quantize_biases};
use super::parts::{Int8Weight, LayerQParams};
use super::qtensor::QTensor;
use crate::error::{QatError, Result};
use crate::kernels::int8::gemm::{GemmPath, NR, PackedWeights, block_width, pack_rows};
use crate::kernels::int8::requantize::{Requantizer, min_tasks};

const LAYER: &str = "quantized Linear";

/// `torch.ao.nn.quantized.Linear` (and, with `relu`, `nn.intrinsic.quantized.LinearReLU`).
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    /// `[out, in]`, row-major, with one scale and zero point per output feature.
    pub weight: Int8Weight,
    /// int32 at `input.scale * weight.scale[o]`.
    pub bias: Vec<i32>,
    pub qparams: LayerQParams,
    /// The weights packed for the GEMM (derived from the fields above).
    packed: PackedWeights,
}

impl Linear {
    /// Builds the module from float parts: integer weights `[out, in]` (already quantized by
    /// the weight fake quant's qparams), a float bias, and the activation qparams around it.
    pub fn new(in_features: usize, out_features: usize, weight: Int8Weight, float_bias: &[f32], qparams: LayerQParams) -> Result<Self> {
        let bias = quantize_biases(LAYER, float_bias, &weight.scale, qparams.input)?;
        Self::from_parts(in_features, out_features, weight, bias, qparams)
    }

    /// Builds the module from its stored parts (an int32 bias already at `s_in * s_w`),
    /// checking that they fit together.
    pub fn from_parts(in_features: usize, out_features: usize, weight: Int8Weight, bias: Vec<i32>, qparams: LayerQParams) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            let field = if in_features == 0 { "in_features" } else { "out_features" };
            return Err(QatError::invalid(field, "quantized Linear: in_features and out_features must be positive"));
        }
        let qparams = check_parts(LAYER, [in_features * out_features, out_features], &weight, &bias, qparams)?;
        let packed = GemmRows::of(&weight, 1).pack(&qparams.input);
        Ok(Self { in_features, out_features, weight, bias, qparams, packed })
    }

    /// `[..., in]` to `[..., out]`.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        if x.shape.last() != Some(&self.in_features) {
            return Err(QatError::shape(LAYER, format!("input [..., {}]", self.in_features), format!("{:?}", x.shape)));
        }
        let LayerQParams { input, output, relu } = self.qparams;
        check_input_qparams(x, &input, LAYER)?;
        let rows = x.values.len() / self.in_features;
        let packed = GemmRows::of(&self.weight, 1).current(&self.packed, &input);
        let requantizer = Requantizer::new(&self.bias, &self.weight.scale, &input, &output, relu);
        let values = linear_forward(&x.values, rows, &packed, [self.in_features, self.out_features], GemmPath::best(), &requantizer);
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty shape") = self.out_features;
        Ok(QTensor { values, shape, qparams: output })
    }
}

/// The u8 outputs `[rows, O]` for u8 input `[rows, I]`: the GEMM with the input's rows as its
/// columns, blocks of `NR` rows in parallel (each block owns its rows of the output), each
/// channel's accumulators requantized as they leave the tile.
fn linear_forward(x: &[u8], rows: usize, packed: &PackedWeights, [i, o]: [usize; 2], path: GemmPath, requantizer: &Requantizer) -> Vec<u8> {
    let mut values = vec![0u8; rows * o];
    values.par_chunks_mut(NR * o).with_min_len(min_tasks(NR * i * o)).enumerate().for_each(|(b, out)| {
        let p0 = b * NR;
        let (width, valid) = (block_width(p0, rows), (rows - p0).min(NR));
        let mut buf = vec![0u8; packed.block_len(width)];
        pack_rows(x, i, rows, p0, width, &mut buf);
        let mut row = [0u8; NR];
        packed.block_product(path, 0, &buf, width, valid, |channel, acc, correction| {
            requantizer.corrected_row(channel, acc, correction, &mut row[..valid]);
            row[..valid].iter().enumerate().for_each(|(j, &v)| out[j * o + channel] = v);
        });
    });
    values
}
