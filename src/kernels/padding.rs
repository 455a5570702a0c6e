//! PyTorch's non-zero padding modes on integer activations. They are applied to the integers
//! (u8, or centered i32) before the convolution, so the kernel runs with padding 0: the float path's order
//! (pad, then convolve), and copies of real values rather than the zero point.

use std::borrow::Cow;
use std::fmt;

use crate::error::{QatError, Result};

/// How a conv pads its input (PyTorch's `padding_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PaddingMode {
    #[default]
    Zeros,
    Reflect,
    Replicate,
    Circular,
}

impl PaddingMode {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "zeros" => Ok(Self::Zeros),
            "reflect" => Ok(Self::Reflect),
            "replicate" => Ok(Self::Replicate),
            "circular" => Ok(Self::Circular),
            other => Err(QatError::invalid(
                "padding_mode",
                format!("unknown padding_mode {other:?}; expected zeros, reflect, replicate or circular"),
            )),
        }
    }
}

impl fmt::Display for PaddingMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Zeros => "zeros",
            Self::Reflect => "reflect",
            Self::Replicate => "replicate",
            Self::Circular => "circular",
        })
    }
}

/// The source index along an axis of `size` for padded index `i - pad`.
fn source(i: isize, size: usize, mode: PaddingMode) -> usize {
    let size = size as isize;
    let j = match mode {
        PaddingMode::Reflect => {
            if i < 0 {
                -i
            } else if i >= size {
                2 * (size - 1) - i
            } else {
                i
            }
        }
        PaddingMode::Replicate => i.clamp(0, size - 1),
        PaddingMode::Circular => i.rem_euclid(size),
        PaddingMode::Zeros => unreachable!("zeros padding is the kernel's"),
    };
    j as usize
}

/// Input `[N, C, D, H, W]` (a 2-d input has `D = 1` and depth padding 0) ready for the
/// kernel: the values, their shape, and the padding the kernel must still apply (all of it for
/// zeros padding, none for the other modes, which are materialized here). The geometry's
/// `check_input` has ruled out padding the modes cannot take (reflect `>= size`, circular
/// `> size`).
pub(crate) fn pad_for_kernel<T: Copy + Default>(
    x: &[T],
    dims: [usize; 5],
    padding: [usize; 3],
    mode: PaddingMode,
) -> (Cow<'_, [T]>, [usize; 5], [usize; 3]) {
    if mode == PaddingMode::Zeros || padding == [0; 3] {
        return (Cow::Borrowed(x), dims, padding);
    }
    let [n, c, d, h, w] = dims;
    let [pd, ph, pw] = padding;
    let (dp, hp, wp) = (d + 2 * pd, h + 2 * ph, w + 2 * pw);
    let mut out = vec![T::default(); n * c * dp * hp * wp];
    for volume in 0..n * c {
        for z in 0..dp {
            let sz = source(z as isize - pd as isize, d, mode);
            for y in 0..hp {
                let sy = source(y as isize - ph as isize, h, mode);
                let row = &mut out[((volume * dp + z) * hp + y) * wp..][..wp];
                let src = &x[((volume * d + sz) * h + sy) * w..][..w];
                for (xx, v) in row.iter_mut().enumerate() {
                    *v = src[source(xx as isize - pw as isize, w, mode)];
                }
            }
        }
    }
    (Cow::Owned(out), [n, c, dp, hp, wp], [0; 3])
}
