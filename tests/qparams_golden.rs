//! Both qparam formulas against PyTorch on edge cases (tools/golden/qparams.py): the observers'
//! `calculate_qparams` and fbgemm's ChooseQuantizationParams as the fused fake quant runs it.
//! Exact equality: both are deterministic scalar arithmetic.

#[macro_use]
mod common;

use burn_qat::QatError;
use burn_qat::quant::{QParamFormula, QParams, QScheme, QuantDtype, QuantRange, QuantSpec, choose_qparams};
use serde_json::Value;

fn load() -> Value {
    serde_json::from_str(&std::fs::read_to_string(common::golden_path("qparams.json")).unwrap()).unwrap()
}

fn f32_list(v: &Value) -> Vec<f32> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
}

fn i32_list(v: &Value) -> Vec<i32> {
    v.as_array().unwrap().iter().map(|x| x.as_i64().unwrap() as i32).collect()
}

fn custom_range(case: &Value) -> Option<(i64, i64)> {
    Some((case["quant_min"].as_i64()?, case["quant_max"].as_i64()?))
}

#[test]
fn observer_formula_matches_pytorch() {
    let golden = load();
    for (n, case) in golden["observer_formula"].as_array().unwrap().iter().enumerate() {
        let dtype = QuantDtype::parse(case["dtype"].as_str().unwrap()).unwrap();
        let qscheme = QScheme::parse(case["qscheme"].as_str().unwrap()).unwrap();
        let range = match QuantRange::resolve(dtype, custom_range(case), case["reduce_range"].as_bool().unwrap()) {
            Ok(range) => range,
            Err(e) => {
                // Deliberately stricter than PyTorch's observers (FakeQuantize rejects these too):
                // a custom range must fit its dtype.
                let (lo, hi) = custom_range(case).expect("only custom ranges can be rejected");
                let (dlo, dhi) = dtype.bounds();
                assert!(lo < dlo || hi > dhi, "case {n}: rejected a range inside its dtype: {e}");
                continue;
            }
        };
        assert_eq!(
            (range.quant_min as i64, range.quant_max as i64),
            (case["eff_quant_min"].as_i64().unwrap(), case["eff_quant_max"].as_i64().unwrap()),
            "case {n}"
        );
        let spec =
            QuantSpec { dtype, qscheme, range, custom_range: custom_range(case).is_some(), eps: case["eps"].as_f64().unwrap() as f32 };
        let q = QParams::from_min_max(&f32_list(&case["min"]), &f32_list(&case["max"]), &spec, QParamFormula::Observer);
        assert_eq!(q.scale, f32_list(&case["scale"]), "case {n}: {case}");
        assert_eq!(q.zero_point, i32_list(&case["zero_point"]), "case {n}: {case}");
    }
}

#[test]
fn choose_qparams_matches_pytorch_fused_fake_quant() {
    let golden = load();
    for (n, case) in golden["choose_qparams"].as_array().unwrap().iter().enumerate() {
        let symmetric = QScheme::parse(case["qscheme"].as_str().unwrap()).unwrap().is_symmetric();
        let (qmin, qmax) = (case["eff_quant_min"].as_i64().unwrap() as i32, case["eff_quant_max"].as_i64().unwrap() as i32);
        let (mins, maxs) = (f32_list(&case["min"]), f32_list(&case["max"]));
        let (scale, zp): (Vec<f32>, Vec<i32>) =
            mins.iter().zip(&maxs).map(|(&lo, &hi)| choose_qparams(lo, hi, qmin, qmax, symmetric)).unzip();
        assert_eq!(scale, f32_list(&case["scale"]), "case {n}: {case}");
        assert_eq!(zp, i32_list(&case["zero_point"]), "case {n}: {case}");
    }
}

#[test]
fn configurations_pytorch_rejects_are_rejected() {
    let golden = load();
    for case in golden["observer_errors"].as_array().unwrap() {
        if case["stage"] != "construct" || !case["observer"].as_str().unwrap().ends_with("Observer") {
            continue;
        }
        let dtype = QuantDtype::parse(case["dtype"].as_str().unwrap()).unwrap();
        let qscheme = QScheme::parse(case["qscheme"].as_str().unwrap()).unwrap();
        let mut config = if qscheme.is_per_channel() {
            burn_qat::observer::ObserverConfig::per_channel_min_max(0)
        } else {
            burn_qat::observer::ObserverConfig::min_max()
        };
        config = config.with_dtype(dtype).with_qscheme(qscheme).with_reduce_range(case["reduce_range"].as_bool().unwrap());
        if let Some((lo, hi)) = custom_range(case) {
            config = config.with_quant_range(lo, hi);
        }
        assert_error!(
            config.init(),
            QatError::InvalidRange { .. } | QatError::InvalidConfig { .. },
            "PyTorch rejects {case} ({}), so must we",
            case["message"]
        );
    }
}
