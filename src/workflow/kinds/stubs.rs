//! QuantStub and DeQuantStub: where float values enter and leave the integer grid.

use serde_json::{Value as Json, json};

use crate::error::{QatError, Result};
use crate::nn::quantized::{ActivationQParams, Quantize};
use crate::qconfig::QConfig;
use crate::qdq::{QdqGraph, Wire};
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_fields::{missing, read_act, write_act};
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{DeQuantStub, QatQuantStub, QuantStub, Value, map_float, match_float};
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer, QatOp, own_module_ops};

impl Int8Op for Quantize {
    const KIND: &'static str = "Quantize";

    fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
        match_float!(x, |t| Ok(Value::Quantized(self.forward(&t)?)), |_q| {
            Err(QatError::structure(path, "Quantize received an already quantized tensor"))
        })
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
        Quantize::new(read_act(path, reader).ok_or_else(|| missing(reader))?)
    }

    fn export(&self, graph: &mut QdqGraph, path: &str, cur: Wire) -> Result<Wire> {
        graph.quantize_input(self.qparams, path, cur)
    }
}

impl Int8Op for DeQuantStub {
    const KIND: &'static str = "DeQuantize";

    fn forward(&self, x: Value, path: &str, run: &Int8Run<'_>) -> Result<Value> {
        let q = x.quantized(path)?;
        match q.shape.len() {
            2 => Value::from_tensor(q.to_tensor::<2>(run.device)?),
            3 => Value::from_tensor(q.to_tensor::<3>(run.device)?),
            4 => Value::from_tensor(q.to_tensor::<4>(run.device)?),
            5 => Value::from_tensor(q.to_tensor::<5>(run.device)?),
            _ => Err(QatError::shape(path, "a tensor of rank 2 to 5", format!("{:?}", q.shape))),
        }
    }

    fn load(_: &Json, _: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Ok(Self)
    }

    fn export(&self, graph: &mut QdqGraph, path: &str, cur: Wire) -> Result<Wire> {
        graph.dequantize_output(path, cur)
    }
}

impl QatOp for QatQuantStub {
    fn kind(&self) -> &'static str {
        "QuantStub"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        let named = |e| crate::nn::qat::in_layer(e, path, "QuantStub input");
        Ok(map_float!(x, |t| self.activation_post_process.forward(t).map_err(named)?, |q| Value::Quantized(q)))
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
        let on_grid = map_float!(
            value,
            |x| {
                nan(x.clone().is_nan().any().into_scalar())?;
                grid.real(grid.codes(x))
            },
            |q| return Err(QatError::shape(path, "a float tensor", Value::Quantized(q).describe()))
        );
        Ok((on_grid, Some(grid)))
    }

    own_module_ops!();

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

/// A stub's float stage: values pass unchanged (the float model has no grid to enter or leave);
/// `prepare` builds the QAT stub from the stub `s` and qconfig `q`.
macro_rules! float_stub {
    ($ty:ty, $kind:literal, prepare: |$s:pat_param, $q:pat_param| $prepare:expr) => {
        impl FloatOp for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn forward(&mut self, x: Value, _: &str) -> Result<Value> {
                Ok(x)
            }
        }

        impl PrepareQat for $ty {
            fn prepare(self, $q: QConfig, _: &str, _: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
                let $s = self;
                Ok($prepare)
            }
        }
    };
}

float_stub!(DeQuantStub, "DeQuantStub", prepare: |stub, _| QatLayer::DeQuantStub(stub));
// Prepare gives the stub the fake quant that quantizes the model's input.
float_stub!(QuantStub, "QuantStub", prepare: |_, qconfig| QatLayer::QuantStub(QatQuantStub { activation_post_process: qconfig.activation.init()? }));
