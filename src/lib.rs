#![doc = include_str!("../README.md")]

// The derive macros name this crate `::burn_qat`, which inside it needs this alias.
extern crate self as burn_qat;

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
