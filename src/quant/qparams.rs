//! The two formulas PyTorch uses to turn a (min, max) range into (scale, zero point).
//!
//! - [`observer_qparams`]: the observers' `_calculate_qparams`, in f32, with an `eps` floor on
//!   the scale. PyTorch's `convert` always uses this one.
//! - [`choose_qparams`]: fbgemm's `ChooseQuantizationParams`, partly in f64, with a 6.1e-5
//!   floor. PyTorch's fused fake quant (`get_default_qat_qconfig(..., version=1)`) trains with it.
//!
//! They differ in the symmetric case (`max(|min|, max) / 127.5` against
//! `max(|min| / 128, max / 127)`, and one-sided ranges), which is PyTorch issue #88800.
//! [`QParamFormula`] names them so every caller says which one it uses.

use super::{QuantDtype, QuantSpec, round_half_even};

/// Which of the two qparam formulas to use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QParamFormula {
    /// The observers' f32 formula with `eps` (spec §4.3).
    Observer,
    /// fbgemm's `ChooseQuantizationParams` (spec §3.4).
    ChooseQParams,
}

impl QParamFormula {
    /// (scale, zero point) for one (min, max) pair under this formula.
    pub fn compute(self, min: f32, max: f32, spec: &QuantSpec) -> (f32, i32) {
        match self {
            Self::Observer => observer_qparams(min, max, spec),
            Self::ChooseQParams => choose_qparams(min, max, spec.range.quant_min, spec.range.quant_max, spec.qscheme.is_symmetric()),
        }
    }
}

/// Per-tensor (length 1) or per-channel quantization parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct QParams {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i32>,
}

impl QParams {
    /// PyTorch's answer for an observer that has seen nothing: scale 1, zero point 0.
    pub fn unobserved() -> Self {
        Self { scale: vec![1.0], zero_point: vec![0] }
    }

    /// Applies `formula` to each (min, max) pair.
    pub fn from_min_max(min: &[f32], max: &[f32], spec: &QuantSpec, formula: QParamFormula) -> Self {
        let (scale, zero_point) = min.iter().zip(max).map(|(&lo, &hi)| formula.compute(lo, hi, spec)).unzip();
        Self { scale, zero_point }
    }
}

/// The observers' formula (PyTorch `UniformQuantizationObserverBase._calculate_qparams`), for one
/// (min, max) pair, in f32 as PyTorch computes it:
///
/// - symmetric: `scale = max(-min_neg, max_pos) / ((qmax - qmin) / 2)`, floored at `eps`; zero
///   point 0, or for quint8 128 (default range) / `(qmin + qmax) / 2` (custom range);
/// - affine: `scale = (max_pos - min_neg) / (qmax - qmin)`, floored at `eps`;
///   `zp = clamp(qmin - rne(min_neg / scale), qmin, qmax)`,
///
/// where `min_neg = min(min, 0)` and `max_pos = max(max, 0)`. There is no special case for
/// `min == max`: an all-zero input gets `scale = eps`.
pub fn observer_qparams(min: f32, max: f32, spec: &QuantSpec) -> (f32, i32) {
    let (qmin, qmax) = (spec.range.quant_min, spec.range.quant_max);
    let min_neg = min.min(0.0);
    let max_pos = max.max(0.0);
    if spec.qscheme.is_symmetric() {
        let max_pos = (-min_neg).max(max_pos);
        let half_span = ((qmax as i64 - qmin as i64) as f64 / 2.0) as f32;
        let scale = (max_pos / half_span).max(spec.eps);
        let zero_point = match spec.dtype {
            QuantDtype::QUInt8 if spec.custom_range => (qmin + qmax).div_euclid(2),
            QuantDtype::QUInt8 => 128,
            _ => 0,
        };
        (scale, zero_point)
    } else {
        let span = (qmax as i64 - qmin as i64) as f32;
        let scale = ((max_pos - min_neg) / span).max(spec.eps);
        let shift = round_half_even(min_neg / scale);
        let zero_point = (qmin as f64 - shift as f64).clamp(qmin as f64, qmax as f64) as i32;
        (scale, zero_point)
    }
}

/// fbgemm's smallest scale: below it, ChooseQuantizationParams stretches the range.
pub const SMALL_SCALE_THRESHOLD: f32 = 6.1e-5;

/// fbgemm's `ChooseQuantizationParams(min, max, qmin, qmax, preserve_sparsity, false)`, as used by
/// PyTorch's fused moving-average fake quant, with fbgemm's mix of f32 and f64 arithmetic:
///
/// - with `preserve_sparsity` (symmetric schemes) and a range that straddles zero, the range is
///   made symmetric around a zero point in the middle: `scale = max(|min| / 128, max / 127)` for
///   8 bits. A one-sided range skips this and comes out *affine* (zp -128 for qint8 weights that
///   are all positive);
/// - a zero or non-invertible scale becomes 0.1; a scale below 6.1e-5 is raised to it.
pub fn choose_qparams(min: f32, max: f32, qmin: i32, qmax: i32, preserve_sparsity: bool) -> (f32, i32) {
    let (mut min, mut max) = (min, max);
    let straddles_zero = min < 0.0 && max > 0.0;
    if straddles_zero && preserve_sparsity {
        let symmetric_qmin = -((qmax - qmin) / 2 + 1);
        let symmetric_qmax = (qmax - qmin) / 2;
        // f32 divisions, then the larger one widened to f64, as in fbgemm.
        let max_scale = (min / symmetric_qmin as f32).abs().max((max / symmetric_qmax as f32).abs()) as f64;
        min = (max_scale * symmetric_qmin as f64) as f32;
        max = (max_scale * symmetric_qmax as f64) as f32;
    }
    min = min.min(0.0);
    max = max.max(0.0);

    let span = (qmax - qmin) as f64;
    let mut scale = (max as f64 - min as f64) / span;
    if scale as f32 == 0.0 || (1.0f32 / scale as f32).is_infinite() {
        scale = 0.1;
    }
    if scale < SMALL_SCALE_THRESHOLD as f64 {
        let original = scale as f32;
        scale = SMALL_SCALE_THRESHOLD as f64;
        if min == 0.0 {
            max = SMALL_SCALE_THRESHOLD * (qmax - qmin) as f32;
        } else if max == 0.0 {
            min = -SMALL_SCALE_THRESHOLD * (qmax - qmin) as f32;
        } else {
            let amplifier = SMALL_SCALE_THRESHOLD / original;
            min *= amplifier;
            max *= amplifier;
        }
    }

    let zp_from_min = qmin as f64 - min as f64 / scale;
    let zp_from_max = qmax as f64 - max as f64 / scale;
    let zp_from_min_error = (qmin as f64).abs() - (min as f64 / scale).abs();
    let zp_from_max_error = (qmax as f64).abs() - (max as f64 / scale).abs();
    let mut initial_zp = if zp_from_min_error < zp_from_max_error { zp_from_min } else { zp_from_max };
    if straddles_zero_after(min, max) && preserve_sparsity {
        initial_zp = (qmin + qmax) as f64 / 2.0;
    }
    let zero_point = if initial_zp < qmin as f64 {
        qmin
    } else if initial_zp > qmax as f64 {
        qmax
    } else {
        initial_zp.round_ties_even() as i32
    };
    (scale as f32, zero_point)
}

/// fbgemm re-tests `min < 0 && max > 0` on the adjusted range before forcing the middle zero point.
fn straddles_zero_after(min: f32, max: f32) -> bool {
    min < 0.0 && max > 0.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::{QScheme, QuantRange};

    fn spec(dtype: QuantDtype, qscheme: QScheme, custom: Option<(i64, i64)>) -> QuantSpec {
        QuantSpec {
            dtype,
            qscheme,
            range: QuantRange::resolve(dtype, custom, false).unwrap(),
            custom_range: custom.is_some(),
            eps: f32::EPSILON,
        }
    }

    #[test]
    fn observer_formula_edge_cases() {
        let affine_u8 = spec(QuantDtype::QUInt8, QScheme::PerTensorAffine, None);
        let affine_i8 = spec(QuantDtype::QInt8, QScheme::PerTensorAffine, None);
        let sym_i8 = spec(QuantDtype::QInt8, QScheme::PerTensorSymmetric, None);
        let sym_u8 = spec(QuantDtype::QUInt8, QScheme::PerTensorSymmetric, None);
        let sym_u8_custom = spec(QuantDtype::QUInt8, QScheme::PerTensorSymmetric, Some((0, 255)));
        // All zeros: eps scale, zero point at the bottom (affine) or middle (symmetric).
        assert_eq!(observer_qparams(0.0, 0.0, &affine_u8), (f32::EPSILON, 0));
        assert_eq!(observer_qparams(0.0, 0.0, &affine_i8), (f32::EPSILON, -128));
        assert_eq!(observer_qparams(0.0, 0.0, &sym_i8), (f32::EPSILON, 0));
        assert_eq!(observer_qparams(0.0, 0.0, &sym_u8), (f32::EPSILON, 128));
        // The quint8 symmetric quirk: 128 with the default range, 127 with an explicit 0..255.
        assert_eq!(observer_qparams(-1.0, 1.0, &sym_u8_custom).1, 127);
        // One-sided ranges are widened to include zero.
        assert_eq!(observer_qparams(3.0, 3.0, &affine_u8), (3.0 / 255.0, 0));
        assert_eq!(observer_qparams(-3.0, -3.0, &affine_u8), (3.0 / 255.0, 255));
    }

    #[test]
    fn choose_qparams_edge_cases() {
        // Spec §3.4 example: symmetric qint8 picks max(|min|/128, max/127).
        let (s, z) = choose_qparams(-1.149422, 2.533506, -128, 127, true);
        assert_eq!((s, z), (2.533506f32 / 127.0, 0));
        // One-sided under a symmetric scheme comes out affine with zp -128.
        let (s, z) = choose_qparams(0.0, 2.55, -128, 127, true);
        assert_eq!((s, z), ((2.55f32 as f64 / 255.0) as f32, -128));
        // Zero range: scale 0.1; zero point 127 (symmetric qint8) or 0 (affine quint8).
        assert_eq!(choose_qparams(0.0, 0.0, -128, 127, true), (0.1, 127));
        assert_eq!(choose_qparams(0.0, 0.0, 0, 255, false), (0.1, 0));
        // Tiny ranges are stretched to the 6.1e-5 floor.
        assert_eq!(choose_qparams(0.0, 1e-6, 0, 255, false).0, SMALL_SCALE_THRESHOLD);
    }
}
