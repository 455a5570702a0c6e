//! QuantStub and DeQuantStub: where float values enter and leave the integer grid.

use serde_json::{Value as Json, json};

use crate::error::{QatError, Result};
use crate::nn::QatModule;
use crate::nn::quantized::{ActivationQParams, Quantize};
use crate::qconfig::QConfig;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_fields::{missing, read_act, write_act};
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{DeQuantStub, QatQuantStub, QuantStub, Value};
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer, QatOp};

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

    fn load(_: &Json, _: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Ok(Self)
    }
}

impl QatOp for QatQuantStub {
    fn kind(&self) -> &'static str {
        "QuantStub"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        let named = |e| crate::nn::qat::in_layer(e, path, "QuantStub input");
        Ok(match x {
            Value::Image(t) => Value::Image(self.activation_post_process.forward(t).map_err(named)?),
            Value::Features(t) => Value::Features(self.activation_post_process.forward(t).map_err(named)?),
            q => q,
        })
    }

    /// Real input onto the stub's grid. NaN has no integer: an error, as in the int8 model.
    fn forward_exact(&self, value: Value, _: Option<Grid>, path: &str) -> Result<Flow> {
        let grid = Grid::of(&self.activation_post_process, path)?;
        let nan = |has: bool| -> Result<()> {
            if has {
                return Err(QatError::NonFinite { context: format!("{path} (QuantStub)"), what: "an input value (NaN)".into() });
            }
            Ok(())
        };
        Ok(match value {
            Value::Image(x) => {
                nan(x.clone().is_nan().any().into_scalar())?;
                (Value::Image(grid.real(grid.codes(x))), Some(grid))
            }
            Value::Features(x) => {
                nan(x.clone().is_nan().any().into_scalar())?;
                (Value::Features(grid.real(grid.codes(x))), Some(grid))
            }
            q @ Value::Quantized(_) => return Err(QatError::shape(path, "a float tensor", q.describe())),
        })
    }

    fn module(&mut self) -> Option<&mut dyn QatModule> {
        Some(self)
    }

    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        SaveStateDict::write_state(self, prefix, out);
    }

    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        LoadStateDict::read_state(self, prefix, reader);
    }

    fn convert(&self, _: Option<ActivationQParams>, path: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::Quantize(Quantize::new(self.activation_post_process.activation_qparams(path)?)?))
    }
}

impl QatOp for DeQuantStub {
    fn kind(&self) -> &'static str {
        "DeQuantStub"
    }

    fn forward(&mut self, x: Value, _: &str) -> Result<Value> {
        Ok(x)
    }

    fn forward_exact(&self, x: Value, _: Option<Grid>, _: &str) -> Result<Flow> {
        Ok((x, None))
    }

    fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::DeQuantize(self.clone()))
    }
}

impl FloatOp for DeQuantStub {
    fn kind(&self) -> &'static str {
        "DeQuantStub"
    }

    fn forward(&mut self, x: Value, _: &str) -> Result<Value> {
        Ok(x)
    }
}

impl PrepareQat for DeQuantStub {
    fn prepare(self, _: QConfig, _: &str, _: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
        Ok(QatLayer::DeQuantStub(self))
    }
}

/// Float input passes; prepare gives the stub the fake quant that quantizes the model's input.
impl FloatOp for QuantStub {
    fn kind(&self) -> &'static str {
        "QuantStub"
    }

    fn forward(&mut self, x: Value, _: &str) -> Result<Value> {
        Ok(x)
    }
}

impl PrepareQat for QuantStub {
    fn prepare(self, qconfig: QConfig, _: &str, _: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
        Ok(QatLayer::QuantStub(QatQuantStub { activation_post_process: qconfig.activation.init()? }))
    }
}
