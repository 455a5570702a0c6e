//! `torch.ao.nn.quantized.BatchNorm2d` and `intrinsic.quantized.BNReLU2d`: a batch norm left
//! standing on its own (not after a conv it could fold into), on u8 activations. With the
//! running statistics it is a per-channel affine map, applied to the integers as
//! `q = clamp(z_out + rne(f32(q_in - z_in) * m_c + b_c))` with
//! `m_c = f32(s_in * gamma_c / sqrt(var_c + eps) / s_out)` and
//! `b_c = f32((beta_c - mean_c * gamma_c / sqrt(var_c + eps)) / s_out)`, both computed in f64.

use super::parts::LayerQParams;
use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::quant::round_half_even;

const LAYER: &str = "quantized BatchNorm2d";

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d {
    /// Per channel: the multiplier from input steps to output steps.
    pub multiplier: Vec<f32>,
    /// Per channel: the offset in output steps.
    pub offset: Vec<f32>,
    pub input: ActivationQParams,
    pub output: ActivationQParams,
    pub relu: bool,
}

impl BatchNorm2d {
    /// From the BN's affine parameters and running statistics (f64, as our BN keeps them).
    pub fn new(gamma: &[f64], beta: &[f64], mean: &[f64], var: &[f64], eps: f64, qparams: LayerQParams) -> Result<Self> {
        let LayerQParams { input, output, relu } = qparams;
        let c = gamma.len();
        if [beta.len(), mean.len(), var.len()].iter().any(|&n| n != c) || c == 0 {
            return Err(QatError::shape(
                LAYER,
                format!("{c} values each of gamma, beta, mean, var"),
                format!("{}, {}, {}, {}", c, beta.len(), mean.len(), var.len()),
            ));
        }
        let (input, output) = (input.validated(LAYER)?, output.validated(LAYER)?);
        let (s_in, s_out) = (input.scale as f64, output.scale as f64);
        let mut multiplier = Vec::with_capacity(c);
        let mut offset = Vec::with_capacity(c);
        for i in 0..c {
            let alpha = gamma[i] / (var[i] + eps).sqrt();
            let (m, b) = ((s_in * alpha / s_out) as f32, ((beta[i] - mean[i] * alpha) / s_out) as f32);
            if !(m.is_finite() && b.is_finite()) {
                return Err(QatError::NonFinite { context: format!("{LAYER}, channel {i}"), what: "the folded scale or offset".into() });
            }
            multiplier.push(m);
            offset.push(b);
        }
        Self::from_parts(multiplier, offset, input, output, relu)
    }

    /// From stored parts (an int8 model file).
    pub fn from_parts(
        multiplier: Vec<f32>,
        offset: Vec<f32>,
        input: ActivationQParams,
        output: ActivationQParams,
        relu: bool,
    ) -> Result<Self> {
        if multiplier.len() != offset.len() || multiplier.is_empty() {
            return Err(QatError::shape(
                LAYER,
                "as many offsets as multipliers, at least one",
                format!("{} and {}", multiplier.len(), offset.len()),
            ));
        }
        if multiplier.iter().chain(&offset).any(|v| !v.is_finite()) {
            return Err(QatError::NonFinite { context: LAYER.into(), what: "a multiplier or offset".into() });
        }
        Ok(Self { multiplier, offset, input: input.validated(LAYER)?, output: output.validated(LAYER)?, relu })
    }

    pub fn channels(&self) -> usize {
        self.multiplier.len()
    }

    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        let c = self.channels();
        let [_, xc, h, w]: [usize; 4] =
            x.shape.clone().try_into().map_err(|_| QatError::shape(LAYER, "[N, C, H, W]", format!("{:?}", x.shape)))?;
        if xc != c {
            return Err(QatError::shape(LAYER, format!("{c} channels"), format!("{:?}", x.shape)));
        }
        if x.qparams != self.input {
            return Err(QatError::structure(LAYER, format!("input qparams {:?} differ from the converted {:?}", x.qparams, self.input)));
        }
        let (zi, out) = (self.input.zero_point, self.output);
        let lo = if self.relu { out.zero_point.max(out.quant_min) } else { out.quant_min };
        let mut values = Vec::with_capacity(x.values.len());
        for (plane_index, plane) in x.values.chunks(h * w).enumerate() {
            let (m, b) = (self.multiplier[plane_index % c], self.offset[plane_index % c]);
            values.extend(plane.iter().map(|&q| {
                let y = (q as i32 - zi) as f32 * m + b;
                (out.zero_point as f32 + round_half_even(y)).max(lo as f32).min(out.quant_max as f32) as u8
            }));
        }
        Ok(QTensor { values, shape: x.shape.clone(), qparams: out })
    }
}
