//! The im2col matrices the GEMM convolution multiplies (`conv2d_gemm`), built a tile of output
//! rows at a time, and their inverse (col2im) for the input gradient.

use super::conv2d_shape::{ColSpan, ConvShape};
use super::conv2d_simd::add_assign;

/// The size, in floats, of the im2col tile built at a time: whole output rows, enough of them to
/// keep a GEMM busy, few enough that the tile stays in the L2 cache between being written and
/// being read (a whole sample's im2col is megabytes and would go to memory and back).
const TILE_FLOATS: usize = 64 * 1024;

/// Output rows per im2col tile.
fn tile_rows(s: &ConvShape) -> usize {
    (TILE_FLOATS / (s.col_rows() * s.ow)).clamp(1, s.oh)
}

/// The output row ranges of the tiles, in order.
pub(crate) fn tiles(s: &ConvShape) -> impl Iterator<Item = std::ops::Range<usize>> {
    let rows = tile_rows(s);
    let oh = s.oh;
    (0..oh).step_by(rows).map(move |r| r..(r + rows).min(oh))
}

/// The im2col matrix `[K, rows * ow]` of output rows `rows` of one group of one sample
/// (`x [c_in/groups, h, w]`), into `col`.
pub(crate) fn im2col(s: &ConvShape, x: &[f32], rows: std::ops::Range<usize>, col: &mut Vec<f32>) {
    let p = rows.len() * s.ow;
    col.resize(s.col_rows() * p, 0.0);
    let mut col_rows = col.chunks_exact_mut(p);
    for c in 0..s.c_in_per_group() {
        let x = &x[c * s.in_plane()..][..s.in_plane()];
        for ki in 0..s.kh {
            for kj in 0..s.kw {
                let sp = s.col_span(kj);
                let row = col_rows.next().expect("one row per (channel, ki, kj)");
                if same_width_unit_stride(s) {
                    copy_shifted_plane(s, x, rows.clone(), ki, sp, row);
                    continue;
                }
                for (oh, seg) in rows.clone().zip(row.chunks_exact_mut(s.ow)) {
                    let Some(ih) = s.in_row(oh, ki) else {
                        seg.fill(0.0);
                        continue;
                    };
                    let x_row = &x[ih * s.w..][..s.w];
                    seg[..sp.lo].fill(0.0);
                    seg[sp.hi..].fill(0.0);
                    let seg = &mut seg[sp.lo..sp.hi];
                    if s.stride[1] == 1 {
                        seg.copy_from_slice(&x_row[sp.start..sp.start + sp.len()]);
                    } else {
                        for (i, v) in seg.iter_mut().enumerate() {
                            *v = x_row[sp.start + i * s.stride[1]];
                        }
                    }
                }
            }
        }
    }
}

/// Stride 1 with as many output as input columns (a "same" padded conv): tap `(ki, kj)`'s
/// im2col row is the input plane shifted by a constant, so the valid rows are one copy.
fn same_width_unit_stride(s: &ConvShape) -> bool {
    s.stride == [1, 1] && s.ow == s.w
}

/// One im2col row of [`same_width_unit_stride`] convs: the span from the first valid output
/// row's first valid column to the last valid row's last copied in one run (a copy per output
/// row cost more in calls than in bytes on 14- and 28-wide planes), then the columns that
/// read the padding, which that run filled with neighbouring rows' values, set to zero.
fn copy_shifted_plane(s: &ConvShape, x: &[f32], rows: std::ops::Range<usize>, ki: usize, sp: ColSpan, row: &mut [f32]) {
    let ow = s.ow;
    // Stride 1: the valid output rows are one range.
    let valid = |oh: &usize| s.in_row(*oh, ki).is_some();
    let (Some(first), Some(last)) = (rows.clone().find(valid), rows.clone().rev().find(valid)) else {
        row.fill(0.0);
        return;
    };
    let (r0, r1) = (first - rows.start, last - rows.start);
    row[..r0 * ow].fill(0.0);
    row[(r1 + 1) * ow..].fill(0.0);
    if sp.len() == 0 {
        row[r0 * ow..(r1 + 1) * ow].fill(0.0);
        return;
    }
    let (dst, end) = (r0 * ow + sp.lo, r1 * ow + sp.hi);
    let src = s.in_row(first, ki).expect("a valid row") * s.w + sp.start;
    row[dst..end].copy_from_slice(&x[src..src + (end - dst)]);
    for r in r0..=r1 {
        let out_row = &mut row[r * ow..(r + 1) * ow];
        out_row[..sp.lo].iter_mut().for_each(|v| *v = 0.0);
        out_row[sp.hi..].iter_mut().for_each(|v| *v = 0.0);
    }
}

/// `x [c, hw]` transposed to channels-last `[hw, c]`, into `out`, in square blocks so that
/// both the reads and the writes stay within a few cache lines.
pub(crate) fn to_channels_last(x: &[f32], c: usize, hw: usize, out: &mut Vec<f32>) {
    const BLOCK: usize = 16;
    out.resize(c * hw, 0.0);
    for c0 in (0..c).step_by(BLOCK) {
        for i0 in (0..hw).step_by(BLOCK) {
            for ci in c0..(c0 + BLOCK).min(c) {
                for i in i0..(i0 + BLOCK).min(hw) {
                    out[i * c + ci] = x[ci * hw + i];
                }
            }
        }
    }
}

/// The transposed im2col matrix of output rows `rows`, with its columns in channels-last order:
/// `[rows * ow, kh * kw * c]`, each row the `c` channels of every tap in turn, copied whole from
/// the channels-last input `xt [h, w, c]`. The weight gradient reduces over output pixels, so it
/// needs this transposed layout; built from channels-last data every copy is a contiguous run.
pub(crate) fn im2col_t(s: &ConvShape, xt: &[f32], rows: std::ops::Range<usize>, col_t: &mut Vec<f32>) {
    let (c, k) = (s.c_in_per_group(), s.col_rows());
    col_t.clear();
    col_t.resize(rows.len() * s.ow * k, 0.0);
    let (sw, dw, pw) = (s.stride[1], s.dilation[1], s.padding[1]);
    for (p, row) in col_t.chunks_exact_mut(k).enumerate() {
        let (oh, ow) = (rows.start + p / s.ow, p % s.ow);
        for (ki, row) in row.chunks_exact_mut(s.kw * c).enumerate() {
            let Some(ih) = s.in_row(oh, ki) else { continue };
            // Undilated taps all inside the row: channels-last, they are one contiguous run.
            let first = (ow * sw).wrapping_sub(pw);
            if dw == 1 && first < s.w && first + s.kw <= s.w {
                row.copy_from_slice(&xt[(ih * s.w + first) * c..][..s.kw * c]);
                continue;
            }
            for (kj, tap) in row.chunks_exact_mut(c).enumerate() {
                let iw = (ow * sw + kj * dw).wrapping_sub(pw);
                if iw < s.w {
                    tap.copy_from_slice(&xt[(ih * s.w + iw) * c..][..c]);
                }
            }
        }
    }
}

/// `[c_out, kh, kw, c]` (the channels-last weight gradient) to `[c_out, c, kh, kw]`.
pub(crate) fn from_channels_last_taps(s: &ConvShape, dw: &[f32]) -> Vec<f32> {
    let (c, taps) = (s.c_in_per_group(), s.kh * s.kw);
    let mut out = vec![0f32; dw.len()];
    for (src, dst) in dw.chunks_exact(c * taps).zip(out.chunks_exact_mut(c * taps)) {
        for t in 0..taps {
            for ci in 0..c {
                dst[ci * taps + t] = src[t * c + ci];
            }
        }
    }
    out
}

/// Adds the im2col-shaped tile `col` (output rows `rows`) back onto the input positions it was
/// read from (`dx [c_in/groups, h, w]`), in a fixed order.
pub(crate) fn col2im(s: &ConvShape, col: &[f32], rows: std::ops::Range<usize>, dx: &mut [f32]) {
    let mut col_rows = col.chunks_exact(rows.len() * s.ow);
    for c in 0..s.c_in_per_group() {
        let dx = &mut dx[c * s.in_plane()..][..s.in_plane()];
        for ki in 0..s.kh {
            for kj in 0..s.kw {
                let sp = s.col_span(kj);
                let row = col_rows.next().expect("one row per (channel, ki, kj)");
                for (oh, seg) in rows.clone().zip(row.chunks_exact(s.ow)) {
                    let Some(ih) = s.in_row(oh, ki) else { continue };
                    let dx_row = &mut dx[ih * s.w..][..s.w];
                    let seg = &seg[sp.lo..sp.hi];
                    if s.stride[1] == 1 {
                        add_assign(&mut dx_row[sp.start..sp.start + seg.len()], seg);
                    } else {
                        for (i, v) in seg.iter().enumerate() {
                            dx_row[sp.start + i * s.stride[1]] += v;
                        }
                    }
                }
            }
        }
    }
}
