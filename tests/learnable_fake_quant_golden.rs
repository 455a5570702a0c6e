//! Learnable fake quantization against PyTorch: the ops
//! `torch._fake_quantize_learnable_per_tensor_affine` / `_per_channel_affine` (forward and the
//! gradients of x, scale and zero point) and the `_LearnableFakeQuantize` module through static
//! estimates and SGD steps. Fixtures: `tools/golden/learnable_fake_quant.py`.

#[macro_use]
mod common;

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData};
use burn_qat::fake_quantize::{FakeQuantize, FakeQuantizeConfig};
use burn_qat::observer::ObserverConfig;
use burn_qat::ops::{LearnableFakeQuantParams, ScaleGradient, fake_quantize_learnable};
use burn_qat::quant::{QScheme, QuantDtype};
use common::*;

const FIXTURE: &str = "learnable_fake_quant.safetensors";

fn op_params(case: &str) -> LearnableFakeQuantParams {
    let (g, _) = load_golden(FIXTURE);
    let range = ints(&g, &format!("{case}.range"));
    let axis = g.get(&format!("{case}.axis")).map(|_| ints(&g, &format!("{case}.axis"))[0] as usize);
    let grad_factor = get(&g, &format!("{case}.grad_factor")).to_f64_vec()[0] as f32;
    LearnableFakeQuantParams {
        axis,
        quant_min: range[0] as i32,
        quant_max: range[1] as i32,
        grad_factor,
        scale_gradient: ScaleGradient::Every,
    }
}

fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// A sum of `n` products differs from PyTorch's by its summation order: allow 1e-5 of the
/// largest possible sum of absolute terms (|dy| times the largest per-element factor).
fn sum_tolerance(dy: &[f32], params: &LearnableFakeQuantParams, scale: f32) -> f32 {
    let span = (params.quant_max - params.quant_min) as f32 + 1.0;
    let largest_term = span.max(scale * 1.0) * params.grad_factor;
    1e-5 * dy.iter().map(|v| v.abs()).sum::<f32>() * largest_term
}

fn run_op<const D: usize>(case: &str, device: &Device) {
    let (g, _) = load_golden(FIXTURE);
    let params = op_params(case);
    let x: Tensor<D> = tensor::<D>(&g, &format!("{case}.x"), device).require_grad();
    let dy_values = f32s(&g, &format!("{case}.dy"));
    let dy: Tensor<D> = tensor(&g, &format!("{case}.dy"), device);
    let scale_values = f32s(&g, &format!("{case}.scale"));
    let scale = vector(scale_values.clone(), device).require_grad();
    let zero_point = vector(f32s(&g, &format!("{case}.zero_point")), device).require_grad();
    let y = fake_quantize_learnable(x.clone(), scale.clone(), zero_point.clone(), &params).unwrap();
    let what = |t: &str| format!("{case} ({}) {t} on {device:?}", params_desc(&params));
    assert_bits_eq(&what("forward"), &to_vec(&y), &f32s(&g, &format!("{case}.y")));
    let grads = (y * dy).sum().backward();
    assert_bits_eq(&what("dx"), &to_vec(&x.grad(&grads).expect("x has a gradient")), &f32s(&g, &format!("{case}.dx")));
    let largest_scale = scale_values.iter().fold(0.0f32, |m, &s| m.max(s));
    let tol = sum_tolerance(&dy_values, &params, largest_scale);
    let ds = to_vec(&scale.grad(&grads).expect("scale has a gradient"));
    assert_close(&what("dscale"), &ds, &f32s(&g, &format!("{case}.dscale")), 1e-5, tol);
    let dz = to_vec(&zero_point.grad(&grads).expect("zero point has a gradient"));
    assert_close(&what("dzero_point"), &dz, &f32s(&g, &format!("{case}.dzero_point")), 1e-5, tol);
}

fn params_desc(p: &LearnableFakeQuantParams) -> String {
    format!("axis {:?}, [{}, {}], grad factor {}", p.axis, p.quant_min, p.quant_max, p.grad_factor)
}

#[test]
fn per_tensor_op_matches_pytorch() {
    for device in devices() {
        for i in 0..=10 {
            run_op::<1>(&format!("lpt{i}"), &device.clone().autodiff());
        }
    }
}

#[test]
fn per_channel_op_matches_pytorch() {
    for device in devices() {
        for i in 0..=1 {
            run_op::<4>(&format!("lpc{i}"), &device.clone().autodiff());
        }
    }
}

#[test]
fn without_gradients_the_op_is_plain_fake_quantization() {
    let (g, _) = load_golden(FIXTURE);
    let device = Device::flex().autodiff();
    let case = "lpt3"; // zero point -2: the backward's zero point is -1, the forward's -2
    let x: Tensor<1> = tensor(&g, &format!("{case}.x"), &device);
    let scale = vector(f32s(&g, &format!("{case}.scale")), &device);
    let zero_point = vector(f32s(&g, &format!("{case}.zero_point")), &device);
    let y = fake_quantize_learnable(x, scale, zero_point, &op_params(case)).unwrap();
    assert_bits_eq("frozen qparams forward", &to_vec(&y), &f32s(&g, &format!("{case}.y")));
}

#[test]
fn bad_qparams_are_errors() {
    let device = Device::flex();
    let x = Tensor::<2>::ones([2, 3], &device);
    let params =
        LearnableFakeQuantParams { axis: Some(1), quant_min: 0, quant_max: 15, grad_factor: 1.0, scale_gradient: ScaleGradient::Every };
    let two = vector(vec![0.1, 0.1], &device);
    assert!(fake_quantize_learnable(x.clone(), two.clone(), two.clone(), &params).is_err(), "2 scales for 3 channels");
    let three = vector(vec![0.1; 3], &device);
    let nan = vector(vec![0.0, f32::NAN, 0.0], &device);
    assert!(fake_quantize_learnable(x.clone(), three.clone(), nan, &params).is_err(), "NaN zero point");
    let negative = vector(vec![0.1, -0.1, 0.1], &device);
    assert!(fake_quantize_learnable(x.clone(), negative, three.clone(), &params).is_err(), "negative scale");
    let axis = LearnableFakeQuantParams { axis: Some(2), ..params };
    assert!(fake_quantize_learnable(x, three.clone(), three, &axis).is_err(), "axis beyond the rank");
}

/// `_LearnableFakeQuantize` as the fixture's cases configure it.
fn module(case: &str) -> FakeQuantize {
    let observer = match case {
        "lm0" => ObserverConfig::moving_average(0.01).with_dtype(QuantDtype::QUInt8).with_quant_range(0, 15),
        "lm1" => ObserverConfig::moving_average_per_channel(0.01, 0)
            .with_dtype(QuantDtype::QInt8)
            .with_qscheme(QScheme::PerChannelSymmetric)
            .with_quant_range(-8, 7),
        _ => unreachable!(),
    };
    FakeQuantizeConfig::learnable(observer, case == "lm0").init().unwrap()
}

fn run_module<const D: usize>(case: &str, device: &Device) {
    let (g, meta) = load_golden(FIXTURE);
    let schedule: serde_json::Value = serde_json::from_str(&meta[case]).unwrap();
    let (statics, steps) = (schedule["static"].as_u64().unwrap() as usize, schedule["steps"].as_u64().unwrap() as usize);
    let lr = schedule["lr"].as_f64().unwrap();
    let mut fq = module(case);
    fq.enable_static_estimate();
    let mut optim = SgdConfig::new().init();
    for step in 0..steps {
        if step == statics {
            fq.enable_param_learning();
        }
        let x: Tensor<D> = tensor(&g, &format!("{case}.x{step}"), device);
        let w: Tensor<D> = tensor(&g, &format!("{case}.w{step}"), device);
        let y = fq.forward(x).unwrap();
        let what = |t: &str| format!("{case} step {step} {t} on {device:?}");
        let expected_y = f32s(&g, &format!("{case}.y{step}"));
        if step <= statics {
            // The observer's qparams (or the first learned step's, made from them): exact.
            assert_bits_eq(&what("output"), &to_vec(&y), &expected_y);
        } else {
            assert_close_except_rare_flips(&what("output"), &to_vec(&y), &expected_y, 1e-4, 1e-4);
        }
        if step >= statics {
            let grads = GradientsParams::from_grads((y * w).sum().backward(), &fq);
            fq = optim.step(lr, fq, grads);
        }
        let (scale, zero_point) = fq.learned_values().unwrap();
        assert_close(&what("scale"), &scale, &f32s(&g, &format!("{case}.scale{step}")), 1e-5, 1e-7);
        assert_close(&what("zero point"), &zero_point, &f32s(&g, &format!("{case}.zero_point{step}")), 1e-5, 1e-5);
    }
    let q = fq.calculate_qparams();
    assert_close(&format!("{case} convert scale"), &q.scale, &f32s(&g, &format!("{case}.convert_scale")), 1e-5, 1e-7);
    let zero_points: Vec<i64> = q.zero_point.iter().map(|&z| z as i64).collect();
    assert_eq!(zero_points, ints(&g, &format!("{case}.convert_zero_point")), "{case} convert zero point");
    let mut state = burn_qat::state_dict::StateDict::new();
    fq.write_state("", &mut state);
    let ours: Vec<&String> = state.keys().collect();
    let theirs: Vec<String> = schedule["state_dict_keys"].as_array().unwrap().iter().map(|k| k.as_str().unwrap().to_string()).collect();
    let mut ours: Vec<String> = ours.into_iter().cloned().collect();
    ours.sort();
    assert_eq!(ours, theirs, "{case}: the state dict's keys are PyTorch's");
}

#[test]
fn the_module_matches_pytorch_through_static_estimates_and_learning() {
    for device in devices() {
        run_module::<4>("lm0", &device.clone().autodiff());
        run_module::<4>("lm1", &device.autodiff());
    }
}
