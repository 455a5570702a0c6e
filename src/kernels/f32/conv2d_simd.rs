//! The inner loops of the direct (depthwise) convolution kernels, and the runtime choice of
//! instruction set they are compiled for.
//!
//! Each loop keeps `LANES` independent sums, one per output column (or per lane of a weight
//! gradient), and adds to each in a fixed order: the compiler vectorizes across the lanes without
//! reordering any sum, so a result depends only on the data, not on the vector width or on how
//! the work is split between threads. `FMA` selects fused multiply-add (one rounding), used
//! wherever the CPU has it.

/// `dispatch!(kernel(args..))` calls `kernel::<FMA>(args..)` compiled for the best instruction set
/// the CPU offers: AVX-512, AVX2 + FMA, or the baseline (no FMA). The kernel must be
/// `#[inline(always)]` so that it is compiled inside the `#[target_feature]` wrapper.
macro_rules! dispatch {
    ($kernel:ident ( $($arg:expr),* $(,)? )) => {{
        #[cfg(target_arch = "x86_64")]
        {
            use $crate::kernels::f32::conv2d_simd::{Isa, isa};
            match isa() {
                // SAFETY: `isa()` detected the features these wrappers enable.
                Isa::Avx512 => unsafe { $crate::kernels::f32::conv2d_simd::with_avx512(|| $kernel::<true>($($arg),*)) },
                Isa::Avx2Fma => unsafe { $crate::kernels::f32::conv2d_simd::with_avx2_fma(|| $kernel::<true>($($arg),*)) },
                Isa::Baseline => $kernel::<false>($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            $kernel::<false>($($arg),*)
        }
    }};
}
pub(crate) use dispatch;

#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Avx512,
    Avx2Fma,
    Baseline,
}

#[cfg(target_arch = "x86_64")]
pub(crate) fn isa() -> Isa {
    use std::sync::OnceLock;
    static ISA: OnceLock<Isa> = OnceLock::new();
    *ISA.get_or_init(|| {
        let avx2_fma = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        if avx2_fma && is_x86_feature_detected!("avx512f") {
            Isa::Avx512
        } else if avx2_fma {
            Isa::Avx2Fma
        } else {
            Isa::Baseline
        }
    })
}

/// # Safety
/// The CPU must support AVX-512F, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2,fma")]
pub(crate) unsafe fn with_avx512<R>(f: impl FnOnce() -> R) -> R {
    f()
}

/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(crate) unsafe fn with_avx2_fma<R>(f: impl FnOnce() -> R) -> R {
    f()
}

#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// `dst[start + i * stride] += a * src[i]` for every `i` of `src`: one tap of a strided
/// convolution's input gradient, scattered.
#[inline(always)]
pub(crate) fn axpy_scatter<const FMA: bool>(dst: &mut [f32], start: usize, stride: usize, a: f32, src: &[f32]) {
    if stride == 1 {
        for (d, &s) in dst[start..start + src.len()].iter_mut().zip(src) {
            *d = madd::<FMA>(a, s, *d);
        }
    } else {
        for (i, &s) in src.iter().enumerate() {
            let d = &mut dst[start + i * stride];
            *d = madd::<FMA>(a, s, *d);
        }
    }
}

/// The width of the register blocks of [`correlate_rows`] and [`tap_dot`]: one AVX-512 vector,
/// two AVX2 ones.
pub(crate) const LANES: usize = 16;

/// `LANES` values of `src` from `start`, `stride` apart.
#[inline(always)]
fn load(src: &[f32], start: usize, stride: usize) -> [f32; LANES] {
    if stride == 1 {
        src[start..start + LANES].try_into().expect("LANES values")
    } else {
        let src = &src[start..=start + (LANES - 1) * stride];
        std::array::from_fn(|l| src[l * stride])
    }
}

/// A direct correlation, row by row: output row `o`, column `j` is
/// `init + sum over taps (at, w) of w * src[o * step[0] + j * step[1] + at]`, taps in order.
/// `out` holds rows of `out_w`; `src` must be readable up to the next whole chunk of `LANES`
/// columns (zero-padded), since every chunk is computed whole.
#[inline(always)]
pub(crate) fn correlate_rows<const FMA: bool>(
    src: &[f32],
    taps: &[(usize, f32)],
    step: [usize; 2],
    init: f32,
    out: &mut [f32],
    out_w: usize,
) {
    for (o, out_row) in out.chunks_exact_mut(out_w).enumerate() {
        for c0 in (0..out_w).step_by(LANES) {
            let mut acc = [init; LANES];
            let base = o * step[0] + c0 * step[1];
            for &(at, w) in taps {
                let v = load(src, base + at, step[1]);
                for l in 0..LANES {
                    acc[l] = madd::<FMA>(w, v[l], acc[l]);
                }
            }
            let n = (out_w - c0).min(LANES);
            out_row[c0..c0 + n].copy_from_slice(&acc[..n]);
        }
    }
}

/// `acc[l] += sum over rows o and chunks c0 of dy[o * dy_w + c0 + l] * src[o * step[0] +
/// (c0 + l) * step[1] + at]`, in order: one tap of a weight gradient, lane by lane. `dy` holds
/// rows of `dy_w`, a multiple of `LANES`.
#[inline(always)]
pub(crate) fn tap_dot<const FMA: bool>(src: &[f32], at: usize, step: [usize; 2], dy: &[f32], dy_w: usize, acc: &mut [f32; LANES]) {
    let mut a = *acc;
    for (o, dy_row) in dy.chunks_exact(dy_w).enumerate() {
        for (c, d) in dy_row.chunks_exact(LANES).enumerate() {
            let v = load(src, o * step[0] + c * LANES * step[1] + at, step[1]);
            for l in 0..LANES {
                a[l] = madd::<FMA>(d[l], v[l], a[l]);
            }
        }
    }
    *acc = a;
}

/// `dst[i] += src[i]`.
#[inline(always)]
pub(crate) fn add_assign(dst: &mut [f32], src: &[f32]) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d += s;
    }
}
