//! Dense and grouped 2-d convolution as im2col + GEMM (the `gemm` crate, single-threaded per
//! call): per sample and group, with `col [K, P]` the im2col matrix (`K = c_in/groups * kh * kw`
//! rows, `P = oh * ow` columns) and `W [c_out/groups, K]`,
//!
//! - forward:      `y = W col`
//! - grad input:   `dx = col2im(W^T dy)`
//! - grad weight:  `dW = sum over samples of dy col^T` (`col^T` built directly, channels-last)
//!
//! The im2col matrices are built a tile of output rows at a time (`conv2d_im2col`). Threads take
//! whole (sample, group) tasks; the weight gradient is summed per fixed chunk of samples and the
//! chunks added in order, so no result depends on the number of threads.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::conv2d_im2col::{col2im, from_channels_last_taps, im2col, im2col_t, tiles, to_channels_last};
use super::conv2d_shape::ConvShape;
use super::conv2d_simd::add_assign;

/// The most partial weight gradients summed at the end; the batch is cut into this many chunks
/// (fewer for small batches or large weights), a number that depends only on the shapes.
const WEIGHT_GRAD_CHUNKS: usize = 8;

/// The most floats all partial weight gradients may hold together (64 MiB).
const PARTIAL_FLOATS: usize = 16 << 20;

/// A read-only matrix view: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
struct Mat<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> Mat<'a> {
    fn new(data: &'a [f32], rs: usize, cs: usize) -> Self {
        Self { data, rs, cs }
    }

    fn check(&self, rows: usize, cols: usize) {
        assert!(rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len(), "matrix view out of bounds");
    }
}

/// `dst [m, n]` (row stride `dst_rs`, column stride 1) `= lhs [m, k] rhs [k, n]`, or `+=` when
/// `accumulate`.
fn matmul(dst: &mut [f32], dst_rs: usize, [m, n, k]: [usize; 3], lhs: Mat, rhs: Mat, accumulate: bool) {
    // SAFETY: an initialized f32 is a valid MaybeUninit<f32>, and matmul_into only writes f32s.
    let dst = unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) };
    matmul_into(dst, dst_rs, [m, n, k], lhs, rhs, accumulate)
}

/// [`matmul`] into memory that need not be initialized unless `accumulate`: every element of
/// the `[m, n]` block is written.
fn matmul_into(dst: &mut [MaybeUninit<f32>], dst_rs: usize, [m, n, k]: [usize; 3], lhs: Mat, rhs: Mat, accumulate: bool) {
    assert!(m == 0 || n == 0 || (m - 1) * dst_rs + n <= dst.len(), "matmul: destination too small");
    lhs.check(m, k);
    rhs.check(k, n);
    // SAFETY: every index gemm touches was bounds-checked above; dst does not alias lhs or rhs
    // (a `&mut` and two `&` slices); with `accumulate` false gemm does not read dst.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().cast::<f32>(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr(),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The input of group `g` of sample `b`: `[c_in/groups, h, w]`.
fn input_group<'a>(s: &ConvShape, x: &'a [f32], b: usize, g: usize) -> &'a [f32] {
    let len = s.c_in_per_group() * s.in_plane();
    &x[(b * s.groups + g) * len..][..len]
}

/// The output (or output gradient) of group `g` of sample `b`: `[c_out/groups, oh * ow]`.
fn output_group<'a>(s: &ConvShape, y: &'a [f32], b: usize, g: usize) -> &'a [f32] {
    let len = s.c_out_per_group() * s.out_plane();
    &y[(b * s.groups + g) * len..][..len]
}

/// The weights of group `g`: `[c_out/groups, K]`.
fn weight_group<'a>(s: &ConvShape, w: &'a [f32], g: usize) -> &'a [f32] {
    let len = s.c_out_per_group() * s.col_rows();
    &w[g * len..][..len]
}

/// `y [n, c_out, oh, ow]`.
pub(crate) fn forward(s: &ConvShape, x: &[f32], w: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let (p, k, m) = (s.out_plane(), s.col_rows(), s.c_out_per_group());
    let len = s.n * s.c_out * p;
    // Not zeroed first: the products write every element (megabytes a call, a memset pass).
    let mut y = Vec::with_capacity(len);
    y.spare_capacity_mut()[..len].par_chunks_mut(m * p).enumerate().for_each_init(Vec::new, |col, (task, out)| {
        let (b, g) = (task / s.groups, task % s.groups);
        if let Some(bias) = bias {
            for (row, &v) in out.chunks_exact_mut(p).zip(&bias[g * m..(g + 1) * m]) {
                row.fill(MaybeUninit::new(v));
            }
        }
        let (x, w) = (input_group(s, x, b, g), Mat::new(weight_group(s, w, g), k, 1));
        if s.is_pointwise() {
            return matmul_into(out, p, [m, p, k], w, Mat::new(x, p, 1), bias.is_some());
        }
        // The tiles' products cover every output row.
        for rows in tiles(s) {
            let cols = rows.len() * s.ow;
            im2col(s, x, rows.clone(), col);
            matmul_into(&mut out[rows.start * s.ow..], p, [m, cols, k], w, Mat::new(col, cols, 1), bias.is_some());
        }
    });
    // SAFETY: every element was written above (each task's `[m, p]` block by its products,
    // over the bias where there is one).
    unsafe { y.set_len(len) };
    y
}

/// `dx [n, c_in, h, w]`.
pub(crate) fn grad_input(s: &ConvShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
    if let Some((transposed, flipped)) = as_forward_conv(s, w) {
        return forward(&transposed, dy, &flipped, None);
    }
    grad_input_col2im(s, w, dy)
}

/// A stride-1, undilated, ungrouped conv's input gradient is itself such a conv: of `dy`
/// with the weights flipped in space and transposed in channels, padded `k - 1 - p` at the
/// start (the end follows from the output size). That runs on the forward path (im2col of
/// `dy`, `[c_in, K] x [K, P]` products) instead of a `[K, c_out] x [c_out, P]` product
/// scattered back by col2im: the same multiplies, a better-shaped GEMM and no scatter.
fn as_forward_conv(s: &ConvShape, w: &[f32]) -> Option<(ConvShape, Vec<f32>)> {
    let plain = s.stride == [1, 1] && s.dilation == [1, 1] && s.groups == 1;
    if !plain || s.padding[0] >= s.kh || s.padding[1] >= s.kw {
        return None;
    }
    let (kh, kw) = (s.kh, s.kw);
    let transposed = ConvShape {
        n: s.n,
        c_in: s.c_out,
        h: s.oh,
        w: s.ow,
        c_out: s.c_in,
        kh,
        kw,
        stride: [1, 1],
        padding: [kh - 1 - s.padding[0], kw - 1 - s.padding[1]],
        dilation: [1, 1],
        groups: 1,
        oh: s.h,
        ow: s.w,
    };
    let mut flipped = vec![0f32; w.len()];
    for o in 0..s.c_out {
        for i in 0..s.c_in {
            for ky in 0..kh {
                for kx in 0..kw {
                    flipped[((i * s.c_out + o) * kh + kh - 1 - ky) * kw + kw - 1 - kx] = w[((o * s.c_in + i) * kh + ky) * kw + kx];
                }
            }
        }
    }
    Some((transposed, flipped))
}

/// `dx` as `col2im(W^T dy)`: any stride, dilation and groups.
fn grad_input_col2im(s: &ConvShape, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let (p, k, m) = (s.out_plane(), s.col_rows(), s.c_out_per_group());
    let mut dx = vec![0f32; s.n * s.c_in * s.in_plane()];
    dx.par_chunks_mut(s.c_in_per_group() * s.in_plane()).enumerate().for_each_init(Vec::new, |col, (task, dx)| {
        let (b, g) = (task / s.groups, task % s.groups);
        // W^T: element (r, o) is w[o * K + r].
        let w_t = Mat::new(weight_group(s, w, g), 1, k);
        let dy = output_group(s, dy, b, g);
        if s.is_pointwise() {
            return matmul(dx, p, [k, p, m], w_t, Mat::new(dy, p, 1), false);
        }
        for rows in tiles(s) {
            let cols = rows.len() * s.ow;
            col.resize(k * cols, 0.0);
            matmul(col, cols, [k, cols, m], w_t, Mat::new(&dy[rows.start * s.ow..], p, 1), false);
            col2im(s, col, rows, dx);
        }
    });
    dx
}

/// `dw [c_out, c_in/groups, kh, kw]`.
pub(crate) fn grad_weight(s: &ConvShape, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let (p, k, m) = (s.out_plane(), s.col_rows(), s.c_out_per_group());
    let chunks = (PARTIAL_FLOATS / (s.c_out * k)).clamp(1, WEIGHT_GRAD_CHUNKS);
    let chunk = s.n.div_ceil(chunks);
    let partials: Vec<Vec<f32>> = (0..s.n.div_ceil(chunk))
        .into_par_iter()
        .map_init(
            || (Vec::new(), Vec::new()),
            |(xt, col_t), c| {
                let mut dw = vec![0f32; s.c_out * k];
                let mut first = true; // the first product of a partial sets it, the others add to it
                for b in c * chunk..((c + 1) * chunk).min(s.n) {
                    for (g, dw) in dw.chunks_exact_mut(m * k).enumerate() {
                        let (x, dy) = (input_group(s, x, b, g), output_group(s, dy, b, g));
                        if s.is_pointwise() {
                            // [c_in/groups, P] read transposed: few rows, cheap to pack.
                            matmul(dw, k, [m, k, p], Mat::new(dy, p, 1), Mat::new(x, 1, p), !first);
                            continue;
                        }
                        to_channels_last(x, s.c_in_per_group(), s.in_plane(), xt);
                        for (t, rows) in tiles(s).enumerate() {
                            let cols = rows.len() * s.ow;
                            im2col_t(s, xt, rows.clone(), col_t);
                            let dy = Mat::new(&dy[rows.start * s.ow..], p, 1);
                            matmul(dw, k, [m, k, cols], dy, Mat::new(col_t, k, 1), !first || t > 0);
                        }
                    }
                    first = false;
                }
                dw
            },
        )
        .collect();
    let mut partials = partials.into_iter();
    let mut dw = partials.next().expect("a batch of at least one sample");
    for partial in partials {
        add_assign(&mut dw, &partial);
    }
    if s.is_pointwise() { dw } else { from_channels_last_taps(s, &dw) }
}
