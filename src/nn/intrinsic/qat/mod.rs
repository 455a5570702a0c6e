//! `torch.ao.nn.intrinsic.qat`: ConvBn1d/2d, ConvBnReLU1d/2d, ConvReLU1d/2d, LinearReLU (and
//! `nn::qat::Conv1d`, which lives here as it shares the 1-d machinery).

mod bn_fold;
mod conv1d;
mod conv_bn;
mod conv_bn_config;
mod linear_bn;
mod relu_variants;

pub(crate) use bn_fold::scale_factor;
pub use conv_bn::{BnFolding, ConvBn2d, ConvBn3d, ConvBnNd, ConvTransposeBn2d};
pub use conv_bn_config::{ConvBn2dConfig, ConvBn3dConfig, ConvBnConfig, ConvTransposeBn2dConfig};
pub use conv1d::{Conv1d, ConvBn1d, ConvBn1dConfig, ConvBnReLU1d, ConvReLU1d};
pub use linear_bn::LinearBn1d;
pub use relu_variants::{ConvBnReLU2d, ConvBnReLU3d, ConvBnReLUNd, ConvReLU2d, ConvReLU3d, ConvReLUNd, ConvTransposeBnReLU2d, LinearReLU};
