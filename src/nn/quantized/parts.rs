//! The pieces every int8 layer with weights is built from, named so that a constructor takes a
//! few meaningful values instead of a row of slices and flags.

use super::qtensor::ActivationQParams;

/// A layer's integer weights with one scale and zero point per output channel (a per-tensor
/// scale repeated): what the weight fake quant's qparams make of the float weights.
#[derive(Clone, Debug, PartialEq)]
pub struct Int8Weight {
    /// In the layer's weight layout, row-major (`[O, C / groups, ...]`, `[out, in]`).
    pub values: Vec<i8>,
    pub scale: Vec<f32>,
    pub zero_point: Vec<i32>,
}

impl Int8Weight {
    pub fn new(values: Vec<i8>, scale: Vec<f32>, zero_point: Vec<i32>) -> Self {
        Self { values, scale, zero_point }
    }
}

/// The u8 activations around a layer and whether it clamps its output at zero (a fused ReLU).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LayerQParams {
    pub input: ActivationQParams,
    pub output: ActivationQParams,
    pub relu: bool,
}

impl LayerQParams {
    pub fn new(input: ActivationQParams, output: ActivationQParams, relu: bool) -> Self {
        Self { input, output, relu }
    }
}
