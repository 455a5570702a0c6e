use burn::tensor::Tensor;
use burn::tensor::module::conv3d;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::PaddingMode;
use super::geometry::{ConvGeometry, check_conv_parameters, circular_pad};
use super::padding::{Padding, check_same_padding};
use crate::error::{QatError, Result};

super::spatial_options::spatial_conv_options!(
    /// The geometry of a 3-d convolution over `[N, C, D, H, W]`, with PyTorch's defaults.
    Conv3dOptions,
    Size3,
    3,
    "A 3-d size given as one number or a triple (PyTorch's `_triple`).",
    rank: 5,
    spatial: "D, H, W",
    dims: "3d",
    conv: conv3d
);

super::geometry::constant_module!(Conv3dOptions);
