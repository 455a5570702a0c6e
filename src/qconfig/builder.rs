use super::{DEFAULT_AVERAGING_CONSTANT, QConfig, Quantizer};
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantizeConfig;
use crate::observer::{ObserverConfig, RangeEstimator};
use crate::quant::{QParamFormula, QScheme, QuantDtype};

/// Custom bit widths and schemes, read like a sentence:
///
/// ```
/// # use burn_qat::qconfig::QConfigBuilder;
/// let qconfig = QConfigBuilder::new().weight_bits(4).activation_bits(8).per_tensor_weights().build().unwrap();
/// assert_eq!(qconfig.weight.observer.quant_range, Some((-8, 7)));
/// ```
///
/// Defaults: 8-bit weights, symmetric, per channel on axis 0; 8-bit affine activations over the
/// full range; the fused moving-average fake quant with c = 0.01; one qparam formula (the
/// observer's) for training and convert.
#[derive(Clone, Debug)]
pub struct QConfigBuilder {
    weight_bits: u32,
    activation_bits: u32,
    per_channel_weights: bool,
    symmetric_activations: bool,
    reduce_activation_range: bool,
    averaging_constant: f32,
    fused: bool,
    formula: QParamFormula,
    activation_quantizer: Quantizer,
    weight_quantizer: Quantizer,
    estimator: RangeEstimator,
    histogram_activations: bool,
}

impl Default for QConfigBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl QConfigBuilder {
    pub fn new() -> Self {
        Self {
            weight_bits: 8,
            activation_bits: 8,
            per_channel_weights: true,
            symmetric_activations: false,
            reduce_activation_range: false,
            averaging_constant: DEFAULT_AVERAGING_CONSTANT,
            fused: true,
            formula: QParamFormula::Observer,
            activation_quantizer: Quantizer::Fixed,
            weight_quantizer: Quantizer::Fixed,
            estimator: RangeEstimator::MinMax,
            histogram_activations: false,
        }
    }

    setters! {
        /// Weight bits, 2 to 16 (signed, `-2^(b-1) ..= 2^(b-1) - 1`).
        weight_bits => weight_bits: u32,
        /// Activation bits, 2 to 16 (unsigned, `0 ..= 2^b - 1`).
        activation_bits => activation_bits: u32,
        averaging_constant => averaging_constant: f32,
        /// The weights' quantizer alone (after [`quantizer`](Self::quantizer)), e.g. LSQ weights
        /// with PACT activations. PACT is for activations: [`build`](Self::build) refuses it here.
        weight_quantizer => weight_quantizer: Quantizer,
        /// How every observer measures an observation's range (min/max, a percentile, MSE).
        range_estimator => estimator: RangeEstimator,
        /// The qparam formula for both training and convert.
        qparam_formula => formula: QParamFormula,
    }

    setters! {
        flags:
        per_tensor_weights => per_channel_weights = false,
        per_channel_weights => per_channel_weights = true,
        symmetric_activations => symmetric_activations = true,
        /// Halves the activation range, as fbgemm and x86 do.
        reduce_activation_range => reduce_activation_range = true,
        /// PyTorch's `FakeQuantize` instead of the fused moving-average variant.
        standard_fake_quant => fused = false,
        /// Activations observed by PyTorch's HistogramObserver (see
        /// [`QConfig::with_histogram_activations`]); weights by the range estimator.
        histogram_activations => histogram_activations = true,
    }

    /// Learned qparams (LSQ, LSQ+) for weights and activations instead of observers alone;
    /// PACT for activations (weights then stay fixed: [`Quantizer::for_weights`]).
    pub fn quantizer(mut self, quantizer: Quantizer) -> Self {
        self.activation_quantizer = quantizer;
        self.weight_quantizer = quantizer.for_weights();
        self
    }

    fn check_bits(what: &str, bits: u32) -> Result<()> {
        if (2..=16).contains(&bits) {
            Ok(())
        } else {
            Err(QatError::invalid(format!("{what}_bits"), format!("{what} bits must be between 2 and 16, got {bits}")))
        }
    }

    fn fake_quant(&self, observer: ObserverConfig, quantizer: Quantizer) -> Result<FakeQuantizeConfig> {
        let config = match quantizer {
            Quantizer::Pact => return FakeQuantizeConfig::pact(observer),
            Quantizer::Lsq => return Ok(FakeQuantizeConfig::learnable(observer, true).with_fixed_zero_point()),
            Quantizer::LsqPlus => return Ok(FakeQuantizeConfig::learnable(observer, true)),
            Quantizer::Fixed if self.fused => FakeQuantizeConfig::fused(observer)?,
            Quantizer::Fixed => FakeQuantizeConfig::standard(observer),
        };
        Ok(config.with_qparam_formula(self.formula))
    }

    pub fn build(&self) -> Result<QConfig> {
        Self::check_bits("weight", self.weight_bits)?;
        Self::check_bits("activation", self.activation_bits)?;
        if self.weight_quantizer == Quantizer::Pact {
            return Err(QatError::invalid(
                "weight_quantizer",
                "PACT learns an activation clip level; weights take a fixed, lsq or lsq+ quantizer",
            ));
        }
        let c = self.averaging_constant;

        let half = 1i64 << (self.weight_bits - 1);
        let weight_dtype = if self.weight_bits <= 8 { QuantDtype::QInt8 } else { QuantDtype::QInt32 };
        let weight = if self.per_channel_weights {
            ObserverConfig::moving_average_per_channel(c, 0).with_qscheme(QScheme::PerChannelSymmetric)
        } else {
            ObserverConfig::moving_average(c).with_qscheme(QScheme::PerTensorSymmetric)
        }
        .with_dtype(weight_dtype)
        .with_quant_range(-half, half - 1)
        .with_estimator(self.estimator);

        let levels = 1i64 << self.activation_bits;
        let act_dtype = if self.activation_bits <= 8 { QuantDtype::QUInt8 } else { QuantDtype::QInt32 };
        let act_scheme = if self.symmetric_activations { QScheme::PerTensorSymmetric } else { QScheme::PerTensorAffine };
        let activation = ObserverConfig::moving_average(c)
            .with_dtype(act_dtype)
            .with_qscheme(act_scheme)
            .with_quant_range(0, levels - 1)
            .with_reduce_range(self.reduce_activation_range)
            .with_estimator(if self.histogram_activations { RangeEstimator::MinMax } else { self.estimator });

        let mut qconfig = QConfig {
            activation: self.fake_quant(activation, self.activation_quantizer)?,
            weight: self.fake_quant(weight, self.weight_quantizer)?,
        };
        if self.histogram_activations {
            qconfig = qconfig.with_histogram_activations()?;
        }
        qconfig.validate()?;
        Ok(qconfig)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fake_quantize::FakeQuantizeVariant;
    use crate::observer::Averaging;

    #[test]
    fn each_switch_sets_what_it_names_and_nothing_else() {
        let default = QConfigBuilder::new().build().unwrap();
        let built = |b: QConfigBuilder| b.build().unwrap();
        assert_eq!(default.weight.observer.qscheme, QScheme::PerChannelSymmetric);
        assert_eq!(built(QConfigBuilder::new().per_tensor_weights()).weight.observer.qscheme, QScheme::PerTensorSymmetric);
        let back = built(QConfigBuilder::new().per_tensor_weights().per_channel_weights());
        assert_eq!(back.weight.observer.qscheme, QScheme::PerChannelSymmetric);

        assert_eq!(default.activation.observer.qscheme, QScheme::PerTensorAffine);
        assert_eq!(built(QConfigBuilder::new().symmetric_activations()).activation.observer.qscheme, QScheme::PerTensorSymmetric);
        assert!(!default.activation.observer.reduce_range);
        assert!(built(QConfigBuilder::new().reduce_activation_range()).activation.observer.reduce_range);

        assert!(matches!(default.activation.variant, FakeQuantizeVariant::FusedMovingAverage { .. }));
        assert_eq!(built(QConfigBuilder::new().standard_fake_quant()).activation.variant, FakeQuantizeVariant::Standard);
        let histogram = built(QConfigBuilder::new().histogram_activations());
        assert!(matches!(histogram.activation.observer.averaging, Averaging::Histogram { .. }));
        assert!(!matches!(histogram.weight.observer.averaging, Averaging::Histogram { .. }), "weights keep their observer");
    }
}
