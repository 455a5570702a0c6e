use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{QatError, Result};
pub use crate::quant::ActivationQParams;
use crate::quant::round_half_even;
use crate::simd::multiversion;

/// A quantized activation tensor: u8 values, row-major, with their qparams.
#[derive(Clone, Debug, PartialEq)]
pub struct QTensor {
    pub values: Vec<u8>,
    pub shape: Vec<usize>,
    pub qparams: ActivationQParams,
}

impl QTensor {
    /// The real values `(q - z) * s`.
    pub fn dequantize(&self) -> Vec<f32> {
        let (s, z) = (self.qparams.scale, self.qparams.zero_point);
        self.values.iter().map(|&q| (q as i32 - z) as f32 * s).collect()
    }

    /// The dequantized values as a tensor of rank `D`.
    pub fn to_tensor<const D: usize>(&self, device: &Device) -> Result<Tensor<D>> {
        if self.shape.len() != D {
            return Err(QatError::shape("QTensor::to_tensor", format!("rank {D}"), format!("shape {:?}", self.shape)));
        }
        Ok(Tensor::from_data(TensorData::new(self.dequantize(), self.shape.clone()), device))
    }

    /// The integer values minus the zero point, as i32.
    pub(crate) fn centered(&self) -> Vec<i32> {
        let z = self.qparams.zero_point;
        self.values.iter().map(|&q| q as i32 - z).collect()
    }
}

/// `torch.ao.nn.quantized.Quantize`: float to u8 with fixed qparams.
#[derive(Clone, Debug, PartialEq)]
pub struct Quantize {
    pub qparams: ActivationQParams,
}

impl Quantize {
    pub fn new(qparams: ActivationQParams) -> Result<Self> {
        Ok(Self { qparams: qparams.validated("Quantize")? })
    }

    /// Quantizes host values with their shape. NaN is an error (it has no integer).
    pub fn quantize_values(&self, values: &[f32], shape: Vec<usize>) -> Result<QTensor> {
        // A fold rather than `any`: no early exit, so it vectorizes.
        if values.iter().fold(false, |nan, v| nan | v.is_nan()) {
            return Err(QatError::NonFinite { context: "Quantize".into(), what: "an input value (NaN)".into() });
        }
        let p = self.qparams;
        let inv = 1.0 / p.scale;
        let mut quantized = vec![0u8; values.len()];
        quantize_row(values, &mut quantized, inv, [p.zero_point as f32, p.quant_min as f32, p.quant_max as f32]);
        let values = quantized;
        Ok(QTensor { values, shape, qparams: p })
    }

    pub fn forward<const D: usize>(&self, x: &Tensor<D>) -> Result<QTensor> {
        let values =
            x.to_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| QatError::invalid("dtype", format!("Quantize: {e:?}")))?;
        self.quantize_values(&values, x.dims().to_vec())
    }
}

multiversion! {
    /// [`quantize_value`](crate::quant::quantize_value) with the clamped result (an integer in
    /// `[0, 255]`: the ranges are u8) read from the mantissa of `q + 2^23` instead of a saturating
    /// cast, so the loop vectorizes; the same bits (`quantize_matches_quantize_value` checks).
    fn quantize_row(values: &[f32], out: &mut [u8], inv_scale: f32, bounds: [f32; 3]) {
        let [zero_point, lo, hi] = bounds;
        for (q, &x) in out.iter_mut().zip(values) {
            let v = (zero_point + round_half_even(x * inv_scale)).max(lo).min(hi);
            *q = (v + 8_388_608.0).to_bits() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::quantize_value;

    #[test]
    fn quantize_matches_quantize_value() {
        // Ties at the scale's half steps, values past both ends, infinities, negative zero.
        let mut values: Vec<f32> = (-600..600).map(|i| i as f32 * 0.25).collect();
        values.extend([f32::INFINITY, f32::NEG_INFINITY, -0.0, 1e30, -1e30, f32::MIN_POSITIVE]);
        for (scale, zero_point, quant_min, quant_max) in [(0.5f32, 0, 0, 255), (1.0, 128, 0, 255), (0.1, 3, 0, 127), (2.0, 255, 0, 255)] {
            let qparams = ActivationQParams { scale, zero_point, quant_min, quant_max };
            let q = Quantize::new(qparams).unwrap().quantize_values(&values, vec![values.len()]).unwrap();
            for (&x, &got) in values.iter().zip(&q.values) {
                assert_eq!(got as i32, quantize_value(x, 1.0 / scale, zero_point, quant_min, quant_max), "x {x} qparams {qparams:?}");
            }
        }
        let nan = Quantize::new(ActivationQParams { scale: 1.0, zero_point: 0, quant_min: 0, quant_max: 255 })
            .unwrap()
            .quantize_values(&[1.0, f32::NAN], vec![2]);
        assert!(matches!(nan, Err(QatError::NonFinite { .. })), "{nan:?}");
    }
}
