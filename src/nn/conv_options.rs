//! Convolution geometry shared by every 2-d conv module: sizes, padding mode, validation, and
//! the functional forward that applies non-zero padding modes explicitly, as PyTorch does.

use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::geometry::{ConvGeometry, check_conv_parameters, circular_pad};
use super::padding::{Padding, check_same_padding};
use crate::error::{QatError, Result};
pub use crate::kernels::PaddingMode;

impl From<(usize, usize)> for Size2 {
    fn from((a, b): (usize, usize)) -> Self {
        Self([a, b])
    }
}

super::spatial_options::spatial_conv_options!(
    /// The geometry of a 2-d convolution, with PyTorch's defaults (stride 1, padding 0, dilation
    /// 1, groups 1, zeros padding).
    Conv2dOptions,
    Size2,
    2,
    "A 2-d size given as one number or a pair (PyTorch's `_pair`).",
    rank: 4,
    spatial: "H, W",
    dims: "2d",
    // This crate's convolution (its own backward); it falls back to burn's for non-f32 tensors.
    conv: crate::ops::conv2d
);

super::geometry::constant_module!(Conv2dOptions);
