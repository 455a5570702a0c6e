//! ReLU and ReLU6: elementwise, on the input's grid.

use serde_json::{Value as Json, json};

use crate::error::{QatError, Result};
use crate::nn::quantized::ActivationQParams;
use crate::qconfig::QConfig;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{Relu, Relu6, Value};
use crate::workflow::qat_layer::QatOp;
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer};

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

/// ReLU on a grid floors the codes at 0 (real 0): it commutes with the monotone
/// dequantization, so the float op gives the same values, and the grid stays.
impl QatOp for Relu {
    fn kind(&self) -> &'static str {
        "ReLU"
    }

    fn forward(&mut self, x: Value, _: &str) -> Result<Value> {
        Ok(x.relu())
    }

    fn forward_exact(&self, x: Value, grid: Option<Grid>, _: &str) -> Result<Flow> {
        Ok((x.relu(), grid))
    }

    fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::Relu(self.clone()))
    }
}

impl QatOp for Relu6 {
    fn kind(&self) -> &'static str {
        "ReLU6"
    }

    fn forward(&mut self, x: Value, _: &str) -> Result<Value> {
        Ok(x.relu6())
    }

    /// On a grid ReLU6 keeps the grid and clamps the codes to `[0, q(6) - z]`, `q(6)` being 6
    /// rounded onto the grid (so the top may be a step away from 6.0), as quantized ReLU6 does.
    fn forward_exact(&self, value: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        let Some(g) = grid else { return Ok((value.relu6(), None)) };
        let six = (g.zero_point as f32 + (6.0f32 * (1.0 / g.scale)).round_ties_even()).clamp(g.quant_min as f32, g.quant_max as f32);
        let top = (six - g.zero_point as f32).max(0.0);
        let clamped = match value {
            Value::Image(x) => Value::Image(g.real(g.codes(x).clamp(0.0, top))),
            Value::Features(x) => Value::Features(g.real(g.codes(x).clamp(0.0, top))),
            q @ Value::Quantized(_) => return Err(QatError::shape(path, "a float tensor", q.describe())),
        };
        Ok((clamped, grid))
    }

    fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::Relu6(self.clone()))
    }
}

float_parameterless_op!(Relu, "ReLU", Relu, forward: |_m, x, _p| Ok(x.relu()));
float_parameterless_op!(Relu6, "ReLU6", Relu6, forward: |_m, x, _p| Ok(x.relu6()));
