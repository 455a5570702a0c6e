//! State dicts in PyTorch's layout: flat maps from dotted keys (`bn.running_var`,
//! `weight_fake_quant.zero_point`) to typed tensors, read from and written to safetensors.
//!
//! Loading is all or nothing: [`StateReader`] collects every problem (missing, unexpected,
//! wrongly shaped or typed keys) before anything is written into a module.

mod io;
mod params;
mod reader;

pub use io::{load_safetensors, save_safetensors};
pub use params::NamedParameters;
pub use reader::{LoadStateDict, StateReader};

/// [`SaveStateDict`] and [`LoadStateDict`] for modules whose whole state is their output fake
/// quant, under PyTorch's key for that observer child, `<prefix>activation_post_process.`: a
/// prepared `QuantStub`, `FloatFunctional`, a fused activation.
macro_rules! output_fake_quant_state {
    ($($ty:ty),* $(,)?) => {
        $(
            impl $crate::state_dict::SaveStateDict for $ty {
                fn write_state(&self, prefix: &str, out: &mut $crate::state_dict::StateDict) {
                    let key = $crate::state_dict::join(prefix, "activation_post_process.");
                    self.activation_post_process.write_state(&key, out);
                }
            }

            impl $crate::state_dict::LoadStateDict for $ty {
                fn read_state(&mut self, prefix: &str, reader: &mut $crate::state_dict::StateReader<'_>) {
                    let key = $crate::state_dict::join(prefix, "activation_post_process.");
                    self.activation_post_process.read_state(&key, reader);
                }
            }
        )*
    };
}
pub(crate) use output_fake_quant_state;

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

    /// The value as a float burn tensor of rank `D` on `device`, in its stored precision (f32 or
    /// f64; integer dtypes widened to f32, exact for every integer a quantized model stores
    /// below 2^24). A 0-d PyTorch buffer reads as rank 1 with one element. An error when the
    /// rank is not `D`.
    pub fn to_tensor<const D: usize>(&self, device: &burn::tensor::Device) -> crate::Result<burn::tensor::Tensor<D>> {
        let shape: Vec<usize> = if self.shape.is_empty() { vec![1] } else { self.shape.clone() };
        if shape.len() != D {
            return Err(crate::QatError::shape("state-dict tensor", format!("rank {D}"), format!("shape {:?}", self.shape)));
        }
        use burn::tensor::{DType, Tensor, TensorData};
        Ok(match &self.values {
            Values::F64(v) => Tensor::from_data(TensorData::new(v.clone(), shape), (device, DType::F64)),
            Values::F32(v) => Tensor::from_data(TensorData::new(v.clone(), shape), (device, DType::F32)),
            _ => {
                let widened: Vec<f32> = self.to_f64_vec().into_iter().map(|x| x as f32).collect();
                Tensor::from_data(TensorData::new(widened, shape), (device, DType::F32))
            }
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{DType, Device};

    #[test]
    fn values_become_tensors_of_their_shape_and_precision() {
        let device = Device::flex();
        let weight = TensorValue::f32(vec![2, 3], vec![1.5, -2.0, 0.25, 3.0, 0.0, -0.5]);
        let t = weight.to_tensor::<2>(&device).unwrap();
        assert_eq!(t.dims(), [2, 3]);
        assert_eq!(t.to_data().try_to_vec::<f32>().unwrap(), vec![1.5, -2.0, 0.25, 3.0, 0.0, -0.5]);

        let zero_points = TensorValue::i32_vec(vec![-128, 0, 127]);
        assert_eq!(zero_points.to_tensor::<1>(&device).unwrap().to_data().try_to_vec::<f32>().unwrap(), vec![-128.0, 0.0, 127.0]);
        let scalar = TensorValue::f32_scalar(0.125).to_tensor::<1>(&device).unwrap();
        assert_eq!((scalar.dims(), scalar.to_data().try_to_vec::<f32>().unwrap()), ([1], vec![0.125]));
        let exact = TensorValue { shape: vec![1], values: Values::F64(vec![0.1]) }.to_tensor::<1>(&device).unwrap();
        assert_eq!((exact.dtype(), exact.to_data().try_to_vec::<f64>().unwrap()), (DType::F64, vec![0.1]));

        let err = weight.to_tensor::<4>(&device).unwrap_err().to_string();
        assert!(err.contains("rank 4") && err.contains("[2, 3]"), "{err}");
    }
}
