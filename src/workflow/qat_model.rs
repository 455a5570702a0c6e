//! A model prepared for QAT: the float model with every quantizable layer swapped for its QAT
//! module, an output fake quant after each, one on the input (QuantStub) and one after each
//! residual addition.

use burn::module::Module;
use burn::tensor::Tensor;

use super::float_model::FloatModel;
use super::layers::{Named, Value};
use super::qat_layer::{Prepare, prepare_layers, read_layers, write_layers};
pub use super::qat_layer::{QatLayer, QatResidual};
use super::qconfig_map::QConfigMap;
use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::QatModule;
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
    let device = model.devices().into_iter().next();
    let mut context = Prepare { map: &map, consistent: true };
    let layers = prepare_layers(model.layers, "", &mut context)?;
    let eval_arithmetic = if context.consistent { EvalArithmetic::Deployment } else { EvalArithmetic::Float };
    let mut model = QatModel { layers, eval_arithmetic, deployment_training: false, training: true };
    if let Some(device) = device {
        model.fake_quants_mut().into_iter().for_each(|fq| fq.materialize_learned(&device));
    }
    Ok(model)
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

    /// A float batch of rank 2 to 5 in. In eval with [`EvalArithmetic::Deployment`] (and in training
    /// with [`deployment_training`](Self::deployment_training)), the deployment arithmetic
    /// ([`forward_deployment`](Self::forward_deployment)); otherwise float fake quantization.
    pub fn forward<const D: usize>(&mut self, x: Tensor<D>) -> Result<Value> {
        let deployment = if self.training { self.deployment_training } else { self.eval_arithmetic == EvalArithmetic::Deployment };
        if deployment { self.forward_deployment(x) } else { self.forward_float(x) }
    }

    /// The float fake-quant forward, whatever the mode (PyTorch's QAT arithmetic).
    pub fn forward_float<const D: usize>(&mut self, x: Tensor<D>) -> Result<Value> {
        let mut value = Value::from_tensor(x)?;
        for l in &mut self.layers {
            value = l.layer.op_mut().forward(value, &l.name)?;
        }
        Ok(value)
    }
}

pub(super) fn visit_named(layers: &[Named<QatLayer>], prefix: &str, f: &mut dyn FnMut(&str, &QatLayer)) {
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        if let Some(body) = l.layer.body() {
            visit_named(body, &format!("{path}.body."), f);
        }
        f(&path, &l.layer);
    }
}

impl QatModule for QatModel {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        self.layers.iter_mut().filter_map(|l| l.layer.op_mut().module()).flat_map(|m| m.fake_quants_mut()).collect()
    }

    fn set_training(&mut self, mode: bool) {
        self.training = mode;
        self.layers.iter_mut().filter_map(|l| l.layer.op_mut().module()).for_each(|m| m.set_training(mode));
    }

    fn freeze_bn_stats(&mut self) {
        self.layers.iter_mut().filter_map(|l| l.layer.op_mut().module()).for_each(|m| m.freeze_bn_stats());
    }

    fn update_bn_stats(&mut self) {
        self.layers.iter_mut().filter_map(|l| l.layer.op_mut().module()).for_each(|m| m.update_bn_stats());
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
