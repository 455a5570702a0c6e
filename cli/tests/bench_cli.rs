//! `burn-qat bench` end to end: a case prints one JSON line with every key issue 5 names,
//! `--threads` reaches rayon, every case runs (and has its PyTorch twin), and an unknown case
//! fails naming the valid ones.
//! In process, with [`PeakAlloc`] as this test binary's allocator, the step cases report their
//! peak memory. Small runs only.

use std::process::{Command, Output};

use burn_qat_cli::bench::memory::{self, PeakAlloc};
use burn_qat_cli::bench::{BenchOptions, CASES, run_case};

/// What the `burn-qat` binary is asked to install too, so `peak_mb` is tested here either way.
#[global_allocator]
static ALLOC: PeakAlloc = PeakAlloc::new();

const KEYS: [&str; 6] = ["case", "median_ms", "min_ms", "max_ms", "iters", "threads"];

fn is_step(case: &str) -> bool {
    case.contains("-step-")
}

fn burn_qat(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_burn-qat")).args(args).output().expect("the burn-qat binary runs")
}

/// Runs a case and returns its one JSON line, parsed and checked.
fn bench_line(args: &[&str], case: &str, iters: u64) -> serde_json::Value {
    let output = burn_qat(args);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "bench {args:?} failed: {}\n{stdout}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line per case, got:\n{stdout}");
    let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {}", lines[0]));
    let object = v.as_object().expect("a JSON object");
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    for key in KEYS {
        assert!(object.contains_key(key), "{key} missing from {v}");
    }
    // peak_mb only for a training step, and only if the binary installs PeakAlloc.
    if keys.len() == 7 {
        assert!(is_step(case), "peak_mb on a case that is not a step: {v}");
        assert!(v["peak_mb"].as_f64().is_some_and(|mb| mb > 0.0), "peak_mb: {v}");
    } else {
        assert_eq!(keys.len(), 6, "exactly the six keys: {v}");
    }
    assert_eq!(v["case"], case);
    assert_eq!(v["iters"].as_u64(), Some(iters));
    assert!(v["threads"].as_u64().is_some_and(|t| t >= 1), "threads: {v}");
    let ms = |k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} is a number in {v}"));
    let (min, median, max) = (ms("min_ms"), ms("median_ms"), ms("max_ms"));
    assert!(0.0 < min && min <= median && median <= max, "min <= median <= max: {v}");
    v
}

#[test]
fn linearrelu_prints_one_json_line() {
    bench_line(&["bench", "linearrelu", "--iters", "2", "--warmup", "1"], "linearrelu", 2);
}

#[test]
fn int8_inference_prints_one_json_line_with_the_threads_asked() {
    let v = bench_line(&["bench", "int8-infer-lenet-b1", "--iters", "2", "--warmup", "1", "--threads", "1"], "int8-infer-lenet-b1", 2);
    assert_eq!(v["threads"].as_u64(), Some(1));
}

#[test]
fn the_mobilenetv2_tiny_cases_run() {
    for case in CASES.iter().filter(|c| c.contains("mobilenetv2-tiny")) {
        bench_line(&["bench", case, "--iters", "1", "--warmup", "0", "--threads", "2"], case, 1);
    }
}

#[test]
fn the_int8_module_case_runs() {
    let case = "int8-infer-convtranspose2d-b8";
    bench_line(&["bench", case, "--iters", "2", "--warmup", "1", "--threads", "2"], case, 2);
}

/// Every case has its PyTorch twin and its place in the comparison script's list, so that
/// `bench/compare.sh` compares all of them.
#[test]
fn every_case_is_in_the_pytorch_reference_and_the_compare_script() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../bench/");
    let read = |file: &str| std::fs::read_to_string(format!("{root}{file}")).unwrap_or_else(|e| panic!("{file}: {e}"));
    let (torch, compare) = (read("torch_reference.py"), read("compare.sh"));
    for case in CASES {
        assert!(torch.contains(&format!("\"{case}\",")), "{case} is missing from torch_reference.py's CASES");
        assert!(compare.lines().any(|line| line.trim() == *case), "{case} is missing from compare.sh's ALL_CASES");
    }
}

#[test]
fn step_cases_report_their_peak_memory_in_process() {
    // The allocator itself: an 8 MiB buffer raises the peak by at least that much.
    let _ = run_case("linearrelu", BenchOptions { iters: 1, warmup: 0, ..BenchOptions::default() }).unwrap();
    assert!(memory::installed());
    let before = memory::current_bytes();
    memory::reset_peak();
    let buffer = std::hint::black_box(vec![1u8; 8 << 20]);
    assert!(memory::peak_bytes() >= before + (8 << 20), "{} < {before} + 8 MiB", memory::peak_bytes());
    drop(buffer);

    let options = BenchOptions { iters: 1, warmup: 0, ..BenchOptions::default() };
    for case in ["qat-step-mobilenetv2-tiny", "float-step-mobilenetv2-tiny"] {
        let r = run_case(case, options).unwrap();
        let peak = r.peak_mb.unwrap_or_else(|| panic!("{case}: no peak_mb"));
        // At least the stem's activations (64 x 16 x 14 x 14 f32 = 0.77 MiB; the input is in the
        // baseline).
        assert!(peak > 0.75, "{case}: {peak} MiB");
        // The last key, after the six of every case.
        let line = r.json();
        let tail = line.rsplit_once(", \"peak_mb\": ").map(|(_, t)| t).unwrap_or_else(|| panic!("{line}"));
        let printed: f64 = tail.trim_end_matches('}').parse().unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!((printed - peak).abs() <= 5e-4, "{line}");
    }
    let r = run_case("int8-infer-mobilenetv2-tiny-b1", options).unwrap();
    assert_eq!(r.peak_mb, None, "inference cases report no memory");
}

#[test]
fn an_unknown_case_fails_and_lists_the_cases() {
    let output = burn_qat(&["bench", "mobilenetv2-small", "--iters", "1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("convbnrelu2d") && stderr.contains("int8-infer-mobilenetv2-tiny-b32"), "{stderr}");
}

/// `--device` moves the training cases; the int8 engine's cases are CPU code and say so, and a
/// device this build lacks is named with its feature.
#[test]
fn bench_device_choice_is_checked() {
    use burn_qat::device::Accelerator;
    let on = |device| BenchOptions { iters: 1, warmup: 0, device };
    let err = run_case("int8-infer-lenet-b1", on(Accelerator::Wgpu)).unwrap_err().to_string();
    assert!(err.contains("run on the CPU"), "{err}");
    if !Accelerator::Cuda.compiled_in() {
        let err = run_case("linearrelu", on(Accelerator::Cuda)).unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
