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
/// kernel: the values, their shape, and the padding the kernel must still apply on both sides of
/// each axis. Zeros padding is the kernel's (it reads the zero point outside the input) except
/// where `after` exceeds `before` (the odd element of an asymmetric `"same"` padding): that much
/// is materialized here with `zero`, so the kernel pads symmetrically. The other modes are
/// materialized here entirely. The geometry's `check_input` has ruled out padding the modes
/// cannot take (reflect `>= size`, circular `> size`).
pub(crate) fn pad_for_kernel<T: Copy>(
    x: &[T],
    dims: [usize; 5],
    before: [usize; 3],
    after: [usize; 3],
    mode: PaddingMode,
    zero: T,
) -> (Cow<'_, [T]>, [usize; 5], [usize; 3]) {
    let zeros = mode == PaddingMode::Zeros;
    let (lead, kernel_padding) = if zeros { ([0; 3], before) } else { (before, [0; 3]) };
    let trail: [usize; 3] = std::array::from_fn(|i| if zeros { after[i] - before[i] } else { after[i] });
    if lead == [0; 3] && trail == [0; 3] {
        return (Cow::Borrowed(x), dims, kernel_padding);
    }
    let [n, c, d, h, w] = dims;
    let [dp, hp, wp] = [d + lead[0] + trail[0], h + lead[1] + trail[1], w + lead[2] + trail[2]];
    // The source index of padded index `i` along an axis of `size` led by `pad`; `None` reads `zero`.
    let at = |i: usize, pad: usize, size: usize| {
        let i = i as isize - pad as isize;
        if zeros { (0..size as isize).contains(&i).then_some(i as usize) } else { Some(source(i, size, mode)) }
    };
    let mut out = vec![zero; n * c * dp * hp * wp];
    for volume in 0..n * c {
        for z in 0..dp {
            let Some(sz) = at(z, lead[0], d) else { continue };
            for y in 0..hp {
                let Some(sy) = at(y, lead[1], h) else { continue };
                let row = &mut out[((volume * dp + z) * hp + y) * wp..][..wp];
                let src = &x[((volume * d + sz) * h + sy) * w..][..w];
                for (xx, v) in row.iter_mut().enumerate() {
                    if let Some(sx) = at(xx, lead[2], w) {
                        *v = src[sx];
                    }
                }
            }
        }
    }
    (Cow::Owned(out), [n, c, dp, hp, wp], kernel_padding)
}
