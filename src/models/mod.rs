//! Small reference models for the CLI, the tests, the benchmarks and the examples.

mod float_models;
mod mobilenet;
mod qat_lenet;
mod shape;

pub use float_models::{lenet, lenet_for, resnet_tiny, resnet_tiny_for};
pub use mobilenet::{mobilenetv2_tiny, mobilenetv2_tiny_for};
pub use qat_lenet::QatLeNet;
pub use shape::InputShape;
