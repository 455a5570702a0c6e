//! Convolutions (with their fused batch norms and ReLUs): one int8 conv per converted layer.

use serde_json::{Value as Json, json};

use super::f32_values;
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::batch_norm::bn_keys;
use crate::nn::intrinsic::qat::{ConvBn2d, ConvBnReLU2d, ConvReLU2d};
use crate::nn::quantized::{ActivationQParams, Conv2d, Int8Weight, LayerQParams};
use crate::nn::{Conv2dOptions, PaddingMode, QatModule, qat};
use crate::nn::{float, intrinsic};
use crate::qconfig::QConfig;
use crate::state_dict::join;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader};
use crate::workflow::ToQuantized;
use crate::workflow::deployment_arith::{Flow, Grid, need_grid};
use crate::workflow::deployment_weighted::{conv, conv_bn};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::float_state::FloatWeights;
use crate::workflow::int8_fields::{bool_of, field, missing, pair_of, read_act, read_weights, usize_of, write_act, write_weights};
use crate::workflow::int8_layer::{Engine, Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::Value;
use crate::workflow::qat_layer::{DeployedWeight, Prepare, PrepareQat, QatLayer, QatOp, need_input};

int8_requantizing_op!(Conv2d, "Conv2d", forward: |m, x, run| match run.engine {
    Engine::Kernels => Conv2d::forward(m, &x),
    Engine::Reference => m.forward_reference(&x, run.device),
}, save: save_conv, load: load_conv);

fn save_conv(m: &Conv2d, path: &str, out: &mut StateDict) -> Result<Json> {
    let o = &m.options;
    write_weights(path, &m.weight, o.weight_shape().to_vec(), &m.weight_scale, &m.weight_zero_point, &m.bias, out);
    write_act(&format!("{path}.input"), &m.input, out);
    write_act(&format!("{path}.output"), &m.output, out);
    Ok(json!({"in_channels": o.in_channels, "out_channels": o.out_channels, "kernel_size": o.kernel_size,
              "stride": o.stride, "padding": o.padding, "dilation": o.dilation, "groups": o.groups,
              "padding_mode": o.padding_mode.to_string(), "relu": m.relu}))
}

fn load_conv(entry: &Json, p: &str, reader: &mut StateReader<'_>) -> Result<Conv2d> {
    let options =
        Conv2dOptions::new(usize_of(entry, "in_channels", p)?, usize_of(entry, "out_channels", p)?, pair_of(entry, "kernel_size", p)?)
            .with_stride(pair_of(entry, "stride", p)?)
            .with_padding(pair_of(entry, "padding", p)?)
            .with_dilation(pair_of(entry, "dilation", p)?)
            .with_groups(usize_of(entry, "groups", p)?)
            .with_padding_mode(PaddingMode::parse(field(entry, "padding_mode", p)?.as_str().unwrap_or(""))?);
    options.validate().map_err(|e| QatError::config(format!("{p}: {e}")))?;
    let w = read_weights(p, &options.weight_shape(), reader);
    let (input, output) = (read_act(&format!("{p}.input"), reader), read_act(&format!("{p}.output"), reader));
    let (Some(w), Some(input), Some(output)) = (w, input, output) else { return Err(missing(p, reader)) };
    let qparams = LayerQParams::new(input, output, bool_of(entry, "relu", p)?);
    Conv2d::from_parts(options, Int8Weight::new(w.weight, w.scale, w.zero_point), w.bias, qparams)
}

fn conv_weight(m: &qat::Conv2d) -> DeployedWeight<'_> {
    DeployedWeight { values: f32_values(&m.weight.val()), channels: m.options.out_channels, fake_quant: &m.weight_fake_quant }
}

/// The weight folded with the running statistics, as convert quantizes it.
fn conv_bn_weight(m: &ConvBn2d) -> DeployedWeight<'_> {
    DeployedWeight { values: m.folded_weight_and_bias().0, channels: m.options.out_channels, fake_quant: &m.weight_fake_quant }
}

weighted_qat_op!(qat::Conv2d, "Conv2d", Image(image) => Conv2d, inner: [],
    exact: |m, x, g, p| conv(m, false, x, g, p), weight: conv_weight);
weighted_qat_op!(ConvReLU2d, "ConvReLU2d", Image(image) => Conv2d, inner: [conv],
    exact: |m, x, g, p| conv(&m.conv, true, x, g, p), weight: conv_weight);
weighted_qat_op!(ConvBn2d, "ConvBn2d", Image(image) => Conv2d, inner: [],
    exact: |m, x, g, p| conv_bn(m, false, x, g, p), weight: conv_bn_weight, bn_frozen: |m| ConvBn2d::is_bn_frozen(m));
weighted_qat_op!(ConvBnReLU2d, "ConvBnReLU2d", Image(image) => Conv2d, inner: [inner],
    exact: |m, x, g, p| conv_bn(&m.inner, true, x, g, p), weight: conv_bn_weight, bn_frozen: |m| m.inner.is_bn_frozen());

float_weighted_op!(float::Conv2d, "Conv2d", Image(image), weight: [] at "", bn: [], absorbs_bn: true,
    prepare: |m, q| QatLayer::Conv2d(qat::Conv2d::from_float(&m, q)?.with_output_fake_quant()?));
float_weighted_op!(intrinsic::ConvReLU2d, "ConvReLU2d", Image(image), weight: [conv] at "0.", bn: [], absorbs_bn: false,
    prepare: |m, q| QatLayer::ConvReLU2d(ConvReLU2d::from_float(&m.conv, q)?.with_output_fake_quant()?));
float_weighted_op!(intrinsic::ConvBn2d, "ConvBn2d", Image(image), weight: [conv] at "0.", bn: [bn at "1."], absorbs_bn: false,
    prepare: |m, q| QatLayer::ConvBn2d(ConvBn2d::from_float(&m.conv, &m.bn, q)?.with_output_fake_quant()?));
float_weighted_op!(intrinsic::ConvBnReLU2d, "ConvBnReLU2d", Image(image), weight: [conv] at "0.", bn: [bn at "1."], absorbs_bn: false,
    prepare: |m, q| QatLayer::ConvBnReLU2d(ConvBnReLU2d::from_float(&m.conv, &m.bn, q)?.with_output_fake_quant()?));
