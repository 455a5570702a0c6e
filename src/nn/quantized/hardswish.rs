//! `torch.ao.nn.quantized.Hardswish`: `x * relu6(x + 3) / 6` from one grid onto another. A u8
//! input has 256 values, so the module is a table built once: each code dequantized, the f32
//! hardswish, requantized `clamp(z + rne(y * f32(1/s)), qmin, qmax)`.

use super::qtensor::{ActivationQParams, QTensor};
use crate::error::Result;
use crate::quant::quantize_value;

#[derive(Clone, Debug, PartialEq)]
pub struct Hardswish {
    pub input: ActivationQParams,
    pub output: ActivationQParams,
    /// The output code of every input code.
    table: Vec<u8>,
}

const LAYER: &str = "quantized Hardswish";

/// PyTorch's float hardswish, `x * min(max(x + 3, 0), 6) / 6`, in this order of f32 operations.
pub fn hardswish_f32(x: f32) -> f32 {
    x * (x + 3.0).clamp(0.0, 6.0) / 6.0
}

impl Hardswish {
    pub fn new(input: ActivationQParams, output: ActivationQParams) -> Result<Self> {
        let (input, output) = (input.validated(LAYER)?, output.validated(LAYER)?);
        let inverse = 1.0 / output.scale;
        let table = (0..=255u8)
            .map(|q| {
                let real = (q as i32 - input.zero_point) as f32 * input.scale;
                quantize_value(hardswish_f32(real), inverse, output.zero_point, output.quant_min, output.quant_max) as u8
            })
            .collect();
        Ok(Self { input, output, table })
    }

    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        super::conv_parts::check_input_qparams(x, &self.input, LAYER)?;
        let values = x.values.iter().map(|&q| self.table[q as usize]).collect();
        Ok(QTensor { values, shape: x.shape.clone(), qparams: self.output })
    }
}
