//! The int8 engine's integer kernels on slices: the u8 x i8 GEMM with its packed weights, the
//! convolutions over three spatial axes (im2col into the GEMM, a depthwise path, the transposed
//! conv's 1x1 product on the same GEMM and its scatter) and the requantization of their
//! accumulators. Integer
//! arithmetic, so every build and thread count gives the same bits; `nn::quantized` checks its
//! modules' parameters and calls in here.

pub(crate) mod conv;
pub(crate) mod conv_transpose;
mod depthwise;
#[doc(hidden)]
pub mod gemm;
pub(crate) mod requantize;
