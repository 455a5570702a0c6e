//! `torch.ao.nn.quantized.FloatFunctional.cat` along the channel axis: u8 tensors with their own
//! qparams onto one output grid, each value as PyTorch's quantized cat requantizes it,
//! `q = clamp(z + rne(f32(q_in - z_in) * s_in * f32(1 / s)), qmin, qmax)`.

use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::quant::quantize_value;

#[derive(Clone, Debug, PartialEq)]
pub struct Concat {
    pub output: ActivationQParams,
}

const LAYER: &str = "quantized Concat";

impl Concat {
    pub fn new(output: ActivationQParams) -> Result<Self> {
        Ok(Self { output: output.validated(LAYER)? })
    }

    /// `[N, C_a, ...]` and `[N, C_b, ...]` to `[N, C_a + C_b, ...]`.
    pub fn forward(&self, a: &QTensor, b: &QTensor) -> Result<QTensor> {
        let same_but_channels = a.shape.len() >= 2
            && a.shape.len() == b.shape.len()
            && a.shape[0] == b.shape[0]
            && a.shape[2..] == b.shape[2..]
            && a.values.len() == a.shape.iter().product::<usize>()
            && b.values.len() == b.shape.iter().product::<usize>();
        if !same_but_channels {
            return Err(QatError::shape(
                LAYER,
                format!("{:?} but for the channel axis (the first operand's shape)", a.shape),
                format!("{:?}", b.shape),
            ));
        }
        let n = a.shape[0];
        let (a_sample, b_sample) = (a.values.len() / n.max(1), b.values.len() / n.max(1));
        let mut values = Vec::with_capacity(a.values.len() + b.values.len());
        for i in 0..n {
            values.extend(self.requantized(&a.values[i * a_sample..][..a_sample], &a.qparams));
            values.extend(self.requantized(&b.values[i * b_sample..][..b_sample], &b.qparams));
        }
        let mut shape = a.shape.clone();
        shape[1] += b.shape[1];
        Ok(QTensor { values, shape, qparams: self.output })
    }

    fn requantized<'a>(&self, values: &'a [u8], input: &'a ActivationQParams) -> impl Iterator<Item = u8> + 'a {
        let p = self.output;
        let inverse = 1.0 / p.scale;
        values.iter().map(move |&q| {
            let real = (q as i32 - input.zero_point) as f32 * input.scale;
            quantize_value(real, inverse, p.zero_point, p.quant_min, p.quant_max) as u8
        })
    }
}
