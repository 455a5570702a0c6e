use std::fmt;

use crate::error::{QatError, Result};

/// The integer type that quantized values are stored in (PyTorch's `torch.qint8`, ...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantDtype {
    /// Signed 8 bit, -128..=127.
    QInt8,
    /// Unsigned 8 bit, 0..=255.
    QUInt8,
    /// Signed 32 bit; the carrier for custom ranges wider than 8 bits (up to 16 bits here).
    QInt32,
}

impl QuantDtype {
    /// The full range the dtype can hold.
    pub fn bounds(self) -> (i64, i64) {
        match self {
            Self::QInt8 => (-128, 127),
            Self::QUInt8 => (0, 255),
            Self::QInt32 => (i32::MIN as i64, i32::MAX as i64),
        }
    }

    /// The storage width in bits (PyTorch `torch.iinfo(dtype).bits`).
    pub fn bits(self) -> u32 {
        match self {
            Self::QInt8 | Self::QUInt8 => 8,
            Self::QInt32 => 32,
        }
    }

    /// PyTorch's name, as used in configs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::QInt8 => "qint8",
            Self::QUInt8 => "quint8",
            Self::QInt32 => "qint32",
        }
    }

    /// Parses PyTorch's name (`"qint8"`, `"torch.quint8"`, ...).
    pub fn parse(name: &str) -> Result<Self> {
        match name.trim_start_matches("torch.") {
            "qint8" | "int8" => Ok(Self::QInt8),
            "quint8" | "uint8" => Ok(Self::QUInt8),
            "qint32" | "int32" => Ok(Self::QInt32),
            other => Err(QatError::invalid("dtype", format!("unknown quantized dtype {other:?}; expected qint8, quint8 or qint32"))),
        }
    }
}

impl fmt::Display for QuantDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The effective integer range `[quant_min, quant_max]` values are clamped to, after any
/// `reduce_range` halving. Built only through [`QuantRange::resolve`], which applies PyTorch's
/// `calculate_qmin_qmax` and its validity checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct QuantRange {
    pub quant_min: i32,
    pub quant_max: i32,
}

/// Custom ranges may be 2 to 16 bits wide: at least 4 levels, at most 65536.
const MAX_CUSTOM_LEVELS: i64 = 1 << 16;

impl QuantRange {
    /// The effective range for a dtype, an optional user range, and `reduce_range`
    /// (PyTorch `calculate_qmin_qmax`: a custom range is halved with floor division,
    /// `(-128, 127) -> (-64, 63)`; the defaults are qint8 (-128, 127), quint8 (0, 255),
    /// qint32 the full i32 range).
    pub fn resolve(dtype: QuantDtype, custom: Option<(i64, i64)>, reduce_range: bool) -> Result<Self> {
        let (lo, hi) = match custom {
            Some((quant_min, quant_max)) => {
                Self::validate_custom(dtype, quant_min, quant_max)?;
                if reduce_range { (quant_min.div_euclid(2), quant_max.div_euclid(2)) } else { (quant_min, quant_max) }
            }
            None => match (dtype, reduce_range) {
                (QuantDtype::QInt8, false) => (-128, 127),
                (QuantDtype::QInt8, true) => (-64, 63),
                (QuantDtype::QUInt8, false) => (0, 255),
                (QuantDtype::QUInt8, true) => (0, 127),
                (QuantDtype::QInt32, _) => dtype.bounds(),
            },
        };
        Ok(Self { quant_min: lo as i32, quant_max: hi as i32 })
    }

    /// A range given directly, checked the same way as a custom observer range.
    pub fn new(dtype: QuantDtype, quant_min: i64, quant_max: i64) -> Result<Self> {
        Self::resolve(dtype, Some((quant_min, quant_max)), false)
    }

    fn validate_custom(dtype: QuantDtype, quant_min: i64, quant_max: i64) -> Result<()> {
        let err = |reason: String| QatError::InvalidRange { quant_min, quant_max, reason };
        if quant_min > quant_max {
            return Err(err("quant_min must be <= quant_max".into()));
        }
        if quant_min >= quant_max {
            return Err(err("quant_min must be strictly less than quant_max".into()));
        }
        if !(quant_min <= 0 && 0 <= quant_max) {
            return Err(err("the range must include 0 (quant_min <= 0 <= quant_max)".into()));
        }
        let (lo, hi) = dtype.bounds();
        if quant_min < lo || quant_max > hi {
            return Err(err(format!("outside the {dtype} range [{lo}, {hi}]; use a wider dtype (qint32 carries up to 16 bits)")));
        }
        let levels = quant_max - quant_min + 1;
        if levels > MAX_CUSTOM_LEVELS {
            return Err(err(format!("{levels} levels is wider than 16 bits")));
        }
        Ok(())
    }

    /// Number of representable levels minus one, `quant_max - quant_min`.
    pub fn span(&self) -> i64 {
        self.quant_max as i64 - self.quant_min as i64
    }

    /// The bit width of the range, rounded up (`0..=255 -> 8`, `0..=127 -> 7`).
    pub fn bits(&self) -> u32 {
        let levels = (self.span() + 1) as u64;
        64 - (levels - 1).leading_zeros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_reduce_range() {
        let r = |d, rr| QuantRange::resolve(d, None, rr).unwrap();
        assert_eq!(r(QuantDtype::QInt8, false), QuantRange { quant_min: -128, quant_max: 127 });
        assert_eq!(r(QuantDtype::QInt8, true), QuantRange { quant_min: -64, quant_max: 63 });
        assert_eq!(r(QuantDtype::QUInt8, false), QuantRange { quant_min: 0, quant_max: 255 });
        assert_eq!(r(QuantDtype::QUInt8, true), QuantRange { quant_min: 0, quant_max: 127 });
        assert_eq!(r(QuantDtype::QInt32, true).quant_min, i32::MIN);
    }

    #[test]
    fn custom_ranges_halve_with_floor_division() {
        let r = |d, lo, hi| QuantRange::resolve(d, Some((lo, hi)), true).unwrap();
        assert_eq!(r(QuantDtype::QUInt8, 0, 255), QuantRange { quant_min: 0, quant_max: 127 });
        assert_eq!(r(QuantDtype::QInt8, -127, 127), QuantRange { quant_min: -64, quant_max: 63 });
        assert_eq!(r(QuantDtype::QInt8, -8, 7), QuantRange { quant_min: -4, quant_max: 3 });
    }

    #[test]
    fn widths_from_2_to_16_bits() {
        assert_eq!(QuantRange::new(QuantDtype::QUInt8, 0, 3).unwrap().bits(), 2);
        assert_eq!(QuantRange::new(QuantDtype::QUInt8, 0, 15).unwrap().bits(), 4);
        assert_eq!(QuantRange::new(QuantDtype::QInt32, -32768, 32767).unwrap().bits(), 16);
        assert!(matches!(
            QuantRange::new(QuantDtype::QInt32, -32768, 32768),
            Err(crate::QatError::InvalidRange { quant_min: -32768, quant_max: 32768, .. })
        ));
    }

    #[test]
    fn invalid_ranges_are_typed_errors() {
        for (d, lo, hi) in [
            (QuantDtype::QInt8, 5, -5),
            (QuantDtype::QInt8, 3, 3),
            (QuantDtype::QUInt8, 1, 255),
            (QuantDtype::QUInt8, -128, 127),
            (QuantDtype::QInt8, -129, 127),
        ] {
            let e = QuantRange::new(d, lo, hi).unwrap_err();
            assert!(matches!(e, QatError::InvalidRange { .. }), "{e}");
        }
    }
}
