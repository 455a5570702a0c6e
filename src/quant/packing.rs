//! Sub-8-bit integers stored at their true width: `b`-bit two's-complement values laid end to
//! end, value `i` at bits `i*b .. i*b + b` of the little-endian bit stream (so two 4-bit values
//! per byte, the first in the low nibble). Our own format: no crate packs arbitrary widths 2..=7,
//! and the layout is one line to state and to check.

use crate::error::{QatError, Result};

/// The fewest bits (2 to 8) whose signed range holds every value.
pub fn bits_needed(values: &[i8]) -> u32 {
    let (lo, hi) = values.iter().fold((0i32, 0i32), |(lo, hi), &v| (lo.min(v as i32), hi.max(v as i32)));
    (2..=8).find(|&b| lo >= -(1 << (b - 1)) && hi < (1 << (b - 1))).unwrap_or(8)
}

/// Bytes that `n` values of `bits` bits take.
pub fn packed_len(n: usize, bits: u32) -> usize {
    (n * bits as usize).div_ceil(8)
}

/// Packs `values`, each of which must fit `bits` signed bits (see [`bits_needed`]).
pub fn pack(values: &[i8], bits: u32) -> Result<Vec<u8>> {
    check_bits(bits)?;
    let (lo, hi) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
    if let Some(v) = values.iter().find(|&&v| (v as i32) < lo || (v as i32) > hi) {
        return Err(QatError::invalid("bits", format!("cannot pack {v} into {bits} signed bits ([{lo}, {hi}])")));
    }
    let mask = (1u32 << bits) - 1;
    let mut out = vec![0u8; packed_len(values.len(), bits)];
    for (i, &v) in values.iter().enumerate() {
        let field = (v as i32 as u32) & mask;
        let bit = i * bits as usize;
        // A field spans at most two bytes (bits <= 8).
        let wide = field << (bit % 8);
        out[bit / 8] |= wide as u8;
        if bit % 8 + bits as usize > 8 {
            out[bit / 8 + 1] |= (wide >> 8) as u8;
        }
    }
    Ok(out)
}

/// Unpacks `n` values of `bits` bits; `bytes` must be exactly [`packed_len`] long.
pub fn unpack(bytes: &[u8], bits: u32, n: usize) -> Result<Vec<i8>> {
    check_bits(bits)?;
    if bytes.len() != packed_len(n, bits) {
        return Err(QatError::shape(
            "packed weights",
            format!("{} bytes for {n} values of {bits} bits", packed_len(n, bits)),
            bytes.len().to_string(),
        ));
    }
    let mask = (1u32 << bits) - 1;
    let sign = 1u32 << (bits - 1);
    Ok((0..n)
        .map(|i| {
            let bit = i * bits as usize;
            let low = bytes[bit / 8] as u32;
            let high = bytes.get(bit / 8 + 1).copied().unwrap_or(0) as u32;
            let field = ((low | (high << 8)) >> (bit % 8)) & mask;
            // Sign-extend the field from `bits` bits.
            ((field ^ sign).wrapping_sub(sign)) as i32 as i8
        })
        .collect())
}

fn check_bits(bits: u32) -> Result<()> {
    if (2..=8).contains(&bits) { Ok(()) } else { Err(QatError::invalid("bits", format!("packed widths are 2 to 8 bits, got {bits}"))) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_bit_values_share_a_byte_low_nibble_first() {
        assert_eq!(pack(&[1, -1, -8, 7], 4).unwrap(), [0xF1, 0x78]);
        assert_eq!(unpack(&[0xF1, 0x78], 4, 4).unwrap(), [1, -1, -8, 7]);
    }

    #[test]
    fn three_bit_fields_cross_byte_boundaries() {
        // 1 = 001, -4 = 100, 3 = 011: bit stream 001 | 100 | 011 from bit 0 -> 0b11_100_001, 0b0.
        assert_eq!(pack(&[1, -4, 3], 3).unwrap(), [0b1110_0001, 0b0000_0000]);
        assert_eq!(pack(&[0, 0, -1], 3).unwrap(), [0b1100_0000, 0b0000_0001]);
    }

    #[test]
    fn every_width_round_trips_its_whole_range() {
        for bits in 2..=8u32 {
            let (lo, hi) = (-(1i32 << (bits - 1)), (1i32 << (bits - 1)) - 1);
            let values: Vec<i8> = (0..301).map(|i| (lo + (i * 7919 % (hi - lo + 1))) as i8).collect();
            let packed = pack(&values, bits).unwrap();
            assert_eq!(packed.len(), (301 * bits as usize).div_ceil(8));
            assert_eq!(unpack(&packed, bits, values.len()).unwrap(), values, "{bits} bits");
            assert_eq!(bits_needed(&values), bits);
        }
    }

    #[test]
    fn values_that_do_not_fit_and_wrong_lengths_are_errors() {
        assert!(pack(&[2], 2).is_err());
        assert!(pack(&[-3], 2).is_err());
        assert!(pack(&[0], 9).is_err());
        assert!(unpack(&[0, 0], 4, 5).is_err());
        assert_eq!(bits_needed(&[]), 2);
        assert_eq!(bits_needed(&[-128, 127]), 8);
        assert_eq!(bits_needed(&[-2, 1]), 2);
        assert_eq!(bits_needed(&[2]), 3);
    }
}
