//! The integer GEMM under the int8 convs and Linear: `acc[o, p] = sum_k (x[k, p] - z_x) *
//! (w[o, k] - z_w[o])` with u8 activations `x` and i8 weights `w`, computed as the raw product
//! `S = sum_k x * w` (u8 x i8, i32 sums) and the exact corrections
//!
//! `acc = S - z_w[o] * colsum[p] - z_x * rowsum[o] + K * z_x * z_w[o]`,
//!
//! all in wrapping i32 arithmetic, which is exact modulo 2^32 and so equals the centered i32
//! sum bit for bit in any order (the f64 reference checks it). Padded taps hold `z_x`, so they
//! contribute 0 once corrected.
//!
//! Layout: K is grouped by 4 (`kq = ceil(K / 4)` quads, the tail zero-filled). Weights are packed
//! once, at module construction, as `[groups][row blocks of MR][kq][MR][4]` i8 (and i16 for the
//! AVX2 path). Activations are packed per forward, one block of up to `NR` columns at a time, as
//! `[kq][width][4]` u8 (im2col writes this layout directly). A micro-kernel multiplies one row
//! block by one column block into an `MR x NR` tile. Three builds of it, picked at run time:
//! AVX-512 VNNI (`vpdpbusd`: four u8 x i8 products summed into each i32 lane, no saturation),
//! AVX2 (u8 and i8 widened to i16, then `vpmaddwd`, exact: never the saturating `vpmaddubsw`),
//! and a portable one.

use std::fmt;
use std::ops::Range;

/// Rows of a weight block (output channels per micro-kernel call).
pub const MR: usize = 4;
/// Columns of an activation block.
pub const NR: usize = 64;
/// Block widths are multiples of this (one 512-bit vector of i32 lanes).
const STRIP: usize = 16;

/// The micro-kernel build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GemmPath {
    Portable,
    Avx2,
    Avx512Vnni,
}

impl GemmPath {
    /// The paths this CPU can run, portable first.
    pub fn available() -> Vec<GemmPath> {
        let mut paths = vec![GemmPath::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                paths.push(GemmPath::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                paths.push(GemmPath::Avx512Vnni);
            }
        }
        paths
    }

    /// The fastest available path.
    pub fn best() -> GemmPath {
        static BEST: std::sync::OnceLock<GemmPath> = std::sync::OnceLock::new();
        *BEST.get_or_init(|| *GemmPath::available().last().expect("portable is always available"))
    }

    fn is_available(self) -> bool {
        static AVAILABLE: std::sync::OnceLock<Vec<GemmPath>> = std::sync::OnceLock::new();
        AVAILABLE.get_or_init(GemmPath::available).contains(&self)
    }
}

/// The width of the column block starting at `p0` of `p` columns.
pub(crate) fn block_width(p0: usize, p: usize) -> usize {
    (p - p0).min(NR).div_ceil(STRIP) * STRIP
}

/// The number of K quads.
pub(crate) fn quads(k: usize) -> usize {
    k.div_ceil(4)
}

/// i8 weights `[groups * rows, k]` packed for the micro-kernels, with the row corrections for
/// the input zero point they were packed for.
#[derive(Clone)]
pub(crate) struct PackedWeights {
    groups: usize,
    rows: usize,
    k: usize,
    kq: usize,
    data: Vec<i8>,
    data16: Vec<i16>,
    /// `K * z_x * z_w[o] - z_x * rowsum[o]` per row.
    row_const: Vec<i32>,
    zw: Vec<i32>,
    any_zw: bool,
    /// What it was packed from, so a module whose public fields were edited repacks.
    source: Vec<i8>,
    source_zw: Vec<i32>,
    zx: i32,
}

impl fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackedWeights({} x {} x {})", self.groups, self.rows, self.k)
    }
}

/// Derived data: equal whenever the fields it derives from are.
impl PartialEq for PackedWeights {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl PackedWeights {
    /// Packs `weight` `[groups * rows, k]` (row-major) with one zero point per row, for inputs
    /// with zero point `zx`.
    pub(crate) fn new(weight: &[i8], zw: &[i32], groups: usize, k: usize, zx: i32) -> Self {
        let total_rows = zw.len();
        assert_eq!(weight.len(), total_rows * k, "weights [rows, k]");
        assert_eq!(total_rows % groups, 0, "rows divide into groups");
        let rows = total_rows / groups;
        let (kq, blocks) = (quads(k), rows.div_ceil(MR));
        let mut data = vec![0i8; groups * blocks * kq * MR * 4];
        for g in 0..groups {
            for r in 0..rows {
                let (b, i) = (r / MR, r % MR);
                let dst = &mut data[(g * blocks + b) * kq * MR * 4..][..kq * MR * 4];
                for (kk, &w) in weight[(g * rows + r) * k..][..k].iter().enumerate() {
                    dst[((kk / 4) * MR + i) * 4 + kk % 4] = w;
                }
            }
        }
        let data16 = data.iter().map(|&w| w as i16).collect();
        let row_const = (0..total_rows)
            .map(|o| {
                let rowsum = weight[o * k..][..k].iter().fold(0i32, |s, &w| s.wrapping_add(w as i32));
                (k as i32).wrapping_mul(zx).wrapping_mul(zw[o]).wrapping_sub(zx.wrapping_mul(rowsum))
            })
            .collect();
        Self {
            groups,
            rows,
            k,
            kq,
            data,
            data16,
            row_const,
            zw: zw.to_vec(),
            any_zw: zw.iter().any(|&z| z != 0),
            source: weight.to_vec(),
            source_zw: zw.to_vec(),
            zx,
        }
    }

    /// The same packing, recorded as made from `weight` and `zw`: a module's own weights, which
    /// it reordered into the rows packed here (a transposed conv's). [`packs`](Self::packs) then
    /// checks the module's weights without reordering them again.
    pub(crate) fn packed_from(mut self, weight: &[i8], zw: &[i32]) -> Self {
        (self.source, self.source_zw) = (weight.to_vec(), zw.to_vec());
        self
    }

    /// Whether this packing is of exactly these weights and zero points, as rows of `k` in
    /// `groups`, for the input zero point `zx`.
    pub(crate) fn packs(&self, weight: &[i8], zw: &[i32], [groups, k]: [usize; 2], zx: i32) -> bool {
        self.groups == groups && self.k == k && self.zx == zx && self.source == weight && self.source_zw == zw
    }

    /// The weights and zero points it packs, as the module holds them (the rows themselves
    /// unless [`packed_from`](Self::packed_from) said otherwise).
    pub(crate) fn source(&self) -> (&[i8], &[i32]) {
        (&self.source, &self.source_zw)
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn kq(&self) -> usize {
        self.kq
    }

    /// `[kq][width][4]` bytes of one activation block.
    pub(crate) fn block_len(&self, width: usize) -> usize {
        self.kq * width * 4
    }

    /// The accumulators of `group`'s rows times the packed activation block `b` (`width`
    /// columns, of which the first `cols` are real), one row at a time: `store(row, the row's
    /// first cols accumulators, the zero-point correction they still need)`; the requantizer
    /// applies the correction in its own pass over the row.
    pub(crate) fn block_product(
        &self,
        path: GemmPath,
        group: usize,
        b: &[u8],
        width: usize,
        cols: usize,
        store: impl FnMut(usize, &[i32], RowCorrection),
    ) {
        self.row_blocks_product(path, self.row_blocks(group), b, width, cols, store)
    }

    /// The blocks of `MR` rows that `group` has, as indices over all groups' row blocks.
    pub(crate) fn row_blocks(&self, group: usize) -> Range<usize> {
        let blocks = self.rows.div_ceil(MR);
        group * blocks..(group + 1) * blocks
    }

    /// [`block_product`](Self::block_product) over some of one group's row blocks (a range
    /// inside one [`row_blocks`](Self::row_blocks)), so that a product with few columns can
    /// still split its rows across threads; `store` gets rows numbered within the group.
    pub(crate) fn row_blocks_product(
        &self,
        path: GemmPath,
        row_blocks: Range<usize>,
        b: &[u8],
        width: usize,
        cols: usize,
        mut store: impl FnMut(usize, &[i32], RowCorrection),
    ) {
        assert!(width <= NR && width.is_multiple_of(STRIP) && cols <= width && b.len() >= self.block_len(width));
        assert!(path.is_available(), "{path:?} is not available on this CPU");
        let blocks = self.rows.div_ceil(MR);
        let group = row_blocks.start / blocks;
        assert!(row_blocks.end <= (group + 1) * blocks, "row blocks {row_blocks:?} span more than one group");
        let colsum: Option<Vec<i32>> = self.any_zw.then(|| {
            let mut sums = vec![0i32; width];
            for quad in b[..self.block_len(width)].chunks_exact(width * 4) {
                for (s, x) in sums.iter_mut().zip(quad.chunks_exact(4)) {
                    *s = s.wrapping_add(x.iter().map(|&v| v as i32).sum::<i32>());
                }
            }
            sums
        });
        let block = self.kq * MR * 4;
        let mut tile = [0i32; MR * NR];
        for absolute in row_blocks {
            let (rb, offset) = (absolute - group * blocks, absolute * block);
            match path {
                GemmPath::Portable => kernel_portable(self.kq, &self.data[offset..][..block], b, width, &mut tile),
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `path.is_available()` was asserted above, so the CPU has AVX2.
                GemmPath::Avx2 => unsafe { x86::kernel_avx2(self.kq, &self.data16[offset..][..block], b, width, &mut tile) },
                #[cfg(target_arch = "x86_64")]
                // SAFETY: `path.is_available()` was asserted above, so the CPU has AVX-512 F, BW
                // and VNNI.
                GemmPath::Avx512Vnni => unsafe { x86::kernel_vnni(self.kq, &self.data[offset..][..block], b, width, &mut tile) },
                #[cfg(not(target_arch = "x86_64"))]
                _ => unreachable!("only the portable path is available"),
            }
            for i in 0..MR.min(self.rows - rb * MR) {
                let (r, global) = (rb * MR + i, group * self.rows + rb * MR + i);
                let correction = RowCorrection { offset: self.row_const[global], zw: self.zw[global], colsum: colsum.as_deref() };
                store(r, &tile[i * NR..][..cols], correction);
            }
        }
    }
}

/// `tile[i * NR + j] = sum_q sum_t a[q][i][t] * b[q][j][t]` in wrapping i32.
fn kernel_portable(kq: usize, a: &[i8], b: &[u8], width: usize, tile: &mut [i32; MR * NR]) {
    tile.fill(0);
    for q in 0..kq {
        let bq = &b[q * width * 4..][..width * 4];
        for i in 0..MR {
            let w = &a[(q * MR + i) * 4..][..4];
            let row = &mut tile[i * NR..][..width];
            for (acc, x) in row.iter_mut().zip(bq.chunks_exact(4)) {
                let s: i32 = (0..4).map(|t| w[t] as i32 * x[t] as i32).sum();
                *acc = acc.wrapping_add(s);
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{MR, NR, STRIP};

    /// The VNNI micro-kernel: per quad, one `vpdpbusd` per (row, 16 columns).
    ///
    /// Calling it is unsafe: the CPU must have AVX-512 F, BW and VNNI.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    pub(super) fn kernel_vnni(kq: usize, a: &[i8], b: &[u8], width: usize, tile: &mut [i32; MR * NR]) {
        match width / STRIP {
            1 => vnni_strip::<1>(kq, a, b, width, tile),
            2 => vnni_strip::<2>(kq, a, b, width, tile),
            3 => vnni_strip::<3>(kq, a, b, width, tile),
            _ => vnni_strip::<4>(kq, a, b, width, tile),
        }
    }

    #[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
    #[inline]
    fn vnni_strip<const V: usize>(kq: usize, a: &[i8], b: &[u8], width: usize, tile: &mut [i32; MR * NR]) {
        assert!(V * STRIP == width && a.len() >= kq * MR * 4 && b.len() >= kq * width * 4);
        let mut acc = [[_mm512_setzero_si512(); V]; MR];
        for q in 0..kq {
            let mut x = [_mm512_setzero_si512(); V];
            for (v, xv) in x.iter_mut().enumerate() {
                // SAFETY: `(q * width + v * 16) * 4 + 64 <= kq * width * 4 <= b.len()` (asserted),
                // and the load is unaligned.
                *xv = unsafe { _mm512_loadu_si512(b.as_ptr().add((q * width + v * STRIP) * 4).cast()) };
            }
            for (i, row) in acc.iter_mut().enumerate() {
                // SAFETY: `(q * MR + i) * 4 + 4 <= kq * MR * 4 <= a.len()` (asserted); unaligned read.
                let quad = unsafe { a.as_ptr().add((q * MR + i) * 4).cast::<i32>().read_unaligned() };
                let w = _mm512_set1_epi32(quad);
                for (r, xv) in row.iter_mut().zip(&x) {
                    *r = _mm512_dpbusd_epi32(*r, *xv, w);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (v, r) in row.iter().enumerate() {
                // SAFETY: `i * NR + v * 16 + 16 <= MR * NR`: v < V <= 4; unaligned store.
                unsafe { _mm512_storeu_si512(tile.as_mut_ptr().add(i * NR + v * STRIP).cast(), *r) };
            }
        }
    }

    /// The AVX2 micro-kernel over strips of 8 columns: activations widened u8 -> i16, weights
    /// pre-widened, `vpmaddwd` sums two exact products per i32 lane (each at most 255 * 128),
    /// so per column two partial sums, added pairwise at the end.
    ///
    /// Calling it is unsafe: the CPU must have AVX2.
    #[target_feature(enable = "avx2")]
    pub(super) fn kernel_avx2(kq: usize, a: &[i16], b: &[u8], width: usize, tile: &mut [i32; MR * NR]) {
        assert!(width.is_multiple_of(8) && width <= NR && a.len() >= kq * MR * 4 && b.len() >= kq * width * 4);
        for s in 0..width / 8 {
            let mut acc = [[_mm256_setzero_si256(); 2]; MR];
            for q in 0..kq {
                let base = (q * width + s * 8) * 4;
                // SAFETY: `base + 32 <= kq * width * 4 <= b.len()` (asserted); unaligned loads.
                let (x0, x1) = unsafe {
                    (
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(b.as_ptr().add(base).cast())),
                        _mm256_cvtepu8_epi16(_mm_loadu_si128(b.as_ptr().add(base + 16).cast())),
                    )
                };
                for (i, row) in acc.iter_mut().enumerate() {
                    // SAFETY: `(q * MR + i) * 4 + 4 <= kq * MR * 4 <= a.len()` (asserted); an
                    // unaligned read of four i16.
                    let quad = unsafe { a.as_ptr().add((q * MR + i) * 4).cast::<i64>().read_unaligned() };
                    let w = _mm256_set1_epi64x(quad);
                    row[0] = _mm256_add_epi32(row[0], _mm256_madd_epi16(x0, w));
                    row[1] = _mm256_add_epi32(row[1], _mm256_madd_epi16(x1, w));
                }
            }
            for (i, row) in acc.iter().enumerate() {
                // Lanes hold (column, half) pairs; hadd then reorder the 64-bit pairs.
                let sums = _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_hadd_epi32(row[0], row[1]));
                // SAFETY: `i * NR + s * 8 + 8 <= MR * NR` since `s * 8 < width <= NR`; unaligned.
                unsafe { _mm256_storeu_si256(tile.as_mut_ptr().add(i * NR + s * 8).cast(), sums) };
            }
        }
    }
}

/// Packs columns `p0..p0 + width` of a row-major `[p, k]` u8 matrix (each column of the GEMM
/// one row of `x`, as a Linear's input) into `[kq][width][4]`; missing entries are 0.
pub(crate) fn pack_rows(x: &[u8], k: usize, p: usize, p0: usize, width: usize, buf: &mut [u8]) {
    let kq = quads(k);
    buf[..kq * width * 4].fill(0);
    for j in 0..width.min(p - p0) {
        let row = &x[(p0 + j) * k..][..k];
        for (q, chunk) in row.chunks(4).enumerate() {
            buf[(q * width + j) * 4..][..chunk.len()].copy_from_slice(chunk);
        }
    }
}

/// `[m, n]` accumulators of `sum_k (a[i, k] - zw[i]) * (b[k, j] - zx)` for row-major i8 `a`
/// `[m, k]` and u8 `b` `[k, n]`, on the given path: the packed GEMM the int8 layers run, exposed
/// so that tests can hold each SIMD path against the portable one.
#[doc(hidden)]
pub fn gemm_u8i8(path: GemmPath, a: &[i8], zw: &[i32], b: &[u8], zx: i32, [m, k, n]: [usize; 3]) -> Vec<i32> {
    assert!(a.len() == m * k && zw.len() == m && b.len() == k * n);
    let packed = PackedWeights::new(a, zw, 1, k, zx);
    // Columns of the product are rows of b's transpose.
    let bt: Vec<u8> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
    let mut out = vec![0i32; m * n];
    let mut buf = vec![0u8; packed.block_len(NR)];
    for p0 in (0..n).step_by(NR) {
        let width = block_width(p0, n);
        pack_rows(&bt, k, n, p0, width, &mut buf);
        packed.block_product(path, 0, &buf, width, (n - p0).min(width), |r, row, correction| {
            correction.apply(row, &mut out[r * n + p0..][..row.len()]);
        });
    }
    out
}

/// What a GEMM tile row still needs before requantization: `acc[j] + offset - zw * colsum[j]`
/// in wrapping i32 (the zero-point terms of `sum (x - z_x)(w - z_w)`; `colsum` only when the
/// weights have non-zero zero points).
#[derive(Clone, Copy)]
pub(crate) struct RowCorrection<'a> {
    pub offset: i32,
    pub zw: i32,
    pub colsum: Option<&'a [i32]>,
}

impl RowCorrection<'_> {
    pub(crate) const NONE: Self = Self { offset: 0, zw: 0, colsum: None };

    /// The row of accumulators `acc` (its first columns), corrected into `dst`; one branch per
    /// row, so that the loops vectorize.
    pub(crate) fn apply(&self, acc: &[i32], dst: &mut [i32]) {
        let pairs = dst.iter_mut().zip(acc);
        match self.colsum {
            None => pairs.for_each(|(d, &a)| *d = a.wrapping_add(self.offset)),
            Some(colsum) => {
                pairs.zip(colsum).for_each(|((d, &a), &c)| *d = a.wrapping_add(self.offset).wrapping_sub(self.zw.wrapping_mul(c)))
            }
        }
    }
}
