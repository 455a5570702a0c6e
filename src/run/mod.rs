//! A training run as its files record it: which model on which input with which qconfig
//! ([`RunSpec`]), the training flags, the stage a model file holds, and a checkpoint's position
//! ([`Checkpoint`]). `burn-qat train` writes these files; this module reads them back without
//! any of the command's code: [`SavedModel::load`] rebuilds whatever model a file holds.
//! The metadata keys, one schema for every file, are in [`file`](mod@file).

pub mod file;
mod qconfig_flags;
mod saved_model;
mod spec;

pub use file::{Checkpoint, CheckpointPosition, RunRecord, Stage, provenance, provenance_of, trained_data};
pub use qconfig_flags::{ObserverChoice, QChoice, QConfigFlags};
pub use saved_model::{SavedModel, check_data_fits};
pub use spec::{ModelKind, NORMALIZATION, RunSpec};
