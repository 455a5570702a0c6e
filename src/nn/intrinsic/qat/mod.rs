//! `torch.ao.nn.intrinsic.qat`: ConvBn1d/2d/3d, ConvBnReLU1d/2d/3d, ConvReLU1d/2d/3d, LinearReLU,
//! LinearBn1d, and the transposed family beyond PyTorch. Every conv family is one generic
//! module over its geometry ([`ConvBnNd`], [`ConvBnReLUNd`], [`ConvReLUNd`]), named per geometry
//! by a type alias.

mod bn_fold;
mod conv_bn;
mod conv_bn_config;
mod linear_bn;
mod relu_variants;

pub use bn_fold::BnFolding;
pub(crate) use bn_fold::scale_factor;
pub use conv_bn::{ConvBn1d, ConvBn2d, ConvBn3d, ConvBnNd, ConvTransposeBn2d};
pub use conv_bn_config::{ConvBn1dConfig, ConvBn2dConfig, ConvBn3dConfig, ConvBnConfig, ConvTransposeBn2dConfig};
pub use linear_bn::{LinearBn1d, LinearBn1dConfig};
pub use relu_variants::{
    ConvBnReLU1d, ConvBnReLU2d, ConvBnReLU3d, ConvBnReLUNd, ConvReLU1d, ConvReLU2d, ConvReLU3d, ConvReLUNd, ConvTransposeBnReLU2d,
    ConvTransposeReLU2d, LinearReLU,
};
