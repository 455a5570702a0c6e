use super::Observer;
use super::RangeEstimator;
use crate::error::{QatError, Result};
use crate::quant::{QScheme, QuantDtype, QuantRange, QuantSpec};

/// How new statistics are combined with the running ones.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Averaging {
    /// The overall min and max ever seen (MinMaxObserver).
    MinMax,
    /// `m <- m + c * (current - m)`; the first observation is taken as is
    /// (MovingAverageMinMaxObserver).
    MovingAverage { averaging_constant: f32 },
    /// A running histogram of `bins` bins over everything seen; qparams come from the range
    /// that minimizes the L2 quantization error (HistogramObserver). Per tensor only.
    Histogram { bins: usize, levels: SearchLevels },
}

/// How many quantization levels the histogram search assumes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SearchLevels {
    /// `2^bits` of the dtype (256 for quint8 and qint8), whatever the quant range: PyTorch's
    /// HistogramObserver, which therefore clips for 8 bits even at a 4-bit `quant_max`.
    DtypeBits,
    /// `quant_max - quant_min + 1`, the levels the values are actually rounded to: what a
    /// sub-8-bit range needs (our improvement; `--observer histogram` uses it).
    QuantRange,
}

/// The settings of an observer, with PyTorch's defaults (quint8, per-tensor affine, eps =
/// f32::EPSILON, channel axis 0).
#[derive(Clone, Debug, PartialEq)]
pub struct ObserverConfig {
    pub averaging: Averaging,
    pub dtype: QuantDtype,
    pub qscheme: QScheme,
    /// The channel axis; used by per-channel schemes only.
    pub ch_axis: usize,
    pub reduce_range: bool,
    /// A custom `(quant_min, quant_max)`, or the dtype's default range.
    pub quant_range: Option<(i64, i64)>,
    pub eps: f32,
    /// How each observation's range is measured (PyTorch's observers: [`RangeEstimator::MinMax`]).
    pub estimator: RangeEstimator,
}

impl ObserverConfig {
    fn with_defaults(averaging: Averaging, qscheme: QScheme) -> Self {
        Self {
            averaging,
            dtype: QuantDtype::QUInt8,
            qscheme,
            ch_axis: 0,
            reduce_range: false,
            quant_range: None,
            eps: f32::EPSILON,
            estimator: RangeEstimator::MinMax,
        }
    }

    /// PyTorch `MinMaxObserver()`.
    pub fn min_max() -> Self {
        Self::with_defaults(Averaging::MinMax, QScheme::PerTensorAffine)
    }

    /// PyTorch `MovingAverageMinMaxObserver(averaging_constant)` (PyTorch's default c is 0.01).
    pub fn moving_average(averaging_constant: f32) -> Self {
        Self::with_defaults(Averaging::MovingAverage { averaging_constant }, QScheme::PerTensorAffine)
    }

    /// PyTorch `HistogramObserver(bins)` (PyTorch's default is 2048 bins).
    pub fn histogram(bins: usize) -> Self {
        Self::with_defaults(Averaging::Histogram { bins, levels: SearchLevels::DtypeBits }, QScheme::PerTensorAffine)
    }

    /// PyTorch `PerChannelMinMaxObserver(ch_axis)`.
    pub fn per_channel_min_max(ch_axis: usize) -> Self {
        Self { ch_axis, ..Self::with_defaults(Averaging::MinMax, QScheme::PerChannelAffine) }
    }

    /// PyTorch `MovingAveragePerChannelMinMaxObserver(averaging_constant, ch_axis)`.
    pub fn moving_average_per_channel(averaging_constant: f32, ch_axis: usize) -> Self {
        Self { ch_axis, ..Self::with_defaults(Averaging::MovingAverage { averaging_constant }, QScheme::PerChannelAffine) }
    }

    setters! {
        with_dtype => dtype: QuantDtype,
        /// Sets the scheme; a per-tensor observer takes per-tensor schemes, a per-channel one
        /// per-channel schemes (checked by [`init`](Self::init)).
        with_qscheme => qscheme: QScheme,
        with_reduce_range => reduce_range: bool,
    }

    pub fn with_quant_range(mut self, quant_min: i64, quant_max: i64) -> Self {
        self.quant_range = Some((quant_min, quant_max));
        self
    }

    setters! { with_eps => eps: f32 }

    /// The dtype, scheme, effective range and eps, checked as PyTorch checks them.
    pub fn spec(&self) -> Result<QuantSpec> {
        if let Averaging::MovingAverage { averaging_constant: c } = self.averaging
            && !(c > 0.0 && c <= 1.0)
        {
            return Err(QatError::invalid("averaging_constant", format!("averaging_constant {c} must be in (0, 1]")));
        }
        if let Averaging::Histogram { bins, .. } = self.averaging {
            if bins == 0 {
                return Err(QatError::invalid("bins", "a histogram observer needs at least one bin"));
            }
            if self.qscheme.is_per_channel() {
                return Err(QatError::invalid(
                    "qscheme",
                    "the histogram observer is per tensor only (PyTorch's too); use a per-tensor scheme, \
                     or a min/max observer per channel",
                ));
            }
            if self.estimator != RangeEstimator::MinMax {
                return Err(QatError::invalid(
                    "estimator",
                    format!("the histogram observer searches its own range; it takes no range estimator (got {})", self.estimator.name()),
                ));
            }
        }
        if !(self.eps.is_finite() && self.eps > 0.0) {
            return Err(QatError::invalid("eps", format!("eps {} must be finite and positive", self.eps)));
        }
        if self.qscheme.is_symmetric() && self.dtype == QuantDtype::QUInt8 && self.reduce_range {
            return Err(QatError::invalid(
                "reduce_range",
                "cannot reduce range for symmetric quantization for quint8 (PyTorch rejects it too); \
                 use qint8 or drop reduce_range",
            ));
        }
        let range = QuantRange::resolve(self.dtype, self.quant_range, self.reduce_range)?;
        Ok(QuantSpec { dtype: self.dtype, qscheme: self.qscheme, range, custom_range: self.quant_range.is_some(), eps: self.eps })
    }

    setters! {
        /// Clips each observation's range at a percentile or where the quantization error is
        /// smallest instead of taking its min and max.
        with_estimator => estimator: RangeEstimator,
    }

    /// Builds the observer.
    pub fn init(&self) -> Result<Observer> {
        self.estimator.check()?;
        Ok(Observer::new(self.clone(), self.spec()?))
    }
}
