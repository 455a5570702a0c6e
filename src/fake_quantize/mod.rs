//! FakeQuantize: an observer plus fake quantization with its qparams, switched by two flags that
//! are saved state (as in PyTorch, where they are buffers, not Python bools).
//!
//! Two variants, as in PyTorch:
//! - [`FakeQuantizeVariant::Standard`] (`FakeQuantize`): observe, then recompute the qparams
//!   from the observer on every observing call.
//! - [`FakeQuantizeVariant::FusedMovingAverage`] (`FusedMovingAvgObsFakeQuantize`, used by
//!   `get_default_qat_qconfig(..., version=1)`): a moving-average update that resets infinite
//!   entries one by one, and qparams recomputed only while fake quant is enabled.
//!
//! Which qparam formula training uses and which [`calculate_qparams`](FakeQuantize::calculate_qparams)
//! (and so convert) uses are two named settings. PyTorch's fused variant trains with
//! ChooseQuantizationParams and converts with the observer formula (issue #88800);
//! [`FakeQuantizeConfig::consistent`] makes them one.

mod config;
mod learnable;

pub use config::{FakeQuantizeConfig, FakeQuantizeVariant, LearnedGradient};
pub use learnable::LearnedQParams;

use burn::module::Module;
use burn::tensor::Tensor;

use crate::error::{QatError, Result};
use crate::observer::Observer;
use crate::ops::{FakeQuantParams, fake_quantize};
use crate::quant::QParams;
use crate::state_dict::{StateDict, StateReader, TensorValue, Values, join};

/// An observer, its current qparams, and the two enable flags; for the learnable variant, the
/// learned qparams as parameters (the module's only ones).
#[derive(Module, Debug)]
pub struct FakeQuantize {
    /// The learnable variant's scale and zero point (made by `prepare_qat`, or on the first
    /// forward of a fake quant built on its own).
    pub learned: Option<LearnedQParams>,
    #[module(skip)]
    config: FakeQuantizeConfig,
    /// PyTorch's `activation_post_process`.
    #[module(skip)]
    pub observer: Observer,
    #[module(skip)]
    scale: Vec<f32>,
    #[module(skip)]
    zero_point: Vec<i32>,
    #[module(skip)]
    fake_quant_enabled: bool,
    /// For the learnable variant, PyTorch's `static_enabled`.
    #[module(skip)]
    observer_enabled: bool,
    #[module(skip)]
    learnable: Option<learnable::LearnableState>,
}

impl FakeQuantize {
    pub(crate) fn new(config: FakeQuantizeConfig, observer: Observer) -> Self {
        let learnable = matches!(config.variant, FakeQuantizeVariant::Learnable { .. }).then(learnable::LearnableState::new);
        Self {
            learned: None,
            config,
            observer,
            scale: vec![1.0],
            zero_point: vec![0],
            fake_quant_enabled: true,
            observer_enabled: true,
            learnable,
        }
    }

    /// Whether this is the learnable variant (`_LearnableFakeQuantize`).
    pub fn is_learnable(&self) -> bool {
        self.learnable.is_some()
    }

    pub fn config(&self) -> &FakeQuantizeConfig {
        &self.config
    }

    /// The qparams fake quantization currently uses (PyTorch's `scale` / `zero_point` buffers).
    pub fn qparams(&self) -> QParams {
        if self.is_learnable() {
            return self.learned_qparams();
        }
        QParams { scale: self.scale.clone(), zero_point: self.zero_point.clone() }
    }

    /// The qparams for convert, by the configured convert formula (PyTorch: the observer's).
    pub fn calculate_qparams(&self) -> QParams {
        if self.is_learnable() {
            return self.learned_qparams();
        }
        self.observer.qparams_with(self.config.convert_qparams)
    }

    /// The convert-time qparams of a per-tensor activation fake quant, checked for the int8
    /// engine (u8 storage). An observer that never saw data is an error: there is nothing to
    /// convert with.
    pub fn activation_qparams(&self, layer: &str) -> Result<crate::quant::ActivationQParams> {
        if !self.observer.has_observed() {
            return Err(QatError::lifecycle(
                layer,
                "its observer never saw data, so it has no qparams; run the model on some data (with observers enabled) before convert",
            ));
        }
        if self.observer.ch_axis().is_some() {
            return Err(QatError::invalid("qscheme", format!("{layer}: activations must be quantized per tensor")));
        }
        let q = self.calculate_qparams();
        let range = self.observer.spec().range;
        crate::quant::ActivationQParams {
            scale: q.scale[0],
            zero_point: q.zero_point[0],
            quant_min: range.quant_min,
            quant_max: range.quant_max,
        }
        .validated(layer)
    }

    /// Integer weights with their per-channel scales and zero points (a per-tensor scale is
    /// repeated for each of `channels`), quantized with the convert-time qparams exactly as
    /// fake quantization rounds them. Checked to fit i8. The weight is `[channels, ...]`.
    pub fn quantize_weight(&self, weight: &[f32], channels: usize, layer: &str) -> Result<(Vec<i8>, Vec<f32>, Vec<i32>)> {
        self.quantize_weight_along(weight, &[channels, weight.len() / channels.max(1)], 0, layer)
    }

    /// [`quantize_weight`](Self::quantize_weight) for a weight of shape `dims` whose channels
    /// lie along `axis`: 0 for convolutions and linear layers, 1 for transposed convolutions
    /// (`[in, out / groups, k...]`). Returns one scale and zero point per index of `axis`; a
    /// per-channel observer must run along that same axis.
    pub fn quantize_weight_along(&self, weight: &[f32], dims: &[usize], axis: usize, layer: &str) -> Result<(Vec<i8>, Vec<f32>, Vec<i32>)> {
        if !self.observer.has_observed() {
            return Err(QatError::lifecycle(
                layer,
                "its weight observer never saw data, so it has no qparams; run a forward before convert",
            ));
        }
        let range = self.observer.spec().range;
        if range.quant_min < -128 || range.quant_max > 127 {
            let field = if range.quant_min < -128 { "quant_min" } else { "quant_max" };
            return Err(QatError::invalid(
                field,
                format!(
                    "{layer}: weight range [{}, {}] does not fit i8; the int8 engine stores weights as i8",
                    range.quant_min, range.quant_max
                ),
            ));
        }
        if let Some(found) = self.observer.ch_axis()
            && found != axis
        {
            return Err(QatError::invalid(
                "ch_axis",
                format!("{layer}: per-channel weight quantization must be on axis {axis} (output channels), found {found}"),
            ));
        }
        if axis >= dims.len() || dims.iter().product::<usize>() != weight.len() {
            return Err(QatError::shape(
                layer,
                format!("a weight of shape {dims:?} with channels on axis {axis}"),
                format!("{} values", weight.len()),
            ));
        }
        let channels = dims[axis];
        let q = self.calculate_qparams();
        let expand = |v: &Vec<f32>| {
            if v.len() == 1 { vec![v[0]; channels] } else { v.clone() }
        };
        let scale = expand(&q.scale);
        let zero_point: Vec<i32> = if q.zero_point.len() == 1 { vec![q.zero_point[0]; channels] } else { q.zero_point.clone() };
        if scale.len() != channels {
            return Err(QatError::shape(layer, format!("{channels} weight scales"), format!("{}", scale.len())));
        }
        let inner: usize = dims[axis + 1..].iter().product();
        let values = weight
            .iter()
            .enumerate()
            .map(|(i, &w)| {
                let c = (i / inner.max(1)) % channels;
                crate::quant::quantize_value(w, 1.0 / scale[c], zero_point[c], range.quant_min, range.quant_max) as i8
            })
            .collect();
        Ok((values, scale, zero_point))
    }

    pub fn is_fake_quant_enabled(&self) -> bool {
        self.fake_quant_enabled
    }

    pub fn is_observer_enabled(&self) -> bool {
        self.observer_enabled
    }

    pub fn enable_fake_quant(&mut self, enabled: bool) {
        self.fake_quant_enabled = enabled;
    }

    pub fn disable_fake_quant(&mut self) {
        self.enable_fake_quant(false);
    }

    pub fn enable_observer(&mut self, enabled: bool) {
        self.observer_enabled = enabled;
    }

    pub fn disable_observer(&mut self) {
        self.enable_observer(false);
    }

    /// The fake-quant op parameters for the current qparams.
    pub fn fake_quant_params(&self) -> FakeQuantParams {
        let range = self.observer.spec().range;
        let q = self.qparams();
        FakeQuantParams {
            scale: q.scale,
            zero_point: q.zero_point,
            axis: self.observer.ch_axis(),
            quant_min: range.quant_min,
            quant_max: range.quant_max,
        }
    }

    /// Observes `x` (if the observer is enabled) and fake quantizes it (if fake quant is
    /// enabled). The training mode of the surrounding model plays no part, as in PyTorch.
    pub fn forward<const D: usize>(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.forward_observed(x, None)
    }

    /// [`forward`](Self::forward) given `x`'s per-tensor `(min, max, all finite)` if already
    /// known (as `ops::min_max` computes it): a per-tensor observer uses it instead of a pass
    /// over `x`, with the same result.
    pub(crate) fn forward_observed<const D: usize>(&mut self, x: Tensor<D>, min_max: Option<(f32, f32, bool)>) -> Result<Tensor<D>> {
        if x.dims().contains(&0) {
            return Ok(x);
        }
        match self.config.variant {
            FakeQuantizeVariant::Learnable { gradient, learn_zero_point } => {
                return self.forward_learnable(x, gradient, learn_zero_point);
            }
            FakeQuantizeVariant::Standard => {
                if self.observer_enabled {
                    self.observer.observe_known(&x, min_max)?;
                    self.set_qparams(self.observer.qparams_with(self.config.train_qparams));
                }
            }
            FakeQuantizeVariant::FusedMovingAverage { averaging_constant } => {
                if self.observer_enabled {
                    self.observer.check_axis(&x.dims())?;
                    let (lo, hi) = self.observer.range_of(&x, min_max)?;
                    self.observer.update_fused(lo, hi, averaging_constant);
                }
                if self.fake_quant_enabled {
                    if !self.observer.has_observed() {
                        return Err(QatError::lifecycle(
                            "fused fake quant",
                            "fake quant is enabled but its observer has never seen data; \
                             enable the observer for at least one forward first",
                        ));
                    }
                    self.set_qparams(self.observer.qparams_with(self.config.train_qparams));
                }
            }
        }
        if !self.fake_quant_enabled {
            return Ok(x);
        }
        fake_quantize(x, &self.fake_quant_params())
    }

    fn set_qparams(&mut self, q: QParams) {
        self.scale = q.scale;
        self.zero_point = q.zero_point;
    }

    /// Flags are uint8 in `FakeQuantize` and int64 in the fused variant, as PyTorch stores them.
    fn flag(&self, on: bool) -> TensorValue {
        let values = match self.config.variant {
            FakeQuantizeVariant::Standard | FakeQuantizeVariant::Learnable { .. } => Values::U8(vec![on as u8]),
            FakeQuantizeVariant::FusedMovingAverage { .. } => Values::I64(vec![on as i64]),
        };
        TensorValue { shape: vec![1], values }
    }

    pub fn write_state(&self, prefix: &str, out: &mut StateDict) {
        if self.is_learnable() {
            return self.write_learnable_state(prefix, out);
        }
        out.insert(join(prefix, "fake_quant_enabled"), self.flag(self.fake_quant_enabled));
        out.insert(join(prefix, "observer_enabled"), self.flag(self.observer_enabled));
        out.insert(join(prefix, "scale"), TensorValue::f32_vec(self.scale.clone()));
        out.insert(join(prefix, "zero_point"), TensorValue::i32_vec(self.zero_point.clone()));
        self.observer.write_state(&join(prefix, "activation_post_process."), out);
    }

    /// Reads the flags, qparams (any length: PyTorch resizes the buffers on load) and observer.
    pub fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        if self.is_learnable() {
            return self.read_learnable_state(prefix, reader);
        }
        for (key, slot) in [("fake_quant_enabled", &mut self.fake_quant_enabled), ("observer_enabled", &mut self.observer_enabled)] {
            if let Some((_, v)) = reader.int(&join(prefix, key), Some(&[1])) {
                *slot = v[0] != 0;
            }
        }
        let scale = reader.f32(&join(prefix, "scale"), None);
        let zero_point = reader.int(&join(prefix, "zero_point"), None);
        if let (Some((_, scale)), Some((_, zero_point))) = (scale, zero_point) {
            let range = self.observer.spec().range;
            if scale.len() != zero_point.len() || scale.is_empty() {
                reader.problem(format!("{prefix}scale and {prefix}zero_point must have the same, non-zero length"));
            } else if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
                reader.problem(format!("{prefix}scale: every scale must be finite and positive, found {scale:?}"));
            } else if zero_point.iter().any(|&z| z < range.quant_min as i64 || z > range.quant_max as i64) {
                reader.problem(format!("{prefix}zero_point: outside [{}, {}]: {zero_point:?}", range.quant_min, range.quant_max));
            } else {
                self.scale = scale;
                self.zero_point = zero_point.iter().map(|&z| z as i32).collect();
            }
        }
        self.observer.read_state(&join(prefix, "activation_post_process."), reader);
    }
}
