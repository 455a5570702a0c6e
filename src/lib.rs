//! burn-qat: quantization-aware training on burn, numerically identical to PyTorch's
//! `torch.ao.nn.intrinsic.qat`.

pub mod error;
pub mod observer;
pub mod ops;
pub mod quant;
pub mod state_dict;

pub use error::{QatError, Result};
