//! The qparams of an activation as the int8 engine stores it: per tensor, u8. Built by the
//! fake quant that observed the activation, consumed by the int8 modules and the export, so it
//! lives here, below both.

use crate::error::{QatError, Result};

/// Per-tensor quantization parameters of an activation, with its integer range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivationQParams {
    pub scale: f32,
    pub zero_point: i32,
    pub quant_min: i32,
    pub quant_max: i32,
}

impl ActivationQParams {
    /// The same grid saturating at the whole u8 range, `[0, 255]`.
    pub fn full_range(self) -> Self {
        Self { quant_min: 0, quant_max: 255, ..self }
    }

    /// Checks that the parameters describe an unsigned 8-bit activation (quint8 ranges,
    /// reduced or low-bit ones included): what the int8 kernels store in `u8`.
    pub fn validated(self, layer: &str) -> Result<Self> {
        if !(self.scale.is_finite() && self.scale > 0.0) {
            return Err(QatError::invalid("scale", format!("{layer}: activation scale {} must be finite and positive", self.scale)));
        }
        if self.quant_min < 0 || self.quant_max > 255 || self.quant_min >= self.quant_max {
            let field = if self.quant_max > 255 { "quant_max" } else { "quant_min" };
            return Err(QatError::invalid(
                field,
                format!(
                    "{layer}: activation range [{}, {}] is not an unsigned 8-bit range; the int8 engine stores activations as u8 (use quint8 activations)",
                    self.quant_min, self.quant_max
                ),
            ));
        }
        if self.zero_point < self.quant_min || self.zero_point > self.quant_max {
            return Err(QatError::invalid(
                "zero_point",
                format!("{layer}: zero point {} outside [{}, {}]", self.zero_point, self.quant_min, self.quant_max),
            ));
        }
        Ok(self)
    }
}
