//! ReLU and ReLU6: elementwise, on the input's grid.

use serde_json::{Value as Json, json};

use crate::error::Result;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::int8_layer::{Int8Op, Int8Run};
use crate::workflow::layers::{Relu, Relu6, Value};

/// A layer without parameters whose int8 forward is `$forward` on the value.
macro_rules! elementwise_int8 {
    ($ty:ty, $kind:literal, $forward:ident) => {
        impl Int8Op for $ty {
            const KIND: &'static str = $kind;

            fn forward(&self, x: Value, _: &str, _: &Int8Run<'_>) -> Result<Value> {
                Ok(x.$forward())
            }

            fn save(&self, _: &str, _: &mut StateDict) -> Result<Json> {
                Ok(json!({}))
            }

            fn load(_: &Json, _: &str, _: &mut StateReader<'_>) -> Result<Self> {
                Ok(Self)
            }
        }
    };
}

elementwise_int8!(Relu, "Relu", relu);
elementwise_int8!(Relu6, "Relu6", relu6);
