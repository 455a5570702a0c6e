use std::fmt;

use super::{QuantDtype, QuantRange};
use crate::error::{QatError, Result};

/// How a tensor's values map to integers: one (scale, zero point) for the tensor or one per
/// channel, with a free zero point (affine) or one fixed at the middle of the range (symmetric).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QScheme {
    PerTensorAffine,
    PerTensorSymmetric,
    PerChannelAffine,
    PerChannelSymmetric,
}

impl QScheme {
    pub fn is_symmetric(self) -> bool {
        matches!(self, Self::PerTensorSymmetric | Self::PerChannelSymmetric)
    }

    pub fn is_per_channel(self) -> bool {
        matches!(self, Self::PerChannelAffine | Self::PerChannelSymmetric)
    }

    /// PyTorch's name (`torch.per_channel_symmetric` without the prefix).
    pub fn name(self) -> &'static str {
        match self {
            Self::PerTensorAffine => "per_tensor_affine",
            Self::PerTensorSymmetric => "per_tensor_symmetric",
            Self::PerChannelAffine => "per_channel_affine",
            Self::PerChannelSymmetric => "per_channel_symmetric",
        }
    }

    pub fn parse(name: &str) -> Result<Self> {
        match name.trim_start_matches("torch.") {
            "per_tensor_affine" => Ok(Self::PerTensorAffine),
            "per_tensor_symmetric" => Ok(Self::PerTensorSymmetric),
            "per_channel_affine" => Ok(Self::PerChannelAffine),
            "per_channel_symmetric" => Ok(Self::PerChannelSymmetric),
            other => Err(QatError::invalid(
                "qscheme",
                format!(
                    "unknown qscheme {other:?}; expected per_tensor_affine, per_tensor_symmetric, \
                     per_channel_affine or per_channel_symmetric"
                ),
            )),
        }
    }
}

impl fmt::Display for QScheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Everything the qparam formulas need to know about a quantizer: the dtype, the scheme, the
/// effective range, whether the user chose that range, and the observer's `eps` floor.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QuantSpec {
    pub dtype: QuantDtype,
    pub qscheme: QScheme,
    pub range: QuantRange,
    /// PyTorch's `has_customized_qrange`: it changes the quint8 symmetric zero point
    /// (128 for the default range, `(qmin + qmax) / 2` for a custom one).
    pub custom_range: bool,
    pub eps: f32,
}
