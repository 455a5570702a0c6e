//! Tensor ops with their own backward. The only module that touches burn's backend internals.

mod bn_train;
mod conv2d;
#[cfg(feature = "cube")]
mod cube;
pub(crate) mod fake_quant;
mod host;
mod learnable_fake_quant;
mod max_pool;
mod minmax;
mod route;

pub(crate) use crate::kernels::f32::bn::lane_sum;
pub use bn_train::{BnApplyParams, BnPreValues, bn_batch_stats, bn_train_apply};
pub use conv2d::conv2d;
pub use fake_quant::{FakeQuantParams, fake_quantize};
pub use host::tensor_values;
pub use learnable_fake_quant::{LearnableFakeQuantParams, ScaleGradient, fake_quantize_learnable, forward_zero_point};
pub use max_pool::{MaxPoolWindow, max_pool2d};
pub use minmax::min_max;
pub use route::is_flex;
pub(crate) use route::on_flex;
