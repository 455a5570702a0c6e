//! The integer kernel of a 2-d transposed convolution, as a product then a scatter: per image
//! and group, `col[(j, ky, kx), p] = sum_c w[c, j, ky, kx] * x[c, p]` over the input positions
//! `p` (the conv kernel's row accumulation, contiguous and vectorized), then each `col` row is
//! added into the output positions its tap reaches (col2im). A stride `s` costs no more than
//! stride 1, unlike the zero-insertion form, which multiplies `s^2` times more zeros. Integer
//! arithmetic, so the order of the sums does not change a bit.

use std::ops::Range;

use rayon::prelude::*;

use super::conv::accumulate_rows;

/// A 2-d transposed convolution's geometry, as the kernel needs it (PyTorch's arguments):
/// the weight's shape `[C_in, O / groups, KH, KW]`, the groups, and per axis the stride,
/// padding, dilation and output padding, in that order.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TransposeGeometry {
    pub weight_shape: [usize; 4],
    pub groups: usize,
    pub axes: [[usize; 2]; 4],
}

/// The output size along one axis: `(in - 1) * s - 2p + d (k - 1) + output_padding + 1`.
fn out_size(size: usize, o: &TransposeGeometry, axis: usize) -> usize {
    let [stride, padding, dilation, output_padding] = o.axes.map(|a| a[axis]);
    (size - 1) * stride + dilation * (o.weight_shape[2 + axis] - 1) + output_padding + 1 - 2 * padding
}

/// The input indices `i < size` whose tap at `offset = k * dilation` lands inside the output:
/// `0 <= i * stride + offset - padding < out`.
fn taps(size: usize, out: usize, offset: usize, padding: usize, stride: usize) -> Range<usize> {
    let (s, shift) = (stride as isize, offset as isize - padding as isize);
    let first = (-shift).div_euclid(s) + isize::from((-shift).rem_euclid(s) != 0); // ceil(-shift / s)
    let end = (out as isize - 1 - shift).div_euclid(s) + 1; // floor((out - 1 - shift) / s) + 1
    let first = first.max(0) as usize;
    first..(end.clamp(0, size as isize) as usize).max(first)
}

/// Accumulators `[N, O, OH, OW]` for centered input `[N, C, H, W]` and centered weights
/// `[C, O / groups, KH, KW]`; zeros padding only, as PyTorch's transposed convs.
pub(crate) fn conv_transpose2d_accumulate(
    x: &[i32],
    x_shape: [usize; 4],
    w: &[i32],
    options: &TransposeGeometry,
) -> (Vec<i32>, [usize; 4]) {
    let [n, c, h, wd] = x_shape;
    let [_, og, kh, kw] = options.weight_shape;
    let (o, g, cg) = (og * options.groups, options.groups, c / options.groups);
    let (out_h, out_w) = (out_size(h, options, 0), out_size(wd, options, 1));
    let (p_in, p_out, taps_per_channel) = (h * wd, out_h * out_w, kh * kw);
    // Weights as rows `(group, j, ky, kx)` over the group's input channels, the operand order
    // of the row accumulation.
    let mut rows = vec![0i32; g * og * taps_per_channel * cg];
    for (i, &wv) in w.iter().enumerate() {
        let (ci, r) = (i / (og * taps_per_channel), i % (og * taps_per_channel));
        rows[((ci / cg) * og * taps_per_channel + r) * cg + ci % cg] = wv;
    }
    let mut out = vec![0i32; n * o * p_out];
    out.par_chunks_mut(o * p_out).enumerate().for_each(|(b, out_b)| {
        let mut col = vec![0i32; og * taps_per_channel * p_in];
        for group in 0..g {
            let x_g = &x[(b * c + group * cg) * p_in..][..cg * p_in];
            let rows_g = &rows[group * og * taps_per_channel * cg..][..og * taps_per_channel * cg];
            let planes = &mut out_b[group * og * p_out..(group + 1) * og * p_out];
            col.fill(0);
            // One image leaves the batch with nothing to split: split the rows and the planes.
            if n == 1 {
                col.par_chunks_mut(p_in).zip(rows_g.par_chunks(cg)).for_each(|(acc, wrow)| accumulate_rows(acc, wrow, x_g, p_in));
                planes
                    .par_chunks_mut(p_out)
                    .zip(col.par_chunks(taps_per_channel * p_in))
                    .for_each(|(plane, col_j)| scatter(plane, col_j, [h, wd], [out_h, out_w], options));
            } else {
                col.chunks_mut(p_in).zip(rows_g.chunks(cg)).for_each(|(acc, wrow)| accumulate_rows(acc, wrow, x_g, p_in));
                planes
                    .chunks_mut(p_out)
                    .zip(col.chunks(taps_per_channel * p_in))
                    .for_each(|(plane, col_j)| scatter(plane, col_j, [h, wd], [out_h, out_w], options));
            }
        }
    });
    (out, [n, o, out_h, out_w])
}

/// col2im for one output plane: adds each tap's row of products (`KH * KW` rows over the
/// input positions) into the output positions the tap reaches.
fn scatter(plane: &mut [i32], col: &[i32], [h, w]: [usize; 2], [out_h, out_w]: [usize; 2], o: &TransposeGeometry) {
    let kw = o.weight_shape[3];
    let [stride, padding, dilation, _] = o.axes;
    for (t, products) in col.chunks(h * w).enumerate() {
        let (dy, dx) = ((t / kw) * dilation[0], (t % kw) * dilation[1]);
        let cols = taps(w, out_w, dx, padding[1], stride[1]);
        for iy in taps(h, out_h, dy, padding[0], stride[0]) {
            let oy = iy * stride[0] + dy - padding[0];
            let row = &mut plane[oy * out_w..(oy + 1) * out_w];
            let src = &products[iy * w..(iy + 1) * w];
            for ix in cols.clone() {
                row[ix * stride[1] + dx - padding[1]] += src[ix];
            }
        }
    }
}
