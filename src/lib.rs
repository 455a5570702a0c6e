//! burn-qat: quantization-aware training on burn, numerically identical to PyTorch's
//! `torch.ao.nn.intrinsic.qat`.

pub mod error;
pub mod fake_quantize;
pub mod nn;
pub mod observer;
pub mod ops;
pub mod qconfig;
pub mod quant;
pub mod state_dict;

pub use error::{QatError, Result};
