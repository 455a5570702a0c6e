//! A model prepared for QAT: the float model with every quantizable layer swapped for its QAT
//! module, an output fake quant after each, one on the input (QuantStub) and one after each
//! residual addition.

use burn::module::Module;
use burn::tensor::Tensor;

use super::float_model::{FloatModel, Layer};
use super::layers::{Named, QatQuantStub, Value};
use super::qat_batch_norm::QatBatchNorm2d;
pub use super::qat_layer::{QatLayer, QatResidual};
use super::qat_layer::{read_layers, write_layers};
use super::qconfig_map::QConfigMap;
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::intrinsic::qat::{ConvBn2d, ConvBnReLU2d, ConvReLU2d, LinearBn1d, LinearReLU};
use crate::nn::{QatModule, qat};
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader};

/// How a prepared model computes in eval mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvalArithmetic {
    /// Float fake quantization, as PyTorch's QAT model evaluates.
    Float,
    /// The int8 deployment arithmetic (integer codes accumulated exactly, the specified
    /// requantization), computed on burn tensors from the QAT modules' own parameters and
    /// fake-quant qparams, without converting: what the converted model must output, bit for bit.
    Deployment,
}

/// A model prepared for quantization-aware training.
#[derive(Module, Debug)]
pub struct QatModel {
    pub layers: Vec<Named<QatLayer>>,
    #[module(skip)]
    pub eval_arithmetic: EvalArithmetic,
    /// Train on the deployment arithmetic too, with straight-through gradients
    /// ([`QatModel::forward_deployment`]); off by default. Needs fixed qparams and BN
    /// statistics: every observer disabled and every BN frozen, else forward is an error.
    #[module(skip)]
    pub deployment_training: bool,
    #[module(skip)]
    pub(super) training: bool,
}

/// PyTorch `prepare_qat`: swaps each fused or quantizable layer for its QAT module with the
/// layer's qconfig, attaching an output fake quant after it, one to each QuantStub and one after
/// each residual addition. Fuse first ([`FloatModel::fuse`]): an unfused BatchNorm2d is an
/// error. Eval uses the deployment arithmetic when every qconfig uses one qparam formula
/// (our presets), else PyTorch's float arithmetic.
pub fn prepare_qat(model: FloatModel, qconfig: impl Into<QConfigMap>) -> Result<QatModel> {
    let map = qconfig.into();
    let mut consistent = true;
    let device = model.devices().into_iter().next();
    let layers = prepare_layers(model.layers, "", &map, &mut consistent)?;
    let eval_arithmetic = if consistent { EvalArithmetic::Deployment } else { EvalArithmetic::Float };
    let mut model = QatModel { layers, eval_arithmetic, deployment_training: false, training: true };
    if let Some(device) = device {
        model.fake_quants_mut().into_iter().for_each(|fq| fq.materialize_learned(&device));
    }
    Ok(model)
}

fn prepare_layers(layers: Vec<Named<Layer>>, prefix: &str, map: &QConfigMap, consistent: &mut bool) -> Result<Vec<Named<QatLayer>>> {
    let mut after_conv_or_linear = false;
    layers
        .into_iter()
        .map(|Named { name, layer }| {
            let follows_foldable = std::mem::replace(&mut after_conv_or_linear, matches!(layer, Layer::Conv2d(_) | Layer::Linear(_)));
            let path = format!("{prefix}{name}");
            let Some(q) = map.get(&path).cloned() else {
                return Ok(Named { name, layer: QatLayer::Float(layer) });
            };
            *consistent &= q.is_consistent();
            let layer = match layer {
                Layer::QuantStub(_) => QatLayer::QuantStub(QatQuantStub { activation_post_process: q.activation.init()? }),
                Layer::DeQuantStub(d) => QatLayer::DeQuantStub(d),
                Layer::ConvBn2d(m) => QatLayer::ConvBn2d(ConvBn2d::from_float(&m.conv, &m.bn, q)?.with_output_fake_quant()?),
                Layer::ConvBnReLU2d(m) => QatLayer::ConvBnReLU2d(ConvBnReLU2d::from_float(&m.conv, &m.bn, q)?.with_output_fake_quant()?),
                Layer::ConvReLU2d(m) => QatLayer::ConvReLU2d(ConvReLU2d::from_float(&m.conv, q)?.with_output_fake_quant()?),
                Layer::Conv2d(m) => QatLayer::Conv2d(qat::Conv2d::from_float(&m, q)?.with_output_fake_quant()?),
                Layer::Linear(m) => QatLayer::Linear(qat::Linear::from_float(&m, q)?.with_output_fake_quant()?),
                Layer::LinearReLU(m) => QatLayer::LinearReLU(LinearReLU::from_float(&m.linear, q)?.with_output_fake_quant()?),
                Layer::LinearBn1d(m) => QatLayer::LinearBn1d(LinearBn1d::from_float(&m.linear, &m.bn, q)?.with_output_fake_quant()?),
                Layer::Relu(r) => QatLayer::Relu(r),
                Layer::MaxPool2d(p) => QatLayer::MaxPool2d(p),
                Layer::AvgPool2d(p) => QatLayer::AvgPool2d(p),
                Layer::Relu6(r) => QatLayer::Relu6(r),
                Layer::GlobalAvgPool2d(p) => QatLayer::GlobalAvgPool2d(p),
                Layer::Flatten(f) => QatLayer::Flatten(f),
                Layer::Residual(r) => QatLayer::Residual(QatResidual {
                    body: prepare_layers(r.body, &format!("{path}.body."), map, consistent)?,
                    relu: r.relu,
                    add: q.activation.init()?,
                }),
                // Right after a conv or linear, a batch norm folds into it: fuse() was forgotten.
                Layer::BatchNorm2d(_) | Layer::BatchNorm1d(_) if follows_foldable => {
                    return Err(QatError::config(format!(
                        "{path}: an unfused batch norm after a Conv2d or Linear; call fuse() first to fold it, or give it qconfig None"
                    )));
                }
                Layer::BatchNorm2d(bn) => QatLayer::BatchNorm2d(QatBatchNorm2d { bn, relu: false, activation_post_process: Some(q.activation.init()?) }),
                Layer::BNReLU2d(m) => QatLayer::BatchNorm2d(QatBatchNorm2d { bn: m.bn, relu: true, activation_post_process: Some(q.activation.init()?) }),
                Layer::BatchNorm1d(_) => {
                    return Err(QatError::config(format!(
                        "{path}: a batch norm over features quantizes only folded into the Linear before it (fuse()); give it qconfig None to keep it in float"
                    )));
                }
            };
            Ok(Named { name, layer })
        })
        .collect()
}

impl QatModel {
    /// Training mode (the default after prepare): batch statistics unless frozen, float fake
    /// quantization. Eval: running statistics, and the configured [`EvalArithmetic`].
    pub fn is_training(&self) -> bool {
        self.training
    }

    /// A copy that evaluates with `arithmetic`.
    pub fn with_eval_arithmetic(&self, arithmetic: EvalArithmetic) -> Self {
        Self { eval_arithmetic: arithmetic, ..self.clone() }
    }

    /// Images `[N, C, H, W]` in. In eval with [`EvalArithmetic::Deployment`] (and in training
    /// with [`deployment_training`](Self::deployment_training)), the deployment arithmetic
    /// ([`forward_deployment`](Self::forward_deployment)); otherwise float fake quantization.
    pub fn forward(&mut self, x: Tensor<4>) -> Result<Value> {
        let deployment = if self.training { self.deployment_training } else { self.eval_arithmetic == EvalArithmetic::Deployment };
        if deployment { self.forward_deployment(x) } else { self.forward_float(x) }
    }

    /// The float fake-quant forward, whatever the mode (PyTorch's QAT arithmetic).
    pub fn forward_float(&mut self, x: Tensor<4>) -> Result<Value> {
        let mut value = Value::Image(x);
        for l in &mut self.layers {
            value = l.layer.forward(value, &l.name)?;
        }
        Ok(value)
    }
}

pub(super) fn visit_named(layers: &[Named<QatLayer>], prefix: &str, f: &mut dyn FnMut(&str, &QatLayer)) {
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        if let QatLayer::Residual(r) = &l.layer {
            visit_named(&r.body, &format!("{path}.body."), f);
        }
        f(&path, &l.layer);
    }
}

impl QatModule for QatModel {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        self.layers.iter_mut().filter_map(|l| l.layer.module()).flat_map(|m| m.fake_quants_mut()).collect()
    }

    fn set_training(&mut self, mode: bool) {
        self.training = mode;
        self.layers.iter_mut().filter_map(|l| l.layer.module()).for_each(|m| m.set_training(mode));
    }

    fn freeze_bn_stats(&mut self) {
        self.layers.iter_mut().filter_map(|l| l.layer.module()).for_each(|m| m.freeze_bn_stats());
    }

    fn update_bn_stats(&mut self) {
        self.layers.iter_mut().filter_map(|l| l.layer.module()).for_each(|m| m.update_bn_stats());
    }
}

impl SaveStateDict for QatModel {
    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        write_layers(&self.layers, prefix, out);
    }
}

impl LoadStateDict for QatModel {
    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        read_layers(&mut self.layers, prefix, reader);
    }
}
