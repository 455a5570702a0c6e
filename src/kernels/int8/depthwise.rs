//! The int8 depthwise conv (one input and one output channel per group), directly: no im2col,
//! no GEMM, no padded copy of the batch. MobileNet-style models spend half their int8 time
//! here, on many small planes (7x7, 14x14), so the kernel is built around short rows.
//!
//! Each (image, channel) plane is split, in a per-thread scratch buffer, into its stride
//! phases: phase `(a_z, a_y, a_x)` holds the zero-padded plane's elements at
//! `(a_z + s_z i, a_y + s_y j, a_x + s_x k)`. A tap at offset `r` along an axis then reads phase
//! `r % s` shifted by `r / s`, so a strided conv becomes a stride-1 one over the phases, and a
//! stride-1 conv over a flattened plane is one contiguous multiply-add per tap:
//! `flat[i] = sum_t phases[start_t + i] * wc[t] - z_x * sum_t wc[t]`, which in wrapping i32 is
//! the centered sum `sum_t (x - z_x) * wc[t]` exactly. Output `(z, y, x)` is `flat` at
//! `(z * L_y + y) * L_x + x` (`L` the phase extents); the few positions between output rows
//! are computed and dropped. Every output is one thread's sum, so the bits do not depend on
//! the thread count.

use rayon::prelude::*;

use super::requantize::{Requantizer, min_tasks};
use crate::simd::multiversion;

/// Lanes of i32 the flat pass computes at once (one 512-bit vector, two 256-bit ones).
const LANES: usize = 16;

/// Where everything of one plane lives in the scratch buffer, computed once per call.
pub(crate) struct DepthwisePlan {
    /// The unpadded input plane `[D, H, W]`.
    dims: [usize; 3],
    stride: [usize; 3],
    out: [usize; 3],
    /// Each phase's extent per axis.
    len: [usize; 3],
    /// Each tap's first element in the scratch buffer (phase base + shift).
    tap_starts: Vec<usize>,
    /// Flat positions computed, a multiple of [`LANES`].
    span: usize,
    /// Per input row `(z, y)`: where its phase rows start (column-phase 0, column 0), or `None`
    /// when no output reads it.
    row_starts: Vec<Option<usize>>,
    /// Per column phase, the input columns it keeps as one run: (first input column, offset of
    /// its first element from the row start, how many), every `stride[2]`-th column.
    column_runs: Vec<(usize, usize, usize)>,
    /// The phases, plus room for the last vector of the farthest tap.
    scratch_len: usize,
}

impl DepthwisePlan {
    /// The plan for input planes `dims` (unpadded) with `padding`, `kernel`, `stride`,
    /// `dilation` and output extents `out` (at least 1 each).
    pub(crate) fn new(
        dims: [usize; 3],
        padding: [usize; 3],
        kernel: [usize; 3],
        stride: [usize; 3],
        dilation: [usize; 3],
        out: [usize; 3],
    ) -> Self {
        let reach: [usize; 3] = std::array::from_fn(|a| (kernel[a] - 1) * dilation[a]);
        let len: [usize; 3] = std::array::from_fn(|a| out[a] + reach[a] / stride[a]);
        let volume = len.iter().product::<usize>();
        let phases = stride.iter().product::<usize>();
        let [kd, kh, kw] = kernel;
        let mut tap_starts = Vec::with_capacity(kd * kh * kw);
        for kz in 0..kd {
            for ky in 0..kh {
                for kx in 0..kw {
                    let r = [kz * dilation[0], ky * dilation[1], kx * dilation[2]];
                    let phase = ((r[0] % stride[0]) * stride[1] + r[1] % stride[1]) * stride[2] + r[2] % stride[2];
                    let shift = ((r[0] / stride[0]) * len[1] + r[1] / stride[1]) * len[2] + r[2] / stride[2];
                    tap_starts.push(phase * volume + shift);
                }
            }
        }
        let last_output = ((out[0] - 1) * len[1] + out[1] - 1) * len[2] + out[2] - 1;
        let span = (last_output + 1).div_ceil(LANES) * LANES;
        let farthest = tap_starts.iter().max().copied().unwrap_or(0);
        // Where padded coordinate `p` of axis `a` lands: (phase, index), if inside the extent.
        let place = |a: usize, p: usize| (p / stride[a] < len[a]).then_some((p % stride[a], p / stride[a]));
        let mut row_starts = Vec::with_capacity(dims[0] * dims[1]);
        for z in 0..dims[0] {
            for y in 0..dims[1] {
                row_starts.push(
                    place(0, z + padding[0])
                        .zip(place(1, y + padding[1]))
                        .map(|((az, iz), (ay, iy))| (az * stride[1] + ay) * stride[2] * volume + (iz * len[1] + iy) * len[2]),
                );
            }
        }
        let column_runs = (0..stride[2].min(dims[2]))
            .filter_map(|first| {
                let count = (first..dims[2]).step_by(stride[2]).take_while(|&x| place(2, x + padding[2]).is_some()).count();
                let (ax, ix) = place(2, first + padding[2])?;
                Some((first, ax * volume + ix, count))
            })
            .collect();
        Self { dims, stride, out, len, tap_starts, span, row_starts, column_runs, scratch_len: (phases * volume).max(farthest + span) }
    }

    fn output_volume(&self) -> usize {
        self.out.iter().product()
    }

    /// Writes the phases of one unpadded plane into `scratch`, whose other elements (the
    /// padding) hold the input zero point: every plane writes the same positions, so the padding
    /// is filled once per scratch buffer. Elements of the padded plane that no output reads (past
    /// a phase's extent) are left out.
    fn split(&self, plane: &[u8], scratch: &mut [u8]) {
        let step = self.stride[2];
        for (row, start) in plane.chunks_exact(self.dims[2]).zip(&self.row_starts) {
            let Some(start) = *start else { continue };
            for &(first, offset, count) in &self.column_runs {
                let dst = &mut scratch[start + offset..][..count];
                if step == 1 {
                    dst.copy_from_slice(&row[first..first + count]);
                } else {
                    for (k, d) in dst.iter_mut().enumerate() {
                        *d = row[first + k * step];
                    }
                }
            }
        }
    }
}

/// The depthwise conv of `x` (`[N, C, D, H, W]` unpadded, zero point `zx`), weights `[C, taps]`
/// with zero points `zw`, requantized per channel; outputs `[N, C, OD, OH, OW]`.
pub(crate) fn depthwise(
    x: &[u8],
    plan: &DepthwisePlan,
    zx: u8,
    (weight, zw): (&[i8], &[i32]),
    requantizer: &Requantizer,
    [n, c]: [usize; 2],
) -> Vec<u8> {
    let in_volume = plan.dims.iter().product::<usize>();
    let p = plan.output_volume();
    let taps = plan.tap_starts.len();
    let [od, oh, ow] = plan.out;
    let [_, ly, lx] = plan.len;
    let mut values = vec![0u8; n * c * p];
    // `flat` and `acc` get a vector of slack: rows are gathered a whole vector at a time.
    let scratch = || (vec![zx; plan.scratch_len], vec![0i32; plan.span + LANES], vec![0i32; p + LANES], vec![0i32; taps]);
    let min_planes = min_tasks(p * taps);
    values.par_chunks_mut(p).with_min_len(min_planes).enumerate().for_each_init(scratch, |(phases, flat, acc, wc), (i, out_plane)| {
        let channel = i % c;
        plan.split(&x[i * in_volume..][..in_volume], phases);
        let mut sum = 0i32;
        for (wc, &v) in wc.iter_mut().zip(&weight[channel * taps..][..taps]) {
            *wc = (v as i32).wrapping_sub(zw[channel]);
            sum = sum.wrapping_add(*wc);
        }
        flat_taps(&mut flat[..plan.span], phases, &plan.tap_starts, wc, (zx as i32).wrapping_mul(sum).wrapping_neg());
        // The outputs gathered from the flat rows, then requantized in one call: rows of a
        // small plane are shorter than a vector. Each row is copied in whole vectors (a
        // variable-length copy is a memmove call per 7-element row); what a copy writes past
        // the row's end, the next row or the slack takes.
        for z in 0..od {
            for y in 0..oh {
                let (src, dst) = ((z * ly + y) * lx, (z * oh + y) * ow);
                for k in (0..ow).step_by(LANES) {
                    let chunk: [i32; LANES] = flat[src + k..][..LANES].try_into().expect("a full vector");
                    acc[dst + k..][..LANES].copy_from_slice(&chunk);
                }
            }
        }
        requantizer.row(channel, &acc[..p], out_plane);
    });
    values
}

multiversion! {
    /// `flat[i] = init + sum_t phases[starts[t] + i] * wc[t]` in wrapping i32, [`LANES`] positions
    /// at a time with every tap summed in registers before the one store.
    fn flat_taps(flat: &mut [i32], phases: &[u8], starts: &[usize], wc: &[i32], init: i32) {
        for (j, out) in flat.chunks_exact_mut(LANES).enumerate() {
            let mut acc = [init; LANES];
            for (&start, &w) in starts.iter().zip(wc) {
                let src: &[u8; LANES] = phases[start + j * LANES..][..LANES].try_into().expect("a full vector");
                for (a, &x) in acc.iter_mut().zip(src) {
                    *a = a.wrapping_add((x as i32).wrapping_mul(w));
                }
            }
            out.copy_from_slice(&acc);
        }
    }
}
