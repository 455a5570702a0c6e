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
    /// PyTorch's `padding="same"`: each axis padded by `dilation * (kernel - 1) / 2` on both
    /// sides, so that a stride-1 conv keeps the input's size. Where that total is odd (an even
    /// kernel extent) PyTorch pads one more element after than before; that asymmetric case is
    /// refused here (see [`same_padding`]).
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

/// PyTorch's checks of `padding="same"`, as errors: no stride, and (beyond PyTorch, which pads
/// asymmetrically there) a total padding per axis that splits evenly.
pub(crate) fn check_same_padding<const N: usize>(kernel: [usize; N], dilation: [usize; N], stride: [usize; N]) -> Result<()> {
    if stride.iter().any(|&s| s != 1) {
        return Err(QatError::invalid(
            "padding",
            format!("padding=\"same\" is not supported for strided convolutions (stride {stride:?}); give the padding as numbers"),
        ));
    }
    for axis in 0..N {
        let total = dilation[axis] * kernel[axis].saturating_sub(1);
        if total % 2 == 1 {
            return Err(QatError::invalid(
                "padding",
                format!(
                    "padding=\"same\" with kernel {kernel:?} and dilation {dilation:?} needs {total} padding elements on axis {axis}, \
                     {} before and {} after; asymmetric padding is not supported yet: use an odd kernel size or explicit padding",
                    total / 2,
                    total - total / 2
                ),
            ));
        }
    }
    Ok(())
}
