//! Modules, one namespace per lifecycle stage as in PyTorch: float building blocks here,
//! [`qat`] (Conv and Linear with weight fake quant), [`intrinsic::qat`] (the fused QAT modules).

pub mod batch_norm;
pub mod conv1d_options;
pub mod conv3d_options;
pub mod conv_options;
pub mod conv_transpose_options;
pub mod conv_window;
pub mod float;
pub mod geometry;
pub mod intrinsic;
mod padding;
pub mod qat;
pub mod qat_module;
pub mod quantized;
mod spatial_options;
pub(crate) mod tensor_util;

pub use batch_norm::BatchNorm;
/// `#[derive(QatModule)]`: the switches, the state dict and (with `#[qat(int8 = Name)]`) one-call
/// int8 conversion for a hand-written model; see the crate `burn-qat-derive`.
pub use burn_qat_derive::QatModule;
pub use conv_options::{Conv2dOptions, PaddingMode, Size2};
pub use conv_transpose_options::ConvTranspose2dOptions;
pub use conv_window::ConvWindow;
pub use conv1d_options::Conv1dOptions;
pub use conv3d_options::{Conv3dOptions, Size3};
pub use geometry::ConvGeometry;
pub use padding::Padding;
pub use qat_module::QatModule;
