//! Observers against PyTorch's own observer tests (test_workflow_module.py) and longer
//! sequences, recorded by tools/golden/observers.py: running min/max after every call, then
//! scale and zero point.

mod common;

use burn_qat::observer::{Observer, ObserverConfig};
use burn_qat::quant::{QScheme, QuantDtype};
use serde_json::Value;

fn f32_list(v: &Value) -> Vec<f32> {
    v.as_array()
        .expect("list")
        .iter()
        .map(|x| match x {
            Value::String(s) if s == "inf" => f32::INFINITY,
            Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
            x => x.as_f64().expect("number") as f32,
        })
        .collect()
}

fn i64_list(v: &Value) -> Vec<i64> {
    v.as_array().expect("list").iter().map(|x| x.as_i64().expect("int")).collect()
}

/// Builds the observer a PyTorch class name and kwargs describe.
pub fn observer_from_json(class: &str, kwargs: &Value) -> burn_qat::Result<Observer> {
    let c = kwargs.get("averaging_constant").and_then(Value::as_f64).unwrap_or(0.01) as f32;
    let axis = kwargs.get("ch_axis").and_then(Value::as_u64).unwrap_or(0) as usize;
    let mut config = match class {
        "MinMaxObserver" => ObserverConfig::min_max(),
        "MovingAverageMinMaxObserver" => ObserverConfig::moving_average(c),
        "PerChannelMinMaxObserver" => ObserverConfig::per_channel_min_max(axis),
        "MovingAveragePerChannelMinMaxObserver" => ObserverConfig::moving_average_per_channel(c, axis),
        other => panic!("unknown observer {other}"),
    };
    if let Some(d) = kwargs.get("dtype").and_then(Value::as_str) {
        config = config.with_dtype(QuantDtype::parse(d)?);
    }
    if let Some(q) = kwargs.get("qscheme").and_then(Value::as_str) {
        config = config.with_qscheme(QScheme::parse(q)?);
    }
    if let Some(r) = kwargs.get("reduce_range").and_then(Value::as_bool) {
        config = config.with_reduce_range(r);
    }
    if let (Some(lo), Some(hi)) = (kwargs.get("quant_min").and_then(Value::as_i64), kwargs.get("quant_max").and_then(Value::as_i64)) {
        config = config.with_quant_range(lo, hi);
    }
    if let Some(e) = kwargs.get("eps").and_then(Value::as_f64) {
        config = config.with_eps(e as f32);
    }
    config.init()
}

fn load(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(common::golden_path(name)).unwrap()).unwrap()
}

#[test]
fn observer_sequences_match_pytorch_exactly() {
    let golden = load("observers.json");
    let cases = golden["observers"].as_array().unwrap();
    for (n, case) in cases.iter().enumerate() {
        let label = format!("case {n} ({} {} {})", case["note"], case["observer"], case["kwargs"]);
        let mut obs = observer_from_json(case["observer"].as_str().unwrap(), &case["kwargs"]).unwrap();
        assert_eq!(obs.spec().range.quant_min as i64, case["eff_quant_min"].as_i64().unwrap(), "{label}");
        assert_eq!(obs.spec().range.quant_max as i64, case["eff_quant_max"].as_i64().unwrap(), "{label}");
        for (step, (input, after)) in case["inputs"].as_array().unwrap().iter().zip(case["after_each"].as_array().unwrap()).enumerate() {
            match input["op"].as_str().unwrap() {
                "forward" => {
                    let shape: Vec<usize> = i64_list(&input["shape"]).iter().map(|&d| d as usize).collect();
                    obs.observe_values(&f32_list(&input["data"]), &shape).unwrap();
                }
                "reset_min_max_vals" => obs.reset_min_max_vals(),
                other => panic!("unknown op {other}"),
            }
            let (want_min, want_max) = (f32_list(&after["min_val"]), f32_list(&after["max_val"]));
            assert_eq!(obs.min_val(), want_min.as_slice(), "{label} min after step {step}");
            assert_eq!(obs.max_val(), want_max.as_slice(), "{label} max after step {step}");
        }
        let q = obs.calculate_qparams();
        assert_eq!(q.scale, f32_list(&case["scale"]), "{label} scale");
        assert_eq!(q.zero_point.iter().map(|&z| z as i64).collect::<Vec<_>>(), i64_list(&case["zero_point"]), "{label} zero point");
    }
}

#[test]
fn pytorch_test_values_by_hand() {
    // test_per_tensor_observers: min 1, max 8.
    let mut obs = ObserverConfig::min_max().with_dtype(QuantDtype::QInt8).init().unwrap();
    obs.observe_values(&[1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[7]).unwrap();
    obs.observe_values(&[4.0, 5.0, 5.0, 6.0, 7.0, 8.0], &[6]).unwrap();
    let q = obs.calculate_qparams();
    assert!((q.scale[0] - 0.0313725).abs() < 1e-5);
    assert_eq!(q.zero_point, vec![-128]);
}
