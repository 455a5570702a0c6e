//! Min and max of a tensor, over all of it or per index of one axis, as a burn op: one pass over
//! the tensor's own buffer, no host copy. What observers need. Min and max do not depend on the
//! order of evaluation, so the parallel reduction gives the same result for any thread count.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::tensor::{Bytes, DType, Shape, Tensor};

use crate::kernels::f32::minmax::reduce;

/// Per-channel (or, with `axis: None`, whole-tensor) minimum and maximum of `x` rounded to f32
/// (the observers' precision; rounding is monotone, so this is the min/max of the f32 values),
/// and whether every value is finite in f32. `x` is f32 or f64 and not empty.
pub fn min_max<const D: usize>(x: &Tensor<D>, axis: Option<usize>) -> (Vec<f32>, Vec<f32>, bool) {
    if !super::on_flex(x) {
        return composed_min_max(x, axis);
    }
    let out: Tensor<2> = Tensor::from_dispatch(Dispatch::min_max(x.clone().into_dispatch(), axis));
    let v = out.to_data().convert::<f32>().try_into_vec::<f32>().expect("f32 min/max");
    let c = v.len() / 3;
    (v[..c].to_vec(), v[c..2 * c].to_vec(), v[2 * c..].iter().all(|&f| f == 0.0))
}

/// [`min_max`] on the backends without our kernel: burn's reductions, one read back. Two
/// differences from the Flex kernel, neither of which reaches a qparam: a channel's minimum may
/// be +0.0 where the kernel (in IEEE total order) gives -0.0, and min/max of a channel holding a
/// NaN are whatever the device's reduction gives (the flag still reports it, and observers stop).
fn composed_min_max<const D: usize>(x: &Tensor<D>, axis: Option<usize>) -> (Vec<f32>, Vec<f32>, bool) {
    let x = x.clone().detach();
    let channels = axis.map_or(1, |a| x.dims()[a]);
    let rows: Tensor<2> = match axis {
        Some(a) => x.swap_dims(0, a).reshape([channels as i64, -1]),
        None => x.reshape([1i64, -1]),
    };
    let min = rows.clone().min_dim(1).reshape([1i64, -1]);
    let max = rows.clone().max_dim(1).reshape([1i64, -1]);
    let nan = rows.is_nan().any_dim(1).reshape([1i64, -1]).float().cast(min.dtype());
    let all = Tensor::cat(vec![min, max, nan], 0);
    let v = all.to_data().convert::<f32>().try_into_vec::<f32>().expect("f32 min/max");
    let c = v.len() / 3;
    let finite = v[..2 * c].iter().all(|f| f.is_finite()) && v[2 * c..].iter().all(|&f| f == 0.0);
    (v[..c].to_vec(), v[c..2 * c].to_vec(), finite)
}

#[backend_extension(Flex, Autodiff)]
pub trait MinMaxOps: Backend {
    /// `[3, C]`: minimums, maximums, and per channel 1 if any value is not finite, else 0.
    fn min_max(x: FloatTensor<Self>, axis: Option<usize>) -> FloatTensor<Self>;
}

impl MinMaxOps for Flex {
    fn min_max(x: FlexTensor, axis: Option<usize>) -> FlexTensor {
        let x = x.to_contiguous();
        let shape = x.layout().shape().to_vec();
        let out = match x.dtype() {
            DType::F64 => reduce(x.as_slice::<f64>().expect("contiguous"), &shape, axis),
            _ => reduce(x.as_slice::<f32>().expect("contiguous"), &shape, axis),
        };
        let c = out.len() / 3;
        FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(Shape::from(vec![3, c])), DType::F32)
    }
}

impl<B: MinMaxOps, C: CheckpointStrategy> MinMaxOps for Autodiff<B, C> {
    fn min_max(x: FloatTensor<Self>, axis: Option<usize>) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::min_max(x.into_primitive(), axis))
    }
}
