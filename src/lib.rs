#![doc = include_str!("../README.md")]

pub mod bench;
pub mod data;
pub mod error;
pub mod export;
pub mod fake_quantize;
pub mod models;
pub mod nn;
pub mod observer;
pub mod ops;
pub mod qconfig;
pub mod quant;
pub mod report;
pub mod state_dict;
pub mod train;
pub mod workflow;

pub use error::{QatError, Result};
