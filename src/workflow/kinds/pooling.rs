//! Pooling: on integers it keeps the input's grid.

use serde_json::json;

use burn::tensor::DType;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;

use crate::error::{QatError, Result};
use crate::nn::quantized::ActivationQParams;
use crate::qconfig::QConfig;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::deployment_arith::{Flow, Grid, mean_of_sum};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_fields::usize_of;
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::{Value, map_float};
use crate::workflow::pooling::{AvgPool2d, GlobalAvgPool2d, MaxPool2d, spatial_planes};
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer, QatOp};

// On a grid the largest code is the largest value (the dequantization is monotone), so the float
// op gives the same values, and the grid stays.
unweighted_kind!(MaxPool2d, "MaxPool2d", file: "MaxPool2d", MaxPool2d, forward: |m, x, p| MaxPool2d::forward(m, x, p),
    exact: |m, x, g, p| Ok((MaxPool2d::forward(m, x, p)?, g)),
    save: |m| json!({"kernel_size": m.kernel_size, "stride": m.stride}),
    load: |e, p| MaxPool2d::new(usize_of(e, "kernel_size", p)?, usize_of(e, "stride", p)?),
    export: |m, g, p, c| g.window_pool("MaxPool", m.kernel_size, m.stride, p, c));
unweighted_kind!(AvgPool2d, "AvgPool2d", file: "AvgPool2d", AvgPool2d, forward: |m, x, p| AvgPool2d::forward(m, x, p),
    exact: |m, x, g, p| avg_pool_on_grid(m, x, g, p),
    save: |m| json!({"kernel_size": m.kernel_size, "stride": m.stride}),
    load: |e, p| AvgPool2d::new(usize_of(e, "kernel_size", p)?, usize_of(e, "stride", p)?),
    export: |m, g, p, c| g.window_pool("AveragePool", m.kernel_size, m.stride, p, c));
unweighted_kind!(GlobalAvgPool2d, "GlobalAvgPool2d", file: "GlobalAvgPool2d", GlobalAvgPool2d,
    forward: |m, x, p| GlobalAvgPool2d::forward(m, x, p), exact: |m, x, g, p| global_avg_pool_on_grid(m, x, g, p),
    export: |_m, g, p, c| g.global_avg_pool(p, c));

/// The exact window sums of the codes, then one rounding of their mean onto the grid.
fn avg_pool_on_grid(pool: &AvgPool2d, value: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
    let Some(g) = grid else { return Ok((pool.forward(value, path)?, None)) };
    let x = value.image(path)?;
    let [_, _, h, w] = x.dims();
    if h < pool.kernel_size || w < pool.kernel_size {
        return Err(QatError::shape(path, format!("spatial size at least {}", pool.kernel_size), format!("{:?}", x.dims())));
    }
    let count = pool.kernel_size * pool.kernel_size;
    let options = AvgPoolOptions::new([pool.kernel_size; 2]).with_stride([pool.stride; 2]);
    let mean = avg_pool2d(g.codes(x).cast(DType::F64), options);
    // `mean * count` is within far less than 0.5 of the integer sum: exact below 2^24 in f32.
    let sum = (mean * count as f64).round().cast(DType::F32);
    Ok((Value::Image(mean_of_sum(sum, count, g)), grid))
}

fn global_avg_pool_on_grid(pool: &GlobalAvgPool2d, value: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
    let Some(g) = grid else { return Ok((pool.forward(value, path)?, None)) };
    let pooled = map_float!(
        value,
        |x| {
            let dims = x.dims();
            let (_, _, plane) = spatial_planes(&dims, path)?;
            let mut pooled = dims;
            pooled[2..].fill(1);
            let sum = g.codes(x).cast(DType::F64).flatten::<3>(2, dims.len() - 1).sum_dim(2).reshape(pooled);
            mean_of_sum(sum.cast(DType::F32), plane, g)
        },
        |q| return Err(QatError::shape(path, "a float tensor", Value::Quantized(q).describe()))
    );
    Ok((pooled, grid))
}
