//! Integer conv kernels: im2col (u8, straight into the packed blocks of [`super::gemm`]) then
//! the u8 x i8 GEMM there; the transposed conv ([`super::conv_transpose`]) runs its product on
//! the same im2col and GEMM. Integer arithmetic, so every build gives the same bits; the f64
//! reference path checks them.

use std::borrow::Cow;

use rayon::prelude::*;

use super::depthwise::{DepthwisePlan, depthwise};
use super::gemm::{GemmPath, NR, PackedWeights, block_width};
use super::requantize::{Requantizer, min_tasks};

/// A convolution over three spatial axes `[D, H, W]`: 3-d convs as they are, 2-d ones with depth
/// 1, 1-d ones (which run as 2-d) with depth and height 1. One kernel, so one loop to keep exact.
/// A transposed conv's geometry reads the same, its padding taken off the output.
pub(crate) struct Geometry3 {
    pub out_channels: usize,
    pub groups: usize,
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dilation: [usize; 3],
    /// Zeros padding, 0 where other padding modes already padded the input.
    pub padding: [usize; 3],
}

/// The output size along one axis.
fn out_size(size: usize, padding: usize, kernel: usize, stride: usize, dilation: usize) -> usize {
    (size + 2 * padding - dilation * (kernel - 1) - 1) / stride + 1
}

/// The u8 outputs `[N, O, OD, OH, OW]` of a conv on u8 input `[N, C, D, H, W]` with zero point
/// `zx` (already padded for non-zero padding modes, in which case the geometry's padding is 0) and the packed
/// weights `[O, C / groups, KD, KH, KW]`: im2col into the GEMM's packed activation blocks, one
/// block of output positions at a time (out-of-bounds taps read `zx`, which the zero-point
/// correction turns into 0), the integer GEMM on `path`, and each row of accumulators
/// requantized as it leaves the tile. Images run in parallel; a single image splits its
/// (group, column block) pairs. Each output element is one thread's sum.
pub(crate) fn conv_forward(
    x: &[u8],
    x_shape: [usize; 5],
    zx: u8,
    packed: &PackedWeights,
    geometry: &Geometry3,
    path: GemmPath,
    requantizer: &Requantizer,
) -> (Vec<u8>, [usize; 5]) {
    let [n, c, d, h, wd] = x_shape;
    let Geometry3 { out_channels: o, groups: g, kernel, stride, dilation, padding } = *geometry;
    let out = [
        out_size(d, padding[0], kernel[0], stride[0], dilation[0]),
        out_size(h, padding[1], kernel[1], stride[1], dilation[1]),
        out_size(wd, padding[2], kernel[2], stride[2], dilation[2]),
    ];
    let p = out.iter().product::<usize>();
    let og = o / g;
    debug_assert_eq!(packed.rows(), og);
    // Zeros padding materialized as the zero point, so that every tap is inside.
    let padded_dims = [d + 2 * padding[0], h + 2 * padding[1], wd + 2 * padding[2]];
    fn pad<'a>(image: &'a [u8], c: usize, dims: [usize; 3], padding: [usize; 3], zx: u8) -> Cow<'a, [u8]> {
        if padding == [0; 3] { Cow::Borrowed(image) } else { Cow::Owned(pad_constant(image, c, dims, padding, zx)) }
    }
    let cols = Im2col { c: c / g, dims: padded_dims, kernel, stride, dilation, out };
    let group_len = cols.c * padded_dims.iter().product::<usize>();
    let offsets = cols.offsets();
    if cols.c == 1 && og == 1 {
        let plan = DepthwisePlan::new([d, h, wd], padding, kernel, stride, dilation, out);
        let values = depthwise(x, &plan, zx, packed.source(), requantizer, [n, c]);
        return (values, [n, o, out[0], out[1], out[2]]);
    }
    let blocks: Vec<usize> = (0..p).step_by(NR).collect();
    let mut values = vec![0u8; n * o * p];
    if n == 1 {
        let x = pad(x, c, [d, h, wd], padding, zx);
        let tiles: Vec<Vec<u8>> = (0..g * blocks.len())
            .into_par_iter()
            .with_min_len(min_tasks(og * NR * packed.kq() * 4))
            .map(|t| {
                let (group, p0) = (t / blocks.len(), blocks[t % blocks.len()]);
                let (width, valid) = (block_width(p0, p), (p - p0).min(NR));
                let mut buf = vec![0u8; packed.block_len(width)];
                cols.block(&x[group * group_len..][..group_len], &offsets[p0..p0 + valid], width, packed.kq(), &mut buf);
                let mut tile = vec![0u8; og * valid];
                packed.block_product(path, group, &buf, width, valid, |r, acc, correction| {
                    requantizer.corrected_row(group * og + r, acc, correction, &mut tile[r * valid..][..valid])
                });
                tile
            })
            .collect();
        for (t, tile) in tiles.iter().enumerate() {
            let (group, p0) = (t / blocks.len(), blocks[t % blocks.len()]);
            let valid = (p - p0).min(NR);
            for (r, row) in tile.chunks_exact(valid).enumerate() {
                values[(group * og + r) * p + p0..][..valid].copy_from_slice(row);
            }
        }
    } else {
        let min_samples = min_tasks(o * p * packed.kq() * 4);
        values.par_chunks_mut(o * p).zip(x.par_chunks(c * d * h * wd)).with_min_len(min_samples).for_each(|(out_b, image)| {
            let mut buf = vec![0u8; packed.block_len(NR)];
            let image = pad(image, c, [d, h, wd], padding, zx);
            for group in 0..g {
                let channels = &image[group * group_len..][..group_len];
                let planes = &mut out_b[group * og * p..(group + 1) * og * p];
                for &p0 in &blocks {
                    let (width, valid) = (block_width(p0, p), (p - p0).min(NR));
                    cols.block(channels, &offsets[p0..p0 + valid], width, packed.kq(), &mut buf);
                    packed.block_product(path, group, &buf, width, valid, |r, acc, correction| {
                        requantizer.corrected_row(group * og + r, acc, correction, &mut planes[r * p + p0..][..valid])
                    });
                }
            }
        });
    }
    (values, [n, o, out[0], out[1], out[2]])
}

/// The im2col of one group of one image, padded (so every tap is inside), written straight into
/// the GEMM's packed block layout `[kq][width][4]`: row `k = ((ci * KD + kz) * KH + ky) * KW + kx`,
/// column `p = (oz * OH + oy) * OW + ox`.
pub(super) struct Im2col {
    /// Input channels per group.
    pub c: usize,
    /// The padded input's `[D, H, W]`.
    pub dims: [usize; 3],
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dilation: [usize; 3],
    pub out: [usize; 3],
}

impl Im2col {
    /// Each output position's first tap in a padded channel volume, in column order.
    pub(super) fn offsets(&self) -> Vec<usize> {
        let [_, h, w] = self.dims;
        let [od, oh, ow] = self.out;
        let mut offsets = Vec::with_capacity(od * oh * ow);
        for z in 0..od {
            for y in 0..oh {
                let row = (z * self.stride[0] * h + y * self.stride[1]) * w;
                offsets.extend((0..ow).map(|x| row + x * self.stride[2]));
            }
        }
        offsets
    }

    /// The columns whose first taps are at `offsets` (at most `width`; the rest of the block is 0)
    /// of `channels` (`[C / groups, D, H, W]`, padded).
    pub(super) fn block(&self, channels: &[u8], offsets: &[usize], width: usize, kq: usize, buf: &mut [u8]) {
        let [d, h, w] = self.dims;
        let [kd, kh, kw] = self.kernel;
        let valid = offsets.len();
        // Runs of columns reading consecutive bytes (the parts of output rows in the block when
        // the stride along W is 1): a copy per run and tap instead of a gather per byte.
        let mut runs = [(0usize, 0usize); NR];
        let mut count = 0;
        if offsets[valid - 1] - offsets[0] == valid - 1 {
            (runs[0], count) = ((0, valid), 1); // a 1x1 stride-1 conv, or one output row
        } else {
            for (j, &o) in offsets.iter().enumerate() {
                if count > 0 && offsets[runs[count - 1].0] + runs[count - 1].1 == o {
                    runs[count - 1].1 += 1;
                } else {
                    (runs[count], count) = ((j, 1), count + 1);
                }
            }
        }
        let runs = &runs[..count];
        let gather = count * 4 > valid; // runs under 4 columns on average: a byte gather is cheaper
        // Four rows of K gathered contiguously (the columns past `valid` stay 0), then
        // interleaved into one quad row of `buf`.
        let mut rows = [[0u8; NR]; 4];
        let mut k = 0;
        for ci in 0..self.c {
            for kz in 0..kd {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let tap = ((ci * d + kz * self.dilation[0]) * h + ky * self.dilation[1]) * w + kx * self.dilation[2];
                        let src = &channels[tap..];
                        if gather {
                            rows[k % 4][..valid].iter_mut().zip(offsets).for_each(|(v, &o)| *v = src[o]);
                        } else {
                            for &(start, len) in runs {
                                rows[k % 4][start..start + len].copy_from_slice(&src[offsets[start]..offsets[start] + len]);
                            }
                        }
                        if k % 4 == 3 {
                            interleave4(&rows, width, &mut buf[(k / 4) * width * 4..][..width * 4]);
                        }
                        k += 1;
                    }
                }
            }
        }
        if k % 4 != 0 {
            rows[k % 4..].iter_mut().for_each(|r| r.fill(0));
            interleave4(&rows, width, &mut buf[(k / 4) * width * 4..][..width * 4]);
        }
        debug_assert_eq!(k.div_ceil(4), kq);
    }
}

/// `[C, D, H, W]` padded by `padding` on both sides of each spatial axis with `value`.
fn pad_constant(image: &[u8], c: usize, [d, h, w]: [usize; 3], [pd, ph, pw]: [usize; 3], value: u8) -> Vec<u8> {
    let (dp, hp, wp) = (d + 2 * pd, h + 2 * ph, w + 2 * pw);
    let mut out = vec![value; c * dp * hp * wp];
    for ci in 0..c {
        for z in 0..d {
            for y in 0..h {
                let src = &image[((ci * d + z) * h + y) * w..][..w];
                out[((ci * dp + z + pd) * hp + y + ph) * wp + pw..][..w].copy_from_slice(src);
            }
        }
    }
    out
}

/// `dst[4 j + t] = rows[t][j]` for `j < width` (a multiple of 16).
fn interleave4(rows: &[[u8; NR]; 4], width: usize, dst: &mut [u8]) {
    debug_assert!(width.is_multiple_of(16) && width <= NR && dst.len() == width * 4);
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        for j in (0..width).step_by(16) {
            // SAFETY: SSE2 is part of the x86-64 baseline. `j + 16 <= width <= NR` bounds the loads
            // from each row, and `4 j + 64 <= 4 width = dst.len()` the stores; all unaligned.
            unsafe {
                let [a, b, c, d] = [0, 1, 2, 3].map(|t| _mm_loadu_si128(rows[t].as_ptr().add(j).cast()));
                let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
                let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
                let out = dst.as_mut_ptr().add(4 * j);
                _mm_storeu_si128(out.cast(), _mm_unpacklo_epi16(ab_lo, cd_lo));
                _mm_storeu_si128(out.add(16).cast(), _mm_unpackhi_epi16(ab_lo, cd_lo));
                _mm_storeu_si128(out.add(32).cast(), _mm_unpacklo_epi16(ab_hi, cd_hi));
                _mm_storeu_si128(out.add(48).cast(), _mm_unpackhi_epi16(ab_hi, cd_hi));
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for (j, quad) in dst.chunks_exact_mut(4).enumerate() {
        quad.copy_from_slice(&[rows[0][j], rows[1][j], rows[2][j], rows[3][j]]);
    }
}
