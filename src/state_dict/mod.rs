//! State dicts in PyTorch's layout: flat maps from dotted keys (`bn.running_var`,
//! `weight_fake_quant.zero_point`) to typed tensors, read from and written to safetensors.
//!
//! Loading is all or nothing: [`StateReader`] collects every problem (missing, unexpected,
//! wrongly shaped or typed keys) before anything is written into a module.

mod io;
mod reader;

pub use io::{load_safetensors, save_safetensors};
pub use reader::{LoadStateDict, StateReader};

use std::collections::BTreeMap;

/// The element values of one stored tensor, in the dtype PyTorch stores it with.
#[derive(Clone, Debug, PartialEq)]
pub enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    U8(Vec<u8>),
    I8(Vec<i8>),
}

impl Values {
    pub fn len(&self) -> usize {
        match self {
            Self::F32(v) => v.len(),
            Self::F64(v) => v.len(),
            Self::I64(v) => v.len(),
            Self::I32(v) => v.len(),
            Self::U8(v) => v.len(),
            Self::I8(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn dtype_name(&self) -> &'static str {
        match self {
            Self::F32(_) => "F32",
            Self::F64(_) => "F64",
            Self::I64(_) => "I64",
            Self::I32(_) => "I32",
            Self::U8(_) => "U8",
            Self::I8(_) => "I8",
        }
    }
}

/// One stored tensor: a shape (`[]` for PyTorch's 0-d buffers) and its values.
#[derive(Clone, Debug, PartialEq)]
pub struct TensorValue {
    pub shape: Vec<usize>,
    pub values: Values,
}

impl TensorValue {
    pub fn f32(shape: Vec<usize>, values: Vec<f32>) -> Self {
        Self { shape, values: Values::F32(values) }
    }

    pub fn f32_vec(values: Vec<f32>) -> Self {
        Self::f32(vec![values.len()], values)
    }

    pub fn f32_scalar(value: f32) -> Self {
        Self::f32(vec![], vec![value])
    }

    pub fn i32_vec(values: Vec<i32>) -> Self {
        Self { shape: vec![values.len()], values: Values::I32(values) }
    }

    pub fn i64_scalar(value: i64) -> Self {
        Self { shape: vec![], values: Values::I64(vec![value]) }
    }

    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }

    /// The values as f32 if stored as f32, else `None`.
    pub fn as_f32(&self) -> Option<&[f32]> {
        match &self.values {
            Values::F32(v) => Some(v),
            _ => None,
        }
    }

    /// Any stored dtype, widened to f64 (used by tests and tools; modules read exact dtypes).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.values {
            Values::F32(v) => v.iter().map(|&x| x as f64).collect(),
            Values::F64(v) => v.clone(),
            Values::I64(v) => v.iter().map(|&x| x as f64).collect(),
            Values::I32(v) => v.iter().map(|&x| x as f64).collect(),
            Values::U8(v) => v.iter().map(|&x| x as f64).collect(),
            Values::I8(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }
}

/// A flat, ordered map from PyTorch state-dict keys to tensors.
pub type StateDict = BTreeMap<String, TensorValue>;

/// Something whose persistent state reads and writes a PyTorch-layout state dict.
pub trait SaveStateDict {
    /// Writes every key under `prefix` (`""` or `"conv1."`).
    fn write_state(&self, prefix: &str, out: &mut StateDict);

    /// The whole state dict of this module.
    fn state_dict(&self) -> StateDict {
        let mut out = StateDict::new();
        self.write_state("", &mut out);
        out
    }
}

/// Joins a prefix and a key the way PyTorch names nested state.
pub fn join(prefix: &str, key: &str) -> String {
    format!("{prefix}{key}")
}
