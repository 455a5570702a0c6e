use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::quant::round_half_even;

/// `torch.ao.nn.quantized.FloatFunctional.add` (and `add_relu`): two u8 tensors with their own
/// qparams into a third: `q = clamp(z + rne(f32(qa - za) * ma + f32(qb - zb) * mb), lo, qmax)`
/// with `ma = f32(sa / s)`, `mb = f32(sb / s)` computed in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Add {
    pub output: ActivationQParams,
    pub relu: bool,
}

impl Add {
    pub fn new(output: ActivationQParams, relu: bool) -> Result<Self> {
        Ok(Self { output: output.validated("quantized Add")?, relu })
    }

    pub fn forward(&self, a: &QTensor, b: &QTensor) -> Result<QTensor> {
        if a.shape != b.shape {
            return Err(QatError::shape("quantized Add", format!("{:?} (the first operand's shape)", a.shape), format!("{:?}", b.shape)));
        }
        let out = self.output;
        let ma = (a.qparams.scale as f64 / out.scale as f64) as f32;
        let mb = (b.qparams.scale as f64 / out.scale as f64) as f32;
        let (za, zb) = (a.qparams.zero_point, b.qparams.zero_point);
        let lo = if self.relu { out.zero_point.max(out.quant_min) } else { out.quant_min };
        let values = a
            .values
            .iter()
            .zip(&b.values)
            .map(|(&qa, &qb)| {
                let y = (qa as i32 - za) as f32 * ma + (qb as i32 - zb) as f32 * mb;
                let q = out.zero_point as f32 + round_half_even(y);
                q.max(lo as f32).min(out.quant_max as f32) as u8
            })
            .collect();
        Ok(QTensor { values, shape: a.shape.clone(), qparams: out })
    }
}
