//! The batch-norm training arithmetic on plain slices, for `[N, C, inner]` data: PyTorch's CPU
//! kernels' formulas (statistics and reductions accumulated in f64, the elementwise math in the
//! tensor's dtype). `y = z / div + add` per channel is the approximate BN fold's pre-transform,
//! computed on the fly with the same rounding as a materialized `y`.
//!
//! Every per-channel sum is taken by one thread in a fixed order (runs by batch index, then
//! elements), so results do not depend on the rayon thread count.

use std::ops::{Add, Div, Mul, Sub};

use rayon::prelude::*;

use super::minmax::{AsF32, MinMaxAcc};

/// Elements per parallel work item of the elementwise pass.
const CHUNK: usize = 16 * 1024;

/// Float element types the kernels run on.
pub(crate) trait BnFloat:
    burn::tensor::Element + bytemuck::Pod + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + PartialOrd
{
    const ZERO: Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
}

impl BnFloat for f32 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v as f32
    }
}

impl BnFloat for f64 {
    const ZERO: Self = 0.0;
    #[inline(always)]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn from_f64(v: f64) -> Self {
        v
    }
}

/// `[N, C, inner]`: run `(n, c)` starts at `(n * C + c) * inner`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BnLayout {
    pub n: usize,
    pub c: usize,
    pub inner: usize,
}

impl BnLayout {
    pub fn new(shape: &[usize]) -> Self {
        Self { n: shape[0], c: shape[1], inner: shape[2..].iter().product() }
    }

    /// Values per channel.
    pub fn per_channel(&self) -> usize {
        self.n * self.inner
    }

    fn run(&self, n: usize, c: usize) -> std::ops::Range<usize> {
        let start = (n * self.c + c) * self.inner;
        start..start + self.inner
    }
}

/// The per-channel pre-transform `y = z / div + add`; `None` skips a step (no rounding).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pre<'a, T> {
    pub div: Option<&'a [T]>,
    pub add: Option<&'a [T]>,
}

#[derive(Clone, Copy)]
struct ChannelPre<T> {
    div: Option<T>,
    add: Option<T>,
}

impl<T: BnFloat> ChannelPre<T> {
    #[inline(always)]
    fn apply(self, z: T) -> T {
        let y = match self.div {
            Some(d) => z / d,
            None => z,
        };
        match self.add {
            Some(a) => y + a,
            None => y,
        }
    }
}

impl<T: BnFloat> Pre<'_, T> {
    fn channel(&self, c: usize) -> ChannelPre<T> {
        ChannelPre { div: self.div.map(|d| d[c]), add: self.add.map(|a| a[c]) }
    }
}

/// Per channel `(mean, sum of squared deviations)` of `y`, in f64: the sum, then the squared
/// deviations from the mean, each in order (what `BatchNorm::update_running_stats` computes).
pub(crate) fn stats<T: BnFloat>(z: &[T], l: BnLayout, pre: Pre<'_, T>) -> Vec<(f64, f64)> {
    let count = l.per_channel() as f64;
    (0..l.c)
        .into_par_iter()
        .map(|c| {
            let p = pre.channel(c);
            let mut sum = 0.0f64;
            for n in 0..l.n {
                for &v in &z[l.run(n, c)] {
                    sum += p.apply(v).to_f64();
                }
            }
            let mean = sum / count;
            let mut m2 = 0.0f64;
            for n in 0..l.n {
                for &v in &z[l.run(n, c)] {
                    let d = p.apply(v).to_f64() - mean;
                    m2 += d * d;
                }
            }
            (mean, m2)
        })
        .collect()
}

/// Per channel: `out = max?(y * alpha + shift, 0)`, PyTorch's CPU form of the normalization.
/// With `observe`, also the min and max of the output (as f32) and whether it is all finite,
/// taken from each run while it is still in cache: exactly what `ops::min_max` gives.
pub(crate) fn apply<T: BnFloat + AsF32>(
    z: &[T],
    l: BnLayout,
    pre: Pre<'_, T>,
    alpha: &[T],
    shift: &[T],
    relu: bool,
    observe: bool,
) -> (Vec<T>, Option<(f32, f32, bool)>) {
    let mut out = vec![T::ZERO; z.len()];
    let inner = l.inner.max(1);
    let chunk_len = (CHUNK / inner).max(1) * inner;
    let acc = out
        .par_chunks_mut(chunk_len)
        .enumerate()
        .map(|(chunk_index, chunk)| {
            let mut acc = MinMaxAcc::EMPTY;
            let offset = chunk_index * chunk_len;
            for (run_index, run) in chunk.chunks_mut(inner).enumerate() {
                let start = offset + run_index * inner;
                let c = (start / inner) % l.c;
                let (p, a, s) = (pre.channel(c), alpha[c], shift[c]);
                let src = &z[start..start + run.len()];
                if relu {
                    for (o, &v) in run.iter_mut().zip(src) {
                        let r = p.apply(v) * a + s;
                        *o = if r > T::ZERO { r } else { T::ZERO };
                    }
                } else {
                    for (o, &v) in run.iter_mut().zip(src) {
                        *o = p.apply(v) * a + s;
                    }
                }
                if observe {
                    acc.add_run(run);
                }
            }
            acc
        })
        .reduce(|| MinMaxAcc::EMPTY, MinMaxAcc::merge);
    (out, observe.then(|| acc.finish()))
}

/// The per-channel values the backward needs.
pub(crate) struct BackwardChannel<'a, T> {
    pub pre: Pre<'a, T>,
    pub mean: &'a [T],
    pub invstd: &'a [T],
    pub gamma: &'a [T],
}

/// Gradients of one backward pass: input, div, add, gamma, beta.
pub(crate) struct BnGrads<T> {
    pub z: Vec<T>,
    pub div: Vec<T>,
    pub add: Vec<T>,
    pub gamma: Vec<T>,
    pub beta: Vec<T>,
}

struct SyncPtr<T>(*mut T);
unsafe impl<T> Sync for SyncPtr<T> {}
unsafe impl<T> Send for SyncPtr<T> {}

/// The batch-norm backward with batch statistics (PyTorch `batch_norm_cpu_backward`), through
/// the optional ReLU (mask `out > 0`) and the pre-transform (`DivBackward`, `AddBackward`).
pub(crate) fn backward<T: BnFloat>(z: &[T], out: Option<&[T]>, g: &[T], l: BnLayout, ch: BackwardChannel<'_, T>) -> BnGrads<T> {
    let mut dz = vec![T::ZERO; z.len()];
    let dz_ptr = SyncPtr(dz.as_mut_ptr());
    let count = l.per_channel() as f64;
    let per_channel: Vec<[T; 4]> = (0..l.c)
        .into_par_iter()
        .map(|c| {
            let dz_ptr = &dz_ptr;
            let p = ch.pre.channel(c);
            let (mean, invstd) = (ch.mean[c], ch.invstd[c]);
            // The ReLU's backward: the gradient where the output is positive, else 0.
            let masked = |o: Option<&[T]>, i: usize, gv: T| match o {
                Some(o) if !(o[i] > T::ZERO) => T::ZERO,
                _ => gv,
            };
            let (mut sum_g, mut dotp) = (0.0f64, 0.0f64);
            for n in 0..l.n {
                let r = l.run(n, c);
                let o = out.map(|o| &o[r.clone()]);
                for (i, (&v, &gv)) in z[r.clone()].iter().zip(&g[r]).enumerate() {
                    let ge = masked(o, i, gv).to_f64();
                    sum_g += ge;
                    dotp += (p.apply(v).to_f64() - mean.to_f64()) * ge;
                }
            }
            let inv = invstd.to_f64();
            let k = T::from_f64(dotp * inv * inv / count);
            let grad_mean = T::from_f64(sum_g / count);
            let w = invstd * ch.gamma[c];
            let (mut sum_dy, mut sum_dyz) = (0.0f64, 0.0f64);
            for n in 0..l.n {
                let r = l.run(n, c);
                let start = r.start;
                let o = out.map(|o| &o[r.clone()]);
                for (i, (&v, &gv)) in z[r.clone()].iter().zip(&g[r]).enumerate() {
                    let ge = masked(o, i, gv);
                    let dy = ((ge - grad_mean) - (p.apply(v) - mean) * k) * w;
                    let d = match p.div {
                        Some(d) => {
                            sum_dyz += dy.to_f64() * v.to_f64();
                            dy / d
                        }
                        None => dy,
                    };
                    sum_dy += dy.to_f64();
                    // SAFETY: each channel writes only its own runs, which no other task touches.
                    unsafe { *dz_ptr.0.add(start + i) = d };
                }
            }
            let ddiv = match p.div {
                Some(d) => T::from_f64(-sum_dyz / (d.to_f64() * d.to_f64())),
                None => T::ZERO,
            };
            [ddiv, T::from_f64(sum_dy), T::from_f64(dotp * inv), T::from_f64(sum_g)]
        })
        .collect();
    let col = |i: usize| per_channel.iter().map(|v| v[i]).collect::<Vec<T>>();
    BnGrads { z: dz, div: col(0), add: col(1), gamma: col(2), beta: col(3) }
}
