//! Small reference models for the CLI and the examples, built from the QAT modules directly.

mod qat_lenet;

pub use qat_lenet::QatLeNet;
