//! Integer kernels: u8 activations (centered by their zero point) times i8 weights (centered by
//! theirs), accumulated in i32. One portable source; on x86-64 CPUs with AVX2 the same loops are
//! compiled a second time with AVX2 enabled and picked at run time, since baseline x86-64 (SSE2)
//! has no 32-bit vector multiply. Integer arithmetic, so both builds give the same bits; the
//! f64 reference path checks them.

use rayon::prelude::*;

use crate::nn::{Conv2dOptions, Conv3dOptions};

/// A convolution over three spatial axes `[D, H, W]`: 3-d convs as they are, 2-d ones with depth
/// 1, 1-d ones (which run as 2-d) with depth and height 1. One kernel, so one loop to keep exact.
pub(crate) struct Geometry3 {
    pub out_channels: usize,
    pub groups: usize,
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dilation: [usize; 3],
}

impl From<&Conv2dOptions> for Geometry3 {
    fn from(o: &Conv2dOptions) -> Self {
        let lift = |[a, b]: [usize; 2]| [1, a, b];
        Self {
            out_channels: o.out_channels,
            groups: o.groups,
            kernel: lift(o.kernel_size),
            stride: lift(o.stride),
            dilation: lift(o.dilation),
        }
    }
}

impl From<&Conv3dOptions> for Geometry3 {
    fn from(o: &Conv3dOptions) -> Self {
        Self { out_channels: o.out_channels, groups: o.groups, kernel: o.kernel_size, stride: o.stride, dilation: o.dilation }
    }
}

/// The output size along one axis.
fn out_size(size: usize, padding: usize, kernel: usize, stride: usize, dilation: usize) -> usize {
    (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
}

/// Convolution accumulators `[N, O, OD, OH, OW]` for centered input `[N, C, D, H, W]` (already
/// padded for non-zero padding modes, in which case `padding` is 0) and centered weights
/// `[O, C / groups, KD, KH, KW]`. Out-of-bounds taps read 0, the centered zero point. Works one
/// output depth slice at a time (im2col of `C / groups * KD * KH * KW` rows by `OH * OW`), so
/// memory stays that of a 2-d conv.
pub(crate) fn conv_accumulate(
    x: &[i32],
    x_shape: [usize; 5],
    w: &[i32],
    geometry: &Geometry3,
    padding: [usize; 3],
) -> (Vec<i32>, [usize; 5]) {
    let [n, c, d, h, wd] = x_shape;
    let Geometry3 { out_channels: o, groups: g, kernel: [kd, kh, kw], stride, dilation } = *geometry;
    let (cg, og) = (c / g, o / g);
    let out_d = out_size(d, padding[0], kd, stride[0], dilation[0]);
    let out_h = out_size(h, padding[1], kh, stride[1], dilation[1]);
    let out_w = out_size(wd, padding[2], kw, stride[2], dilation[2]);
    let (k, plane) = (cg * kd * kh * kw, out_h * out_w);
    let p = out_d * plane;
    let mut out = vec![0i32; n * o * p];
    out.par_chunks_mut(o * p).enumerate().for_each(|(b, out_b)| {
        let image = &x[b * c * d * h * wd..(b + 1) * c * d * h * wd];
        let mut col = vec![0i32; k * plane];
        for group in 0..g {
            for oz in 0..out_d {
                // im2col for this group's input channels at output depth `oz`.
                for ci in 0..cg {
                    let volume = &image[(group * cg + ci) * d * h * wd..(group * cg + ci + 1) * d * h * wd];
                    for kz in 0..kd {
                        let iz = (oz * stride[0] + kz * dilation[0]) as isize - padding[0] as isize;
                        let depth_inside = iz >= 0 && (iz as usize) < d;
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let row = &mut col[(((ci * kd + kz) * kh + ky) * kw + kx) * plane..][..plane];
                                if !depth_inside {
                                    row.fill(0);
                                    continue;
                                }
                                let slice = &volume[iz as usize * h * wd..][..h * wd];
                                for oy in 0..out_h {
                                    let iy = (oy * stride[1] + ky * dilation[1]) as isize - padding[1] as isize;
                                    for ox in 0..out_w {
                                        let ix = (ox * stride[2] + kx * dilation[2]) as isize - padding[2] as isize;
                                        let inside = iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < wd;
                                        row[oy * out_w + ox] = if inside { slice[iy as usize * wd + ix as usize] } else { 0 };
                                    }
                                }
                            }
                        }
                    }
                }
                let accs = &mut out_b[group * og * p..(group + 1) * og * p];
                let weights = &w[group * og * k..(group + 1) * og * k];
                let slice = |acc: &mut [i32], wrow: &[i32]| accumulate_rows(&mut acc[oz * plane..(oz + 1) * plane], wrow, &col, plane);
                // One image leaves the batch with nothing to split: split the output channels.
                if n == 1 {
                    accs.par_chunks_mut(p).zip(weights.par_chunks(k)).for_each(|(acc, wrow)| slice(acc, wrow));
                } else {
                    accs.chunks_mut(p).zip(weights.chunks(k)).for_each(|(acc, wrow)| slice(acc, wrow));
                }
            }
        }
    });
    (out, [n, o, out_d, out_h, out_w])
}

/// Linear accumulators `[rows, O]` for centered input `[rows, I]` and centered weights `[O, I]`.
pub(crate) fn linear_accumulate(x: &[i32], rows: usize, w: &[i32], out_features: usize, in_features: usize) -> Vec<i32> {
    let mut out = vec![0i32; rows * out_features];
    out.par_chunks_mut(out_features).enumerate().for_each(|(r, out_r)| {
        let xr = &x[r * in_features..(r + 1) * in_features];
        for (o, a) in out_r.iter_mut().enumerate() {
            *a = dot(&w[o * in_features..(o + 1) * in_features], xr);
        }
    });
    out
}

/// `acc[j] += sum_k wrow[k] * col[k * p + j]`: one output channel's accumulators.
pub(crate) fn accumulate_rows(acc: &mut [i32], wrow: &[i32], col: &[i32], p: usize) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, checked on the line above.
        return unsafe { accumulate_rows_avx2(acc, wrow, col, p) };
    }
    accumulate_rows_portable(acc, wrow, col, p)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn accumulate_rows_avx2(acc: &mut [i32], wrow: &[i32], col: &[i32], p: usize) {
    accumulate_rows_portable(acc, wrow, col, p)
}

#[inline(always)]
fn accumulate_rows_portable(acc: &mut [i32], wrow: &[i32], col: &[i32], p: usize) {
    for (kk, &wv) in wrow.iter().enumerate() {
        if wv == 0 {
            continue;
        }
        for (a, &xv) in acc.iter_mut().zip(&col[kk * p..(kk + 1) * p]) {
            *a += wv * xv;
        }
    }
}

/// `sum_i a[i] * b[i]` in i32.
fn dot(a: &[i32], b: &[i32]) -> i32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present, checked on the line above.
        return unsafe { dot_avx2(a, b) };
    }
    dot_portable(a, b)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dot_avx2(a: &[i32], b: &[i32]) -> i32 {
    dot_portable(a, b)
}

#[inline(always)]
fn dot_portable(a: &[i32], b: &[i32]) -> i32 {
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}
