//! What a run's files must say about it so that `eval`, `convert`, `inspect`, `export` and
//! `train --resume` can rebuild its model: the architecture, the input it was built for, and the
//! qconfig flags. Written as JSON into the safetensors metadata under [`RUN_KEY`].

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::models::{self, InputShape};
use burn_qat::observer::RangeEstimator;
use burn_qat::qconfig::{QConfig, QConfigBuilder, QuantBackend, Quantizer, get_default_qat_qconfig};
use burn_qat::workflow::{FloatModel, QConfigMap, QatModel, prepare_qat};
use serde_json::json;

use super::args::{ModelKind, TrainArgs};

/// How images become model input: [`burn_qat::data::Dataset::batch`]'s scaling.
pub const NORMALIZATION: &str = "pixel / 255, no mean or std";

/// The metadata key holding a [`RunSpec`].
pub const RUN_KEY: &str = "burn_qat_run";

impl ModelKind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Lenet => "LeNet",
            Self::ResnetTiny => "tiny ResNet",
            Self::Mobilenetv2Tiny => "tiny MobileNetV2",
        }
    }

    pub fn flag(self) -> &'static str {
        match self {
            Self::Lenet => "lenet",
            Self::ResnetTiny => "resnet-tiny",
            Self::Mobilenetv2Tiny => "mobilenetv2-tiny",
        }
    }

    fn from_flag(flag: &str) -> Option<Self> {
        [Self::Lenet, Self::ResnetTiny, Self::Mobilenetv2Tiny].into_iter().find(|m| m.flag() == flag)
    }
}

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

    pub fn parse(name: &str) -> burn_qat::Result<Self> {
        match name {
            "minmax" => Ok(Self::MIN_MAX),
            "histogram" => Ok(Self::Histogram),
            "percentile" => Ok(Self::Range(RangeEstimator::Percentile { percentile: 99.99 })),
            "mse" => Ok(Self::Range(RangeEstimator::Mse)),
            other => Err(QatError::config(format!("unknown observer {other:?}; expected minmax, histogram, percentile or mse"))),
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
    pub fn from_args(args: &TrainArgs) -> Self {
        Self {
            backend: args.qconfig.clone(),
            version: args.qconfig_version,
            weight_bits: args.weight_bits,
            act_bits: args.act_bits,
            per_tensor: args.per_tensor,
            per_channel: args.per_channel,
            quantizer: args.quantizer,
            weight_quantizer: args.weight_quantizer,
            layer_bits: args.layer_bits.clone(),
            keep_first_last_8bit: args.keep_first_last_8bit,
            observer: args.observer,
        }
    }

    /// A backend preset (ours, or PyTorch's with a version), or a custom qconfig when a bit width
    /// or granularity flag is given.
    pub fn choose(&self) -> burn_qat::Result<QChoice> {
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
    fn choose_ranges(&self) -> burn_qat::Result<QChoice> {
        let layers = self.layer_bits()?;
        let star = layers.iter().find(|l| l.name == "*");
        if star.is_some() && (self.weight_bits.is_some() || self.act_bits.is_some()) {
            return Err(QatError::config("--layer-bits '*=N' and --weight-bits/--act-bits both set the default bit width; give it once"));
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
    fn layer_bits(&self) -> burn_qat::Result<Vec<LayerBits>> {
        let Some(spec) = &self.layer_bits else { return Ok(Vec::new()) };
        let mut out: Vec<LayerBits> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bad = |why: &str| {
                QatError::config(format!(
                    "--layer-bits: {entry:?} {why}; write LAYER=BITS or LAYER=WEIGHT_BITS/ACT_BITS entries, e.g. conv1=8,fc2=4/8,*=4"
                ))
            };
            let (name, bits) = entry.split_once('=').ok_or_else(|| bad("has no '='"))?;
            let (weight, act) = bits.split_once('/').unwrap_or((bits, bits));
            let parse = |b: &str| -> burn_qat::Result<u32> {
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
    pub fn qconfig_map(&self, model: &FloatModel) -> burn_qat::Result<QConfigMap> {
        let mut map = QConfigMap::new(Some(self.choose()?.qconfig));
        if self.keep_first_last_8bit {
            let paths = model.layer_paths();
            let weights: Vec<&String> = paths.iter().filter(|(_, w)| *w).map(|(p, _)| p).collect();
            let (Some(first), Some(last)) = (weights.first(), weights.last()) else {
                return Err(QatError::config("--keep-first-last-8bit: the model has no convolution or linear layer"));
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
            return Err(QatError::config(format!(
                "--layer-bits names no layer of this model: {}; its layers with weights are {}",
                unmatched.join(", "),
                model.weight_layer_paths().join(", ")
            )));
        }
        Ok(map)
    }
}

/// How to rebuild a run's model.
#[derive(Clone, Debug, PartialEq)]
pub struct RunSpec {
    pub model: ModelKind,
    pub input: InputShape,
    pub qconfig: QConfigFlags,
}

impl RunSpec {
    pub fn to_json(&self) -> String {
        let q = &self.qconfig;
        json!({
            "model": self.model.flag(),
            "input": [self.input.channels, self.input.height, self.input.width],
            "classes": self.input.classes,
            // What the input pixels go through before the model: written for the reader (and
            // other runtimes); every model here takes the same.
            "normalization": NORMALIZATION,
            "qconfig": q.backend,
            "qconfig_version": q.version,
            "weight_bits": q.weight_bits,
            "act_bits": q.act_bits,
            "per_tensor": q.per_tensor,
            "per_channel": q.per_channel,
            "quantizer": q.quantizer.name(),
            "weight_quantizer": q.weight_quantizer.map(Quantizer::name),
            "layer_bits": q.layer_bits,
            "keep_first_last_8bit": q.keep_first_last_8bit,
            "observer": q.observer.name(),
        })
        .to_string()
    }

    /// Reads the spec from a file's metadata; the error says which file and what is missing.
    pub fn from_metadata(metadata: &HashMap<String, String>, path: &Path) -> burn_qat::Result<Self> {
        let bad = |why: String| QatError::File {
            path: path.display().to_string(),
            reason: format!("{why}; pass a qat.safetensors, float.safetensors or checkpoint.safetensors written by `burn-qat train`"),
        };
        let json = metadata.get(RUN_KEY).ok_or_else(|| bad(format!("no {RUN_KEY} metadata saying which model it holds")))?;
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("unreadable {RUN_KEY} metadata: {e}")))?;
        let model = v["model"].as_str().and_then(ModelKind::from_flag).ok_or_else(|| bad(format!("unknown model in {json}")))?;
        let dims: Vec<usize> =
            v["input"].as_array().map(|a| a.iter().filter_map(|d| d.as_u64()).map(|d| d as usize).collect()).unwrap_or_default();
        let (Some(classes), &[channels, height, width]) = (v["classes"].as_u64(), &dims[..]) else {
            return Err(bad(format!("no input shape and classes in {json}")));
        };
        let bits = |key: &str| v[key].as_u64().map(|b| b as u32);
        Ok(Self {
            model,
            input: InputShape { channels, height, width, classes: classes as usize },
            qconfig: QConfigFlags {
                backend: v["qconfig"].as_str().ok_or_else(|| bad(format!("no qconfig in {json}")))?.to_string(),
                version: bits("qconfig_version"),
                weight_bits: bits("weight_bits"),
                act_bits: bits("act_bits"),
                per_tensor: v["per_tensor"].as_bool().unwrap_or(false),
                per_channel: v["per_channel"].as_bool().unwrap_or(false),
                // Runs from before learned quantizers had fixed ones.
                quantizer: match v["quantizer"].as_str() {
                    Some(name) => Quantizer::parse(name).map_err(|e| bad(e.to_string()))?,
                    None => Quantizer::Fixed,
                },
                weight_quantizer: match v["weight_quantizer"].as_str() {
                    Some(name) => Some(Quantizer::parse(name).map_err(|e| bad(e.to_string()))?),
                    None => None,
                },
                layer_bits: v["layer_bits"].as_str().map(str::to_string),
                keep_first_last_8bit: v["keep_first_last_8bit"].as_bool().unwrap_or(false),
                observer: match v["observer"].as_str() {
                    Some(name) => ObserverChoice::parse(name).map_err(|e| bad(e.to_string()))?,
                    None => ObserverChoice::MIN_MAX,
                },
            },
        })
    }

    /// The float model, freshly initialized from the device's seed.
    pub fn float_model(&self, device: &Device) -> burn_qat::Result<FloatModel> {
        match self.model {
            ModelKind::Lenet => models::lenet_for(self.input, device),
            ModelKind::ResnetTiny => models::resnet_tiny_for(self.input, device),
            ModelKind::Mobilenetv2Tiny => models::mobilenetv2_tiny_for(self.input, device),
        }
    }

    /// `float` fused and prepared for QAT with the run's qconfig.
    pub fn prepare(&self, float: FloatModel) -> burn_qat::Result<QatModel> {
        let fused = float.fuse()?;
        let map = self.qconfig.qconfig_map(&fused)?;
        prepare_qat(fused, map)
    }
}
