//! The quantization core: integer ranges, schemes and quantization parameters, as pure functions
//! on plain numbers. Everything above (ops, observers, modules, convert) calls into here, so that
//! one formula serves training and conversion alike.

mod activation;
mod qparams;
mod range;
mod requant;
mod round;
mod scheme;

pub mod packing;
pub use activation::ActivationQParams;
pub use qparams::{QParamFormula, QParams, SMALL_SCALE_THRESHOLD, choose_qparams, observer_qparams};
pub use range::{QuantDtype, QuantRange};
pub use requant::{quantize_bias, quantize_value, requant_multiplier, requantize};
pub use round::round_half_even;
pub use scheme::{QScheme, QuantSpec};
