//! Pooling: on integers it keeps the input's grid.

use serde_json::{Value as Json, json};

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
use crate::workflow::layers::Value;
use crate::workflow::pooling::{AvgPool2d, GlobalAvgPool2d, MaxPool2d};
use crate::workflow::qat_layer::QatOp;
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer};

/// A square-window pooling layer, stored as its kernel size and stride.
macro_rules! window_pool_int8 {
    ($ty:ty, $kind:literal) => {
        impl Int8Op for $ty {
            const KIND: &'static str = $kind;

            fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
                <$ty>::forward(self, x, path)
            }

            fn save(&self, _: &str, _: &mut StateDict) -> Result<Json> {
                Ok(json!({"kernel_size": self.kernel_size, "stride": self.stride}))
            }

            fn load(entry: &Json, p: &str, _: &mut StateReader<'_>) -> Result<Self> {
                <$ty>::new(usize_of(entry, "kernel_size", p)?, usize_of(entry, "stride", p)?)
            }
        }
    };
}

window_pool_int8!(MaxPool2d, "MaxPool2d");
window_pool_int8!(AvgPool2d, "AvgPool2d");

impl Int8Op for GlobalAvgPool2d {
    const KIND: &'static str = "GlobalAvgPool2d";

    fn forward(&self, x: Value, path: &str, _: &Int8Run<'_>) -> Result<Value> {
        GlobalAvgPool2d::forward(self, x, path)
    }

    fn save(&self, _: &str, _: &mut StateDict) -> Result<Json> {
        Ok(json!({}))
    }

    fn load(_: &Json, _: &str, _: &mut StateReader<'_>) -> Result<Self> {
        Ok(Self)
    }
}

impl QatOp for MaxPool2d {
    fn kind(&self) -> &'static str {
        "MaxPool2d"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        MaxPool2d::forward(self, x, path)
    }

    /// On a grid the largest code is the largest value (the dequantization is monotone), so the
    /// float op gives the same values, and the grid stays.
    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        Ok((MaxPool2d::forward(self, x, path)?, grid))
    }

    fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::MaxPool2d(self.clone()))
    }
}

impl QatOp for AvgPool2d {
    fn kind(&self) -> &'static str {
        "AvgPool2d"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        AvgPool2d::forward(self, x, path)
    }

    /// The exact window sums of the codes, then one rounding of their mean onto the grid.
    fn forward_exact(&self, value: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        let Some(g) = grid else { return Ok((AvgPool2d::forward(self, value, path)?, None)) };
        let x = value.image(path)?;
        let [_, _, h, w] = x.dims();
        if h < self.kernel_size || w < self.kernel_size {
            return Err(QatError::shape(path, format!("spatial size at least {}", self.kernel_size), format!("{:?}", x.dims())));
        }
        let count = self.kernel_size * self.kernel_size;
        let options = AvgPoolOptions::new([self.kernel_size; 2]).with_stride([self.stride; 2]);
        let mean = avg_pool2d(g.codes(x).cast(DType::F64), options);
        // `mean * count` is within far less than 0.5 of the integer sum: exact below 2^24 in f32.
        let sum = (mean * count as f64).round().cast(DType::F32);
        Ok((Value::Image(mean_of_sum(sum, count, g)), grid))
    }

    fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::AvgPool2d(self.clone()))
    }
}

impl QatOp for GlobalAvgPool2d {
    fn kind(&self) -> &'static str {
        "GlobalAvgPool2d"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        GlobalAvgPool2d::forward(self, x, path)
    }

    fn forward_exact(&self, value: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        let Some(g) = grid else { return Ok((GlobalAvgPool2d::forward(self, value, path)?, None)) };
        let x = value.image(path)?;
        let [n, c, h, w] = x.dims();
        if h * w == 0 {
            return Err(QatError::shape(path, "a non-empty spatial size", format!("{:?}", x.dims())));
        }
        let sum = g.codes(x).cast(DType::F64).flatten::<3>(2, 3).sum_dim(2).reshape([n, c, 1, 1]);
        Ok((Value::Image(mean_of_sum(sum.cast(DType::F32), h * w, g)), grid))
    }

    fn convert(&self, _: Option<ActivationQParams>, _: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::GlobalAvgPool2d(self.clone()))
    }
}

float_parameterless_op!(MaxPool2d, "MaxPool2d", MaxPool2d, forward: |m, x, p| MaxPool2d::forward(m, x, p));
float_parameterless_op!(AvgPool2d, "AvgPool2d", AvgPool2d, forward: |m, x, p| AvgPool2d::forward(m, x, p));
float_parameterless_op!(GlobalAvgPool2d, "GlobalAvgPool2d", GlobalAvgPool2d, forward: |m, x, p| GlobalAvgPool2d::forward(m, x, p));
