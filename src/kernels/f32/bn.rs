//! The batch-norm training arithmetic on plain slices, for `[N, C, inner]` data: PyTorch's CPU
//! kernels' formulas (statistics and reductions accumulated in f64, the elementwise math in the
//! tensor's dtype). `y = z / div + add` per channel is the approximate BN fold's pre-transform,
//! computed on the fly with the same rounding as a materialized `y`.
//!
//! Every per-channel sum is taken by one thread in a fixed order (runs by batch index, then
//! elements into [`LANES`] partial sums), so results do not depend on the rayon thread count.

use std::mem::MaybeUninit;
use std::ops::{Add, Div, Mul, Sub};

use rayon::prelude::*;

use super::minmax::{AsF32, MinMaxAcc};
use crate::simd::multiversion;

/// Elements per parallel work item of the elementwise pass.
const CHUNK: usize = 16 * 1024;

/// Independent partial sums per reduction. One running f64 sum is a chain of dependent adds
/// (about 4 cycles an element); interleaved partial sums pipeline and vectorize. Element `j` of
/// a channel (counting through its runs in batch order) always goes to lane `j % LANES` and the
/// lanes are added in order: a fixed order, so a sum does not depend on the thread count, and
/// the same one [`lane_sum`] takes over a channel's values in a row.
const LANES: usize = 8;

/// Adds `f(a[i], b[i])` to `K` lane-split sums, element `i` being the channel's element
/// `start + i`. Up to the first element in lane 0, then whole rounds of lanes over fixed-size
/// chunks (no bounds checks, no branches: it vectorizes), then the rest.
#[inline(always)]
fn accumulate<T: Copy, const K: usize>(sums: &mut [[f64; LANES]; K], start: usize, a: &[T], b: &[T], f: impl Fn(T, T) -> [f64; K]) {
    let len = a.len().min(b.len());
    let head = ((LANES - start % LANES) % LANES).min(len);
    for i in 0..head {
        for (sum, v) in sums.iter_mut().zip(f(a[i], b[i])) {
            sum[(start + i) % LANES] += v;
        }
    }
    let (a, b) = (&a[head..len], &b[head..len]);
    let (mut ca, mut cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    for (ca, cb) in (&mut ca).zip(&mut cb) {
        for lane in 0..LANES {
            for (sum, v) in sums.iter_mut().zip(f(ca[lane], cb[lane])) {
                sum[lane] += v;
            }
        }
    }
    for (lane, (&x, &y)) in ca.remainder().iter().zip(cb.remainder()).enumerate() {
        for (sum, v) in sums.iter_mut().zip(f(x, y)) {
            sum[lane] += v;
        }
    }
}

/// The lanes of one sum, added in order.
fn total(lanes: &[f64; LANES]) -> f64 {
    lanes.iter().fold(0.0, |s, &v| s + v)
}

/// The sum of a channel's values in the kernels' order (for the reference path).
pub(crate) fn lane_sum(values: impl IntoIterator<Item = f64>) -> f64 {
    let mut lanes = [0.0f64; LANES];
    for (j, v) in values.into_iter().enumerate() {
        lanes[j % LANES] += v;
    }
    total(&lanes)
}

/// Float element types the kernels run on.
pub(crate) trait BnFloat:
    bytemuck::Pod + Default + Send + Sync + Add<Output = Self> + Sub<Output = Self> + Mul<Output = Self> + Div<Output = Self> + PartialOrd
{
    const ZERO: Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    fn is_nan(self) -> bool;
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
    #[inline(always)]
    fn is_nan(self) -> bool {
        f32::is_nan(self)
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
    #[inline(always)]
    fn is_nan(self) -> bool {
        f64::is_nan(self)
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

    /// `y = z / div + add` for a whole run into `y`, one loop per combination so that each
    /// vectorizes (the same operations as [`apply`](Self::apply)).
    #[inline(always)]
    fn fill(self, z: &[T], y: &mut Vec<T>) {
        y.clear();
        match (self.div, self.add) {
            (Some(d), Some(a)) => y.extend(z.iter().map(|&v| v / d + a)),
            (Some(d), None) => y.extend(z.iter().map(|&v| v / d)),
            (None, Some(a)) => y.extend(z.iter().map(|&v| v + a)),
            (None, None) => y.extend_from_slice(z),
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
    (0..l.c).into_par_iter().map_init(Vec::new, |y, c| stats_channel(z, l, pre.channel(c), c, y)).collect()
}

multiversion! {
    fn stats_channel<T: BnFloat>(z: &[T], l: BnLayout, p: ChannelPre<T>, c: usize, y: &mut Vec<T>) -> (f64, f64) {
        let mut sum = [[0.0f64; LANES]];
        for n in 0..l.n {
            p.fill(&z[l.run(n, c)], y);
            accumulate(&mut sum, n * l.inner, y, y, |v, _| [v.to_f64()]);
        }
        let mean = total(&sum[0]) / l.per_channel() as f64;
        let mut m2 = [[0.0f64; LANES]];
        for n in 0..l.n {
            p.fill(&z[l.run(n, c)], y);
            accumulate(&mut m2, n * l.inner, y, y, |v, _| {
                let d = v.to_f64() - mean;
                [d * d]
            });
        }
        (mean, total(&m2[0]))
    }
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
    // Not zeroed first: every element is written below (a memset pass over megabytes saved).
    let mut out = Vec::with_capacity(z.len());
    let inner = l.inner.max(1);
    let chunk_len = (CHUNK / inner).max(1) * inner;
    let acc = out.spare_capacity_mut()[..z.len()]
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
                        o.write(if r > T::ZERO { r } else { T::ZERO });
                    }
                } else {
                    for (o, &v) in run.iter_mut().zip(src) {
                        o.write(p.apply(v) * a + s);
                    }
                }
                if observe {
                    // SAFETY: the loop above wrote every element of the run.
                    acc.add_run(unsafe { &*(run as *const [MaybeUninit<T>] as *const [T]) });
                }
            }
            acc
        })
        .reduce(|| MinMaxAcc::EMPTY, MinMaxAcc::merge);
    // SAFETY: the runs cover all of `out[..z.len()]`, and each was written in full above.
    unsafe { out.set_len(z.len()) };
    (out, observe.then(|| acc.finish()))
}

/// The per-channel values the backward needs.
pub(crate) struct BackwardChannel<'a, T> {
    pub pre: Pre<'a, T>,
    pub mean: &'a [T],
    pub invstd: &'a [T],
    pub gamma: &'a [T],
}

/// The per-channel gradients of one backward pass (the input's is written in place): div,
/// add, gamma, beta.
pub(crate) struct BnGrads<T> {
    pub div: Vec<T>,
    pub add: Vec<T>,
    pub gamma: Vec<T>,
    pub beta: Vec<T>,
}

struct SyncPtr<T>(*mut T);
unsafe impl<T> Sync for SyncPtr<T> {}
unsafe impl<T> Send for SyncPtr<T> {}

/// Per-thread buffers for one run of [`backward`]: the pre-transformed input `y`, the
/// gradient after the ReLU mask, and `dy`.
#[derive(Default)]
struct RunScratch<T> {
    y: Vec<T>,
    ge: Vec<T>,
    dy: Vec<T>,
}

/// Run `r`'s pre-transformed input and masked gradient into the scratch buffers.
#[inline(always)]
fn load_run<T: BnFloat>(s: &mut RunScratch<T>, z: &[T], out: Option<&[T]>, g_run: &[T], r: std::ops::Range<usize>, p: ChannelPre<T>) {
    p.fill(&z[r.clone()], &mut s.y);
    masked_gradient(g_run, out.map(|o| &o[r]), &mut s.ge);
}

/// The gradient through the optional ReLU: `g` where the output is positive, else 0.
#[inline(always)]
fn masked_gradient<T: BnFloat>(g: &[T], out: Option<&[T]>, ge: &mut Vec<T>) {
    ge.clear();
    match out {
        Some(o) => ge.extend(g.iter().zip(o).map(|(&gv, &ov)| if ov > T::ZERO { gv } else { T::ZERO })),
        None => ge.extend_from_slice(g),
    }
}

/// The batch-norm backward with batch statistics (PyTorch `batch_norm_cpu_backward`), through
/// the optional ReLU (mask `out > 0`) and the pre-transform (`DivBackward`, `AddBackward`).
/// Each run is first turned into plain slices (`y`, the masked gradient), so that the
/// reductions and the elementwise pass are branch-free loops.
/// `g` holds the upstream gradient and receives the input's: each run is read (copied into
/// the scratch buffers) before it is overwritten, and runs belong to one channel, so the
/// buffer the gradient arrived in is reused instead of a new one allocated and zeroed.
pub(crate) fn backward<T: BnFloat>(z: &[T], out: Option<&[T]>, g: &mut [T], l: BnLayout, ch: BackwardChannel<'_, T>) -> BnGrads<T> {
    assert_eq!(g.len(), z.len(), "one gradient per input element");
    let g = SyncPtr(g.as_mut_ptr());
    let per_channel: Vec<[T; 4]> =
        (0..l.c).into_par_iter().map_init(RunScratch::default, |s, c| backward_channel(z, out, &g, l, &ch, c, s)).collect();
    let col = |i: usize| per_channel.iter().map(|v| v[i]).collect::<Vec<T>>();
    BnGrads { div: col(0), add: col(1), gamma: col(2), beta: col(3) }
}

multiversion! {
    /// One channel of [`backward`]: its input gradient written over its runs of `g`, its four
    /// reductions returned.
    fn backward_channel<T: BnFloat>(
        z: &[T],
        out: Option<&[T]>,
        g: &SyncPtr<T>,
        l: BnLayout,
        ch: &BackwardChannel<'_, T>,
        c: usize,
        s: &mut RunScratch<T>,
    ) -> [T; 4] {
        // SAFETY (for every `run_of` below): runs of channel `c` are touched by this task only, and
        // no slice of a run outlives the next write to it.
        let run_of = |r: std::ops::Range<usize>| unsafe { std::slice::from_raw_parts_mut(g.0.add(r.start), r.len()) };
        let count = l.per_channel() as f64;
        let p = ch.pre.channel(c);
        let (mean, invstd) = (ch.mean[c], ch.invstd[c]);
        let mean64 = mean.to_f64();
        let mut sums = [[0.0f64; LANES]; 2];
        for n in 0..l.n {
            let r = l.run(n, c);
            load_run(s, z, out, run_of(r.clone()), r, p);
            accumulate(&mut sums, n * l.inner, &s.ge, &s.y, |ge, y| {
                let ge = ge.to_f64();
                [ge, (y.to_f64() - mean64) * ge]
            });
        }
        let (sum_g, dotp) = (total(&sums[0]), total(&sums[1]));
        let inv = invstd.to_f64();
        let k = T::from_f64(dotp * inv * inv / count);
        let grad_mean = T::from_f64(sum_g / count);
        let w = invstd * ch.gamma[c];
        let mut sums = [[0.0f64; LANES]; 2];
        for n in 0..l.n {
            let r = l.run(n, c);
            load_run(s, z, out, run_of(r.clone()), r.clone(), p);
            s.dy.clear();
            s.dy.extend(s.ge.iter().zip(&s.y).map(|(&ge, &y)| ((ge - grad_mean) - (y - mean) * k) * w));
            let dz_run = run_of(r.clone());
            match p.div {
                Some(d) => {
                    dz_run.iter_mut().zip(&s.dy).for_each(|(o, &dy)| *o = dy / d);
                    accumulate(&mut sums, n * l.inner, &s.dy, &z[r], |dy, v| [dy.to_f64(), dy.to_f64() * v.to_f64()]);
                }
                None => {
                    dz_run.copy_from_slice(&s.dy);
                    accumulate(&mut sums, n * l.inner, &s.dy, &s.dy, |dy, _| [dy.to_f64(), 0.0]);
                }
            }
        }
        let (sum_dy, sum_dyz) = (total(&sums[0]), total(&sums[1]));
        let ddiv = match p.div {
            Some(d) => T::from_f64(-sum_dyz / (d.to_f64() * d.to_f64())),
            None => T::ZERO,
        };
        [ddiv, T::from_f64(sum_dy), T::from_f64(dotp * inv), T::from_f64(sum_g)]
    }
}
