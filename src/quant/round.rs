/// Round half to even, as C's `nearbyint` does under the default rounding mode (what PyTorch's
/// fake quant uses). Bit-exact with `f32::round_ties_even`, including the sign of zero
/// (`-0.4 -> -0.0`), but written with the 2^23 trick so the loops that call it vectorize on
/// baseline x86-64, where `round_ties_even` is a libm call.
#[inline(always)]
pub fn round_half_even(v: f32) -> f32 {
    // Adding 2^23 (with v's sign) pushes the fraction out of the mantissa, letting the FPU round
    // it half-to-even; subtracting brings the integer back. Values with |v| >= 2^23 are already
    // integers (and NaN stays NaN through the select).
    const TWO_POW_23: f32 = 8_388_608.0;
    let magic = TWO_POW_23.copysign(v);
    let rounded = ((v + magic) - magic).copysign(v);
    if v.abs() < TWO_POW_23 { rounded } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_go_to_even() {
        let cases = [(0.5, 0.0), (1.5, 2.0), (2.5, 2.0), (-0.5, -0.0), (-1.5, -2.0), (-2.5, -2.0), (127.5, 128.0)];
        for (v, want) in cases {
            let got = round_half_even(v);
            assert_eq!(got.to_bits(), f32::to_bits(want), "rne({v}) = {got}, want {want}");
        }
    }

    #[test]
    fn matches_std_on_a_sweep() {
        // Every f32 in a window around the integers and in the 2^22..2^24 region where the naive
        // 1.5 * 2^23 trick breaks.
        let starts = [-70_000.0f32, 4_194_000.0, 8_388_000.0, 16_777_000.0, -8_388_700.0];
        for start in starts {
            let mut v = start;
            for _ in 0..200_000 {
                assert_eq!(round_half_even(v).to_bits(), v.round_ties_even().to_bits(), "v = {v}");
                v = f32::from_bits(if v >= 0.0 { v.to_bits() + 1 } else { v.to_bits() - 1 });
            }
        }
        assert!(round_half_even(f32::NAN).is_nan());
        assert_eq!(round_half_even(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_half_even(f32::NEG_INFINITY), f32::NEG_INFINITY);
    }
}
