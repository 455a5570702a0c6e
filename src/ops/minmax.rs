//! Min and max of a tensor, over all of it or per index of one axis, as a burn op: one pass over
//! the tensor's own buffer, no host copy. What observers need. Min and max do not depend on the
//! order of evaluation, so the parallel reduction gives the same result for any thread count.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::tensor::{Bytes, DType, Shape, Tensor};
use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 64 * 1024;

/// Per-channel (or, with `axis: None`, whole-tensor) minimum and maximum of `x` rounded to f32
/// (the observers' precision; rounding is monotone, so this is the min/max of the f32 values),
/// and whether every value is finite in f32. `x` is f32 or f64 and not empty.
pub fn min_max<const D: usize>(x: &Tensor<D>, axis: Option<usize>) -> (Vec<f32>, Vec<f32>, bool) {
    let out: Tensor<2> = Tensor::from_dispatch(Dispatch::min_max(x.clone().into_dispatch(), axis));
    let v = out.to_data().convert::<f32>().try_into_vec::<f32>().expect("f32 min/max");
    let c = v.len() / 3;
    (v[..c].to_vec(), v[c..2 * c].to_vec(), v[2 * c..].iter().all(|&f| f == 0.0))
}

#[backend_extension(Flex, Autodiff)]
pub trait MinMaxOps: Backend {
    /// `[3, C]`: minimums, maximums, and per channel 1 if any value is not finite, else 0.
    fn min_max(x: FloatTensor<Self>, axis: Option<usize>) -> FloatTensor<Self>;
}

trait AsF32: bytemuck::Pod + Send + Sync {
    fn f32(self) -> f32;
}

impl AsF32 for f32 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self
    }
}

impl AsF32 for f64 {
    #[inline(always)]
    fn f32(self) -> f32 {
        self as f32
    }
}

/// `(min, max, all finite)` of one run.
fn run_min_max<T: AsF32>(run: &[T]) -> (f32, f32, bool) {
    let (mut lo, mut hi, mut bad) = (f32::INFINITY, f32::NEG_INFINITY, false);
    for &v in run {
        let v = v.f32();
        lo = lo.min(v);
        hi = hi.max(v);
        bad |= !v.is_finite();
    }
    (lo, hi, !bad)
}

fn reduce<T: AsF32>(x: &[T], shape: &[usize], axis: Option<usize>) -> Vec<f32> {
    let (channels, inner) = match axis {
        None => (1, x.len()),
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>()),
    };
    let empty = || (vec![f32::INFINITY; channels], vec![f32::NEG_INFINITY; channels], vec![true; channels]);
    let merge = |mut a: (Vec<f32>, Vec<f32>, Vec<bool>), b: (Vec<f32>, Vec<f32>, Vec<bool>)| {
        for c in 0..channels {
            a.0[c] = a.0[c].min(b.0[c]);
            a.1[c] = a.1[c].max(b.1[c]);
            a.2[c] &= b.2[c];
        }
        a
    };
    let (lo, hi, ok) = if inner == 0 {
        empty()
    } else {
        let chunk_len = (CHUNK / inner).max(1) * inner;
        x.par_chunks(chunk_len)
            .enumerate()
            .map(|(chunk_index, chunk)| {
                let mut acc = empty();
                for (run_index, run) in chunk.chunks(inner).enumerate() {
                    let c = (chunk_index * chunk_len / inner + run_index) % channels;
                    let (lo, hi, ok) = run_min_max(run);
                    acc.0[c] = acc.0[c].min(lo);
                    acc.1[c] = acc.1[c].max(hi);
                    acc.2[c] &= ok;
                }
                acc
            })
            .reduce(empty, merge)
    };
    lo.into_iter().chain(hi).chain(ok.into_iter().map(|ok| if ok { 0.0 } else { 1.0 })).collect()
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
