use burn::tensor::{Device, Tensor, TensorData};

use crate::error::{QatError, Result};
use crate::quant::quantize_value;

/// Per-tensor quantization parameters of an activation, with its integer range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationQParams {
    pub scale: f32,
    pub zero_point: i32,
    pub quant_min: i32,
    pub quant_max: i32,
}

impl ActivationQParams {
    /// Checks that the parameters describe an unsigned 8-bit activation (quint8 ranges,
    /// reduced or low-bit ones included): what the int8 kernels store in `u8`.
    pub fn validated(self, layer: &str) -> Result<Self> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(QatError::config(format!("{layer}: activation scale {} must be finite and positive", self.scale)));
        }
        if self.quant_min < 0 || self.quant_max > 255 || self.quant_min >= self.quant_max {
            return Err(QatError::config(format!(
                "{layer}: activation range [{}, {}] is not an unsigned 8-bit range; the int8 engine stores activations as u8 (use quint8 activations)",
                self.quant_min, self.quant_max
            )));
        }
        if self.zero_point < self.quant_min || self.zero_point > self.quant_max {
            return Err(QatError::config(format!(
                "{layer}: zero point {} outside [{}, {}]",
                self.zero_point, self.quant_min, self.quant_max
            )));
        }
        Ok(self)
    }
}

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
        if values.iter().any(|v| v.is_nan()) {
            return Err(QatError::NonFinite { context: "Quantize".into(), what: "an input value (NaN)".into() });
        }
        let p = self.qparams;
        let inv = 1.0 / p.scale;
        let values = values.iter().map(|&x| quantize_value(x, inv, p.zero_point, p.quant_min, p.quant_max) as u8).collect();
        Ok(QTensor { values, shape, qparams: p })
    }

    pub fn forward<const D: usize>(&self, x: &Tensor<D>) -> Result<QTensor> {
        let values = x.to_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| QatError::config(format!("Quantize: {e:?}")))?;
        self.quantize_values(&values, x.dims().to_vec())
    }
}
