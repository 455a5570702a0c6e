//! Tensor ops with their own backward. The only module that touches burn's backend internals.

mod conv2d;
mod conv2d_bias;
mod conv2d_depthwise;
mod conv2d_gemm;
mod conv2d_im2col;
mod conv2d_shape;
mod conv2d_simd;
mod fake_quant;
mod fake_quant_kernel;

pub use conv2d::conv2d;
pub use fake_quant::{FakeQuantParams, fake_quantize};
