//! `torch.ao.nn.quantized` and `torch.ao.nn.intrinsic.quantized`: int8 modules that compute on
//! integers. Activations are u8 with a per-tensor (scale, zero point); weights i8 with per-channel
//! scales; accumulation in i32; requantization as specified in [`crate::quant::requantize`].
//! A fused ReLU is a flag (`ConvReLU2d` is a [`Conv2d`] with `relu: true`).

mod add;
mod conv;
mod kernels;
mod linear;
mod qtensor;
mod reference;

pub use add::Add;
pub use conv::Conv2d;
pub use linear::Linear;
pub use qtensor::{ActivationQParams, QTensor, Quantize};
