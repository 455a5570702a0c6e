//! Min and max of a slice, over all of it or per index of one axis, with whether every value
//! is finite: the observers' statistics. Compared as integer keys in IEEE total order, so the
//! parallel reduction gives the same result for any thread count (`ops::min_max` is the op).

use rayon::prelude::*;

/// Elements per parallel work item.
const CHUNK: usize = 64 * 1024;

/// Element types read as f32 (the observers' precision).
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

pub(crate) fn reduce<T: AsF32>(x: &[T], shape: &[usize], axis: Option<usize>) -> Vec<f32> {
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
