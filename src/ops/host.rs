//! Tensor values read back to the host, where the ops' scalar parameters (scales, zero points)
//! and the observers' statistics are computed.

use burn::tensor::Tensor;

/// A tensor's values on the host as f32 (the observers' working precision, as in PyTorch).
pub fn tensor_values<const D: usize>(x: &Tensor<D>) -> Vec<f32> {
    x.to_data().convert::<f32>().try_into_vec::<f32>().expect("float tensor data")
}
