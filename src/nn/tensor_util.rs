//! Small conversions between host values and tensors that modules share.

use burn::module::Param;
use burn::tensor::{Distribution, Tensor, TensorData};

use crate::error::{QatError, Result};

/// A tensor with `values`, on the device and in the float dtype of `like`.
pub(crate) fn host_tensor<const D: usize, const L: usize>(values: Vec<f64>, shape: [usize; D], like: &Tensor<L>) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (&like.device(), like.dtype()))
}

/// A tensor's values on the host, widened to f64.
pub(crate) fn host_values<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    t.to_data().convert::<f64>().try_into_vec::<f64>().expect("float tensor data")
}

/// `[1, c, 1, ...]`: a per-channel vector shaped to broadcast over `[N, C, ...]` activations.
pub(crate) fn channel_shape<const D: usize>(c: usize) -> [usize; D] {
    let mut shape = [1; D];
    shape[1] = c;
    shape
}

/// `c` at `axis`, 1 elsewhere: a per-output-channel vector shaped to broadcast over weights
/// whose output channel is `axis` (0 for convolutions, 1 for transposed ones).
pub(crate) fn weight_axis_shape<const D: usize>(c: usize, axis: usize) -> [usize; D] {
    let mut shape = [1; D];
    shape[axis] = c;
    shape
}

/// Replaces a parameter's value, keeping its id (so optimizer state stays attached).
pub(crate) fn replace_param<const D: usize>(param: &Param<Tensor<D>>, value: Tensor<D>) -> Param<Tensor<D>> {
    let mut fresh = Param::from_tensor(value);
    fresh.id = param.id;
    fresh
}

/// A uniform random parameter, `U(low, high)`.
pub(crate) fn uniform_param<const D: usize>(shape: [usize; D], low: f64, high: f64, device: &burn::tensor::Device) -> Param<Tensor<D>> {
    Param::from_tensor(Tensor::random(shape, Distribution::Uniform(low, high), device))
}

/// The index of the largest logit of each row of `[N, classes]`.
pub fn argmax_classes(logits: Tensor<2>) -> Result<Vec<usize>> {
    let [n, _] = logits.dims();
    let classes = logits
        .argmax(1)
        .reshape([n])
        .into_data()
        .convert::<i64>()
        .try_into_vec::<i64>()
        .map_err(|e| QatError::invalid("dtype", format!("reading predicted classes: {e:?}")))?;
    Ok(classes.into_iter().map(|c| c as usize).collect())
}
