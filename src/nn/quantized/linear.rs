use super::kernels::linear_accumulate;
use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::quant::{quantize_bias, requant_multiplier, requantize};

/// `torch.ao.nn.quantized.Linear` (and, with `relu`, `nn.intrinsic.quantized.LinearReLU`).
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    pub in_features: usize,
    pub out_features: usize,
    /// `[out, in]`, row-major.
    pub weight: Vec<i8>,
    pub weight_scale: Vec<f32>,
    pub weight_zero_point: Vec<i32>,
    pub bias: Vec<i32>,
    pub input: ActivationQParams,
    pub output: ActivationQParams,
    pub relu: bool,
}

impl Linear {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        in_features: usize,
        out_features: usize,
        weight: Vec<i8>,
        weight_scale: Vec<f32>,
        weight_zero_point: Vec<i32>,
        float_bias: &[f32],
        input: ActivationQParams,
        output: ActivationQParams,
        relu: bool,
    ) -> Result<Self> {
        let input = input.validated("quantized Linear input")?;
        if float_bias.len() != weight_scale.len() {
            return Err(QatError::shape("quantized Linear", format!("{} biases", weight_scale.len()), format!("{}", float_bias.len())));
        }
        let bias = float_bias.iter().zip(&weight_scale).map(|(&b, &s)| quantize_bias(b, input.scale, s)).collect();
        Self::from_parts(in_features, out_features, weight, weight_scale, weight_zero_point, bias, input, output, relu)
    }

    /// Builds the module from its stored parts (an int32 bias already at `s_in * s_w`),
    /// checking that they fit together.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        in_features: usize,
        out_features: usize,
        weight: Vec<i8>,
        weight_scale: Vec<f32>,
        weight_zero_point: Vec<i32>,
        bias: Vec<i32>,
        input: ActivationQParams,
        output: ActivationQParams,
        relu: bool,
    ) -> Result<Self> {
        if in_features == 0 || out_features == 0 {
            return Err(QatError::config("quantized Linear: in_features and out_features must be positive"));
        }
        if weight.len() != in_features * out_features
            || weight_scale.len() != out_features
            || weight_zero_point.len() != out_features
            || bias.len() != out_features
        {
            return Err(QatError::shape(
                "quantized Linear",
                format!("{} weights and {out_features} scales, zero points and biases", in_features * out_features),
                format!("{}, {}, {}, {}", weight.len(), weight_scale.len(), weight_zero_point.len(), bias.len()),
            ));
        }
        if weight_scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(QatError::config("quantized Linear: weight scales must be finite and positive"));
        }
        let input = input.validated("quantized Linear input")?;
        let output = output.validated("quantized Linear output")?;
        Ok(Self { in_features, out_features, weight, weight_scale, weight_zero_point, bias, input, output, relu })
    }

    /// `[..., in]` to `[..., out]`.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        if x.shape.last() != Some(&self.in_features) {
            return Err(QatError::shape("quantized Linear", format!("input [..., {}]", self.in_features), format!("{:?}", x.shape)));
        }
        if x.qparams != self.input {
            return Err(QatError::config(format!(
                "quantized Linear: input qparams {:?} differ from the ones it was converted for {:?}",
                x.qparams, self.input
            )));
        }
        let rows = x.values.len() / self.in_features;
        let weight: Vec<i32> =
            self.weight.iter().enumerate().map(|(i, &w)| w as i32 - self.weight_zero_point[i / self.in_features]).collect();
        let acc = linear_accumulate(&x.centered(), rows, &weight, self.out_features, self.in_features);
        let lo = if self.relu { self.output.zero_point.max(self.output.quant_min) } else { self.output.quant_min };
        let multipliers: Vec<f32> = self.weight_scale.iter().map(|&s| requant_multiplier(self.input.scale, s, self.output.scale)).collect();
        let values = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let o = i % self.out_features;
                requantize(a.saturating_add(self.bias[o]), multipliers[o], self.output.zero_point, lo, self.output.quant_max) as u8
            })
            .collect();
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty shape") = self.out_features;
        Ok(QTensor { values, shape, qparams: self.output })
    }
}
