//! Flatten: images to features, the grid unchanged.

use serde_json::{Value as Json, json};

use crate::error::Result;
use crate::nn::quantized::ActivationQParams;
use crate::qconfig::QConfig;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{Flatten, Value};
use crate::workflow::qat_layer::QatOp;
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer};

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

impl QatOp for Flatten {
    fn kind(&self) -> &'static str {
        "Flatten"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        Flatten::forward(self, x, path)
    }

    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        Ok((Flatten::forward(self, x, path)?, grid))
    }

    fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::Flatten(self.clone()))
    }
}

float_parameterless_op!(Flatten, "Flatten", Flatten, forward: |m, x, p| Flatten::forward(m, x, p));
