//! Observers: running min/max statistics of a tensor, and the quantization parameters they imply.
//! PyTorch's MinMaxObserver, MovingAverageMinMaxObserver, PerChannelMinMaxObserver and
//! MovingAveragePerChannelMinMaxObserver are one [`Observer`] here, configured by its
//! [`Averaging`] rule and [`QScheme`](crate::quant::QScheme).

mod config;
mod histogram;
mod range_estimate;
mod stats;

pub use crate::ops::tensor_values;
pub use config::{Averaging, ObserverConfig, SearchLevels};
pub use range_estimate::RangeEstimator;
pub(crate) use stats::known_or_tensor_min_max;
pub use stats::{channel_min_max, tensor_min_max};

use burn::tensor::Tensor;

use crate::error::{QatError, Result};
use crate::parallel::collective::{all_gather, all_reduce_min_max};
use crate::quant::{QParamFormula, QParams, QuantSpec};
use crate::state_dict::{StateDict, StateReader, TensorValue, join};
use histogram::Histogram;

/// Running min/max state plus the config that turns it into qparams.
#[derive(Clone, Debug)]
pub struct Observer {
    config: ObserverConfig,
    spec: QuantSpec,
    /// Per tensor: one value, `+inf` until the first observation. Per channel: empty until then.
    min_val: Vec<f32>,
    max_val: Vec<f32>,
    /// The running histogram of a histogram observer, whose range `min_val`/`max_val` mirror.
    histogram: Option<Histogram>,
}

impl Observer {
    pub(crate) fn new(config: ObserverConfig, spec: QuantSpec) -> Self {
        let (min_val, max_val) = Self::empty_stats(&config);
        let histogram = match config.averaging {
            Averaging::Histogram { bins, .. } => Some(Histogram::new(bins)),
            _ => None,
        };
        Self { config, spec, min_val, max_val, histogram }
    }

    fn empty_stats(config: &ObserverConfig) -> (Vec<f32>, Vec<f32>) {
        if config.qscheme.is_per_channel() { (Vec::new(), Vec::new()) } else { (vec![f32::INFINITY], vec![f32::NEG_INFINITY]) }
    }

    pub fn config(&self) -> &ObserverConfig {
        &self.config
    }

    /// The resolved dtype, scheme, effective range and eps.
    pub fn spec(&self) -> &QuantSpec {
        &self.spec
    }

    /// The channel axis, for per-channel observers.
    pub fn ch_axis(&self) -> Option<usize> {
        self.config.qscheme.is_per_channel().then_some(self.config.ch_axis)
    }

    /// The running minimum (one value per tensor, or one per channel).
    pub fn min_val(&self) -> &[f32] {
        &self.min_val
    }

    /// The running maximum.
    pub fn max_val(&self) -> &[f32] {
        &self.max_val
    }

    /// Whether anything has been observed since construction or the last reset.
    pub fn has_observed(&self) -> bool {
        match self.ch_axis() {
            Some(_) => !self.min_val.is_empty(),
            None => !(self.min_val[0] == f32::INFINITY && self.max_val[0] == f32::NEG_INFINITY),
        }
    }

    /// Updates the statistics with a tensor (PyTorch `forward`). An empty tensor changes nothing;
    /// NaN or infinite values are an error, so the running range is never poisoned.
    pub fn observe<const D: usize>(&mut self, x: &Tensor<D>) -> Result<()> {
        self.observe_known(x, None)
    }

    /// [`observe`](Self::observe) given `x`'s per-tensor `(min, max, all finite)` if already
    /// known; per-channel observers ignore it.
    pub(crate) fn observe_known<const D: usize>(&mut self, x: &Tensor<D>, min_max: Option<(f32, f32, bool)>) -> Result<()> {
        let shape = x.dims();
        if shape.contains(&0) {
            return Ok(());
        }
        self.check_axis(&shape)?;
        if self.histogram.is_some() {
            return self.observe_histogram(tensor_values(x));
        }
        let (cur_min, cur_max) = self.range_of(x, min_max)?;
        self.update_checked(cur_min, cur_max, &shape)
    }

    /// Adds one observation to the histogram; in data-parallel training, every replica's share
    /// in rank order, so the histogram is the one of the whole batch.
    fn observe_histogram(&mut self, values: Vec<f32>) -> Result<()> {
        let local: std::result::Result<Vec<f32>, ()> = if values.iter().all(|v| v.is_finite()) { Ok(values) } else { Err(()) };
        let mut values = Vec::new();
        for share in all_gather(local)? {
            values.extend(share.map_err(|()| stats::non_finite())?);
        }
        let histogram = self.histogram.as_mut().expect("a histogram observer");
        if values.is_empty() {
            return Ok(());
        }
        histogram.observe(&values);
        let (min, max) = histogram.range();
        (self.min_val, self.max_val) = (vec![min], vec![max]);
        Ok(())
    }

    /// One observation's range by the configured estimator (`known`: `x`'s per-tensor min,
    /// max and finiteness, if already computed); in data-parallel training, over every
    /// replica's share (for the clipping estimators, the min and max of the replicas' ranges).
    pub(crate) fn range_of<const D: usize>(&self, x: &Tensor<D>, known: Option<(f32, f32, bool)>) -> Result<(Vec<f32>, Vec<f32>)> {
        match self.config.estimator {
            RangeEstimator::MinMax => known_or_tensor_min_max(x, self.ch_axis(), known),
            estimator => all_reduce_min_max(estimator.estimate(&tensor_values(x), &x.dims(), self.ch_axis(), &self.spec)),
        }
    }

    /// [`observe`](Self::observe) on host values with their shape.
    pub fn observe_values(&mut self, values: &[f32], shape: &[usize]) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        self.check_axis(shape)?;
        if self.histogram.is_some() {
            return self.observe_histogram(values.to_vec());
        }
        let (cur_min, cur_max) = all_reduce_min_max(self.config.estimator.estimate(values, shape, self.ch_axis(), &self.spec))?;
        self.update_checked(cur_min, cur_max, shape)
    }

    /// A typed error when a per-channel observer's axis is not in `shape`.
    pub(crate) fn check_axis(&self, shape: &[usize]) -> Result<()> {
        if let Some(axis) = self.ch_axis()
            && axis >= shape.len()
        {
            return Err(QatError::shape(
                "per-channel observer",
                format!("a tensor with more than {axis} dimensions"),
                format!("{shape:?}"),
            ));
        }
        Ok(())
    }

    fn update_checked(&mut self, cur_min: Vec<f32>, cur_max: Vec<f32>, shape: &[usize]) -> Result<()> {
        if self.ch_axis().is_some() && self.has_observed() && self.min_val.len() != cur_min.len() {
            return Err(QatError::shape(
                "per-channel observer",
                format!("{} channels, as observed before", self.min_val.len()),
                format!("{} channels (shape {shape:?})", cur_min.len()),
            ));
        }
        self.update(cur_min, cur_max);
        Ok(())
    }

    fn update(&mut self, cur_min: Vec<f32>, cur_max: Vec<f32>) {
        if !self.has_observed() {
            self.min_val = cur_min;
            self.max_val = cur_max;
            return;
        }
        match self.config.averaging {
            Averaging::MinMax => {
                for (m, c) in self.min_val.iter_mut().zip(&cur_min) {
                    *m = m.min(*c);
                }
                for (m, c) in self.max_val.iter_mut().zip(&cur_max) {
                    *m = m.max(*c);
                }
            }
            Averaging::Histogram { .. } => unreachable!("histogram observers update through observe_histogram"),
            Averaging::MovingAverage { averaging_constant: c } => {
                for (m, cur) in self.min_val.iter_mut().zip(&cur_min) {
                    *m += c * (cur - *m);
                }
                for (m, cur) in self.max_val.iter_mut().zip(&cur_max) {
                    *m += c * (cur - *m);
                }
            }
        }
    }

    /// The fused fake quant's moving-average rule: per element, an infinite running value is
    /// replaced by the current one, otherwise averaged (PyTorch `calculate_moving_average`).
    pub(crate) fn update_fused(&mut self, cur_min: Vec<f32>, cur_max: Vec<f32>, c: f32) {
        if self.min_val.len() != cur_min.len() {
            self.min_val = vec![f32::INFINITY; cur_min.len()];
            self.max_val = vec![f32::NEG_INFINITY; cur_max.len()];
        }
        for (m, cur) in self.min_val.iter_mut().zip(&cur_min).chain(self.max_val.iter_mut().zip(&cur_max)) {
            *m = if m.is_infinite() { *cur } else { *m + c * (cur - *m) };
        }
    }

    /// Forgets everything observed (PyTorch `reset_min_max_vals`).
    pub fn reset_min_max_vals(&mut self) {
        (self.min_val, self.max_val) = Self::empty_stats(&self.config);
        if let Some(h) = &mut self.histogram {
            *h = Histogram::new(h.counts().len());
        }
    }

    /// The histogram's counts, for a histogram observer.
    pub fn histogram(&self) -> Option<&[f32]> {
        self.histogram.as_ref().map(|h| h.counts())
    }

    /// The range qparams are computed from: the running min/max, or for a histogram observer
    /// the range its L2 search picks.
    pub fn qparam_range(&self) -> (Vec<f32>, Vec<f32>) {
        let (Averaging::Histogram { levels, .. }, Some(histogram)) = (self.config.averaging, &self.histogram) else {
            return (self.min_val.clone(), self.max_val.clone());
        };
        if !self.has_observed() {
            return (self.min_val.clone(), self.max_val.clone());
        }
        let levels = match levels {
            SearchLevels::DtypeBits => 2f64.powi(self.spec.dtype.bits() as i32),
            SearchLevels::QuantRange => (self.spec.range.span() + 1) as f64,
        };
        let (lo, hi) = histogram.search(levels);
        (vec![lo], vec![hi])
    }

    /// PyTorch's `calculate_qparams`: the observer formula on the current statistics; scale 1
    /// and zero point 0 before anything was observed.
    pub fn calculate_qparams(&self) -> QParams {
        self.qparams_with(QParamFormula::Observer)
    }

    /// The qparams of the current statistics under either formula.
    pub fn qparams_with(&self, formula: QParamFormula) -> QParams {
        if !self.has_observed() {
            return QParams::unobserved();
        }
        let (min, max) = self.qparam_range();
        QParams::from_min_max(&min, &max, &self.spec, formula)
    }

    pub fn write_state(&self, prefix: &str, out: &mut StateDict) {
        out.insert(join(prefix, "eps"), TensorValue::f32_vec(vec![self.spec.eps]));
        let (min, max) = match self.ch_axis() {
            Some(_) => (TensorValue::f32_vec(self.min_val.clone()), TensorValue::f32_vec(self.max_val.clone())),
            None => (TensorValue::f32_scalar(self.min_val[0]), TensorValue::f32_scalar(self.max_val[0])),
        };
        out.insert(join(prefix, "min_val"), min);
        out.insert(join(prefix, "max_val"), max);
        if let Some(h) = &self.histogram {
            out.insert(join(prefix, "histogram"), TensorValue::f32_vec(h.counts().to_vec()));
        }
    }

    /// Reads `eps`, `min_val`, `max_val`. Per-channel buffers take the stored length, as
    /// PyTorch resizes them on load; a v1 state dict without `eps` keeps the configured one.
    pub fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        let eps_key = join(prefix, "eps");
        if reader.has(&eps_key)
            && let Some((_, eps)) = reader.f32(&eps_key, Some(&[1]))
        {
            self.spec.eps = eps[0];
        }
        let shape: Option<&[usize]> = if self.ch_axis().is_some() { None } else { Some(&[]) };
        let min = reader.f32(&join(prefix, "min_val"), shape);
        let max = reader.f32(&join(prefix, "max_val"), shape);
        if let (Some((min_shape, min)), Some((max_shape, max))) = (min, max) {
            if min_shape != max_shape || min_shape.len() > 1 {
                reader.problem(format!("{prefix}min_val/max_val: shapes {min_shape:?} and {max_shape:?} must be equal vectors"));
                return;
            }
            let unobserved = min_shape.is_empty() && min[0] == f32::INFINITY && max[0] == f32::NEG_INFINITY;
            if !unobserved && min.iter().zip(&max).any(|(lo, hi)| !(lo <= hi) || lo.is_nan() || !lo.is_finite() || !hi.is_finite()) {
                reader.problem(format!("{prefix}min_val/max_val: every min must be finite and <= its max, found {min:?} and {max:?}"));
                return;
            }
            if let Some(h) = &mut self.histogram {
                let bins = h.counts().len();
                let Some((_, counts)) = reader.f32(&join(prefix, "histogram"), Some(&[bins])) else { return };
                if counts.iter().any(|c| !(c.is_finite() && *c >= 0.0)) {
                    reader.problem(format!("{prefix}histogram: every count must be finite and >= 0"));
                    return;
                }
                h.restore(counts, min[0], max[0]);
            }
            self.min_val = min;
            self.max_val = max;
        }
    }
}
