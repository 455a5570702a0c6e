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

pub(crate) trait AsF32: bytemuck::Pod + Send + Sync {
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

/// An i32 whose order is the IEEE total order of the f32 `v` (`-0.0 < +0.0`): min and max in
/// this order are exact, vectorize, and do not depend on the order of evaluation even for
/// zeros of both signs.
#[inline(always)]
fn key(v: f32) -> i32 {
    let i = v.to_bits() as i32;
    i ^ (((i >> 31) as u32) >> 1) as i32
}

/// The f32 of a [`key`]; the identities of the reduction map to the infinities.
#[inline(always)]
fn unkey(k: i32) -> f32 {
    match k {
        i32::MAX => f32::INFINITY,
        i32::MIN => f32::NEG_INFINITY,
        _ => f32::from_bits((k ^ (((k >> 31) as u32) >> 1) as i32) as u32),
    }
}

/// Running `(min key, max key, any non-finite)` of values seen so far.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MinMaxAcc {
    lo: i32,
    hi: i32,
    bad: bool,
}

impl MinMaxAcc {
    pub const EMPTY: Self = Self { lo: i32::MAX, hi: i32::MIN, bad: false };

    /// Folds in one run of values, in lanes (vectorized).
    #[inline]
    pub fn add_run<T: AsF32>(&mut self, run: &[T]) {
        const L: usize = 16;
        let (mut lo, mut hi, mut bad) = ([i32::MAX; L], [i32::MIN; L], [0u32; L]);
        let mut lanes = run.chunks_exact(L);
        for c in &mut lanes {
            for j in 0..L {
                let v = c[j].f32();
                let k = key(v);
                lo[j] = lo[j].min(k);
                hi[j] = hi[j].max(k);
                bad[j] |= ((v.to_bits() & 0x7F80_0000) == 0x7F80_0000) as u32;
            }
        }
        for &v in lanes.remainder() {
            let v = v.f32();
            lo[0] = lo[0].min(key(v));
            hi[0] = hi[0].max(key(v));
            bad[0] |= !v.is_finite() as u32;
        }
        for j in 0..L {
            self.lo = self.lo.min(lo[j]);
            self.hi = self.hi.max(hi[j]);
            self.bad |= bad[j] != 0;
        }
    }

    pub fn merge(self, other: Self) -> Self {
        Self { lo: self.lo.min(other.lo), hi: self.hi.max(other.hi), bad: self.bad | other.bad }
    }

    /// `(min, max, all finite)` as f32.
    pub fn finish(self) -> (f32, f32, bool) {
        (unkey(self.lo), unkey(self.hi), !self.bad)
    }
}

fn reduce<T: AsF32>(x: &[T], shape: &[usize], axis: Option<usize>) -> Vec<f32> {
    let (channels, inner) = match axis {
        None => (1, x.len()),
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>()),
    };
    let empty = || vec![MinMaxAcc::EMPTY; channels];
    let merge = |mut a: Vec<MinMaxAcc>, b: Vec<MinMaxAcc>| {
        for (a, b) in a.iter_mut().zip(b) {
            *a = a.merge(b);
        }
        a
    };
    let acc = if inner == 0 {
        empty()
    } else {
        let chunk_len = (CHUNK / inner).max(1) * inner;
        x.par_chunks(chunk_len)
            .enumerate()
            .map(|(chunk_index, chunk)| {
                let mut acc = empty();
                for (run_index, run) in chunk.chunks(inner).enumerate() {
                    let c = (chunk_index * chunk_len / inner + run_index) % channels;
                    acc[c].add_run(run);
                }
                acc
            })
            .reduce(empty, merge)
    };
    let (mut lo, mut hi, mut ok) = (Vec::with_capacity(channels), Vec::with_capacity(channels), Vec::with_capacity(channels));
    for a in acc {
        let (l, h, f) = a.finish();
        lo.push(l);
        hi.push(h);
        ok.push(if f { 0.0 } else { 1.0 });
    }
    lo.into_iter().chain(hi).chain(ok).collect()
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
