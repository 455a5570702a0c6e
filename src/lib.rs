#![doc = include_str!("../README.md")]

// The derive macros name this crate `::burn_qat`, which inside it needs this alias.
extern crate self as burn_qat;

/// `pub fn $setter(mut self, $field: $ty) -> Self` builders that set one field, with their docs:
/// the options and configs of every layer build this way.
macro_rules! setters {
    ($($(#[$doc:meta])* $setter:ident => $field:ident: $ty:ty),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $setter(mut self, $field: $ty) -> Self {
                self.$field = $field;
                self
            }
        )*
    };
}

pub mod data;
pub mod device;
pub mod error;
pub mod export;
pub mod fake_quantize;
pub mod kernels;
pub mod models;
pub mod nn;
pub mod observer;
pub mod ops;
pub mod parallel;
pub mod qconfig;
pub mod quant;
pub mod run;
mod simd;
pub mod state_dict;
pub mod train;
pub mod workflow;

pub use error::{QatError, Result};
