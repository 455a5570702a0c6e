//! `torch.ao.nn.intrinsic`: float fused containers, and in [`qat`] the fused QAT modules.

mod fused;
pub mod qat;

pub use fused::{BNReLU2d, ConvBn2d, ConvBnReLU2d, ConvReLU2d, LinearBn1d, LinearReLU, fuse_conv_bn_weights};
