//! The whole-model road: build a [`FloatModel`], [`fuse`](FloatModel::fuse) it,
//! [`prepare_qat`], train the [`QatModel`] with any burn optimizer, [`convert`] to an
//! [`Int8Model`] that computes on integers.
//!
//! Three layer tables drive it: `float_layer`, `qat_layer` and `int8_layer` each list the layer
//! kinds of their stage (the enums [`Layer`], [`QatLayer`], [`Int8Layer`] are generated from
//! those lists), and `kinds/` holds, one file per kind, what the kind does at every stage. A new
//! kind is a line in each list, its impls in `kinds/` (its ONNX nodes included: `Int8Op::export`
//! emits them through [`crate::qdq`]'s graph builder), and a fuse rule if it fuses; the compiler
//! names whichever is missing.

mod convert_chain;
mod convert_fields;
mod convert_module;
mod deployment_arith;
mod deployment_eval;
mod deployment_weighted;
mod float_layer;
mod float_model;
mod float_state;
mod inspect;
mod int8_fields;
mod int8_io;
mod int8_layer;
mod int8_model;
mod kinds;
mod layer_enum;
mod layers;
mod pooling;
mod qat_batch_norm;
mod qat_layer;
mod qat_model;
mod qconfig_map;

pub use convert_chain::ConvertChain;
pub use convert_fields::{Int8Output, QuantizeInput};
pub use convert_module::ToQuantized;
pub use float_model::{Concat, FloatModel, Layer, Residual};
pub use inspect::{ActivationStats, LayerReport, WeightStats, inspect};
pub use int8_io::FORMAT as INT8_FORMAT;
pub(crate) use int8_layer::export_layers;
pub use int8_model::{ConvertOptions, Int8Layer, Int8Model, convert, convert_with};
pub use layers::{
    BatchNorm1d, BatchNorm3d, DeQuantStub, Flatten, Hardswish, Named, QatHardswish, QatQuantStub, QuantStub, Relu, Relu6, Value,
};
pub use pooling::{AvgPool2d, GlobalAvgPool2d, MaxPool2d};
pub use qat_batch_norm::QatBatchNorm2d;
pub use qat_layer::QatConcat;
pub use qat_model::{EvalArithmetic, QatLayer, QatModel, QatResidual, prepare_qat};
pub use qconfig_map::QConfigMap;
