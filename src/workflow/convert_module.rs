//! Per-module conversion: a QAT module plus the qparams of its input becomes an int8 module.
//! Weights are folded exactly as the QAT forward folds them and quantized with the weight fake
//! quant's convert-time qparams, so the integers are the ones training simulated.

use burn::module::Param;

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::intrinsic::qat::{ConvBn2d, ConvBnReLU2d, ConvReLU2d, LinearBn1d, LinearReLU};
use crate::nn::qat;
use crate::nn::quantized::{self, ActivationQParams};
use crate::nn::tensor_util::host_values;

fn output_qparams(fq: &Option<FakeQuantize>, layer: &str) -> Result<ActivationQParams> {
    fq.as_ref()
        .ok_or_else(|| {
            QatError::config(format!(
                "{layer}: no output fake quant to take output qparams from; prepare_qat attaches one (or call with_output_fake_quant)"
            ))
        })?
        .activation_qparams(layer)
}

fn f32s(values: Vec<f64>) -> Vec<f32> {
    values.into_iter().map(|v| v as f32).collect()
}

/// Turns a QAT module into its int8 counterpart, given the qparams of its input.
pub trait ToQuantized {
    type Quantized;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<Self::Quantized>;
}

impl ConvBn2d {
    /// The folded weight `W * gamma / sqrt(rv + eps)` and bias `(b - rm) * gamma / sqrt(rv + eps)
    /// + beta` with the running statistics, in f32 as the forward computes the scale factor.
    pub fn folded_weight_and_bias(&self) -> (Vec<f32>, Vec<f32>) {
        let sf = f32s(host_values(&self.scale_factor_tensor()));
        let weight = f32s(host_values(&self.folded_weight_tensor()));
        let mean = self.bn.running_mean();
        let beta = f32s(host_values(&self.bn.bias.val()));
        let bias = self.bias.as_ref().map(|b| f32s(host_values(&b.val()))).unwrap_or_else(|| vec![0.0; sf.len()]);
        let folded = (0..sf.len()).map(|c| (bias[c] - mean[c] as f32) * sf[c] + beta[c]).collect();
        (weight, folded)
    }

    fn to_quantized_with(&self, input: ActivationQParams, relu: bool, layer: &str) -> Result<quantized::Conv2d> {
        let (weight, bias) = self.folded_weight_and_bias();
        let c = self.options.out_channels;
        let (weight, scale, zero_point) = self.weight_fake_quant.quantize_weight(&weight, c, layer)?;
        quantized::Conv2d::new(
            self.options.clone(),
            weight,
            scale,
            zero_point,
            &bias,
            input,
            output_qparams(&self.activation_post_process, layer)?,
            relu,
        )
    }
}

impl ToQuantized for ConvBn2d {
    type Quantized = quantized::Conv2d;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::Conv2d> {
        self.to_quantized_with(input, false, layer)
    }
}

impl ToQuantized for ConvBnReLU2d {
    type Quantized = quantized::Conv2d;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::Conv2d> {
        self.inner.to_quantized_with(input, true, layer)
    }
}

fn conv_to_quantized(conv: &qat::Conv2d, input: ActivationQParams, relu: bool, layer: &str) -> Result<quantized::Conv2d> {
    let c = conv.options.out_channels;
    let weight = f32s(host_values(&conv.weight.val()));
    let bias = conv.bias.as_ref().map(|b| f32s(host_values(&b.val()))).unwrap_or_else(|| vec![0.0; c]);
    let (weight, scale, zero_point) = conv.weight_fake_quant.quantize_weight(&weight, c, layer)?;
    quantized::Conv2d::new(
        conv.options.clone(),
        weight,
        scale,
        zero_point,
        &bias,
        input,
        output_qparams(&conv.activation_post_process, layer)?,
        relu,
    )
}

impl ToQuantized for qat::Conv2d {
    type Quantized = quantized::Conv2d;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::Conv2d> {
        conv_to_quantized(self, input, false, layer)
    }
}

impl ToQuantized for ConvReLU2d {
    type Quantized = quantized::Conv2d;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::Conv2d> {
        conv_to_quantized(&self.conv, input, true, layer)
    }
}

fn linear_to_quantized(linear: &qat::Linear, input: ActivationQParams, relu: bool, layer: &str) -> Result<quantized::Linear> {
    let (o, i) = (linear.out_features(), linear.in_features());
    let weight = f32s(host_values(&linear.weight.val()));
    let bias = linear.bias.as_ref().map(|b: &Param<_>| f32s(host_values(&b.val()))).unwrap_or_else(|| vec![0.0; o]);
    let (weight, scale, zero_point) = linear.weight_fake_quant.quantize_weight(&weight, o, layer)?;
    quantized::Linear::new(i, o, weight, scale, zero_point, &bias, input, output_qparams(&linear.activation_post_process, layer)?, relu)
}

impl ToQuantized for qat::Linear {
    type Quantized = quantized::Linear;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::Linear> {
        linear_to_quantized(self, input, false, layer)
    }
}

impl ToQuantized for LinearReLU {
    type Quantized = quantized::Linear;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::Linear> {
        linear_to_quantized(&self.linear, input, true, layer)
    }
}

impl ToQuantized for LinearBn1d {
    type Quantized = quantized::Linear;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::Linear> {
        let (weight, bias) = self.folded_weight_and_bias();
        let (o, i) = (self.out_features(), self.in_features());
        let (weight, scale, zero_point) = self.weight_fake_quant.quantize_weight(&weight, o, layer)?;
        quantized::Linear::new(i, o, weight, scale, zero_point, &bias, input, output_qparams(&self.activation_post_process, layer)?, false)
    }
}
