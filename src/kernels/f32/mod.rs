//! The float kernels under the training ops, on slices of f32 (and f64 where the ops take it):
//! the 2-d convolution's forward and both gradients (im2col into a GEMM, a depthwise path with
//! explicit SIMD, the bias), batch norm's statistics, apply and backward, fake quantization,
//! and the observers' min/max. `ops/` wraps them as burn ops with their own backward.

pub(crate) mod bn;
pub(crate) mod conv2d_bias;
pub(crate) mod conv2d_depthwise;
pub(crate) mod conv2d_gemm;
mod conv2d_im2col;
pub(crate) mod conv2d_shape;
pub(crate) mod conv2d_simd;
pub(crate) mod fake_quant;
pub(crate) mod minmax;
