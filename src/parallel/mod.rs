//! Data-parallel QAT: one model trained on several devices, each on its share of every batch.
//! This module holds what the layers need for it (the replicas' collective reductions, used by
//! observers and batch norm); the training step that drives the replicas is
//! [`crate::train::DataParallel`].
//!
//! What plain data parallelism gets wrong for QAT, and what this does instead: every observer's
//! batch min/max is reduced over all replicas (min of the minimums, max of the maximums) before
//! its moving average, so every replica holds the same qparams; batch norm normalizes with the
//! statistics of the whole batch (SyncBN: sums, sums of squared deviations and counts over all
//! replicas); `freeze_bn_stats` and `disable_observer` switch on every replica at the same step.
//! The result equals training on one device with the whole batch, to float summation order
//! (tests/data_parallel.rs).

pub mod collective;
