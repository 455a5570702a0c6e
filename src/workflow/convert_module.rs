//! Per-module conversion: a QAT module plus the qparams of its input becomes an int8 module.
//! Weights are folded exactly as the QAT forward folds them and quantized with the weight fake
//! quant's convert-time qparams, so the integers are the ones training simulated. One generic
//! path serves every conv geometry (1-d, 2-d, 3-d, transposed): the geometry says which weight
//! axis holds the output channels, and each becomes the one generic int8 conv over it.

use burn::module::Param;

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::ConvGeometry;
use crate::nn::intrinsic::qat::{ConvBnNd, ConvBnReLUNd, ConvReLUNd, LinearBn1d, LinearReLU};
use crate::nn::qat::{self, ConvNd};
use crate::nn::quantized::{self, ActivationQParams, Int8ConvGeometry, Int8Weight, LayerQParams, QuantizedConv};
use crate::nn::tensor_util::host_values;

pub(crate) fn output_qparams(fq: &Option<FakeQuantize>, layer: &str) -> Result<ActivationQParams> {
    fq.as_ref()
        .ok_or_else(|| {
            QatError::structure(
                layer,
                "no output fake quant to take output qparams from; prepare_qat attaches one (or call with_output_fake_quant)",
            )
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

/// The int8 module of a conv's float (folded, for BN modules) weight and bias, the weight
/// quantized with the module's weight fake quant along the geometry's output-channel axis.
/// Scales come back one per index of that axis; a transposed conv with groups has
/// `O / groups` of them, which repeat for each group's block of output channels.
fn quantize_conv<const D: usize, O: Int8ConvGeometry<D>>(
    options: &O,
    weight_fake_quant: &FakeQuantize,
    [weight, bias]: [&[f32]; 2],
    qparams: LayerQParams,
    layer: &str,
) -> Result<QuantizedConv<D, O>> {
    let (weight, scale, zero_point) =
        weight_fake_quant.quantize_weight_along(weight, &options.weight_shape(), O::WEIGHT_CHANNEL_AXIS, layer)?;
    let o = options.out_channels();
    let (scale, zero_point) = (per_output_channel(&scale, o), per_output_channel(&zero_point, o));
    QuantizedConv::new(options.clone(), Int8Weight::new(weight, scale, zero_point), bias, qparams)
}

/// `o` entries from one per index of the weight's channel axis: output channel `i` takes entry
/// `i % len` (the identity unless a transposed conv's groups repeat the axis).
fn per_output_channel<T: Copy>(values: &[T], o: usize) -> Vec<T> {
    (0..o).map(|i| values[i % values.len()]).collect()
}

impl<const D: usize, O: ConvGeometry<D>> ConvBnNd<D, O> {
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
}

impl<const D: usize, O: Int8ConvGeometry<D>> ConvBnNd<D, O> {
    fn to_quantized_with(&self, input: ActivationQParams, relu: bool, layer: &str) -> Result<QuantizedConv<D, O>> {
        let (axis, c) = (O::WEIGHT_CHANNEL_AXIS, self.options.out_channels());
        if self.options.weight_shape()[axis] != c {
            // A transposed conv with groups has O / groups entries on its channel axis: BN's O
            // scales do not fold along it (nor does the QAT forward run).
            return Err(QatError::invalid(
                "groups",
                format!(
                    "{layer}: batch norm folds along weight axis {axis}, which has {} entries for {c} channels; use groups = 1",
                    self.options.weight_shape()[axis]
                ),
            ));
        }
        let (weight, bias) = self.folded_weight_and_bias();
        let qparams = LayerQParams::new(input, output_qparams(&self.activation_post_process, layer)?, relu);
        quantize_conv(&self.options, &self.weight_fake_quant, [&weight, &bias], qparams, layer)
    }
}

impl<const D: usize, O: Int8ConvGeometry<D>> ToQuantized for ConvBnNd<D, O> {
    type Quantized = QuantizedConv<D, O>;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<QuantizedConv<D, O>> {
        self.to_quantized_with(input, false, layer)
    }
}

impl<const D: usize, O: Int8ConvGeometry<D>> ToQuantized for ConvBnReLUNd<D, O> {
    type Quantized = QuantizedConv<D, O>;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<QuantizedConv<D, O>> {
        self.inner.to_quantized_with(input, true, layer)
    }
}

fn conv_to_quantized<const D: usize, O: Int8ConvGeometry<D>>(
    conv: &ConvNd<D, O>,
    input: ActivationQParams,
    relu: bool,
    layer: &str,
) -> Result<QuantizedConv<D, O>> {
    let weight = f32s(host_values(&conv.weight.val()));
    let bias = conv.bias.as_ref().map(|b| f32s(host_values(&b.val()))).unwrap_or_else(|| vec![0.0; conv.options.out_channels()]);
    let qparams = LayerQParams::new(input, output_qparams(&conv.activation_post_process, layer)?, relu);
    quantize_conv(&conv.options, &conv.weight_fake_quant, [&weight, &bias], qparams, layer)
}

impl<const D: usize, O: Int8ConvGeometry<D>> ToQuantized for ConvNd<D, O> {
    type Quantized = QuantizedConv<D, O>;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<QuantizedConv<D, O>> {
        conv_to_quantized(self, input, false, layer)
    }
}

impl<const D: usize, O: Int8ConvGeometry<D>> ToQuantized for ConvReLUNd<D, O> {
    type Quantized = QuantizedConv<D, O>;
    fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<QuantizedConv<D, O>> {
        conv_to_quantized(&self.conv, input, true, layer)
    }
}

fn linear_to_quantized(linear: &qat::Linear, input: ActivationQParams, relu: bool, layer: &str) -> Result<quantized::Linear> {
    let weight = f32s(host_values(&linear.weight.val()));
    let bias = linear.bias.as_ref().map(|b: &Param<_>| f32s(host_values(&b.val()))).unwrap_or_else(|| vec![0.0; linear.out_features()]);
    let qparams = LayerQParams::new(input, output_qparams(&linear.activation_post_process, layer)?, relu);
    quantize_linear(&linear.weight_fake_quant, [linear.out_features(), linear.in_features()], [&weight, &bias], qparams, layer)
}

/// An int8 linear of shape `[out, in]` from its float weight and bias, the weight quantized by
/// `weight_fq`.
fn quantize_linear(
    weight_fq: &FakeQuantize,
    [o, i]: [usize; 2],
    [weight, bias]: [&[f32]; 2],
    qparams: LayerQParams,
    layer: &str,
) -> Result<quantized::Linear> {
    let (values, scale, zero_point) = weight_fq.quantize_weight(weight, o, layer)?;
    quantized::Linear::new(i, o, Int8Weight::new(values, scale, zero_point), bias, qparams)
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
        let qparams = LayerQParams::new(input, output_qparams(&self.activation_post_process, layer)?, false);
        quantize_linear(&self.weight_fake_quant, [self.out_features(), self.in_features()], [&weight, &bias], qparams, layer)
    }
}

/// The int8 addition requantizes both operands from their own qparams, so the input qparams
/// the conversion chain passes are not needed.
impl ToQuantized for qat::Add {
    type Quantized = quantized::Add;
    fn to_quantized(&self, _input: ActivationQParams, layer: &str) -> Result<quantized::Add> {
        quantized::Add::new(self.activation_post_process.activation_qparams(layer)?, self.relu)
    }
}
