//! Pooling: on integers it keeps the input's grid.

use serde_json::{Value as Json, json};

use crate::error::Result;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::int8_fields::usize_of;
use crate::workflow::int8_layer::{Int8Op, Int8Run};
use crate::workflow::layers::Value;
use crate::workflow::pooling::{AvgPool2d, GlobalAvgPool2d, MaxPool2d};

/// A square-window pooling layer, stored as its kernel size and stride.
macro_rules! window_pool_int8 {
    ($ty:ty, $kind:literal) => {
        impl Int8Op for $ty {
            const KIND: &'static str = $kind;

            fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
                <$ty>::forward(self, x, path)
            }

            fn save(&self, _: &str, _: &mut StateDict) -> Result<Json> {
                Ok(json!({"kernel_size": self.kernel_size, "stride": self.stride}))
            }

            fn load(entry: &Json, p: &str, _: &mut StateReader<'_>) -> Result<Self> {
                <$ty>::new(usize_of(entry, "kernel_size", p)?, usize_of(entry, "stride", p)?)
            }
        }
    };
}

window_pool_int8!(MaxPool2d, "MaxPool2d");
window_pool_int8!(AvgPool2d, "AvgPool2d");

impl Int8Op for GlobalAvgPool2d {
    const KIND: &'static str = "GlobalAvgPool2d";

    fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
        GlobalAvgPool2d::forward(self, x, path)
    }

    fn save(&self, _: &str, _: &mut StateDict) -> Result<Json> {
        Ok(json!({}))
    }

    fn load(_: &Json, _: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Ok(Self)
    }
}
