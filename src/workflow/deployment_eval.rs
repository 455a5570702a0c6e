//! The prepared model run in the deployment arithmetic ([`super::deployment_arith`]), layer by
//! layer from the QAT modules' own parameters and fake-quant qparams, without converting. In
//! training it carries straight-through gradients: each layer's output is the integer-exact
//! value, and its gradient is the float fake-quant forward's (`exact + (float - float)`, where
//! the difference is exactly zero but carries the float path's graph).

use burn::module::Module;
use burn::tensor::{DType, Device, Tensor};

use super::deployment_arith::Flow;
use super::layers::{Named, Value};
use super::qat_model::{QatLayer, QatModel, visit_named};
use crate::error::{QatError, Result};
use crate::nn::QatModule;

impl QatModel {
    /// The deployment arithmetic computed from this model's own parameters and the qparams its
    /// fake quants hold, independently of [`convert`](super::convert): activations and weights
    /// as integer codes, products accumulated exactly, biases and requantization as specified in
    /// [`crate::quant::requantize`], every output the real value of the integer the int8 model
    /// stores. Observers and BN statistics are left as they are, and the fake-quant enable
    /// flags are not consulted: the deployment always quantizes (for a float eval, use
    /// [`EvalArithmetic::Float`](super::EvalArithmetic::Float) with fake quant disabled). In training mode the outputs carry
    /// the float fake-quant forward's gradients (straight through), which needs every observer
    /// disabled and every BN frozen.
    ///
    /// The arithmetic accumulates in f64. On a device without f64 (Metal; wgpu where the adapter
    /// lacks `SHADER_F64`; lavapipe has it) the eval
    /// runs on a copy of the model on the Flex CPU backend and returns its output on `x`'s
    /// device; training on the deployment arithmetic there is refused.
    pub fn forward_deployment<const D: usize>(&mut self, x: Tensor<D>) -> Result<Value> {
        let device = x.device();
        if !device.supports_dtype(DType::F64) {
            if self.training {
                return Err(QatError::invalid(
                    "deployment_training",
                    format!(
                        "training on the deployment arithmetic needs f64, which {device:?} lacks: train with float fake \
                         quantization there (deployment_training off)"
                    ),
                ));
            }
            let cpu = Device::flex();
            let mut on_cpu = self.clone().to_device(&cpu);
            let out = on_cpu.forward_deployment(x.to_device(&cpu))?;
            return Ok(out.to_device(&device));
        }
        if self.training {
            self.check_settled()?;
        }
        let (value, _) = run_layers(&mut self.layers, (Value::from_tensor(x)?, None), "", self.training)?;
        Ok(value)
    }

    /// Training on the deployment arithmetic needs qparams and BN statistics that the forward
    /// does not move.
    fn check_settled(&mut self) -> Result<()> {
        if self.fake_quants_mut().iter().any(|fq| fq.is_observer_enabled()) {
            return Err(QatError::lifecycle("training on the deployment arithmetic", "needs fixed qparams: call disable_observer() first"));
        }
        let mut unfrozen = Vec::new();
        visit_named(&self.layers, "", &mut |path, l| {
            if !l.op().is_bn_frozen() {
                unfrozen.push(path.to_string());
            }
        });
        if !unfrozen.is_empty() {
            return Err(QatError::lifecycle(
                "training on the deployment arithmetic",
                format!("needs fixed BN statistics: call freeze_bn_stats() first ({} not frozen)", unfrozen.join(", ")),
            ));
        }
        Ok(())
    }
}

/// Runs `layers` in the deployment arithmetic; with `straight_through`, each layer's float
/// fake-quant forward runs too, for its gradient.
pub(crate) fn run_layers(layers: &mut [Named<QatLayer>], mut flow: Flow, prefix: &str, straight_through: bool) -> Result<Flow> {
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        flow = l.layer.op_mut().forward_deployment(flow, &path, straight_through)?;
    }
    Ok(flow)
}
