//! PyTorch's `padding` argument of the convolutions: numbers (one for every axis, or one per
//! axis), `"valid"` (none) or `"same"` (the output as large as the input).

use crate::error::{QatError, Result};

/// A conv's `padding`, over `N` spatial axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding<const N: usize> {
    /// So many input elements before and after each axis.
    Explicit([usize; N]),
    /// PyTorch's `padding="valid"`: none.
    Valid,
    /// PyTorch's `padding="same"`: each axis padded by `dilation * (kernel - 1)` in all, so that a
    /// stride-1 conv keeps the input's size; where that total is odd (an even kernel extent),
    /// one more element after than before, as PyTorch pads.
    Same,
}

impl<const N: usize> Padding<N> {
    /// `"same"` or `"valid"`, as PyTorch spells them.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "same" => Ok(Self::Same),
            "valid" => Ok(Self::Valid),
            other => Err(QatError::invalid("padding", format!("padding {other:?}: expected \"same\", \"valid\" or numbers"))),
        }
    }

    /// The padding per axis, for a conv of `kernel` and `dilation` (before validation: `Same`
    /// gives the half of each total, rounded down).
    pub(crate) fn resolve(self, kernel: [usize; N], dilation: [usize; N]) -> [usize; N] {
        match self {
            Self::Explicit(p) => p,
            Self::Valid => [0; N],
            Self::Same => std::array::from_fn(|i| dilation[i] * kernel[i].saturating_sub(1) / 2),
        }
    }
}

impl<const N: usize> From<usize> for Padding<N> {
    fn from(v: usize) -> Self {
        Self::Explicit([v; N])
    }
}

impl<const N: usize> From<[usize; N]> for Padding<N> {
    fn from(v: [usize; N]) -> Self {
        Self::Explicit(v)
    }
}

impl From<(usize, usize)> for Padding<2> {
    fn from((a, b): (usize, usize)) -> Self {
        Self::Explicit([a, b])
    }
}

impl From<(usize, usize, usize)> for Padding<3> {
    fn from((a, b, c): (usize, usize, usize)) -> Self {
        Self::Explicit([a, b, c])
    }
}

/// PyTorch's check of `padding="same"`, as an error: no stride.
pub(crate) fn check_same_padding<const N: usize>(stride: [usize; N]) -> Result<()> {
    if stride.iter().any(|&s| s != 1) {
        return Err(QatError::invalid(
            "padding",
            format!("padding=\"same\" is not supported for strided convolutions (stride {stride:?}); give the padding as numbers"),
        ));
    }
    Ok(())
}

/// The padding after each axis: `before`, plus the odd element of `"same"` padding's total
/// (`dilation * (kernel - 1)`), which PyTorch puts after.
pub(crate) fn padding_after<const N: usize>(same: bool, before: [usize; N], kernel: [usize; N], dilation: [usize; N]) -> [usize; N] {
    std::array::from_fn(|i| before[i] + usize::from(same && (dilation[i] * kernel[i].saturating_sub(1)) % 2 == 1))
}
