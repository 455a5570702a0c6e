use crate::error::{QatError, Result};

/// Where fake quantization's scale and zero point come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Quantizer {
    /// Observers (running min/max): PyTorch's `FakeQuantize` and its fused variant.
    #[default]
    Fixed,
    /// LSQ (Esser et al. 2020): learned scales with LSQ's gradient scaling, started from the
    /// observers' estimate on the first batch; zero points stay at that estimate.
    Lsq,
    /// LSQ+ (Bhalgat et al. 2020): learned scales and learned zero points (offsets), which suits
    /// asymmetric activations. PyTorch's `_LearnableFakeQuantize` with `use_grad_scaling=True`.
    LsqPlus,
    /// PACT (Choi et al. 2018): a learned clip level for activations, learning only from the
    /// values it clips. Activations only: as a model-wide choice, weights stay fixed.
    Pact,
}

impl Quantizer {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "fixed" => Ok(Self::Fixed),
            "lsq" => Ok(Self::Lsq),
            "lsq+" => Ok(Self::LsqPlus),
            "pact" => Ok(Self::Pact),
            other => Err(QatError::invalid("quantizer", format!("unknown quantizer {other:?}; expected fixed, lsq, lsq+ or pact"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fixed => "fixed",
            Self::Lsq => "lsq",
            Self::LsqPlus => "lsq+",
            Self::Pact => "pact",
        }
    }

    /// The quantizer weights take when this one is chosen for a whole model: itself, except
    /// PACT, which clips activations only (weights then keep fixed quantizers).
    pub fn for_weights(self) -> Self {
        if self == Self::Pact { Self::Fixed } else { self }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for q in [Quantizer::Fixed, Quantizer::Lsq, Quantizer::LsqPlus, Quantizer::Pact] {
            assert_eq!(Quantizer::parse(q.name()).unwrap(), q);
        }
        assert!(Quantizer::parse("dorefa").unwrap_err().to_string().contains("expected fixed, lsq, lsq+ or pact"));
    }
}
