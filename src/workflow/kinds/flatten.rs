//! Flatten: images to features, the grid unchanged.

use serde_json::{Value as Json, json};

use crate::error::Result;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::int8_layer::{Int8Op, Int8Run};
use crate::workflow::layers::{Flatten, Value};

impl Int8Op for Flatten {
    const KIND: &'static str = "Flatten";

    fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
        Flatten::forward(self, x, path)
    }

    fn save(&self, _: &str, _: &mut StateDict) -> Result<Json> {
        Ok(json!({}))
    }

    fn load(_: &Json, _: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Ok(Self)
    }
}
