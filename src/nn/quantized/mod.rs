//! `torch.ao.nn.quantized` and `torch.ao.nn.intrinsic.quantized`: int8 modules that compute on
//! integers. Activations are u8 with a per-tensor (scale, zero point); weights i8 with per-channel
//! scales; accumulation in i32; requantization as specified in [`crate::quant::requantize`].
//! The 1-d, 2-d, 3-d and transposed convs are one module, [`QuantizedConv`], over their
//! geometry. A layer with weights (conv, transposed conv, linear) holds what it is built from:
//! its [`Int8Weight`], its int32 bias and its [`LayerQParams`] (the grids around it and the
//! fused-ReLU flag: `ConvReLU2d` is a [`Conv2d`] with `qparams.relu`). Every conv runs on one
//! integer GEMM over three spatial axes (1-d and 2-d as flat 3-d; the transposed conv as a 1x1
//! product then a scatter); each has an f64 reference path ([`Conv2d::forward_reference`], ...).

mod add;
mod batch_norm;
mod concat;
mod conv;
mod conv_parts;
mod hardswish;
mod linear;
mod parts;
mod qtensor;
mod reference;

pub use add::Add;
pub use batch_norm::BatchNorm2d;
pub use concat::Concat;
pub use conv::{Conv1d, Conv2d, Conv3d, ConvTranspose2d, Int8ConvGeometry, Int8ConvKind, Int8Window, QuantizedConv};
pub use hardswish::{Hardswish, hardswish_f32};
pub use linear::Linear;
pub use parts::{Int8Weight, LayerQParams};
pub use qtensor::{ActivationQParams, QTensor, Quantize};
