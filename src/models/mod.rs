//! Small reference models for the CLI, the tests and the examples.

mod float_models;
mod qat_lenet;

pub use float_models::{lenet, resnet_tiny};
pub use qat_lenet::QatLeNet;
