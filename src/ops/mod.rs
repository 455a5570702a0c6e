//! Tensor ops with their own backward. The only module that touches burn's backend internals.

mod fake_quant;
mod fake_quant_kernel;

pub use fake_quant::{FakeQuantParams, fake_quantize};
