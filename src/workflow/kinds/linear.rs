//! Linear layers (with their fused batch norms and ReLUs): one int8 linear per converted layer.

use serde_json::{Value as Json, json};

use super::f32_values;
use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::batch_norm::bn_keys;
use crate::nn::intrinsic::qat::{LinearBn1d, LinearReLU};
use crate::nn::qat;
use crate::nn::quantized::{ActivationQParams, Linear};
use crate::nn::{float, intrinsic};
use crate::qconfig::QConfig;
use crate::state_dict::join;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::ToQuantized;
use crate::workflow::convert_chain::need_input;
use crate::workflow::deployment_arith::{Flow, Grid, need_grid};
use crate::workflow::deployment_weighted::{linear, linear_bn};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::float_state::FloatWeights;
use crate::workflow::int8_fields::{bool_of, read_weighted, usize_of, write_weighted};
use crate::workflow::int8_layer::{Engine, Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::Value;
use crate::workflow::qat_layer::{DeployedWeight, Prepare, PrepareQat, QatLayer, QatOp};

int8_requantizing_op!(Linear, "Linear", grids: [qparams], forward: |m, x, run| match run.engine {
    Engine::Kernels => Linear::forward(m, &x),
    Engine::Reference => m.forward_reference(&x, run.device),
}, save: save_linear, load: load_linear, export: linear);

fn save_linear(m: &Linear, path: &str, out: &mut StateDict) -> Result<Json> {
    write_weighted(path, &m.weight, vec![m.out_features, m.in_features], &m.bias, &m.qparams, out);
    Ok(json!({"in_features": m.in_features, "out_features": m.out_features, "relu": m.qparams.relu}))
}

fn load_linear(entry: &Json, p: &str, reader: &mut StateReader<'_>) -> Result<Linear> {
    let (i, o) = (usize_of(entry, "in_features", p)?, usize_of(entry, "out_features", p)?);
    let (weight, bias, qparams) = read_weighted(p, &[o, i], o, bool_of(entry, "relu", p)?, reader)?;
    Linear::from_parts(i, o, weight, bias, qparams)
}

fn linear_weight(m: &qat::Linear) -> DeployedWeight<'_> {
    DeployedWeight { values: f32_values(&m.weight.val()), channels: m.out_features(), fake_quant: &m.weight_fake_quant }
}

/// The weight folded with the running statistics, as convert quantizes it.
fn linear_bn_weight(m: &LinearBn1d) -> DeployedWeight<'_> {
    DeployedWeight { values: m.folded_weight_and_bias().0, channels: m.out_features(), fake_quant: &m.weight_fake_quant }
}

weighted_qat_op!(qat::Linear, "Linear", rank: 2 => Linear, inner: [],
    exact: |m, x, g, p| linear(m, false, x, g, p), weight: linear_weight);
weighted_qat_op!(LinearReLU, "LinearReLU", rank: 2 => Linear, inner: [linear],
    exact: |m, x, g, p| linear(&m.linear, true, x, g, p), weight: linear_weight);
weighted_qat_op!(LinearBn1d, "LinearBn1d", rank: 2 => Linear, inner: [],
    exact: |m, x, g, p| linear_bn(m, x, g, p), weight: linear_bn_weight, bn_frozen: |m| LinearBn1d::is_bn_frozen(m));

float_weighted_op!(float::Linear, "Linear", rank: 2, weight: [] at "", bn: [], absorbs_bn: true,
    prepare: |m, q| QatLayer::Linear(qat::Linear::from_float(&m, q)?.with_output_fake_quant()?));
float_weighted_op!(intrinsic::LinearReLU, "LinearReLU", rank: 2, weight: [linear] at "0.", bn: [], absorbs_bn: false,
    prepare: |m, q| QatLayer::LinearReLU(LinearReLU::from_float(&m.linear, q)?.with_output_fake_quant()?));
float_weighted_op!(intrinsic::LinearBn1d, "LinearBn1d", rank: 2, weight: [linear] at "0.", bn: [bn at "1."], absorbs_bn: false,
    prepare: |m, q| QatLayer::LinearBn1d(LinearBn1d::from_float(&m.linear, &m.bn, q)?.with_output_fake_quant()?));
