//! ReLU and ReLU6: elementwise, on the input's grid.

use crate::error::{QatError, Result};
use crate::nn::quantized::ActivationQParams;
use crate::qconfig::QConfig;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{Relu, Relu6, Value, map_float};
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer, QatOp};

// On a grid ReLU floors the codes at 0 (real 0): it commutes with the monotone dequantization,
// so the float op gives the same values, and the grid stays.
unweighted_kind!(Relu, "ReLU", file: "Relu", Relu, forward: |_m, x, _p| Ok(x.relu()), exact: |_m, x, g, _p| Ok((x.relu(), g)));
unweighted_kind!(Relu6, "ReLU6", file: "Relu6", Relu6, forward: |_m, x, _p| Ok(x.relu6()), exact: |_m, x, g, p| relu6_on_grid(x, g, p));

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
