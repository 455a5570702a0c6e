//! QuantStub and DeQuantStub: where float values enter and leave the integer grid.

use serde_json::{Value as Json, json};

use crate::error::{QatError, Result};
use crate::nn::quantized::{ActivationQParams, Quantize};
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::int8_fields::{missing, read_act, write_act};
use crate::workflow::int8_layer::{Int8Op, Int8Run};
use crate::workflow::layers::{DeQuantStub, Value};

impl Int8Op for Quantize {
    const KIND: &'static str = "Quantize";

    fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
        match x {
            Value::Image(t) => Ok(Value::Quantized(self.forward(&t)?)),
            Value::Features(t) => Ok(Value::Quantized(self.forward(&t)?)),
            Value::Quantized(_) => Err(QatError::config(format!("{path}: Quantize received an already quantized tensor"))),
        }
    }

    fn output_qparams(&self) -> Option<ActivationQParams> {
        Some(self.qparams)
    }

    fn saturate_at_full_range(&mut self) {
        self.qparams = self.qparams.full_range();
    }

    fn save(&self, path: &str, out: &mut StateDict) -> Result<Json> {
        write_act(path, &self.qparams, out);
        Ok(json!({}))
    }

    fn load(_: &Json, path: &str, reader: &mut StateReader<'_>) -> Result<Self> {
        Quantize::new(read_act(path, reader).ok_or_else(|| missing(path, reader))?)
    }
}

impl Int8Op for DeQuantStub {
    const KIND: &'static str = "DeQuantize";

    fn forward(&self, x: Value, path: &str, run: &Int8Run<'_>) -> Result<Value> {
        let q = x.quantized(path)?;
        match q.shape.len() {
            4 => Ok(Value::Image(q.to_tensor::<4>(run.device)?)),
            2 => Ok(Value::Features(q.to_tensor::<2>(run.device)?)),
            _ => Err(QatError::shape(path, "a rank-2 or rank-4 tensor", format!("{:?}", q.shape))),
        }
    }

    fn save(&self, _: &str, _: &mut StateDict) -> Result<Json> {
        Ok(json!({}))
    }

    fn load(_: &Json, _: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Ok(Self)
    }
}
