use super::FakeQuantize;
use crate::error::{QatError, Result};
use crate::observer::{Averaging, ObserverConfig};
use crate::quant::QParamFormula;

/// Which of PyTorch's two fake-quant modules to reproduce.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FakeQuantizeVariant {
    /// `torch.ao.quantization.FakeQuantize`.
    Standard,
    /// `torch.ao.quantization.FusedMovingAvgObsFakeQuantize`, with the observer's averaging
    /// constant.
    FusedMovingAverage { averaging_constant: f32 },
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
            return Err(QatError::config(
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

    /// One formula for training and convert: the training one. With it the converted model
    /// computes with exactly the qparams training simulated (our presets' default; a deliberate
    /// difference from PyTorch's version-1 qconfigs).
    pub fn consistent(mut self) -> Self {
        self.convert_qparams = self.train_qparams;
        self
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

    /// Builds the module (PyTorch checks included: the range must fit the dtype).
    pub fn init(&self) -> Result<FakeQuantize> {
        Ok(FakeQuantize::new(self.clone(), self.observer.init()?))
    }
}
