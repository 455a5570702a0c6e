//! The requantization of int32 accumulators to u8, per output channel: the int32 bias added
//! (saturating), the f32 multiplier `s_in * s_w[o] / s_out`, round half to even, clamp (a
//! fused ReLU floors at the output zero point). One copy for every int8 layer, in a portable
//! form and AVX2 / AVX-512 forms that give the same bits; and how much work is worth another
//! thread.

use super::gemm::RowCorrection;
use crate::quant::{ActivationQParams, requant_multiplier, round_half_even};

/// The least work, in multiply-adds, worth handing to another thread. A handoff wakes a
/// sleeping worker (a futex call and a context switch, 5-20 us on the 2-core VM), while the
/// int8 kernels do a few 10^4 multiply-adds per microsecond on small layers: below this, a
/// layer runs where it is, on one thread (every layer of LeNet and MobileNetV2-tiny at batch 1).
pub(crate) const MIN_PARALLEL_MACS: usize = 1 << 20;

/// How many tasks of `work` multiply-adds each one thread should take at least.
pub(crate) fn min_tasks(work: usize) -> usize {
    MIN_PARALLEL_MACS.div_ceil(work.max(1))
}

/// The requantization of accumulators per output channel: the channel's int32 bias added
/// (saturating), then [`requantize`](crate::quant::requantize) with the f32 multiplier `s_in * s_w[o] / s_out`; a fused
/// ReLU floors at the output zero point (real 0).
pub(crate) struct Requantizer {
    bias: Vec<i32>,
    multipliers: Vec<f32>,
    zero_point: i32,
    lo: i32,
    hi: i32,
}

impl Requantizer {
    pub(crate) fn new(bias: &[i32], weight_scale: &[f32], input: &ActivationQParams, output: &ActivationQParams, relu: bool) -> Self {
        Self {
            bias: bias.to_vec(),
            multipliers: weight_scale.iter().map(|&s| requant_multiplier(input.scale, s, output.scale)).collect(),
            zero_point: output.zero_point,
            lo: if relu { output.zero_point.max(output.quant_min) } else { output.quant_min },
            hi: output.quant_max,
        }
    }

    /// `dst[j] = requantize(acc[j] + bias[channel])` as u8.
    pub(crate) fn row(&self, channel: usize, acc: &[i32], dst: &mut [u8]) {
        self.corrected_row(channel, acc, RowCorrection::NONE, dst)
    }

    /// [`row`](Self::row) of `acc` corrected first by `correction` (in wrapping i32): the GEMM's
    /// zero-point terms added in the same pass over the tile row.
    pub(crate) fn corrected_row(&self, channel: usize, acc: &[i32], correction: RowCorrection, dst: &mut [u8]) {
        let args = (self.bias[channel], self.multipliers[channel], self.zero_point, self.lo, self.hi);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                let (bias, m, zero_point, lo, hi) = args;
                // SAFETY: AVX-512 F, BW and VL are present, checked above.
                return unsafe {
                    match correction.colsum {
                        None => requantize_row_avx512::<false>(acc, dst, (correction.offset, 0), acc, (bias, m), zero_point, (lo, hi)),
                        Some(colsum) => requantize_row_avx512::<true>(
                            acc,
                            dst,
                            (correction.offset, correction.zw),
                            colsum,
                            (bias, m),
                            zero_point,
                            (lo, hi),
                        ),
                    }
                };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present, checked on the line above.
                return unsafe { requantize_row_avx2(acc, correction, dst, args) };
            }
        }
        requantize_row_portable(acc, correction, dst, args)
    }
}

/// [`requantize_row_portable`] sixteen lanes at a time, the last partial vector under a mask
/// (rows are often short: 16, 49, a 4-column GEMM remainder), so no element takes a scalar
/// tail. The same result bit for bit, from fewer operations: the saturating add and the
/// clamp rewritten as the identities noted inline, the rounding done by the conversion to
/// integers (to nearest even, as [`round_half_even`]). `requantize_rows_match_the_scalar_formula`
/// checks every row length up to 50 on adversarial values. The scalars come as values or
/// pairs, never as one larger tuple: rustc passes a pair as its two scalars, exactly as two
/// arguments (the assembly of this function and its caller is the same as with ten separate
/// arguments), while a five-scalar tuple went through memory and stalled the first loads.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vl")]
fn requantize_row_avx512<const CORRECT_ZW: bool>(
    acc: &[i32],
    dst: &mut [u8],
    (offset, zw): (i32, i32),
    colsum: &[i32],
    (bias, m): (i32, f32),
    zero_point: i32,
    (lo, hi): (i32, i32),
) {
    use std::arch::x86_64::*;
    debug_assert!(0 <= lo && hi <= 255);
    let len = acc.len().min(dst.len());
    assert!(!CORRECT_ZW || colsum.len() >= len, "a column sum per accumulator");
    let (offset_v, zw_v) = (_mm512_set1_epi32(offset), _mm512_set1_epi32(zw));
    // `a.saturating_add(bias)` is `clamp(a, MIN - min(bias, 0), MAX - max(bias, 0)) + bias`.
    let (a_lo, a_hi) = (_mm512_set1_epi32(i32::MIN - bias.min(0)), _mm512_set1_epi32(i32::MAX - bias.max(0)));
    let bias_v = _mm512_set1_epi32(bias);
    let m_v = _mm512_set1_ps(m);
    // `clamp(z + rne(y), lo, hi)` is `z + rne(clamp(y, lo - z, hi - z))`: the bounds are
    // integers and rounding is monotone, and beyond 2^24, where `z + rne(y)` rounds in f32,
    // both are at a bound. So the clamp runs before the rounding conversion, and the zero
    // point is added to integers.
    let (y_lo, y_hi) = (_mm512_set1_ps((lo - zero_point) as f32), _mm512_set1_ps((hi - zero_point) as f32));
    let zp_v = _mm512_set1_epi32(zero_point);
    let mut j = 0;
    while j < len {
        let mask: __mmask16 = if len - j >= 16 { 0xffff } else { (1u16 << (len - j)) - 1 };
        // SAFETY: the mask keeps the loads to `acc[j..len]` (and `colsum[j..len]`, asserted long
        // enough) and the store to `dst[j..len]`.
        unsafe {
            let mut a = _mm512_add_epi32(_mm512_maskz_loadu_epi32(mask, acc.as_ptr().add(j)), offset_v);
            if CORRECT_ZW {
                let colsum = _mm512_maskz_loadu_epi32(mask, colsum.as_ptr().add(j));
                a = _mm512_sub_epi32(a, _mm512_mullo_epi32(zw_v, colsum));
            }
            let sum = _mm512_add_epi32(_mm512_min_epi32(_mm512_max_epi32(a, a_lo), a_hi), bias_v);
            let y = _mm512_mul_ps(_mm512_cvtepi32_ps(sum), m_v);
            let y = _mm512_min_ps(_mm512_max_ps(y, y_lo), y_hi);
            let q = _mm512_add_epi32(_mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(y), zp_v);
            // Narrowed in a register, then stored: a narrowing store straight to memory is
            // several times slower on Zen 4.
            let bytes = _mm512_cvtepi32_epi8(q);
            if mask == 0xffff {
                _mm_storeu_si128(dst.as_mut_ptr().add(j).cast(), bytes);
            } else {
                _mm_mask_storeu_epi8(dst.as_mut_ptr().add(j).cast(), mask, bytes);
            }
        }
        j += 16;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn requantize_row_avx2(acc: &[i32], correction: RowCorrection, dst: &mut [u8], args: (i32, f32, i32, i32, i32)) {
    requantize_row_portable(acc, correction, dst, args)
}

/// [`requantize`](crate::quant::requantize) of `acc + bias`, written so that it vectorizes: the same f32 operations in the
/// same order, and the clamped result (an integer in `[lo, hi]`, inside `[0, 255]`) read from
/// the mantissa of `v + 2^23` instead of a saturating float-to-int cast. The same bits.
#[inline(always)]
fn requantize_row_portable(
    acc: &[i32],
    correction: RowCorrection,
    dst: &mut [u8],
    (bias, m, zero_point, lo, hi): (i32, f32, i32, i32, i32),
) {
    debug_assert!(0 <= lo && hi <= 255);
    let requantize = |a: i32| {
        let v = zero_point as f32 + round_half_even(a.saturating_add(bias) as f32 * m);
        (v.max(lo as f32).min(hi as f32) + 8_388_608.0).to_bits() as u8
    };
    let RowCorrection { offset, zw, colsum } = correction;
    // One loop per case, without a branch inside, so that each vectorizes.
    match colsum {
        None => dst.iter_mut().zip(acc).for_each(|(q, &a)| *q = requantize(a.wrapping_add(offset))),
        Some(colsum) => dst
            .iter_mut()
            .zip(acc.iter().zip(colsum))
            .for_each(|(q, (&a, &cs))| *q = requantize(a.wrapping_add(offset).wrapping_sub(zw.wrapping_mul(cs)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::requantize;

    /// Accumulators and multipliers that make the row kernels' shortcuts matter: exact ties
    /// (`acc * m` ending in .5, both parities), both saturations of the bias add, products beyond
    /// 2^23 and beyond the clamp, negative zero.
    fn adversarial_accumulators(len: usize, seed: u32) -> Vec<i32> {
        let special = [0, 1, -1, 3, -3, 5, -5, 7, i32::MAX, i32::MIN, i32::MAX - 3, i32::MIN + 3, 1 << 24, -(1 << 24), 255, -255];
        let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
        (0..len)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                if i % 3 == 0 { special[(state as usize) % special.len()] } else { (state as i32) >> (state % 24) }
            })
            .collect()
    }

    #[test]
    fn requantize_rows_match_the_scalar_formula() {
        // Every row length up to 50 (full vectors, partial ones, empty) on every path this CPU has.
        for (case, &(bias, m, zero_point, relu)) in [
            (0, 0.5f32, 0, false),
            (7, 0.5, 128, true),
            (i32::MAX, 0.25, 3, false),
            (i32::MIN, 1.5, 200, false),
            (-100, 1e-3, 77, true),
            (12_345, 3.0e-7, 255, false),
            (1, 7.5, 0, true),
        ]
        .iter()
        .enumerate()
        {
            let lo = if relu { zero_point } else { 0 };
            let requantizer = Requantizer { bias: vec![bias], multipliers: vec![m], zero_point, lo, hi: 255 };
            for len in 0..50 {
                let acc = adversarial_accumulators(len, (case * 100 + len) as u32);
                let expected: Vec<u8> = acc.iter().map(|&a| requantize(a.saturating_add(bias), m, zero_point, lo, 255) as u8).collect();
                let mut got = vec![0u8; len];
                requantizer.row(0, &acc, &mut got);
                assert_eq!(got, expected, "bias {bias} m {m} zp {zero_point} relu {relu} len {len}");
                let mut portable = vec![0u8; len];
                requantize_row_portable(&acc, RowCorrection::NONE, &mut portable, (bias, m, zero_point, lo, 255));
                assert_eq!(portable, expected, "portable, len {len}");

                // With the GEMM's zero-point correction folded in (wrapping, as the GEMM sums):
                // with and without column sums, on both paths.
                let colsum = adversarial_accumulators(len, (case * 100 + len + 7) as u32);
                for correction in [
                    RowCorrection { offset: -987_654_321, zw: 0, colsum: None },
                    RowCorrection { offset: 77, zw: -113, colsum: Some(&colsum) },
                    RowCorrection { offset: i32::MAX, zw: 128, colsum: Some(&colsum) },
                ] {
                    let expected: Vec<u8> = acc
                        .iter()
                        .enumerate()
                        .map(|(j, &a)| {
                            // The corrected accumulator, written out here as the GEMM's module doc states it.
                            let zw_term = correction.colsum.map_or(0, |colsum| correction.zw.wrapping_mul(colsum[j]));
                            let corrected = a.wrapping_add(correction.offset).wrapping_sub(zw_term);
                            requantize(corrected.saturating_add(bias), m, zero_point, lo, 255) as u8
                        })
                        .collect();
                    requantizer.corrected_row(0, &acc, correction, &mut got);
                    assert_eq!(got, expected, "corrected: offset {} zw {} len {len}", correction.offset, correction.zw);
                    requantize_row_portable(&acc, correction, &mut portable, (bias, m, zero_point, lo, 255));
                    assert_eq!(portable, expected, "corrected, portable: len {len}");
                }
            }
        }
    }
}
