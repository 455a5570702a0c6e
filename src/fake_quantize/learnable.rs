//! The learnable variant of [`FakeQuantize`]: PyTorch's `_LearnableFakeQuantize`, whose scale and
//! zero point are parameters that any burn optimizer trains (LSQ; with a learned zero point,
//! LSQ+).
//!
//! Its schedule, as in PyTorch, is three flags: while `static_enabled` (our observer flag; the
//! model-wide `enable_observer` switches it, as PyTorch's does) every forward observes and
//! copies the observer's qparams into the parameters; while `learning_enabled` the parameters
//! get gradients; `fake_quant_enabled` switches the quantization itself. `enable_param_learning`,
//! `enable_static_estimate` and `enable_static_observation` set the three together.
//!
//! The parameters are made by `prepare_qat` on the model's device (or, for a fake quant built
//! on its own, on the first forward, on the input's device), with ids fixed before any copy:
//! every copy of a model (data-parallel replicas included) names them alike. Their values come
//! from the observer on the first forward while it is enabled.

use burn::module::{Module, Param, ParamId};
use burn::tensor::{Tensor, TensorData};

use super::FakeQuantize;
use super::LearnedGradient;
use crate::error::{QatError, Result};
use crate::observer::tensor_values;
use crate::ops::{LearnableFakeQuantParams, ScaleGradient, fake_quantize_learnable, forward_zero_point};
use crate::quant::{QParamFormula, QParams};
use crate::state_dict::{StateDict, StateReader, TensorValue, Values, join};

/// The learned scale and (float) zero point, one value per tensor or per channel.
#[derive(Module, Debug)]
pub struct LearnedQParams {
    pub scale: Param<Tensor<1>>,
    pub zero_point: Param<Tensor<1>>,
}

/// What a learnable fake quant holds besides its parameters.
#[derive(Clone, Debug)]
pub(crate) struct LearnableState {
    ids: (ParamId, ParamId),
    pub(crate) learning_enabled: bool,
    /// The values the parameters start from (PyTorch's 1.0 and 0.0, or a loaded state), until
    /// the first forward makes them.
    pending: (Vec<f32>, Vec<f32>),
}

impl LearnableState {
    pub(crate) fn new() -> Self {
        Self { ids: (ParamId::new(), ParamId::new()), learning_enabled: false, pending: (vec![1.0], vec![0.0]) }
    }
}

fn param(id: ParamId, values: Vec<f32>, device: &burn::tensor::Device) -> Param<Tensor<1>> {
    let n = values.len();
    let value = Tensor::from_data(TensorData::new(values, [n]), device);
    // Tracked on an autodiff device (burn panics on require_grad elsewhere).
    Param::initialized(id, if device.is_autodiff() { value.require_grad() } else { value })
}

impl FakeQuantize {
    fn learnable_state(&self) -> &LearnableState {
        self.learnable.as_ref().expect("a learnable fake quant has its state")
    }

    /// The learned scale and float zero point as they stand (PyTorch's `scale` / `zero_point`).
    pub fn learned_values(&self) -> Option<(Vec<f32>, Vec<f32>)> {
        let state = self.learnable.as_ref()?;
        Some(match &self.learned {
            Some(p) => (tensor_values(&p.scale.val()), tensor_values(&p.zero_point.val())),
            None => state.pending.clone(),
        })
    }

    /// Makes the learnable variant's parameters now, on `device`, rather than on the first
    /// forward: a model's parameter ids are then numbered once and for all (`prepare_qat` calls
    /// it), so optimizer state saved in a checkpoint finds them again. No effect otherwise.
    pub fn materialize_learned(&mut self, device: &burn::tensor::Device) {
        if let Some(state) = &self.learnable
            && self.learned.is_none()
        {
            let (scale, zero_point) = state.pending.clone();
            self.set_learned(scale, zero_point, device);
        }
    }

    /// Replaces the learned values, keeping the parameters' ids (renumbered ones included).
    fn set_learned(&mut self, scale: Vec<f32>, zero_point: Vec<f32>, device: &burn::tensor::Device) {
        let ids = match &self.learned {
            Some(p) => (p.scale.id, p.zero_point.id),
            None => self.learnable_state().ids,
        };
        self.learned = Some(LearnedQParams { scale: param(ids.0, scale, device), zero_point: param(ids.1, zero_point, device) });
    }

    /// PyTorch's `calculate_qparams` for the learnable variant: the scale clamped to at least
    /// eps, the zero point rounded half to even and clamped. One deliberate difference: with a
    /// symmetric scheme the zero point is 0, as every forward uses, where PyTorch rounds
    /// whatever the last optimizer step left in the (ignored) parameter.
    pub(crate) fn learned_qparams(&self) -> QParams {
        let (scale, zero_point) = self.learned_values().expect("learnable");
        let spec = self.observer.spec();
        let (qmin, qmax) = (spec.range.quant_min, spec.range.quant_max);
        QParams {
            scale: scale.iter().map(|&s| s.max(spec.eps)).collect(),
            zero_point: zero_point
                .iter()
                .map(|&z| if spec.qscheme.is_symmetric() { 0 } else { forward_zero_point(z, qmin, qmax) })
                .collect(),
        }
    }

    /// `_LearnableFakeQuantize.forward`.
    pub(crate) fn forward_learnable<const D: usize>(
        &mut self,
        x: Tensor<D>,
        gradient: LearnedGradient,
        learn_zero_point: bool,
    ) -> Result<Tensor<D>> {
        let device = x.device();
        if self.observer_enabled {
            self.observer.observe(&x)?;
            let q = self.observer.qparams_with(QParamFormula::Observer);
            self.set_learned(q.scale, q.zero_point.iter().map(|&z| z as f32).collect(), &device);
        } else if self.learned.is_none() {
            let (scale, zero_point) = self.learnable_state().pending.clone();
            self.set_learned(scale, zero_point, &device);
        }
        let spec = *self.observer.spec();
        let learning = self.learnable_state().learning_enabled;
        let learned = self.learned.as_mut().expect("made above");
        let scale = tensor_values(&learned.scale.val());
        if !self.observer_enabled && scale.iter().any(|&s| !(s >= spec.eps)) {
            if scale.iter().any(|s| s.is_nan()) {
                return Err(QatError::NonFinite { context: "learnable fake quant".into(), what: format!("the learned scale {scale:?}") });
            }
            // PyTorch clamps `scale.data` in place: the parameter keeps its id.
            let clamped = scale.iter().map(|&s| s.max(spec.eps)).collect();
            learned.scale = param(learned.scale.id, clamped, &device);
        }
        if !self.fake_quant_enabled {
            return Ok(x);
        }
        if spec.qscheme.is_symmetric() && tensor_values(&learned.zero_point.val()).iter().any(|&z| z != 0.0) {
            let zeros = vec![0.0; learned.zero_point.dims()[0]];
            learned.zero_point = param(learned.zero_point.id, zeros, &device);
        }
        let (qmin, qmax) = (spec.range.quant_min, spec.range.quant_max);
        let grad_factor = match gradient {
            LearnedGradient::Lsq => 1.0,
            // PyTorch's LSQ factor uses quant_max (not the range's length): 1 / sqrt(numel * qmax).
            LearnedGradient::LsqScaled => (1.0 / (x.shape().num_elements() as f64 * qmax as f64).sqrt()) as f32,
            LearnedGradient::Pact => (1.0 / ((qmax as f64 - qmin as f64).powi(2))) as f32,
        };
        let scale_gradient = if gradient == LearnedGradient::Pact { ScaleGradient::Clipped } else { ScaleGradient::Every };
        let params =
            LearnableFakeQuantParams { axis: self.observer.ch_axis(), quant_min: qmin, quant_max: qmax, grad_factor, scale_gradient };
        let value = |p: &Param<Tensor<1>>, learns: bool| if learns { p.val() } else { p.val().detach() };
        let (scale, zero_point) = (value(&learned.scale, learning), value(&learned.zero_point, learning && learn_zero_point));
        fake_quantize_learnable(x, scale, zero_point, &params)
    }

    /// PyTorch `enable_param_learning`: learn the qparams, fake quantize, stop the static
    /// estimates. No effect on a fake quant that is not learnable.
    pub fn enable_param_learning(&mut self) {
        self.set_learnable_flags(true, true, false);
    }

    /// PyTorch `enable_static_estimate`: the observer sets the qparams every forward.
    pub fn enable_static_estimate(&mut self) {
        self.set_learnable_flags(false, true, true);
    }

    /// PyTorch `enable_static_observation`: observe only; the output is the input.
    pub fn enable_static_observation(&mut self) {
        self.set_learnable_flags(false, false, true);
    }

    fn set_learnable_flags(&mut self, learning: bool, fake_quant: bool, observing: bool) {
        if let Some(state) = self.learnable.as_mut() {
            state.learning_enabled = learning;
            self.fake_quant_enabled = fake_quant;
            self.observer_enabled = observing;
        }
    }

    /// Whether the scale and zero point get gradients (learnable only).
    pub fn is_learning_enabled(&self) -> bool {
        self.learnable.as_ref().is_some_and(|s| s.learning_enabled)
    }

    /// The state dict of `_LearnableFakeQuantize`: uint8 flags (`observer_enabled` is the base
    /// class's buffer, which its own switches never change), `eps`, and float `scale` and
    /// `zero_point`.
    pub(crate) fn write_learnable_state(&self, prefix: &str, out: &mut StateDict) {
        let flag = |on: bool| TensorValue { shape: vec![1], values: Values::U8(vec![on as u8]) };
        out.insert(join(prefix, "fake_quant_enabled"), flag(self.fake_quant_enabled));
        out.insert(join(prefix, "observer_enabled"), flag(true));
        out.insert(join(prefix, "static_enabled"), flag(self.observer_enabled));
        out.insert(join(prefix, "learning_enabled"), flag(self.is_learning_enabled()));
        out.insert(join(prefix, "eps"), TensorValue::f32_vec(vec![self.observer.spec().eps]));
        let (scale, zero_point) = self.learned_values().expect("learnable");
        out.insert(join(prefix, "scale"), TensorValue::f32_vec(scale));
        out.insert(join(prefix, "zero_point"), TensorValue::f32_vec(zero_point));
        self.observer.write_state(&join(prefix, "activation_post_process."), out);
    }

    pub(crate) fn read_learnable_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        let mut flags = [self.fake_quant_enabled, self.observer_enabled, self.is_learning_enabled()];
        for (key, slot) in ["fake_quant_enabled", "static_enabled", "learning_enabled"].iter().zip(&mut flags) {
            if let Some((_, v)) = reader.int(&join(prefix, key), Some(&[1])) {
                *slot = v[0] != 0;
            }
        }
        [self.fake_quant_enabled, self.observer_enabled] = [flags[0], flags[1]];
        self.learnable.as_mut().expect("learnable").learning_enabled = flags[2];
        let _ = reader.int(&join(prefix, "observer_enabled"), Some(&[1]));
        let _ = reader.f32(&join(prefix, "eps"), Some(&[1]));
        let scale = reader.f32(&join(prefix, "scale"), None);
        let zero_point = reader.f32(&join(prefix, "zero_point"), None);
        if let (Some((_, scale)), Some((_, zero_point))) = (scale, zero_point) {
            if scale.len() != zero_point.len() || scale.is_empty() {
                reader.problem(format!("{prefix}scale and {prefix}zero_point must have the same, non-zero length"));
            } else if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                reader.problem(format!("{prefix}scale: every scale must be finite and positive, found {scale:?}"));
            } else if zero_point.iter().any(|z| !z.is_finite()) {
                reader.problem(format!("{prefix}zero_point: every zero point must be finite, found {zero_point:?}"));
            } else {
                match self.learned.as_ref().map(|p| p.scale.val().device()) {
                    Some(device) => self.set_learned(scale, zero_point, &device),
                    None => self.learnable.as_mut().expect("learnable").pending = (scale, zero_point),
                }
            }
        }
        self.observer.read_state(&join(prefix, "activation_post_process."), reader);
    }
}
