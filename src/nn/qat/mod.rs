//! `torch.ao.nn.qat`: Conv2d and Linear whose weight passes through a fake quant on every
//! forward. The bias is never fake quantized.

mod add;
mod conv;
mod linear;
mod output;

pub use crate::nn::intrinsic::qat::Conv1d;
pub use add::Add;
pub use conv::{Conv2d, Conv3d, ConvNd};
pub use linear::Linear;
pub(crate) use output::{OutputFakeQuant, in_layer, read_param, write_param};
