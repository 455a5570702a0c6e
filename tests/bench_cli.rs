//! `burn-qat bench` end to end: a case prints one JSON line with every key issue 5 names,
//! `--threads` reaches rayon, and an unknown case fails naming the valid ones. Small runs only.

use std::process::{Command, Output};

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
    for key in ["case", "median_ms", "min_ms", "max_ms", "iters", "threads"] {
        assert!(object.contains_key(key), "{key} missing from {v}");
    }
    assert_eq!(keys.len(), 6, "exactly the six keys: {v}");
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
fn an_unknown_case_fails_and_lists_the_cases() {
    let output = burn_qat(&["bench", "mobilenetv2-tiny", "--iters", "1"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("convbnrelu2d") && stderr.contains("int8-infer-lenet-b32"), "{stderr}");
}
