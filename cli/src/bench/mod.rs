//! Reproducible speed measurements (issue 5): one case at a time, warmup runs then timed runs
//! with [`std::time::Instant`], reported as one JSON line with the median, min and max.
//!
//! Every case has a twin in `bench/torch_reference.py` doing the same work in PyTorch, and
//! `bench/compare.sh` runs both sides interleaved. The case families live one to a file:
//! [`modules`] (one fused QAT module, forward and backward), [`step`] (one training step of a
//! whole model), [`infer`] (int8 against f32 inference) and [`int8_module`] (one int8 module);
//! [`memory`] counts heap bytes for the step cases' peak memory.

pub mod infer;
pub mod int8_module;
pub mod memory;
pub mod modules;
pub mod step;

use std::time::Instant;

use burn::tensor::Device;

use burn_qat::device::Accelerator;
use burn_qat::error::{QatError, Result};

/// Every case, in the order `all` runs them.
pub const CASES: &[&str] = &[
    "convbnrelu2d",
    "dwconvbnrelu2d",
    "linearrelu",
    "qat-step-lenet",
    "float-step-lenet",
    "qat-step-resnet-tiny",
    "float-step-resnet-tiny",
    "qat-step-mobilenetv2-tiny",
    "float-step-mobilenetv2-tiny",
    "int8-infer-lenet-b1",
    "f32-infer-lenet-b1",
    "int8-infer-lenet-b32",
    "f32-infer-lenet-b32",
    "int8-infer-mobilenetv2-tiny-b1",
    "f32-infer-mobilenetv2-tiny-b1",
    "int8-infer-mobilenetv2-tiny-b32",
    "f32-infer-mobilenetv2-tiny-b32",
    "int8-infer-convtranspose2d-b8",
];

/// How many runs to time, and after how many untimed ones.
#[derive(Clone, Copy, Debug)]
pub struct BenchOptions {
    pub iters: usize,
    pub warmup: usize,
    /// Where the training cases run (the int8 engine is CPU code; its cases refuse another).
    pub device: Accelerator,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self { iters: 10, warmup: 2, device: Accelerator::Cpu }
    }
}

/// One case's timings, in milliseconds.
#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    pub case: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub iters: usize,
    pub threads: usize,
    /// Peak heap MiB (2^20 bytes) during the timed runs, above the bytes in use before them:
    /// what one run allocates at its busiest. Only for cases timed with [`measure_peak`], and
    /// only when [`memory::PeakAlloc`] is the global allocator.
    pub peak_mb: Option<f64>,
}

impl BenchResult {
    /// The JSON line `bench` prints (and `bench/torch_reference.py` prints for PyTorch), keys
    /// in this order, times in milliseconds to the microsecond; `peak_mb` last, when measured.
    pub fn json(&self) -> String {
        let peak = self.peak_mb.map(|mb| format!(", \"peak_mb\": {mb:.3}")).unwrap_or_default();
        format!(
            "{{\"case\": {}, \"median_ms\": {:.3}, \"min_ms\": {:.3}, \"max_ms\": {:.3}, \"iters\": {}, \"threads\": {}{peak}}}",
            serde_json::Value::from(self.case.as_str()),
            self.median_ms,
            self.min_ms,
            self.max_ms,
            self.iters,
            self.threads
        )
    }
}

/// The median of the samples (the mean of the two middle ones for an even count).
pub fn median(samples: &[f64]) -> f64 {
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        s[n / 2]
    } else {
        0.5 * (s[n / 2 - 1] + s[n / 2])
    }
}

/// Runs `work` `options.warmup` times untimed, then `options.iters` times timed one by one.
/// Setup belongs outside `work`; `work` itself is everything a timed run measures.
pub fn measure(case: &str, options: BenchOptions, work: impl FnMut() -> Result<()>) -> Result<BenchResult> {
    measure_with(case, options, false, work)
}

/// [`measure`], also recording the peak heap memory of the timed runs (`peak_mb`) when
/// [`memory::PeakAlloc`] is installed. The baseline is taken after the warmup, so buffers kept
/// across runs (weights, optimizer state, inputs) count once in the baseline and not in the peak.
pub fn measure_peak(case: &str, options: BenchOptions, work: impl FnMut() -> Result<()>) -> Result<BenchResult> {
    measure_with(case, options, true, work)
}

fn measure_with(case: &str, options: BenchOptions, peak: bool, mut work: impl FnMut() -> Result<()>) -> Result<BenchResult> {
    if options.iters == 0 {
        return Err(QatError::invalid("--iters", "--iters must be at least 1"));
    }
    for _ in 0..options.warmup {
        work()?;
    }
    let mut samples = Vec::with_capacity(options.iters);
    // A GPU runs a step's kernels after the host has queued them: wait for them in the time.
    let device = options.device.device(0)?;
    let sync = || device.sync().map_err(|e| QatError::lifecycle(format!("waiting for {}", options.device), format!("{e:?}")));
    sync()?;
    let baseline = memory::current_bytes();
    memory::reset_peak();
    for _ in 0..options.iters {
        let started = Instant::now();
        work()?;
        sync()?;
        samples.push(started.elapsed().as_secs_f64() * 1e3);
    }
    let peak_mb = (peak && memory::installed()).then(|| memory::peak_bytes().saturating_sub(baseline) as f64 / (1u64 << 20) as f64);
    Ok(BenchResult {
        case: case.to_string(),
        median_ms: median(&samples),
        min_ms: samples.iter().copied().fold(f64::INFINITY, f64::min),
        max_ms: samples.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        iters: options.iters,
        threads: rayon::current_num_threads(),
        peak_mb,
    })
}

/// The autodiff device the training cases run on (`options.device`), seeded so every run
/// builds the same weights and inputs.
pub(crate) fn train_device(options: &BenchOptions) -> Result<Device> {
    let device = options.device.device(0)?.autodiff();
    device.seed(0);
    Ok(device)
}

/// Runs one case by name (one of [`CASES`]; `all` is the caller's loop).
pub fn run_case(case: &str, options: BenchOptions) -> Result<BenchResult> {
    match case {
        "convbnrelu2d" => modules::convbnrelu2d(case, 1, options),
        "dwconvbnrelu2d" => modules::convbnrelu2d(case, 64, options),
        "linearrelu" => modules::linearrelu(case, options),
        "qat-step-lenet" => step::train_step(case, step::Model::Lenet, true, options),
        "float-step-lenet" => step::train_step(case, step::Model::Lenet, false, options),
        "qat-step-resnet-tiny" => step::train_step(case, step::Model::ResnetTiny, true, options),
        "float-step-resnet-tiny" => step::train_step(case, step::Model::ResnetTiny, false, options),
        "qat-step-mobilenetv2-tiny" => step::train_step(case, step::Model::MobileNetV2Tiny, true, options),
        "float-step-mobilenetv2-tiny" => step::train_step(case, step::Model::MobileNetV2Tiny, false, options),
        "int8-infer-lenet-b1" => infer::inference(case, step::Model::Lenet, true, 1, options),
        "f32-infer-lenet-b1" => infer::inference(case, step::Model::Lenet, false, 1, options),
        "int8-infer-lenet-b32" => infer::inference(case, step::Model::Lenet, true, 32, options),
        "f32-infer-lenet-b32" => infer::inference(case, step::Model::Lenet, false, 32, options),
        "int8-infer-mobilenetv2-tiny-b1" => infer::inference(case, step::Model::MobileNetV2Tiny, true, 1, options),
        "f32-infer-mobilenetv2-tiny-b1" => infer::inference(case, step::Model::MobileNetV2Tiny, false, 1, options),
        "int8-infer-mobilenetv2-tiny-b32" => infer::inference(case, step::Model::MobileNetV2Tiny, true, 32, options),
        "f32-infer-mobilenetv2-tiny-b32" => infer::inference(case, step::Model::MobileNetV2Tiny, false, 32, options),
        "int8-infer-convtranspose2d-b8" => int8_module::conv_transpose2d(case, 8, options),
        other => Err(QatError::invalid("case", format!("unknown bench case {other:?}; expected all or one of: {}", CASES.join(", ")))),
    }
}

/// The cases `name` selects: every case for `all`, else the one named (checked).
pub fn select(name: &str) -> Result<Vec<&'static str>> {
    if name == "all" {
        return Ok(CASES.to_vec());
    }
    match CASES.iter().find(|c| **c == name) {
        Some(c) => Ok(vec![*c]),
        None => Err(QatError::invalid("case", format!("unknown bench case {name:?}; expected all or one of: {}", CASES.join(", ")))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert!(median(&[]).is_nan());
    }

    #[test]
    fn measure_counts_warmup_and_iters() {
        let mut calls = 0;
        let r = measure("x", BenchOptions { iters: 3, warmup: 2, ..BenchOptions::default() }, || {
            calls += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(calls, 5);
        assert_eq!(r.iters, 3);
        assert!(r.min_ms <= r.median_ms && r.median_ms <= r.max_ms);
        let v: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        for key in ["case", "median_ms", "min_ms", "max_ms", "iters", "threads"] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert!(v.get("peak_mb").is_none(), "measure records no memory");
    }

    #[test]
    fn peak_mb_is_the_last_key_when_measured() {
        let r = BenchResult { case: "c".into(), median_ms: 1.0, min_ms: 1.0, max_ms: 1.0, iters: 1, threads: 1, peak_mb: Some(2.5) };
        assert!(r.json().ends_with(", \"peak_mb\": 2.500}"), "{}", r.json());
    }

    #[test]
    fn unknown_case_is_an_error() {
        assert!(matches!(
            select("nope"),
            Err(QatError::InvalidConfig { field, reason })
                if field == "case" && reason.contains("\"nope\"") && reason.contains("linearrelu")
        ));
        assert_eq!(select("all").unwrap().len(), CASES.len());
        assert_eq!(select("linearrelu").unwrap(), vec!["linearrelu"]);
    }
}
