//! Depthwise convolution (one input channel per group, any channel multiplier) as direct loops:
//! a GEMM per channel would have one row and pay its packing for nothing.
//!
//! Planes are first copied into zero-padded buffers wide enough that every output row is a whole
//! number of `LANES`-wide chunks, so the inner loops have no bounds, no edges and no remainders,
//! and each chunk's sums stay in registers (see `conv2d_simd`). Work is split by plane (forward,
//! grad input) or by output channel (grad weight), so each output element is summed by one thread
//! in one fixed order.

use rayon::prelude::*;

use super::conv2d_shape::ConvShape;
use super::conv2d_simd::{LANES, axpy_scatter, correlate_rows, dispatch, tap_dot};

/// A plane `[h, w]` copied at row `top`, column `left` into a zeroed `rows x width` buffer
/// (cropped where it does not fit).
fn pad_plane(src: &[f32], [h, w]: [usize; 2], [top, left]: [usize; 2], [rows, width]: [usize; 2], buf: &mut [f32]) {
    buf.fill(0.0);
    let cols = w.min(width.saturating_sub(left));
    for (i, src_row) in src.chunks_exact(w).take(h.min(rows.saturating_sub(top))).enumerate() {
        buf[(top + i) * width + left..][..cols].copy_from_slice(&src_row[..cols]);
    }
}

/// The padded input plane every forward and weight-gradient read falls in.
struct PaddedInput {
    rows: usize,
    width: usize,
}

impl PaddedInput {
    fn new(s: &ConvShape) -> Self {
        let rows = (s.oh - 1) * s.stride[0] + (s.kh - 1) * s.dilation[0] + 1;
        let width = (s.ow.next_multiple_of(LANES) - 1) * s.stride[1] + (s.kw - 1) * s.dilation[1] + 1;
        Self { rows, width }
    }

    fn fill(&self, s: &ConvShape, x: &[f32], buf: &mut Vec<f32>) {
        buf.resize(self.rows * self.width, 0.0);
        pad_plane(x, [s.h, s.w], [s.padding[0], s.padding[1]], [self.rows, self.width], buf);
    }

    /// Where tap `(ki, kj)` of output pixel (0, 0) reads.
    fn tap(&self, s: &ConvShape, ki: usize, kj: usize) -> usize {
        ki * s.dilation[0] * self.width + kj * s.dilation[1]
    }
}

fn multiplier(s: &ConvShape) -> usize {
    s.c_out / s.c_in
}

/// `y [n, c_out, oh, ow]`. One task per input plane, for all the output planes it feeds.
pub(crate) fn forward(s: &ConvShape, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (k, m, pad) = (s.kh * s.kw, multiplier(s), PaddedInput::new(s));
    let mut y = vec![0f32; s.n * s.c_out * s.out_plane()];
    y.par_chunks_mut(m * s.out_plane()).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(xp, taps), (plane, out)| {
            let c = plane % s.c_in;
            pad.fill(s, &x[plane * s.in_plane()..][..s.in_plane()], xp);
            for (j, out) in out.chunks_exact_mut(s.out_plane()).enumerate() {
                let oc = c * m + j;
                let w = &w[oc * k..][..k];
                taps.clear();
                taps.extend(
                    (0..s.kh).flat_map(|ki| (0..s.kw).map(move |kj| (ki, kj))).map(|(ki, kj)| (pad.tap(s, ki, kj), w[ki * s.kw + kj])),
                );
                let init = bias.map_or(0.0, |b| b[oc]);
                let step = [s.stride[0] * pad.width, s.stride[1]];
                dispatch!(correlate_rows(xp, taps, step, init, out, s.ow));
            }
        },
    );
    y
}

/// `dx [n, c_in, h, w]`. Stride 1: a correlation of the padded `dy` planes with the flipped
/// kernels. Larger strides: each output pixel's gradient scattered back onto the inputs it read.
pub(crate) fn grad_input(s: &ConvShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0f32; s.n * s.c_in * s.in_plane()];
    if s.stride == [1, 1] {
        grad_input_stride1(s, w, dy, &mut dx);
    } else {
        grad_input_scatter(s, w, dy, &mut dx);
    }
    dx
}

fn grad_input_stride1(s: &ConvShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (k, m) = (s.kh * s.kw, multiplier(s));
    let ([dh, dw], [ph, pw]) = (s.dilation, s.padding);
    // dx[i][j] reads dy[i + ph - ki*dh][j + pw - kj*dw]: shift dy by the full kernel extent so
    // every index is non-negative.
    let (top, left) = ((s.kh - 1) * dh, (s.kw - 1) * dw);
    let rows = s.h + ph + top;
    let width = s.w.next_multiple_of(LANES) + pw + left;
    dx.par_chunks_mut(s.in_plane()).enumerate().for_each_init(
        || (Vec::new(), Vec::new()),
        |(dyp, taps), (plane, dx)| {
            let (b, c) = (plane / s.c_in, plane % s.c_in);
            dyp.resize(m * rows * width, 0.0);
            taps.clear();
            for (j, buf) in dyp.chunks_exact_mut(rows * width).enumerate() {
                let oc = c * m + j;
                pad_plane(&dy[(b * s.c_out + oc) * s.out_plane()..][..s.out_plane()], [s.oh, s.ow], [top, left], [rows, width], buf);
                for ki in 0..s.kh {
                    for kj in 0..s.kw {
                        let at = j * rows * width + (ph + top - ki * dh) * width + (pw + left - kj * dw);
                        taps.push((at, w[oc * k + ki * s.kw + kj]));
                    }
                }
            }
            dispatch!(correlate_rows(dyp, taps, [width, 1], 0.0, dx, s.w));
        },
    );
}

fn grad_input_scatter(s: &ConvShape, w: &[f32], dy: &[f32], dx: &mut [f32]) {
    let (k, m) = (s.kh * s.kw, multiplier(s));
    let spans: Vec<_> = (0..s.kw).map(|kj| s.col_span(kj)).collect();
    dx.par_chunks_mut(s.in_plane()).enumerate().for_each(|(plane, dx)| {
        let (b, c) = (plane / s.c_in, plane % s.c_in);
        for oc in c * m..(c + 1) * m {
            let dy = &dy[(b * s.c_out + oc) * s.out_plane()..][..s.out_plane()];
            let w = &w[oc * k..][..k];
            for (oh, dy_row) in dy.chunks_exact(s.ow).enumerate() {
                for ki in 0..s.kh {
                    let Some(ih) = s.in_row(oh, ki) else { continue };
                    let dx_row = &mut dx[ih * s.w..][..s.w];
                    for (kj, sp) in spans.iter().enumerate() {
                        let (weight, dy) = (w[ki * s.kw + kj], &dy_row[sp.lo..sp.hi]);
                        dispatch!(axpy_scatter(dx_row, sp.start, s.stride[1], weight, dy));
                    }
                }
            }
        }
    });
}

/// `dw [c_out, 1, kh, kw]`. One task per output channel: for each tap, the products accumulate
/// lane-wise over samples, rows and column chunks in order, and the lanes are added at the end.
pub(crate) fn grad_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (k, m, pad) = (s.kh * s.kw, multiplier(s), PaddedInput::new(s));
    let ow_r = s.ow.next_multiple_of(LANES);
    let mut dw = vec![0f32; s.c_out * k];
    dw.par_chunks_mut(k).enumerate().for_each_init(
        || (Vec::new(), vec![0f32; s.oh * ow_r]),
        |(xp, dyp), (oc, dw)| {
            let mut acc = vec![[0f32; LANES]; k];
            for b in 0..s.n {
                pad.fill(s, &x[(b * s.c_in + oc / m) * s.in_plane()..][..s.in_plane()], xp);
                // dy with zero columns up to a whole chunk, so the padding lanes add nothing.
                pad_plane(&dy[(b * s.c_out + oc) * s.out_plane()..][..s.out_plane()], [s.oh, s.ow], [0, 0], [s.oh, ow_r], dyp);
                for (t, acc) in acc.iter_mut().enumerate() {
                    let at = pad.tap(s, t / s.kw, t % s.kw);
                    let step = [s.stride[0] * pad.width, s.stride[1]];
                    dispatch!(tap_dot(xp, at, step, dyp, ow_r, acc));
                }
            }
            for (d, lanes) in dw.iter_mut().zip(&acc) {
                *d = lanes.iter().sum();
            }
        },
    );
    dw
}
