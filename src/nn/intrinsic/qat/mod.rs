//! `torch.ao.nn.intrinsic.qat`: ConvBn2d, ConvBnReLU2d, ConvReLU2d and LinearReLU.

mod conv_bn;
mod conv_bn_config;
mod relu_variants;

pub use conv_bn::{BnFolding, ConvBn2d};
pub use conv_bn_config::ConvBn2dConfig;
pub use relu_variants::{ConvBnReLU2d, ConvReLU2d, LinearReLU};
