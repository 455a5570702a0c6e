//! ReLU and ReLU6: elementwise, on the input's grid.

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::QatModule;
use crate::nn::quantized::{self, ActivationQParams};
use crate::qconfig::QConfig;
use crate::state_dict::{StateDict, StateReader, output_fake_quant_state};
use crate::workflow::convert_chain::need_input;
use crate::workflow::deployment_arith::need_grid;
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_fields::{missing, read_act, write_act};
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{Hardswish, QatHardswish, Relu, Relu6, Value, map_float};
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer, QatOp, own_module_ops};

// On a grid ReLU floors the codes at 0 (real 0): it commutes with the monotone dequantization,
// so the float op gives the same values, and the grid stays.
unweighted_kind!(Relu, "ReLU", file: "Relu", Relu, forward: |_m, x, _p| Ok(x.relu()), exact: |_m, x, g, _p| Ok((x.relu(), g)),
    export: |_m, g, p, c| g.relu(p, c));
unweighted_kind!(Relu6, "ReLU6", file: "Relu6", Relu6, forward: |_m, x, _p| Ok(x.relu6()), exact: |_m, x, g, p| relu6_on_grid(x, g, p),
    export: |_m, g, p, c| g.relu6(p, c));

/// On a grid ReLU6 keeps the grid and clamps the codes to `[0, q(6) - z]`, `q(6)` being 6
/// rounded onto the grid (so the top may be a step away from 6.0), as quantized ReLU6 does.
fn relu6_on_grid(value: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
    let Some(g) = grid else { return Ok((value.relu6(), None)) };
    let six = (g.zero_point as f32 + (6.0f32 * (1.0 / g.scale)).round_ties_even()).clamp(g.quant_min as f32, g.quant_max as f32);
    let top = (six - g.zero_point as f32).max(0.0);
    let clamped = map_float!(value, |x| g.real(g.codes(x).clamp(0.0, top)), |q| {
        return Err(QatError::shape(path, "a float tensor", Value::Quantized(q).describe()));
    });
    Ok((clamped, grid))
}

impl FloatOp for Hardswish {
    fn kind(&self) -> &'static str {
        "Hardswish"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        x.hardswish(path)
    }
}

impl PrepareQat for Hardswish {
    fn prepare(self, qconfig: QConfig, _: &str, _: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
        Ok(QatLayer::Hardswish(QatHardswish { activation_post_process: qconfig.activation.init()? }))
    }
}

// PyTorch's key for the hardswish output's observer: `<name>.activation_post_process.`.
output_fake_quant_state!(QatHardswish);

impl QatOp for QatHardswish {
    fn kind(&self) -> &'static str {
        "Hardswish"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        let named = |e| crate::nn::qat::in_layer(e, path, "hardswish output");
        Ok(map_float!(x.hardswish(path)?, |t| self.activation_post_process.forward(t).map_err(named)?, |q| Value::Quantized(q)))
    }

    /// The f32 hardswish of the input's real values, onto the output grid.
    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        need_grid(grid, path)?;
        let output = Grid::of(&self.activation_post_process, path)?;
        Ok((map_float!(x.hardswish(path)?, |t| output.real(output.codes(t)), |q| Value::Quantized(q)), Some(output)))
    }

    own_module_ops!();

    fn convert(&self, input: Option<ActivationQParams>, path: &str) -> Result<Int8Layer> {
        let output = self.activation_post_process.activation_qparams(path)?;
        Ok(Int8Layer::Hardswish(quantized::Hardswish::new(need_input(input, path)?, output)?))
    }
}

impl QatModule for QatHardswish {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        vec![&mut self.activation_post_process]
    }
}

int8_requantizing_op!(quantized::Hardswish, "Hardswish", grids: [], forward: |m, x, _run| m.forward(&x), save: save_hardswish, load: load_hardswish,
    export: hardswish);

fn save_hardswish(m: &quantized::Hardswish, path: &str, out: &mut StateDict) -> Result<serde_json::Value> {
    write_act(&format!("{path}.input"), &m.input, out);
    write_act(&format!("{path}.output"), &m.output, out);
    Ok(serde_json::json!({}))
}

fn load_hardswish(_: &serde_json::Value, p: &str, reader: &mut StateReader<'_>) -> Result<quantized::Hardswish> {
    let (input, output) = (read_act(&format!("{p}.input"), reader), read_act(&format!("{p}.output"), reader));
    let (Some(input), Some(output)) = (input, output) else { return Err(missing(reader)) };
    quantized::Hardswish::new(input, output)
}
