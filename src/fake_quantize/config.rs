use super::FakeQuantize;
use crate::error::{QatError, Result};
use crate::observer::{Averaging, ObserverConfig, SearchLevels};
use crate::quant::QParamFormula;

/// Which of PyTorch's two fake-quant modules to reproduce.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FakeQuantizeVariant {
    /// `torch.ao.quantization.FakeQuantize`.
    Standard,
    /// `torch.ao.quantization.FusedMovingAvgObsFakeQuantize`, with the observer's averaging
    /// constant.
    FusedMovingAverage { averaging_constant: f32 },
    /// `torch.ao.quantization._LearnableFakeQuantize`: scale and zero point are parameters,
    /// estimated by the observer while it is enabled and learned by gradient descent once
    /// `enable_param_learning` is called, with the gradient `gradient` names.
    /// `learn_zero_point: false` holds the zero point at the observer's estimate (LSQ proper;
    /// PyTorch's module always learns it, as LSQ+ does).
    Learnable { gradient: LearnedGradient, learn_zero_point: bool },
}

/// The gradient a learnable fake quant's scale learns by.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LearnedGradient {
    /// PyTorch's op as it is (`use_grad_scaling=False`): LSQ's gradient, factor 1.
    Lsq,
    /// LSQ's gradient times `1 / sqrt(numel * quant_max)` (`use_grad_scaling=True`).
    LsqScaled,
    /// PACT (Choi et al. 2018): the scale learns from the clipped elements only, with the factor
    /// `1 / (quant_max - quant_min)^2`, so that an SGD step moves the clip level
    /// `α = s * (quant_max - quant_min)` by exactly PACT's step on α. (With a zero point at
    /// `quant_min`, as for activations after a ReLU, α is the upper clip level; otherwise it is
    /// the width of the clipping range.) Not in PyTorch.
    Pact,
}

/// How to build a [`FakeQuantize`]: its observer, variant, and the qparam formula for training
/// and for convert.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeQuantizeConfig {
    pub observer: ObserverConfig,
    pub variant: FakeQuantizeVariant,
    /// The formula fake quantization uses while training.
    pub train_qparams: QParamFormula,
    /// The formula [`FakeQuantize::calculate_qparams`] (and so convert) uses.
    pub convert_qparams: QParamFormula,
}

impl FakeQuantizeConfig {
    /// PyTorch `FakeQuantize(observer)`: the observer formula for both.
    pub fn standard(observer: ObserverConfig) -> Self {
        Self {
            observer,
            variant: FakeQuantizeVariant::Standard,
            train_qparams: QParamFormula::Observer,
            convert_qparams: QParamFormula::Observer,
        }
    }

    /// PyTorch `FusedMovingAvgObsFakeQuantize(observer)`: trains with ChooseQuantizationParams,
    /// converts with the observer formula, exactly as PyTorch does. The observer must be a
    /// moving-average one.
    pub fn fused(observer: ObserverConfig) -> Result<Self> {
        let Averaging::MovingAverage { averaging_constant } = observer.averaging else {
            return Err(QatError::invalid(
                "observer",
                "the fused fake quant needs a moving-average observer (MovingAverageMinMaxObserver or \
                 MovingAveragePerChannelMinMaxObserver)",
            ));
        };
        Ok(Self {
            observer,
            variant: FakeQuantizeVariant::FusedMovingAverage { averaging_constant },
            train_qparams: QParamFormula::ChooseQParams,
            convert_qparams: QParamFormula::Observer,
        })
    }

    /// PyTorch `_LearnableFakeQuantize(observer, use_grad_scaling=...)`: the observer's estimate
    /// (its formula) until learning starts, then learned values, which convert uses as they are.
    /// With `use_grad_scaling` this is LSQ (Esser et al. 2020); with an affine scheme the zero
    /// point learns too (LSQ+, Bhalgat et al. 2020).
    pub fn learnable(observer: ObserverConfig, use_grad_scaling: bool) -> Self {
        Self {
            observer,
            variant: FakeQuantizeVariant::Learnable {
                gradient: if use_grad_scaling { LearnedGradient::LsqScaled } else { LearnedGradient::Lsq },
                learn_zero_point: true,
            },
            train_qparams: QParamFormula::Observer,
            convert_qparams: QParamFormula::Observer,
        }
    }

    /// PACT: a learned clip level for activations (see [`LearnedGradient::Pact`]), started from
    /// the observer's estimate on the first batch (the paper starts at α = 10); the zero point
    /// stays at that estimate. The scheme must be affine: PACT clips what the observer saw.
    pub fn pact(observer: ObserverConfig) -> Result<Self> {
        if observer.qscheme.is_symmetric() || observer.qscheme.is_per_channel() {
            return Err(QatError::invalid(
                "qscheme",
                "PACT learns a per-tensor activation clip level; it needs a per-tensor affine observer \
                 (for weights use a fixed or LSQ quantizer)",
            ));
        }
        Ok(Self {
            variant: FakeQuantizeVariant::Learnable { gradient: LearnedGradient::Pact, learn_zero_point: false },
            ..Self::learnable(observer, false)
        })
    }

    /// A learnable fake quant whose zero point stays at the observer's estimate.
    pub fn with_fixed_zero_point(mut self) -> Self {
        if let FakeQuantizeVariant::Learnable { learn_zero_point, .. } = &mut self.variant {
            *learn_zero_point = false;
        }
        self
    }

    /// One formula for training and convert, the observer's: the converted model then computes
    /// with exactly the qparams training simulated (our presets' default, [`QConfig::consistent`];
    /// a deliberate difference from PyTorch's version-1 qconfigs, whose fused fake quant trains
    /// with ChooseQuantizationParams and converts with the observer formula).
    ///
    /// [`QConfig::consistent`]: crate::qconfig::QConfig::consistent
    pub fn consistent(self) -> Self {
        self.with_qparam_formula(QParamFormula::Observer)
    }

    /// Both formulas set to `formula`.
    pub fn with_qparam_formula(mut self, formula: QParamFormula) -> Self {
        self.train_qparams = formula;
        self.convert_qparams = formula;
        self
    }

    /// Whether training and convert use the same formula.
    pub fn is_consistent(&self) -> bool {
        self.train_qparams == self.convert_qparams
    }

    /// The same quantization (dtype, scheme, range, eps) observed by PyTorch's HistogramObserver
    /// with `bins` bins, searching for the range's own levels ([`SearchLevels::QuantRange`]).
    /// The fused variant needs a moving-average observer, so it becomes the standard one, with
    /// the same formulas; a learnable one keeps learning and takes its first estimate from the
    /// histogram.
    pub fn with_histogram_observer(mut self, bins: usize) -> Result<Self> {
        if self.observer.qscheme.is_per_channel() {
            return Err(QatError::invalid(
                "qscheme",
                "a histogram observer is per tensor only; keep min/max observers for per-channel weights",
            ));
        }
        self.observer.averaging = Averaging::Histogram { bins, levels: SearchLevels::QuantRange };
        if let FakeQuantizeVariant::FusedMovingAverage { .. } = self.variant {
            self.variant = FakeQuantizeVariant::Standard;
        }
        Ok(self)
    }

    /// Builds the module (PyTorch checks included: the range must fit the dtype).
    pub fn init(&self) -> Result<FakeQuantize> {
        Ok(FakeQuantize::new(self.clone(), self.observer.init()?))
    }
}
