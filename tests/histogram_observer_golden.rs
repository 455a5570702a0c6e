//! PyTorch's HistogramObserver against PyTorch 2.15, step by step on recorded sequences: the
//! histogram and its range bit for bit, the range the L2 search picks, and the qparams.
//! Fixtures: `tools/golden/histogram_observer.py`.

#[macro_use]
mod common;

use burn_qat::observer::{Averaging, Observer, ObserverConfig, SearchLevels};
use burn_qat::quant::{QScheme, QuantDtype};
use burn_qat::state_dict::{StateDict, StateReader, TensorValue};
use common::*;

const FIXTURE: &str = "histogram_observer.safetensors";
const CASES: usize = 7;

/// The observer a case's metadata describes.
fn observer(meta: &serde_json::Value) -> Observer {
    let dtype = match meta["dtype"].as_str().unwrap() {
        "torch.quint8" => QuantDtype::QUInt8,
        "torch.qint8" => QuantDtype::QInt8,
        other => panic!("dtype {other}"),
    };
    let qscheme = match meta["qscheme"].as_str().unwrap() {
        "torch.per_tensor_affine" => QScheme::PerTensorAffine,
        "torch.per_tensor_symmetric" => QScheme::PerTensorSymmetric,
        other => panic!("qscheme {other}"),
    };
    let reduce_range = meta["reduce_range"].as_bool().unwrap();
    let mut config = ObserverConfig::histogram(meta["bins"].as_u64().unwrap() as usize)
        .with_dtype(dtype)
        .with_qscheme(qscheme)
        .with_reduce_range(reduce_range);
    let (qmin, qmax) = (meta["quant_min"].as_i64().unwrap(), meta["quant_max"].as_i64().unwrap());
    if !reduce_range && (qmin, qmax) != dtype.bounds() {
        config = config.with_quant_range(qmin, qmax);
    }
    config.init().unwrap()
}

fn case_meta(meta: &std::collections::HashMap<String, String>, case: &str) -> serde_json::Value {
    serde_json::from_str(&meta[case]).unwrap()
}

#[test]
fn every_step_matches_pytorch() {
    let (g, meta) = load_golden(FIXTURE);
    for i in 0..CASES {
        let case = format!("h{i}");
        let m = case_meta(&meta, &case);
        let mut obs = observer(&m);
        for step in 0..m["steps"].as_u64().unwrap() as usize {
            let key = |t: &str| format!("{case}.{t}{step}");
            let what = |t: &str| format!("{case} ({}) step {step}: {t}", m["desc"]);
            let x = f32s(&g, &key("x"));
            obs.observe_values(&x, &[x.len()]).unwrap();
            assert_bits_eq(&what("histogram"), obs.histogram().unwrap(), &f32s(&g, &key("hist")));
            assert_bits_eq(&what("min"), obs.min_val(), &f32s(&g, &key("min")));
            assert_bits_eq(&what("max"), obs.max_val(), &f32s(&g, &key("max")));
            let (lo, hi) = obs.qparam_range();
            assert_bits_eq(&what("searched range"), &[lo[0], hi[0]], &f32s(&g, &key("search")));
            let q = obs.calculate_qparams();
            assert_bits_eq(&what("scale"), &q.scale, &f32s(&g, &key("scale")));
            assert_eq!(q.zero_point[0] as i64, ints(&g, &key("zero_point"))[0], "{}", what("zero point"));
        }
    }
}

#[test]
fn the_state_dict_has_pytorchs_keys_and_restores_the_search() {
    let (g, meta) = load_golden(FIXTURE);
    let m = case_meta(&meta, "h0");
    let mut obs = observer(&m);
    for step in 0..2 {
        let x = f32s(&g, &format!("h0.x{step}"));
        obs.observe_values(&x, &[x.len()]).unwrap();
    }
    let mut state = StateDict::new();
    obs.write_state("", &mut state);
    let mut keys: Vec<&str> = state.keys().map(String::as_str).collect();
    keys.sort();
    let pytorch: Vec<&str> = m["state_dict_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(keys, pytorch);

    let mut restored = observer(&m);
    let mut reader = StateReader::new(&state);
    restored.read_state("", &mut reader);
    reader.finish().unwrap();
    assert_eq!(restored.qparam_range(), obs.qparam_range());
    // And it goes on as the original would: the next step as PyTorch recorded it.
    let x = f32s(&g, "h0.x2");
    restored.observe_values(&x, &[x.len()]).unwrap();
    assert_bits_eq("restored, then one more step", restored.histogram().unwrap(), &f32s(&g, "h0.hist2"));

    // A corrupt or short histogram is refused, naming the key.
    for bad in [vec![-1.0; 2048], vec![f32::NAN; 2048], vec![1.0; 100]] {
        let mut corrupt = state.clone();
        corrupt.insert("histogram".into(), TensorValue::f32_vec(bad));
        let mut fresh = observer(&m);
        let mut reader = StateReader::new(&corrupt);
        fresh.read_state("", &mut reader);
        let err = reader.finish().unwrap_err().to_string();
        assert!(err.contains("histogram"), "{err}");
    }
}

#[test]
fn bad_configs_and_bad_data_are_errors() {
    let per_channel = ObserverConfig::histogram(64).with_qscheme(QScheme::PerChannelAffine).init();
    assert!(per_channel.unwrap_err().to_string().contains("per tensor only"));
    assert!(ObserverConfig::histogram(0).init().is_err());
    let mut obs = ObserverConfig::histogram(64).init().unwrap();
    assert!(obs.observe_values(&[1.0, f32::NAN], &[2]).is_err());
    assert!(obs.observe_values(&[1.0, f32::INFINITY], &[2]).is_err());
    assert!(!obs.has_observed(), "a rejected observation leaves the observer as it was");
    obs.observe_values(&[], &[0]).unwrap();
    assert!(!obs.has_observed());
    assert_eq!(obs.calculate_qparams().scale, vec![1.0], "unobserved: PyTorch's (1.0, 0)");
}

/// Our one deviation, opt-in: PyTorch's search assumes 2^8 levels even for a 4-bit range; with
/// `SearchLevels::QuantRange` it assumes the 16 levels the values are rounded to, and clips
/// more of the tails, as the coarser grid makes worth it.
#[test]
fn searching_for_the_ranges_own_levels_clips_more_at_4_bits() {
    let (g, _) = load_golden(FIXTURE);
    let x = f32s(&g, "h5.x0");
    let searched = |levels| {
        let mut config = ObserverConfig::histogram(2048).with_quant_range(0, 15);
        config.averaging = Averaging::Histogram { bins: 2048, levels };
        let mut obs = config.init().unwrap();
        obs.observe_values(&x, &[x.len()]).unwrap();
        obs.qparam_range()
    };
    let (pytorch_lo, pytorch_hi) = searched(SearchLevels::DtypeBits);
    let (own_lo, own_hi) = searched(SearchLevels::QuantRange);
    assert_eq!((pytorch_lo[0], pytorch_hi[0]), (-18.0, 30.476318), "PyTorch's 256-level search, as recorded");
    // The search is greedy and stops at the first step that costs more, so it trims one end.
    assert!(own_lo[0] >= pytorch_lo[0] && own_hi[0] < 10.0, "16 levels: the upper outliers are clipped ({own_lo:?}, {own_hi:?})");
}
