//! burn-qat: quantization-aware training on burn, numerically identical to PyTorch's
//! `torch.ao.nn.intrinsic.qat`.

pub mod error;
pub mod quant;

pub use error::{QatError, Result};
