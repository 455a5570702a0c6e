use super::conv_parts::{centered_weight, check_input_qparams, check_parts, quantize_biases, requantize_planes};
use super::kernels::linear_accumulate;
use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};

const LAYER: &str = "quantized Linear";

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
        let bias = quantize_biases(LAYER, float_bias, &weight_scale, input)?;
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
        let (input, output) =
            check_parts(LAYER, in_features * out_features, out_features, &weight, &weight_scale, &weight_zero_point, &bias, input, output)?;
        Ok(Self { in_features, out_features, weight, weight_scale, weight_zero_point, bias, input, output, relu })
    }

    /// `[..., in]` to `[..., out]`.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        if x.shape.last() != Some(&self.in_features) {
            return Err(QatError::shape(LAYER, format!("input [..., {}]", self.in_features), format!("{:?}", x.shape)));
        }
        check_input_qparams(x, &self.input, LAYER)?;
        let rows = x.values.len() / self.in_features;
        let weight = centered_weight(&self.weight, &self.weight_zero_point, |i| i / self.in_features);
        let acc = linear_accumulate(&x.centered(), rows, &weight, self.out_features, self.in_features);
        let values = requantize_planes(&acc, 1, &self.bias, &self.weight_scale, &self.input, &self.output, self.relu);
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty shape") = self.out_features;
        Ok(QTensor { values, shape, qparams: self.output })
    }
}
