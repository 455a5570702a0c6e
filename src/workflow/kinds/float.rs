//! A layer left in float (qconfig `None`) inside a converted model.

use serde_json::Value as Json;

use crate::error::{QatError, Result};
use crate::nn::quantized::ActivationQParams;
use crate::qdq::{QdqGraph, Wire};
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::Layer;
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::Value;
use crate::workflow::qat_layer::QatOp;

impl Int8Op for Layer {
    const KIND: &'static str = "Float";

    fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
        self.clone().op_mut().forward(x, path)
    }

    /// A float layer may be a batch norm still in training mode, which mixes samples.
    fn per_sample(&self) -> bool {
        false
    }

    fn save(&self, path: &str, _: &mut StateDict) -> Result<Json> {
        Err(QatError::structure(path, "float layers inside an int8 model cannot be saved yet"))
    }

    fn load(_: &Json, path: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Err(QatError::structure(path, "float layers inside an int8 model cannot be loaded"))
    }

    fn export(&self, _: &mut QdqGraph, path: &str, _: Wire) -> Result<Wire> {
        Err(QatError::structure(
            path,
            "float layers (qconfig None) are not exportable yet; export a fully quantized model (QuantStub ... DeQuantStub around every layer)",
        ))
    }
}

impl QatOp for Layer {
    fn kind(&self) -> &'static str {
        "float"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        self.op_mut().forward(x, path)
    }

    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        if grid.is_some() {
            return Err(float_after_quantized(path));
        }
        Ok((self.clone().op_mut().forward(x, path)?, None))
    }

    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        self.op().write_state(prefix, out);
    }

    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        self.op_mut().read_state(prefix, reader);
    }

    fn convert(&self, input: Option<ActivationQParams>, path: &str) -> Result<Int8Layer> {
        if input.is_some() {
            return Err(float_after_quantized(path));
        }
        Ok(Int8Layer::Float(self.clone()))
    }
}

fn float_after_quantized(path: &str) -> QatError {
    QatError::structure(path, "a float layer (qconfig None) receives quantized input; put a DeQuantStub before it")
}
