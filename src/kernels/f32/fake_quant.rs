//! The fake-quant arithmetic on plain slices, exactly as PyTorch's CPU kernels compute it:
//! `q = z + rne(x * inv_s)` with `inv_s = 1.0f32 / s` *multiplied* (not a division: they differ
//! on 2 in 2e6 random inputs), `y = (clamp(q, qmin, qmax) - z) * s`, and a gradient mask that
//! tests the *unclamped* q. f64 inputs are computed in f64 with the same f32 reciprocal.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use crate::quant::round_half_even;
use crate::simd::multiversion;

/// Elements per parallel work item; below this, threading costs more than it saves.
const CHUNK: usize = 16 * 1024;

/// One channel's parameters, pre-converted for the inner loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelParams {
    pub scale: f32,
    pub inv_scale: f32,
    pub zero_point: f32,
    pub quant_min: f32,
    pub quant_max: f32,
}

impl ChannelParams {
    pub fn new(scale: f32, zero_point: i32, quant_min: i32, quant_max: i32) -> Self {
        Self { scale, inv_scale: 1.0 / scale, zero_point: zero_point as f32, quant_min: quant_min as f32, quant_max: quant_max as f32 }
    }
}

/// Float element types the kernels run on.
pub(crate) trait FqFloat: bytemuck::Pod + Default + Send + Sync + std::ops::Mul<Output = Self> {
    fn fake_quant(self, p: &ChannelParams) -> Self;
    fn in_range(self, p: &ChannelParams) -> bool;
    fn from_bool(b: bool) -> Self;
}

impl FqFloat for f32 {
    #[inline(always)]
    fn fake_quant(self, p: &ChannelParams) -> f32 {
        let q = p.zero_point + round_half_even(self * p.inv_scale);
        // max/min (not clamp) so that NaN maps to quant_min, like C's fmax/fmin in PyTorch.
        (q.max(p.quant_min).min(p.quant_max) - p.zero_point) * p.scale
    }
    #[inline(always)]
    fn in_range(self, p: &ChannelParams) -> bool {
        let q = p.zero_point + round_half_even(self * p.inv_scale);
        p.quant_min <= q && q <= p.quant_max
    }
    fn from_bool(b: bool) -> Self {
        if b { 1.0 } else { 0.0 }
    }
}

impl FqFloat for f64 {
    #[inline(always)]
    fn fake_quant(self, p: &ChannelParams) -> f64 {
        let q = p.zero_point as f64 + (self * p.inv_scale as f64).round_ties_even();
        (q.max(p.quant_min as f64).min(p.quant_max as f64) - p.zero_point as f64) * p.scale as f64
    }
    #[inline(always)]
    fn in_range(self, p: &ChannelParams) -> bool {
        let q = p.zero_point as f64 + (self * p.inv_scale as f64).round_ties_even();
        p.quant_min as f64 <= q && q <= p.quant_max as f64
    }
    fn from_bool(b: bool) -> Self {
        if b { 1.0 } else { 0.0 }
    }
}

/// Where each channel's parameters apply in a contiguous buffer: runs of `inner` elements cycle
/// through the channels. Per tensor is one channel with one long run.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChannelLayout {
    pub channels: usize,
    pub inner: usize,
}

impl ChannelLayout {
    pub fn new(shape: &[usize], axis: Option<usize>) -> Self {
        match axis {
            None => Self { channels: 1, inner: shape.iter().product::<usize>().max(1) },
            Some(axis) => Self { channels: shape[axis], inner: shape[axis + 1..].iter().product::<usize>().max(1) },
        }
    }

    /// Runs `f(run, channel)` over consecutive same-channel runs of `data`, in parallel chunks
    /// whose length is a whole number of runs (so that one chunk never splits a run).
    fn for_each_run<T: Send, F>(&self, data: &mut [T], f: F)
    where
        F: Fn(&mut [T], usize, usize) + Sync,
    {
        let runs_per_chunk = (CHUNK / self.inner).max(1);
        let chunk_len = runs_per_chunk * self.inner;
        data.par_chunks_mut(chunk_len).enumerate().for_each(|(chunk_index, chunk)| {
            let offset = chunk_index * chunk_len;
            for (run_index, run) in chunk.chunks_mut(self.inner).enumerate() {
                let run_start = offset + run_index * self.inner;
                let channel = (run_start / self.inner) % self.channels;
                f(run, channel, run_start);
            }
        });
    }
}

pub(crate) fn forward<T: FqFloat>(x: &[T], layout: ChannelLayout, params: &[ChannelParams]) -> Vec<T> {
    // Written straight into the new buffer's spare capacity: zeroing it first would be a whole
    // extra pass over an activation-sized tensor.
    let mut out: Vec<T> = Vec::with_capacity(x.len());
    layout.for_each_run(&mut out.spare_capacity_mut()[..x.len()], |run, channel, start| {
        forward_run(run, &x[start..start + run.len()], &params[channel])
    });
    // SAFETY: `for_each_run` visits every element of the spare capacity once, in runs that
    // tile it, and `forward_run` writes each element of its run.
    unsafe { out.set_len(x.len()) };
    out
}

/// The upstream gradient masked in place (the op owns it; no new buffer to zero and fill).
pub(crate) fn backward_in_place<T: FqFloat>(x: &[T], grad: &mut [T], layout: ChannelLayout, params: &[ChannelParams]) {
    layout.for_each_run(grad, |run, channel, start| backward_run(run, &x[start..start + run.len()], &params[channel]));
}

multiversion! {
    /// Writes every element of `out` (`out.len() == x.len()`).
    fn forward_run<T: FqFloat>(out: &mut [MaybeUninit<T>], x: &[T], p: &ChannelParams) {
        assert_eq!(out.len(), x.len(), "one output per input");
        for (y, &v) in out.iter_mut().zip(x) {
            y.write(v.fake_quant(p));
        }
    }
}

multiversion! {
    fn backward_run<T: FqFloat>(grad: &mut [T], x: &[T], p: &ChannelParams) {
        for (g, &v) in grad.iter_mut().zip(x) {
            // A multiply by the 0/1 mask, as PyTorch does, so that signs of zero match too.
            *g = *g * T::from_bool(v.in_range(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_spec_vectors() {
        let p = [ChannelParams::new(0.1, 0, -32768, 32767)];
        let layout = ChannelLayout::new(&[1], None);
        // x * (1/s) puts 14.549999237 above the tie; x / s would not.
        assert_eq!(forward(&[14.549999237f32], layout, &p), vec![14.6f32]);
        let p = [ChannelParams::new(1.0, 0, -128, 127)];
        let x = [0.5f32, 1.5, 2.5, 127.5, -128.5];
        let layout = ChannelLayout::new(&[5], None);
        assert_eq!(forward(&x, layout, &p), vec![0.0, 2.0, 2.0, 127.0, -128.0]);
        let mut grad = [1.0; 5];
        backward_in_place(&x, &mut grad, layout, &p);
        assert_eq!(grad, [1.0, 1.0, 1.0, 0.0, 1.0]);
    }

    #[test]
    fn channels_cycle_along_the_axis() {
        // Shape [2, 3, 2] with axis 1: runs of 2 elements cycle through 3 channels.
        let params: Vec<_> = [1.0, 2.0, 4.0].iter().map(|&s| ChannelParams::new(s, 0, -128, 127)).collect();
        let x = [3.0f32; 12];
        let y = forward(&x, ChannelLayout::new(&[2, 3, 2], Some(1)), &params);
        assert_eq!(y, vec![3.0, 3.0, 4.0, 4.0, 4.0, 4.0, 3.0, 3.0, 4.0, 4.0, 4.0, 4.0]);
    }
}
