//! Portable integer kernels: u8 activations (centered by their zero point) times i8 weights
//! (centered by theirs), accumulated in i32. Written for clarity first; the SIMD versions
//! belong to the performance work and must match these bit for bit.

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
            for oc in group * og..(group + 1) * og {
                let wrow = &w[oc * k..(oc + 1) * k];
                let acc = &mut out_b[oc * p..(oc + 1) * p];
                for (kk, &wv) in wrow.iter().enumerate() {
                    if wv == 0 {
                        continue;
                    }
                    for (a, &xv) in acc.iter_mut().zip(&col[kk * p..(kk + 1) * p]) {
                        *a += wv * xv;
                    }
                }
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
            *a = w[o * in_features..(o + 1) * in_features].iter().zip(xr).map(|(&wv, &xv)| wv * xv).sum();
        }
    });
    out
}
