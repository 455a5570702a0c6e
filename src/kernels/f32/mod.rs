//! The f32 kernels under the training ops: the 2-d convolution's forward and both gradients
//! (im2col into a GEMM, a depthwise path with explicit SIMD, the bias), on slices. `ops::conv2d`
//! wraps them as a burn op with its own backward.

pub(crate) mod conv2d_bias;
pub(crate) mod conv2d_depthwise;
pub(crate) mod conv2d_gemm;
mod conv2d_im2col;
pub(crate) mod conv2d_shape;
pub(crate) mod conv2d_simd;
