//! A layer left in float (qconfig `None`) inside a converted model.

use serde_json::Value as Json;

use crate::error::{QatError, Result};
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::Layer;
use crate::workflow::int8_layer::{Int8Op, Int8Run};
use crate::workflow::layers::Value;

impl Int8Op for Layer {
    const KIND: &'static str = "Float";

    fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
        Layer::forward(&mut self.clone(), x, path)
    }

    /// A float layer may be a batch norm still in training mode, which mixes samples.
    fn per_sample(&self) -> bool {
        false
    }

    fn save(&self, path: &str, _: &mut StateDict) -> Result<Json> {
        Err(QatError::config(format!("{path}: float layers inside an int8 model cannot be saved yet")))
    }

    fn load(_: &Json, path: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Err(QatError::config(format!("{path}: float layers inside an int8 model cannot be loaded")))
    }
}
