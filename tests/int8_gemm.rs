//! The packed u8 x i8 GEMM under the int8 layers: every SIMD path this CPU has (forced one at a
//! time) against the portable path and against a plain i64 sum of centered products, bit for bit,
//! on random and adversarial shapes: K not a multiple of 4 or of the vector width, one row, one
//! column, zero points 0 and 255, weights -128 and 127, K large enough to overflow i16 sums (the
//! `vpmaddubsw` pitfall), and column counts around the block widths.

mod common;

use burn_qat::kernels::int8::gemm::{GemmPath, gemm_u8i8};
use common::Rng;

/// The centered sums in i64, wrapped to i32 as the kernels' i32 accumulation is.
fn reference(a: &[i8], zw: &[i32], b: &[u8], zx: i32, m: usize, k: usize, n: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for i in 0..m {
        for j in 0..n {
            let s: i64 = (0..k).map(|kk| (a[i * k + kk] as i64 - zw[i] as i64) * (b[kk * n + j] as i64 - zx as i64)).sum();
            out[i * n + j] = s as i32;
        }
    }
    out
}

#[derive(Clone, Copy)]
enum Fill {
    Random,
    /// Weights -128, activations 255: the largest products, every pair sum past i16.
    MaxNegative,
    /// Weights 127, activations 255.
    MaxPositive,
    /// Weights alternating -128 / 127, activations alternating 0 / 255.
    Alternating,
}

fn check(rng: &mut Rng, m: usize, k: usize, n: usize, zx: i32, zw_kind: i32, fill: Fill) {
    let a: Vec<i8> = (0..m * k)
        .map(|i| match fill {
            Fill::Random => rng.int(-128, 127) as i8,
            Fill::MaxNegative => -128,
            Fill::MaxPositive => 127,
            Fill::Alternating => {
                if i % 2 == 0 {
                    -128
                } else {
                    127
                }
            }
        })
        .collect();
    let b: Vec<u8> = (0..k * n)
        .map(|i| match fill {
            Fill::Random => rng.int(0, 255) as u8,
            Fill::MaxNegative | Fill::MaxPositive => 255,
            Fill::Alternating => {
                if i % 3 == 0 {
                    0
                } else {
                    255
                }
            }
        })
        .collect();
    let zw: Vec<i32> = (0..m)
        .map(|i| match zw_kind {
            0 => 0,
            1 => rng.int(-128, 127),
            _ => [-128, 127, 0][i % 3],
        })
        .collect();
    let expected = reference(&a, &zw, &b, zx, m, k, n);
    let portable = gemm_u8i8(GemmPath::Portable, &a, &zw, &b, zx, [m, k, n]);
    assert_eq!(portable, expected, "portable vs reference: m {m} k {k} n {n} zx {zx}");
    for path in GemmPath::available() {
        let got = gemm_u8i8(path, &a, &zw, &b, zx, [m, k, n]);
        assert!(got == portable, "{path:?} differs from portable: m {m} k {k} n {n} zx {zx} zw kind {zw_kind}");
    }
}

#[test]
fn simd_paths_equal_portable_on_random_shapes() {
    eprintln!("available GEMM paths: {:?} (best {:?})", GemmPath::available(), GemmPath::best());
    let mut rng = Rng(2024);
    for _ in 0..60 {
        let (m, k, n) = (rng.int(1, 19) as usize, rng.int(1, 150) as usize, rng.int(1, 200) as usize);
        let zx = [0, 255, rng.int(0, 255)][rng.int(0, 2) as usize];
        let zw_kind = rng.int(0, 2);
        check(&mut rng, m, k, n, zx, zw_kind, Fill::Random);
    }
}

#[test]
fn simd_paths_equal_portable_on_edge_shapes() {
    let mut rng = Rng(5);
    // One row, one column, K around 4 and the vector widths, columns around the block widths.
    let ks = [1, 2, 3, 4, 5, 7, 15, 16, 17, 31, 33, 63, 64, 65, 129];
    let ns = [1, 2, 7, 8, 15, 16, 17, 31, 33, 63, 64, 65, 127, 129];
    for &k in &ks {
        for &n in &ns {
            for m in [1, 3, 4, 5] {
                for zx in [0, 255] {
                    check(&mut rng, m, k, n, zx, (k + n) as i32 % 3, Fill::Random);
                }
            }
        }
    }
}

#[test]
fn simd_paths_equal_portable_on_extreme_values_and_huge_k() {
    let mut rng = Rng(9);
    for fill in [Fill::MaxNegative, Fill::MaxPositive, Fill::Alternating] {
        for (m, k, n) in [(1, 1, 1), (5, 37, 70), (4, 1000, 17), (2, 4099, 3)] {
            for zx in [0, 255, 128] {
                for zw_kind in [0, 2] {
                    check(&mut rng, m, k, n, zx, zw_kind, fill);
                }
            }
        }
    }
    // K so large that the i32 sums wrap (K * 255 * 255 > 2^31): every path wraps identically.
    check(&mut rng, 2, 40_000, 2, 0, 2, Fill::MaxNegative);
    check(&mut rng, 3, 70_001, 5, 255, 1, Fill::Random);
}
