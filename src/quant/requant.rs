//! The deployment arithmetic: how real values become integers and how an int32 accumulator
//! becomes the next layer's integer. The int8 modules and the QAT model's quantized
//! simulation both call these functions, which is what makes them agree bit for bit.
//!
//! - quantize: `q = clamp(z + rne(x * (1/s)), qmin, qmax)`, the f32 reciprocal multiplied, as
//!   PyTorch's `quantize_per_tensor` and fake quant do;
//! - requantize: `q = clamp(z_out + rne(f32(acc) * m), lo, qmax)` with the f32 multiplier
//!   `m = f32(f64(s_in) * f64(s_w) / f64(s_out))`, one rounding, ties to even; `lo` is `z_out`
//!   for a fused ReLU (real 0) and `qmin` otherwise. `f32(acc)` is exact below 2^24 and rounds
//!   to nearest even above, identically on every path;
//! - bias: `round_half_even(b / (s_in * s_w))` in f64, saturated to i32, added to the
//!   accumulator before requantization.

use super::round_half_even;

/// `clamp(z + rne(x * inv_scale), qmin, qmax)` as an integer.
#[inline(always)]
pub fn quantize_value(x: f32, inv_scale: f32, zero_point: i32, quant_min: i32, quant_max: i32) -> i32 {
    let q = zero_point as f32 + round_half_even(x * inv_scale);
    q.max(quant_min as f32).min(quant_max as f32) as i32
}

/// The requantization multiplier `s_in * s_w / s_out`, computed in f64 and rounded once to f32.
pub fn requant_multiplier(input_scale: f32, weight_scale: f32, output_scale: f32) -> f32 {
    (input_scale as f64 * weight_scale as f64 / output_scale as f64) as f32
}

/// `clamp(z_out + rne(f32(acc) * multiplier), lo, hi)`.
#[inline(always)]
pub fn requantize(acc: i32, multiplier: f32, zero_point: i32, lo: i32, hi: i32) -> i32 {
    let q = zero_point as f32 + round_half_even(acc as f32 * multiplier);
    q.max(lo as f32).min(hi as f32) as i32
}

/// A float bias as int32 at scale `s_in * s_w`.
pub fn quantize_bias(bias: f32, input_scale: f32, weight_scale: f32) -> i32 {
    let scaled = bias as f64 / (input_scale as f64 * weight_scale as f64);
    scaled.round_ties_even().clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requantization_rounds_half_to_even_once() {
        // acc * m lands exactly on .5: ties go to even.
        assert_eq!(requantize(5, 0.5, 0, 0, 255), 2);
        assert_eq!(requantize(7, 0.5, 0, 0, 255), 4);
        assert_eq!(requantize(-3, 0.5, 10, 0, 255), 8); // -1.5 -> -2
        // Saturation and the fused-ReLU floor.
        assert_eq!(requantize(1_000_000, 1.0, 0, 0, 255), 255);
        assert_eq!(requantize(-50, 1.0, 20, 20, 255), 20);
    }

    #[test]
    fn quantize_matches_the_fake_quant_convention() {
        assert_eq!(quantize_value(14.549999237, 1.0 / 0.1f32, 0, -32768, 32767), 146);
        assert_eq!(quantize_value(2.5, 1.0, 0, 0, 255), 2);
        assert_eq!(quantize_value(f32::NAN, 1.0, 3, 0, 255), 0);
    }

    #[test]
    fn the_multiplier_is_formed_in_f64_and_rounded_once() {
        // Scales (found by a search in numpy) where rounding the product to f32 before the
        // division lands one ulp away from the specified value.
        let (s_in, s_w, s_out) = (f32::from_bits(1017983522), f32::from_bits(1021111843), f32::from_bits(1033514906));
        assert_eq!(requant_multiplier(s_in, s_w, s_out), 0.007573521230369806f32);
        assert_eq!(s_in * s_w / s_out, 0.007573521696031094f32, "the case tells the two formulas apart");
    }

    #[test]
    fn bias_saturates() {
        assert_eq!(quantize_bias(1e30, 1e-3, 1e-3), i32::MAX);
        assert_eq!(quantize_bias(0.75, 0.5, 1.0), 2);
    }
}
