//! What a run's files must say about it so that `eval`, `convert`, `inspect`, `export` and
//! `train --resume` can rebuild its model: the architecture, the input it was built for, and the
//! qconfig flags. Written as JSON into the safetensors metadata under
//! [`RUN_KEY`](super::file::RUN_KEY).

use std::path::Path;

use burn::tensor::Device;
use serde_json::json;

use super::qconfig_flags::{ObserverChoice, QConfigFlags};
use crate::error::{QatError, Result};
use crate::models::{self, InputShape};
use crate::qconfig::Quantizer;
use crate::workflow::{FloatModel, QatModel, prepare_qat};

/// How images become model input: [`crate::data::Dataset::batch`]'s scaling.
pub const NORMALIZATION: &str = "pixel / 255, no mean or std";

/// The architectures a run can train, each a [`FloatModel`] for any input shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelKind {
    /// Two Conv-BN-ReLU blocks with max pooling, Linear-ReLU, a linear head.
    Lenet,
    /// A Conv-BN-ReLU stem and basic residual blocks (adds), Linear-ReLU, a linear head.
    ResnetTiny,
    /// Depthwise-separable inverted residual blocks with adds, global average pooling.
    Mobilenetv2Tiny,
}

impl ModelKind {
    pub const ALL: [Self; 3] = [Self::Lenet, Self::ResnetTiny, Self::Mobilenetv2Tiny];

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

    /// The kind whose [`flag`](Self::flag) is `flag`.
    pub fn from_flag(flag: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.flag() == flag)
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

    /// Reads the spec from [`to_json`](Self::to_json)'s JSON in the file at `path`; the error
    /// says which file and what is missing (`key`: where in the file the JSON was).
    pub fn from_json(json: &str, key: &str, path: &Path) -> Result<Self> {
        let bad = |why: String| QatError::File {
            path: path.display().to_string(),
            reason: format!("{why}; pass a qat.safetensors, float.safetensors or checkpoint.safetensors written by `burn-qat train`"),
        };
        let v: serde_json::Value = serde_json::from_str(json).map_err(|e| bad(format!("unreadable {key} metadata: {e}")))?;
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
    pub fn float_model(&self, device: &Device) -> Result<FloatModel> {
        match self.model {
            ModelKind::Lenet => models::lenet_for(self.input, device),
            ModelKind::ResnetTiny => models::resnet_tiny_for(self.input, device),
            ModelKind::Mobilenetv2Tiny => models::mobilenetv2_tiny_for(self.input, device),
        }
    }

    /// `float` fused and prepared for QAT with the run's qconfig.
    pub fn prepare(&self, float: FloatModel) -> Result<QatModel> {
        let fused = float.fuse()?;
        let map = self.qconfig.qconfig_map(&fused)?;
        prepare_qat(fused, map)
    }
}
