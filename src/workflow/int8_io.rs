//! The int8 model as one safetensors file that runs without the float model: i8 weights, f32
//! scales, i32 zero points and biases as tensors, and the layer structure (geometry, fused
//! ReLUs, pooling) as JSON in the metadata under `"architecture"`. Loading checks every part
//! against the architecture and names the layer at fault.
//!
//! Weights whose values fit fewer than 8 signed bits (a 4-bit layer) are stored packed at that
//! width (`weight_packed`, u8, with `weight_bits`; [`crate::quant::packing`]) instead of one
//! per byte (`weight`, i8); files written before packing load as they are.

use std::collections::HashMap;
use std::path::Path;

use serde_json::Value as Json;

use super::int8_layer::{load_layers, save_layers};
use super::int8_model::Int8Model;
use crate::error::{QatError, Result};
use crate::state_dict::{StateDict, StateReader, load_safetensors, save_safetensors};

/// The `format` metadata of an int8 model file.
pub const FORMAT: &str = "burn-qat-int8/1";

impl Int8Model {
    /// Saves the model (atomically: temp file, then rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with_metadata(path, &HashMap::new())
    }

    /// [`save`](Self::save) with more string metadata (what the model is for: its input, the
    /// data it was trained on), which [`load_safetensors`] reads back. The keys `format` and
    /// `architecture` are the file's own.
    pub fn save_with_metadata(&self, path: impl AsRef<Path>, extra: &HashMap<String, String>) -> Result<()> {
        let mut state = StateDict::new();
        let architecture = save_layers(&self.layers, "", &mut state)?;
        let mut metadata = extra.clone();
        metadata.insert("format".to_string(), FORMAT.to_string());
        metadata.insert("architecture".to_string(), architecture.to_string());
        save_safetensors(path, &state, &metadata)
    }

    /// Loads a model saved by [`save`](Self::save). Every inconsistency (a missing or extra
    /// tensor, a weight that does not fit its geometry, an invalid scale) is an error.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (state, metadata) = load_safetensors(path)?;
        let bad = |reason: String| QatError::File { path: path.display().to_string(), reason };
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("not an int8 model file (metadata format is {:?}, expected {FORMAT:?})", metadata.get("format"))));
        }
        let architecture: Json = serde_json::from_str(metadata.get("architecture").map(String::as_str).unwrap_or(""))
            .map_err(|e| bad(format!("unreadable architecture: {e}")))?;
        let mut reader = StateReader::new(&state);
        let layers = load_layers(&architecture, "", &mut reader).map_err(|e| bad(e.to_string()))?;
        reader.finish().map_err(|e| bad(e.to_string()))?;
        Ok(Self { layers })
    }
}
