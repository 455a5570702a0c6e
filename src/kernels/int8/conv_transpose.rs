//! The integer kernel of a transposed convolution over three spatial axes `[D, H, W]`, as a
//! product then a scatter. Per image and group, `col[(j, tap), p] = sum_c (w[c, j, tap] - z_w) *
//! (x[c, p] - z_x)` over the input positions `p` is a 1x1 convolution, so it runs on the same
//! packed u8 x i8 GEMM as every other int8 conv (its rows are the `(j, tap)` pairs); then each
//! `col` row is added into the output positions its tap reaches (col2im), and each output plane
//! is requantized. A stride `s` costs no more than stride 1, unlike the zero-insertion form,
//! which multiplies `s^3` times more zeros. Integer arithmetic, so the order of the sums does not
//! change a bit.

use std::ops::Range;

use rayon::prelude::*;

use super::conv::{Geometry3, Im2col};
use super::gemm::{GemmPath, MR, NR, PackedWeights, block_width};
use super::requantize::{Requantizer, min_tasks};

/// The tasks one image's product is split into, at least: when its input positions make fewer
/// column blocks, runs of rows split too.
const MIN_SPLIT: usize = 8;

/// The output size along one axis: `(in - 1) * s - 2p + d (k - 1) + output_padding + 1`.
fn out_size(size: usize, geometry: &Geometry3, output_padding: [usize; 3], axis: usize) -> usize {
    let g = geometry;
    (size - 1) * g.stride[axis] + g.dilation[axis] * (g.kernel[axis] - 1) + output_padding[axis] + 1 - 2 * g.padding[axis]
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

/// A transposed conv's weights `[C, O / groups, KD, KH, KW]` with one zero point per output
/// channel, as the GEMM's rows: per group, one row `(j, tap)` over the group's `C / groups` input
/// channels, with its output channel's zero point.
pub(crate) fn transposed_gemm_rows(weight: &[i8], zero_point: &[i32], [c, og, taps]: [usize; 3], groups: usize) -> (Vec<i8>, Vec<i32>) {
    let cg = c / groups;
    let mut rows = vec![0i8; weight.len()];
    for (i, &w) in weight.iter().enumerate() {
        let (ci, row_in_group) = (i / (og * taps), i % (og * taps));
        rows[((ci / cg) * og * taps + row_in_group) * cg + ci % cg] = w;
    }
    let zw = (0..groups * og * taps).map(|row| zero_point[row / taps]).collect();
    (rows, zw)
}

/// The u8 outputs `[N, O, OD, OH, OW]` of a transposed conv on u8 input `[N, C, D, H, W]` with
/// the weights packed by [`transposed_gemm_rows`] for the input's zero point; zeros padding only,
/// as PyTorch's transposed convs. Images run in parallel; a single image splits its column
/// blocks and output planes.
pub(crate) fn conv_transpose_forward(
    x: &[u8],
    x_shape: [usize; 5],
    packed: &PackedWeights,
    geometry: &Geometry3,
    output_padding: [usize; 3],
    path: GemmPath,
    requantizer: &Requantizer,
) -> (Vec<u8>, [usize; 5]) {
    let [n, c, d, h, w] = x_shape;
    let (o, groups) = (geometry.out_channels, geometry.groups);
    let out: [usize; 3] = std::array::from_fn(|axis| out_size([d, h, w][axis], geometry, output_padding, axis));
    let p_out = out.iter().product::<usize>();
    let mut values = vec![0u8; n * o * p_out];
    let taps = Tap::all(geometry, [d, h, w], out);
    let image = Image { c, dims: [d, h, w], out, taps, geometry, packed, path, requantizer };
    if n == 1 {
        for group in 0..groups {
            image.group(x, group, &mut values[group * (o / groups) * p_out..][..(o / groups) * p_out], true);
        }
    } else {
        // The product's multiply-adds per image: every (output channel, tap) row over the group's
        // channels at every input position.
        let work = o * geometry.kernel.iter().product::<usize>() * d * h * w * (c / groups);
        values.par_chunks_mut(o * p_out).zip(x.par_chunks(c * d * h * w)).with_min_len(min_tasks(work)).for_each(|(out_b, x_b)| {
            for group in 0..groups {
                image.group(x_b, group, &mut out_b[group * (o / groups) * p_out..][..(o / groups) * p_out], false);
            }
        });
    }
    (values, [n, o, out[0], out[1], out[2]])
}

/// Where one kernel tap's products land: along each axis, the input indices whose product
/// stays inside the output, and the output index of the first of them.
struct Tap {
    reach: [Range<usize>; 3],
    first: [usize; 3],
}

impl Tap {
    /// Every tap of the kernel, in weight order `(kz, ky, kx)`.
    fn all(geometry: &Geometry3, dims: [usize; 3], out: [usize; 3]) -> Vec<Tap> {
        let Geometry3 { kernel: [kd, kh, kw], stride, dilation, padding, .. } = *geometry;
        (0..kd * kh * kw)
            .map(|t| {
                let tap = [t / (kh * kw), (t / kw) % kh, t % kw];
                let offset: [usize; 3] = std::array::from_fn(|a| tap[a] * dilation[a]);
                let reach: [Range<usize>; 3] = std::array::from_fn(|a| taps(dims[a], out[a], offset[a], padding[a], stride[a]));
                let first = std::array::from_fn(|a| (reach[a].start * stride[a] + offset[a]).saturating_sub(padding[a]));
                Tap { reach, first }
            })
            .collect()
    }
}

/// What one image's transposed conv reads.
struct Image<'a> {
    c: usize,
    dims: [usize; 3],
    out: [usize; 3],
    taps: Vec<Tap>,
    geometry: &'a Geometry3,
    packed: &'a PackedWeights,
    path: GemmPath,
    requantizer: &'a Requantizer,
}

impl Image<'_> {
    /// One group of one image `x` `[C, D, H, W]`: its product rows, then its output planes
    /// `planes` (`O / groups` of them) scattered and requantized; `parallel` splits both.
    fn group(&self, x: &[u8], group: usize, planes: &mut [u8], parallel: bool) {
        let (cg, p_in, p_out) = (self.c / self.geometry.groups, self.dims.iter().product::<usize>(), self.out.iter().product::<usize>());
        let col = self.products(&x[group * cg * p_in..][..cg * p_in], group, parallel);
        let taps = self.geometry.kernel.iter().product::<usize>();
        let og = self.geometry.out_channels / self.geometry.groups;
        let plane = |(j, dst): (usize, &mut [u8])| {
            let mut acc = vec![0i32; p_out];
            self.scatter(&mut acc, &col[j * taps * p_in..][..taps * p_in]);
            self.requantizer.row(group * og + j, &acc, dst);
        };
        if parallel {
            // A plane's scatter is `taps * p_in` scalar adds, each worth about 32 of the GEMM's
            // vectorized multiply-adds (measured: a 28x28 plane split at 32 ran 15% faster than
            // at 1 or 8).
            planes.par_chunks_mut(p_out).enumerate().with_min_len(min_tasks(taps * p_in * 32)).for_each(plane);
        } else {
            planes.chunks_mut(p_out).enumerate().for_each(plane);
        }
    }

    /// `col[(j, tap), p]`, corrected for both zero points: the packed GEMM on the group's
    /// channels `x_g` `[C / groups, P]`. The tasks are a block of `NR` input positions times a
    /// run of row blocks: all of them, unless `parallel` finds fewer than [`MIN_SPLIT`] column
    /// blocks (a decoder's first, low-resolution layers have one block of positions and many
    /// rows), so that one image still splits.
    fn products(&self, x_g: &[u8], group: usize, parallel: bool) -> Vec<i32> {
        let (p, rows, kq) = (self.dims.iter().product::<usize>(), self.packed.rows(), self.packed.kq());
        // The 1x1 im2col of the channels: each position one column, its channels the K axis.
        let ones = [1; 3];
        let cols = Im2col { c: x_g.len() / p, dims: self.dims, kernel: ones, stride: ones, dilation: ones, out: self.dims };
        let offsets = cols.offsets();
        let group_blocks = self.packed.row_blocks(group);
        let row_runs = if parallel { MIN_SPLIT.div_ceil(p.div_ceil(NR)) } else { 1 };
        let run = group_blocks.len().div_ceil(row_runs).max(1);
        let tasks: Vec<(usize, Range<usize>)> = (0..p)
            .step_by(NR)
            .flat_map(|p0| {
                let end = group_blocks.end;
                group_blocks.clone().step_by(run).map(move |b0| (p0, b0..(b0 + run).min(end)))
            })
            .collect();
        let first_row = |blocks: &Range<usize>| (blocks.start - group_blocks.start) * MR;
        // One task's products, handed row by row to `store(row in the group, corrected row)`.
        let product = |(p0, blocks): &(usize, Range<usize>), store: &mut dyn FnMut(usize, &[i32])| {
            let (width, valid) = (block_width(*p0, p), (p - p0).min(NR));
            let mut buf = vec![0u8; self.packed.block_len(width)];
            cols.block(x_g, &offsets[*p0..p0 + valid], width, kq, &mut buf);
            let mut corrected = [0i32; NR];
            self.packed.row_blocks_product(self.path, blocks.clone(), &buf, width, valid, |r, acc, correction| {
                correction.apply(acc, &mut corrected[..valid]);
                store(r, &corrected[..valid]);
            });
        };
        let mut col = vec![0i32; rows * p];
        if parallel {
            // Each task fills a tile of its rows; the tiles are copied in afterwards.
            let tiles: Vec<Vec<i32>> = tasks
                .par_iter()
                .with_min_len(min_tasks(run * MR * NR * kq * 4))
                .map(|task| {
                    let (valid, first) = ((p - task.0).min(NR), first_row(&task.1));
                    let mut tile = vec![0i32; (task.1.len() * MR).min(rows - first) * valid];
                    product(task, &mut |r, row| tile[(r - first) * valid..][..valid].copy_from_slice(row));
                    tile
                })
                .collect();
            for ((p0, blocks), tile) in tasks.iter().zip(tiles) {
                let valid = (p - p0).min(NR);
                for (r, row) in tile.chunks_exact(valid).enumerate() {
                    col[(first_row(blocks) + r) * p + p0..][..valid].copy_from_slice(row);
                }
            }
        } else {
            for task in &tasks {
                product(task, &mut |r, row| col[r * p + task.0..][..row.len()].copy_from_slice(row));
            }
        }
        col
    }

    /// col2im for one output plane: adds each tap's row of products (over the input positions)
    /// into the output positions the tap reaches.
    fn scatter(&self, plane: &mut [i32], col: &[i32]) {
        let ([d, h, w], [_, out_h, out_w], stride) = (self.dims, self.out, self.geometry.stride);
        for (tap, products) in self.taps.iter().zip(col.chunks(d * h * w)) {
            if tap.reach.iter().any(Range::is_empty) {
                continue;
            }
            for (oz, iz) in (tap.first[0]..).step_by(stride[0]).zip(tap.reach[0].clone()) {
                for (oy, iy) in (tap.first[1]..).step_by(stride[1]).zip(tap.reach[1].clone()) {
                    // The row's reached outputs, every stride-th from the first (contiguous, so
                    // vectorized, at stride 1).
                    let row_start = (oz * out_h + oy) * out_w;
                    let row = &mut plane[row_start + tap.first[2]..row_start + out_w];
                    let src = &products[(iz * h + iy) * w..][tap.reach[2].clone()];
                    row.iter_mut().step_by(stride[2]).zip(src).for_each(|(o, &v)| *o = o.wrapping_add(v));
                }
            }
        }
    }
}
