//! `torch.ao.nn.intrinsic`: float fused containers, and in [`qat`] the fused QAT modules.

mod fused;
pub mod qat;

pub use fused::{
    BNReLU2d, ConvBn1d, ConvBn2d, ConvBn3d, ConvBnNd, ConvBnReLU1d, ConvBnReLU2d, ConvBnReLU3d, ConvBnReLUNd, ConvReLU1d, ConvReLU2d,
    ConvReLU3d, ConvReLUNd, ConvTransposeBn2d, ConvTransposeBnReLU2d, ConvTransposeReLU2d, LinearBn1d, LinearReLU, fuse_conv_bn_weights,
};
