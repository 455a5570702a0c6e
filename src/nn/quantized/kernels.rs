//! Integer kernels: u8 activations (centered by their zero point) times i8 weights (centered by
//! theirs), accumulated in i32. One portable source; on x86-64 CPUs with AVX2 the same loops are
//! compiled a second time with AVX2 enabled and picked at run time, since baseline x86-64 (SSE2)
//! has no 32-bit vector multiply. Integer arithmetic, so both builds give the same bits; the
//! f64 reference path checks them.

use rayon::prelude::*;

use crate::nn::Conv2dOptions;

/// Convolution accumulators `[N, O, OH, OW]` for centered input `[N, C, H, W]` (already padded
/// for non-zero padding modes, in which case `padding` is 0) and centered weights
/// `[O, C / groups, KH, KW]`. Out-of-bounds taps read 0, the centered zero point.
pub(crate) fn conv2d_accumulate(
    x: &[i32],
    x_shape: [usize; 4],
    w: &[i32],
    options: &Conv2dOptions,
    padding: [usize; 2],
) -> (Vec<i32>, [usize; 4]) {
    let [n, c, h, wd] = x_shape;
    let [o, cg, kh, kw] = options.weight_shape();
    let (g, og) = (options.groups, o / options.groups);
    let out_h = (h + 2 * padding[0] - options.dilation[0] * (kh - 1) - 1) / options.stride[0] + 1;
    let out_w = (wd + 2 * padding[1] - options.dilation[1] * (kw - 1) - 1) / options.stride[1] + 1;
    let (k, p) = (cg * kh * kw, out_h * out_w);
    let mut out = vec![0i32; n * o * p];
    out.par_chunks_mut(o * p).enumerate().for_each(|(b, out_b)| {
        let image = &x[b * c * h * wd..(b + 1) * c * h * wd];
        let mut col = vec![0i32; k * p];
        for group in 0..g {
            // im2col for this group's input channels.
            for ci in 0..cg {
                let plane = &image[(group * cg + ci) * h * wd..(group * cg + ci + 1) * h * wd];
                for ky in 0..kh {
                    for kx in 0..kw {
                        let row = &mut col[((ci * kh + ky) * kw + kx) * p..][..p];
                        for oy in 0..out_h {
                            let iy = (oy * options.stride[0] + ky * options.dilation[0]) as isize - padding[0] as isize;
                            for ox in 0..out_w {
                                let ix = (ox * options.stride[1] + kx * options.dilation[1]) as isize - padding[1] as isize;
                                let inside = iy >= 0 && (iy as usize) < h && ix >= 0 && (ix as usize) < wd;
                                row[oy * out_w + ox] = if inside { plane[iy as usize * wd + ix as usize] } else { 0 };
                            }
                        }
                    }
                }
            }
            let accs = &mut out_b[group * og * p..(group + 1) * og * p];
            let weights = &w[group * og * k..(group + 1) * og * k];
            // One image leaves the batch with nothing to split: split the output channels.
            if n == 1 {
                accs.par_chunks_mut(p).zip(weights.par_chunks(k)).for_each(|(acc, wrow)| accumulate_rows(acc, wrow, &col, p));
            } else {
                accs.chunks_mut(p).zip(weights.chunks(k)).for_each(|(acc, wrow)| accumulate_rows(acc, wrow, &col, p));
            }
        }
    });
    (out, [n, o, out_h, out_w])
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
fn accumulate_rows(acc: &mut [i32], wrow: &[i32], col: &[i32], p: usize) {
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
