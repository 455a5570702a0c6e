//! The qconfig a run asked for, as `burn-qat train`'s flags give it (backend preset or bit
//! widths, granularity, quantizers, observers, per-layer bits), and the qconfig map it means for
//! a model. Recorded in every file of the run (see [`RunSpec`](super::RunSpec)), so that whoever
//! reads the file rebuilds the same QAT model.

use crate::error::{QatError, Result};
use crate::observer::RangeEstimator;
use crate::qconfig::{QConfig, QConfigBuilder, QuantBackend, Quantizer, get_default_qat_qconfig};
use crate::workflow::{FloatModel, QConfigMap};

/// The qconfig flags of `train`, as given.
#[derive(Clone, Debug, PartialEq)]
pub struct QConfigFlags {
    pub backend: String,
    pub version: Option<u32>,
    pub weight_bits: Option<u32>,
    pub act_bits: Option<u32>,
    pub per_tensor: bool,
    pub per_channel: bool,
    pub quantizer: Quantizer,
    /// `--weight-quantizer`: the weights' own choice, if given.
    pub weight_quantizer: Option<Quantizer>,
    /// `--layer-bits` as given (`conv1=8,fc2=8,*=4`).
    pub layer_bits: Option<String>,
    pub keep_first_last_8bit: bool,
    /// How the observers measure ranges (`--observer`).
    pub observer: ObserverChoice,
}

/// What `--observer` names: a range estimator for every observer (min/max, the 99.99th
/// percentile, the MSE-optimal range), or PyTorch's HistogramObserver for the activations.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ObserverChoice {
    Range(RangeEstimator),
    Histogram,
}

impl ObserverChoice {
    pub const MIN_MAX: Self = Self::Range(RangeEstimator::MinMax);

    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "minmax" => Ok(Self::MIN_MAX),
            "histogram" => Ok(Self::Histogram),
            "percentile" => Ok(Self::Range(RangeEstimator::Percentile { percentile: 99.99 })),
            "mse" => Ok(Self::Range(RangeEstimator::Mse)),
            other => {
                Err(QatError::invalid("--observer", format!("unknown observer {other:?}; expected minmax, histogram, percentile or mse")))
            }
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Range(RangeEstimator::MinMax) => "minmax",
            Self::Histogram => "histogram",
            Self::Range(RangeEstimator::Percentile { .. }) => "percentile",
            Self::Range(RangeEstimator::Mse) => "mse",
        }
    }
}

/// One `--layer-bits` entry: a layer (or `*`) and its weight and output-activation bits.
struct LayerBits {
    name: String,
    weight: u32,
    act: u32,
}

/// The qconfig the flags ask for, and how to describe it.
pub struct QChoice {
    pub qconfig: QConfig,
    pub description: String,
    pub weight_bits: u32,
    pub act_bits: u32,
    pub per_channel: bool,
}

impl QConfigFlags {
    /// A backend preset (ours, or PyTorch's with a version), or a custom qconfig when a bit width
    /// or granularity flag is given.
    pub fn choose(&self) -> Result<QChoice> {
        let mut choice = self.choose_ranges()?;
        match self.observer {
            ObserverChoice::MIN_MAX => {}
            ObserverChoice::Range(estimator) => {
                choice.qconfig.activation.observer.estimator = estimator;
                choice.qconfig.weight.observer.estimator = estimator;
                choice.description += &format!("; observer {}", estimator.name());
            }
            ObserverChoice::Histogram => {
                choice.qconfig = choice.qconfig.with_histogram_activations()?;
                choice.description += "; histogram observers for activations";
            }
        }
        Ok(choice)
    }

    /// [`choose`](Self::choose) before the observers' range estimator.
    fn choose_ranges(&self) -> Result<QChoice> {
        let layers = self.layer_bits()?;
        let star = layers.iter().find(|l| l.name == "*");
        if star.is_some() && (self.weight_bits.is_some() || self.act_bits.is_some()) {
            return Err(QatError::invalid(
                "--layer-bits",
                "--layer-bits '*=N' and --weight-bits/--act-bits both set the default bit width; give it once",
            ));
        }
        let (weight_bits, act_bits) =
            (self.weight_bits.or(star.map(|l| l.weight)).unwrap_or(8), self.act_bits.or(star.map(|l| l.act)).unwrap_or(8));
        let custom = weight_bits != 8
            || act_bits != 8
            || self.per_tensor
            || self.per_channel
            || self.quantizer != Quantizer::Fixed
            || self.weight_quantizer.is_some()
            || !layers.is_empty()
            || self.keep_first_last_8bit;
        let backend = QuantBackend::parse(&self.backend)?;
        if !custom {
            let (qconfig, description) = match self.version {
                Some(v) => (get_default_qat_qconfig(&self.backend, v)?, format!("{} v{v} (PyTorch)", self.backend)),
                None => (QConfig::consistent(&self.backend)?, format!("{} (consistent)", self.backend)),
            };
            return Ok(QChoice { qconfig, description, weight_bits, act_bits, per_channel: backend != QuantBackend::Qnnpack });
        }
        let per_channel = !self.per_tensor;
        let granularity = if per_channel { "per-channel" } else { "per-tensor" };
        let weights = self.weight_quantizer.unwrap_or(self.quantizer.for_weights());
        let mut description = match (weights, self.quantizer) {
            (Quantizer::Fixed, Quantizer::Fixed) => {
                format!("custom: w{weight_bits} {granularity} symmetric, a{act_bits} affine (consistent)")
            }
            (w, a) if w == a => {
                format!("custom: w{weight_bits} {granularity} symmetric, a{act_bits} affine, {} (learned qparams)", a.name())
            }
            (w, a) => format!("custom: w{weight_bits} {granularity} symmetric {}, a{act_bits} affine {}", w.name(), a.name()),
        };
        let named: Vec<String> = layers
            .iter()
            .filter(|l| l.name != "*")
            .map(|l| if l.weight == l.act { format!("{}={}", l.name, l.weight) } else { format!("{}={}/{}", l.name, l.weight, l.act) })
            .collect();
        if !named.is_empty() {
            description += &format!("; layers {}", named.join(","));
        }
        if self.keep_first_last_8bit {
            description += "; first and last layers 8-bit";
        }
        Ok(QChoice { qconfig: self.builder(weight_bits, act_bits).build()?, description, weight_bits, act_bits, per_channel })
    }
}

impl QConfigFlags {
    fn builder(&self, weight_bits: u32, act_bits: u32) -> QConfigBuilder {
        let builder = QConfigBuilder::new()
            .weight_bits(weight_bits)
            .activation_bits(act_bits)
            .quantizer(self.quantizer)
            .weight_quantizer(self.weight_quantizer.unwrap_or(self.quantizer.for_weights()));
        let builder = match self.observer {
            ObserverChoice::Range(estimator) => builder.range_estimator(estimator),
            ObserverChoice::Histogram => builder.histogram_activations(),
        };
        if self.per_tensor { builder.per_tensor_weights() } else { builder.per_channel_weights() }
    }

    /// `--layer-bits` parsed: `(layer path or "*", bits)`.
    fn layer_bits(&self) -> Result<Vec<LayerBits>> {
        let Some(spec) = &self.layer_bits else { return Ok(Vec::new()) };
        let mut out: Vec<LayerBits> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |why: &str| {
                QatError::invalid(
                    "--layer-bits",
                    format!("{entry:?} {why}; write LAYER=BITS or LAYER=WEIGHT_BITS/ACT_BITS entries, e.g. conv1=8,fc2=4/8,*=4"),
                )
            };
            let (name, bits) = entry.split_once('=').ok_or_else(|| bad("has no '='"))?;
            let (weight, act) = bits.split_once('/').unwrap_or((bits, bits));
            let parse = |b: &str| -> Result<u32> {
                let b: u32 = b.trim().parse().map_err(|_| bad("has no whole number of bits"))?;
                if (2..=8).contains(&b) { Ok(b) } else { Err(bad("asks for bits outside 2..=8")) }
            };
            let (weight, act) = (parse(weight)?, parse(act)?);
            let name = name.trim().to_string();
            if name.is_empty() || out.iter().any(|l| l.name == name) {
                return Err(bad("names no layer, or one named before"));
            }
            out.push(LayerBits { name, weight, act });
        }
        Ok(out)
    }

    /// The qconfig of every layer of `model` (fused): the default from [`choose`](Self::choose),
    /// then `--keep-first-last-8bit` and `--layer-bits`. A name that is no layer is an error
    /// listing the layers.
    pub fn qconfig_map(&self, model: &FloatModel) -> Result<QConfigMap> {
        let mut map = QConfigMap::new(Some(self.choose()?.qconfig));
        if self.keep_first_last_8bit {
            let paths = model.layer_paths();
            let weights: Vec<&String> = paths.iter().filter(|(_, w)| *w).map(|(p, _)| p).collect();
            let (Some(first), Some(last)) = (weights.first(), weights.last()) else {
                return Err(QatError::invalid("--keep-first-last-8bit", "the model has no convolution or linear layer"));
            };
            // The input's quantization (the quant stub before the first layer) goes to 8 bits too.
            let before_first = paths.iter().take_while(|(p, _)| p != *first).filter(|(p, _)| !p.contains('.')).map(|(p, _)| p.clone());
            for path in before_first.chain([first.to_string(), last.to_string()]) {
                map = map.with(&path, Some(self.builder(8, 8).build()?));
            }
        }
        for layer in self.layer_bits()?.into_iter().filter(|l| l.name != "*") {
            map = map.with(&layer.name, Some(self.builder(layer.weight, layer.act).build()?));
        }
        let unmatched = map.unmatched_paths(model);
        if !unmatched.is_empty() {
            return Err(QatError::invalid(
                "--layer-bits",
                format!(
                    "--layer-bits names no layer of this model: {}; its layers with weights are {}",
                    unmatched.join(", "),
                    model.weight_layer_paths().join(", ")
                ),
            ));
        }
        Ok(map)
    }
}
