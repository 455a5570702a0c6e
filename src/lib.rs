#![doc = include_str!("../README.md")]

// The derive macros name this crate `::burn_qat`, which inside it needs this alias.
extern crate self as burn_qat;

/// `pub fn $setter(mut self, $field: $ty) -> Self` builders that set one field, with their docs:
/// the options and configs of every layer build this way. `flags:` declares switches without
/// an argument, `pub fn $setter(mut self) -> Self` setting `$field` to `$value`; `sizes $size:`
/// spatial sizes given as one number or one per axis, `$field: impl Into<$size>`.
macro_rules! setters {
    (sizes $size:ident: $($(#[$doc:meta])* $setter:ident => $field:ident),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $setter(mut self, $field: impl Into<$size>) -> Self {
                self.$field = $field.into().0;
                self
            }
        )*
    };
    (flags: $($(#[$doc:meta])* $setter:ident => $field:ident = $value:expr),* $(,)?) => {
        $(
            $(#[$doc])*
            pub fn $setter(mut self) -> Self {
                self.$field = $value;
                self
            }
        )*
    };
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

/// Names a module or config that is generic over its conv geometry once per geometry, as PyTorch
/// names its classes: 1-d, 2-d, 3-d, then 2-d transposed, `_` where the family has no such
/// member. What the family is, and where it differs from PyTorch, the generic type's doc says.
macro_rules! per_geometry {
    ($generic:ident: $d1:tt, $d2:tt, $d3:tt, $t2:tt) => {
        per_geometry!(@alias $generic, 3, Conv1dOptions, $d1);
        per_geometry!(@alias $generic, 4, Conv2dOptions, $d2);
        per_geometry!(@alias $generic, 5, Conv3dOptions, $d3);
        per_geometry!(@alias $generic, 4, ConvTranspose2dOptions, $t2);
    };
    (@alias $generic:ident, $rank:literal, $options:ident, _) => {};
    (@alias $generic:ident, $rank:literal, $options:ident, $name:ident) => {
        #[doc = concat!("[`", stringify!($generic), "`] over [`", stringify!($options), "`](crate::nn::", stringify!($options), ").")]
        pub type $name = $generic<$rank, $crate::nn::$options>;
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
pub mod qdq;
pub mod quant;
pub mod run;
mod simd;
pub mod state_dict;
pub mod train;
pub mod workflow;

pub use error::{QatError, Result};
