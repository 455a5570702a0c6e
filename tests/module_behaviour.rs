//! Module behaviour beyond the golden sequences: loading a state dict PyTorch saved (v2 and v1
//! layouts), all-or-nothing loads, gamma = 0, the BN freeze rules, the qparam formulas of the
//! presets, and typed errors for bad configurations and inputs.

#[macro_use]
mod common;

use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::QatError;
use burn_qat::nn::float;
use burn_qat::nn::intrinsic::qat::LinearBn1dConfig;
use burn_qat::nn::intrinsic::qat::{BnFolding, ConvBn2d, ConvBn2dConfig, ConvBnReLU2d};
use burn_qat::nn::qat::{ConvConfig, LinearConfig};
use burn_qat::nn::{BatchNorm, Conv2dOptions, QatModule};
use burn_qat::qconfig::{QConfig, get_default_qat_qconfig};
use burn_qat::state_dict::{LoadStateDict, SaveStateDict, StateDict, TensorValue};
use common::*;

fn device() -> Device {
    Device::flex().autodiff()
}

fn saved_module() -> ConvBnReLU2d {
    let options = Conv2dOptions::new(4, 6, 3).with_padding(1);
    ConvBn2dConfig::new(options, get_default_qat_qconfig("fbgemm", 1).unwrap())
        .with_bias(true)
        .init_relu(&device())
        .unwrap()
        .with_output_fake_quant()
        .unwrap()
}

fn check_saved_output(m: &mut ConvBnReLU2d) {
    let (io, _) = load_golden("modules/torch_saved_state_io.safetensors");
    m.set_training(false);
    let y = m.forward(tensor(&io, "input", &device())).unwrap();
    assert_close("output after loading PyTorch's state dict", &to_vec(&y), &f32s(&io, "output"), 1e-5, 1e-6);
}

#[test]
fn a_state_dict_saved_by_pytorch_loads_and_reproduces_its_outputs() {
    let _serial = serial();
    let (state, _) = load_golden("modules/torch_saved_state.safetensors");
    let mut m = saved_module();
    m.load_state_dict(&state).unwrap();
    check_saved_output(&mut m);
    // And writing it back gives PyTorch's keys, shapes and dtypes.
    let ours = m.state_dict();
    assert_eq!(ours.keys().collect::<Vec<_>>(), state.keys().collect::<Vec<_>>());
    for (k, v) in &state {
        assert_eq!((&ours[k].shape, ours[k].values.dtype_name()), (&v.shape, v.values.dtype_name()), "{k}");
    }
}

#[test]
fn version_1_keys_are_accepted() {
    let _serial = serial();
    let (mut state, _) = load_golden("modules/torch_saved_state.safetensors");
    for (v2, v1) in [
        ("bn.weight", "gamma"),
        ("bn.bias", "beta"),
        ("bn.running_mean", "running_mean"),
        ("bn.running_var", "running_var"),
        ("bn.num_batches_tracked", "num_batches_tracked"),
    ] {
        let value = state.remove(v2).unwrap();
        state.insert(v1.to_string(), value);
    }
    let mut m = saved_module();
    m.load_state_dict(&state).unwrap();
    check_saved_output(&mut m);
}

#[test]
fn a_bad_state_dict_names_every_problem_and_loads_nothing() {
    let _serial = serial();
    let (good, _) = load_golden("modules/torch_saved_state.safetensors");
    let mut bad: StateDict = good.clone();
    bad.remove("bn.running_var");
    bad.insert("weight".into(), TensorValue::f32(vec![6, 4, 3, 2], vec![0.0; 144]));
    bad.insert("bn.num_batches_tracked".into(), TensorValue::f32_scalar(3.0));
    bad.insert("conv.extra".into(), TensorValue::f32_scalar(1.0));
    let mut m = saved_module();
    let before = m.state_dict();
    let err = m.load_state_dict(&bad).unwrap_err();
    let QatError::StateDict { problems } = &err else { panic!("{err}") };
    let text = problems.join("\n");
    for needle in [
        "missing key \"bn.running_var\"",
        "\"weight\": expected shape [6, 4, 3, 3]",
        "\"bn.num_batches_tracked\": expected an integer dtype",
        "unexpected key \"conv.extra\"",
    ] {
        assert!(text.contains(needle), "error should mention {needle}:\n{text}");
    }
    assert_eq!(m.state_dict(), before, "a failed load must leave the module untouched");
}

#[test]
fn a_non_finite_or_negative_buffer_is_rejected() {
    let _serial = serial();
    let (good, _) = load_golden("modules/torch_saved_state.safetensors");
    for (key, value) in [
        ("bn.running_var", TensorValue::f32_vec(vec![-1.0; 6])),
        ("weight_fake_quant.scale", TensorValue::f32_vec(vec![f32::NAN; 6])),
        ("activation_post_process.zero_point", TensorValue::i32_vec(vec![300])),
    ] {
        let mut bad = good.clone();
        bad.insert(key.into(), value);
        assert_error!(saved_module().load_state_dict(&bad), QatError::StateDict { problems } if problems.iter().any(|p| p.contains(key)), "{key} should be rejected");
    }
}

fn float_reference(m: &ConvBn2d, x: Tensor<4>) -> Tensor<4> {
    // conv -> BN with the module's own parameters: what ConvBn computes with fake quant off.
    let conv = float::Conv2d { weight: m.weight.clone(), bias: m.bias.clone(), options: m.options.clone() };
    let mut bn: BatchNorm = m.bn.clone();
    bn.forward(conv.forward(x).unwrap(), "reference").unwrap()
}

#[test]
fn zero_gamma_gives_no_nan_and_matches_conv_then_bn() {
    let _serial = serial();
    // PyTorch's default path divides by gamma and returns NaN here; we switch to the exact
    // folding for that forward (a deliberate improvement, spec §8.3).
    let device = device();
    let mut m = ConvBn2dConfig::new(Conv2dOptions::new(3, 4, 3), get_default_qat_qconfig("fbgemm", 0).unwrap())
        .with_bias(true)
        .init(&device)
        .unwrap();
    m.bn.weight = burn::module::Param::from_tensor(Tensor::from_floats([0.0, 1.0, 0.0, 0.5], &device));
    m.disable_fake_quant();
    let x = Tensor::<4>::random([2, 3, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let expected = float_reference(&m, x.clone());
    let y = m.forward(x.clone()).unwrap();
    assert!(to_vec(&y).iter().all(|v| v.is_finite()));
    assert_close("gamma = 0, training", &to_vec(&y), &to_vec(&expected), 1e-4, 1e-5);
    m.eval();
    let y = m.forward(x).unwrap();
    assert!(to_vec(&y).iter().all(|v| v.is_finite()), "gamma = 0 in eval");
}

#[test]
fn both_foldings_agree_to_quantization_noise_and_to_rounding_with_fake_quant_off() {
    let _serial = serial();
    let device = device();
    let make = |folding| {
        device.seed(7);
        ConvBn2dConfig::new(Conv2dOptions::new(3, 4, 3), QConfig::consistent("fbgemm").unwrap())
            .init(&device)
            .unwrap()
            .with_folding(folding)
    };
    let (mut a, mut b) = (make(BnFolding::Approximate), make(BnFolding::Exact));
    let x = Tensor::<4>::random([4, 3, 7, 7], Distribution::Normal(0.0, 1.0), &device);
    let (ya, yb) = (a.forward(x.clone()).unwrap(), b.forward(x.clone()).unwrap());
    // The approximate path scales by the previous running variance; the exact one by the new:
    // the same up to quantization noise (measured: at most 0.0042, about one output step).
    assert_close("folding paths", &to_vec(&ya), &to_vec(&yb), 0.0, 0.006);
    a.disable_fake_quant();
    b.disable_fake_quant();
    assert_close("fake quant off", &to_vec(&a.forward(x.clone()).unwrap()), &to_vec(&b.forward(x).unwrap()), 1e-4, 1e-5);
}

#[test]
fn frozen_bn_stays_frozen_across_train_and_stops_updating() {
    let _serial = serial();
    let device = device();
    let mut m = ConvBn2dConfig::new(Conv2dOptions::new(2, 3, 1), get_default_qat_qconfig("x86", 1).unwrap()).init(&device).unwrap();
    let x = Tensor::<4>::random([2, 2, 4, 4], Distribution::Normal(1.0, 2.0), &device);
    m.forward(x.clone()).unwrap();
    assert_eq!(m.bn.num_batches_tracked(), 1);
    m.freeze_bn_stats();
    m.train(true);
    assert!(!m.bn.training && m.is_bn_frozen(), "train() must not unfreeze BN");
    let (mean, var) = (m.bn.running_mean().to_vec(), m.bn.running_var().to_vec());
    m.forward(x.clone()).unwrap();
    assert_eq!((m.bn.running_mean(), m.bn.running_var(), m.bn.num_batches_tracked()), (mean.as_slice(), var.as_slice(), 1));
    // update_bn_stats turns batch statistics back on, even in eval (PyTorch's rule).
    m.eval();
    m.update_bn_stats();
    assert!(m.bn.training);
    m.forward(x).unwrap();
    assert_eq!(m.bn.num_batches_tracked(), 2);
}

/// The switches every QAT module takes, through the one trait.
fn switch_everything(m: &mut impl QatModule) {
    m.train(true);
    m.freeze_bn_stats();
    m.update_bn_stats();
    m.disable_observer();
    m.enable_observer(true);
    m.disable_fake_quant();
    m.enable_fake_quant(true);
    m.eval();
}

#[test]
fn every_qat_module_takes_the_same_switches() {
    let _serial = serial();
    let device = device();
    let qconfig = get_default_qat_qconfig("x86", 1).unwrap();
    let mut conv_bn = ConvBn2dConfig::new(Conv2dOptions::new(2, 3, 1), qconfig.clone()).init(&device).unwrap();
    let mut conv_bn_relu = ConvBn2dConfig::new(Conv2dOptions::new(2, 3, 1), qconfig.clone()).init_relu(&device).unwrap();
    let mut conv_relu = ConvConfig::new(Conv2dOptions::new(2, 3, 1), qconfig.clone()).init_relu(&device).unwrap();
    let mut linear_relu = LinearConfig::new(4, 2, qconfig.clone()).init_relu(&device).unwrap();
    let mut linear_bn = LinearBn1dConfig::new(4, 2, qconfig).init(&device).unwrap();
    switch_everything(&mut conv_bn);
    switch_everything(&mut conv_bn_relu);
    switch_everything(&mut conv_relu);
    switch_everything(&mut linear_relu);
    switch_everything(&mut linear_bn);
    // eval() reached the batch norms, through the fused containers too.
    assert!(!conv_bn.is_training() && !conv_bn.bn.training);
    assert!(!conv_bn_relu.inner.is_training());
    assert!(!linear_bn.bn.training);
    // And train(true) brings them back; freeze_bn_stats holds across it.
    conv_bn_relu.train(true);
    assert!(conv_bn_relu.inner.is_training() && conv_bn_relu.inner.bn.training);
    conv_bn_relu.freeze_bn_stats();
    conv_bn_relu.train(true);
    assert!(conv_bn_relu.inner.is_bn_frozen() && !conv_bn_relu.inner.bn.training);
    linear_bn.freeze_bn_stats();
    assert!(linear_bn.is_bn_frozen());
}

#[test]
fn momentum_none_is_a_cumulative_average() {
    let _serial = serial();
    let device = device();
    let mut bn = BatchNorm::new(1, 1e-5, None, &device).unwrap();
    for v in [1.0f32, 3.0, 8.0] {
        let x = Tensor::<4>::from_floats([[[[v - 1.0, v + 1.0]]]], &device);
        bn.forward(x, "bn").unwrap();
    }
    // Batch means 1, 3, 8 averaged over all batches (and the initial 0 weighted out).
    assert!((bn.running_mean()[0] - 4.0).abs() < 1e-6, "{:?}", bn.running_mean());
}

#[test]
fn the_seed_example_linear_relu_20_to_30() {
    let _serial = serial();
    let device = device();
    let mut m = LinearConfig::new(20, 30, get_default_qat_qconfig("x86", 1).unwrap()).init_relu(&device).unwrap();
    let y = m.forward(Tensor::<2>::random([128, 20], Distribution::Normal(0.0, 1.0), &device)).unwrap();
    assert_eq!(y.dims(), [128, 30]);
    assert!(to_vec(&y).iter().all(|&v| v >= 0.0));
}

#[test]
fn pytorch_v1_trains_and_converts_with_different_qparams_our_preset_does_not() {
    let _serial = serial();
    // PyTorch issue #88800, pinned: the fused fake quant trains with ChooseQuantizationParams
    // (symmetric scale max(|min|/128, max/127)) while calculate_qparams, used by convert, gives
    // max(|min|, max)/127.5.
    let device = device();
    let x = Tensor::<2>::random([8, 20], Distribution::Normal(0.0, 1.0), &device);
    let mut torch_v1 = LinearConfig::new(20, 30, get_default_qat_qconfig("fbgemm", 1).unwrap()).init_relu(&device).unwrap();
    torch_v1.forward(x.clone()).unwrap();
    assert_ne!(torch_v1.linear.weight_fake_quant.qparams(), torch_v1.linear.weight_fake_quant.calculate_qparams());

    let mut ours = LinearConfig::new(20, 30, QConfig::consistent("fbgemm").unwrap()).init_relu(&device).unwrap();
    ours.forward(x).unwrap();
    assert_eq!(ours.linear.weight_fake_quant.qparams(), ours.linear.weight_fake_quant.calculate_qparams());
    assert!(ours.linear.weight_fake_quant.qparams().zero_point.iter().all(|&z| z == 0), "symmetric weights keep zero point 0");
}

#[test]
fn fused_fake_quant_keeps_its_scale_while_fake_quant_is_off() {
    let _serial = serial();
    let device = device();
    let mut fq = get_default_qat_qconfig("fbgemm", 1).unwrap().activation.init().unwrap();
    fq.disable_fake_quant();
    fq.forward(Tensor::<1>::from_floats([0.0, 10.0], &device)).unwrap();
    assert_eq!(fq.qparams().scale, vec![1.0], "fused: qparams are not refreshed while fake quant is off");
    let mut standard = get_default_qat_qconfig("fbgemm", 0).unwrap().activation.init().unwrap();
    standard.disable_fake_quant();
    standard.forward(Tensor::<1>::from_floats([0.0, 10.0], &device)).unwrap();
    assert_ne!(standard.qparams().scale, vec![1.0], "FakeQuantize refreshes them");
}

#[test]
fn invalid_configurations_are_typed_errors() {
    let _serial = serial();
    let device = device();
    let qconfig = get_default_qat_qconfig("fbgemm", 0).unwrap();
    let conv = |o: Conv2dOptions| ConvBn2dConfig::new(o, qconfig.clone()).init(&device).err();
    assert!(
        matches!(conv(Conv2dOptions::new(3, 4, 3).with_groups(2)), Some(QatError::InvalidConfig { field, reason }) if field == "groups" && reason.contains("divisible by groups"))
    );
    // The error names the argument a caller got wrong, so a harness can match on it.
    let field = |o: Conv2dOptions| match conv(o) {
        Some(QatError::InvalidConfig { field, .. }) => field,
        other => panic!("expected an invalid-configuration error, got {other:?}"),
    };
    assert_eq!(field(Conv2dOptions::new(0, 4, 3)), "in_channels");
    assert_eq!(field(Conv2dOptions::new(4, 4, 0)), "kernel_size");
    assert_eq!(field(Conv2dOptions::new(4, 4, 3).with_stride(0)), "stride");
    assert_error!(ConvBn2dConfig::new(Conv2dOptions::new(4, 4, 3), qconfig.clone()).with_eps(-1.0).init(&device), QatError::InvalidConfig { field, .. } if field == "eps");
    assert_error!(ConvBn2dConfig::new(Conv2dOptions::new(4, 4, 3), qconfig.clone()).with_momentum(Some(1.5)).init(&device), QatError::InvalidConfig { field, .. } if field == "momentum");
    assert_error!(get_default_qat_qconfig("tpu", 0), QatError::InvalidConfig { field, reason } if field == "backend" && reason.contains("tpu"));
    assert_error!(get_default_qat_qconfig("fbgemm", 2), QatError::InvalidConfig { field, reason } if field == "version" && reason.contains('2'));
    assert_error!(LinearConfig::new(0, 3, qconfig.clone()).init_relu(&device), QatError::InvalidConfig { field, .. } if field == "in_features");

    let float_conv = float::Conv2d::new(Conv2dOptions::new(3, 4, 3), false, &device).unwrap();
    let bn = BatchNorm::new(5, 1e-5, Some(0.1), &device).unwrap();
    let err = ConvBn2d::from_float(&float_conv, &bn, qconfig).unwrap_err();
    assert!(err.to_string().contains("5 features but the conv has 4"), "{err}");
}

#[test]
fn bad_inputs_are_typed_errors() {
    let _serial = serial();
    let device = device();
    let mut m = ConvBn2dConfig::new(Conv2dOptions::new(3, 4, 3), get_default_qat_qconfig("fbgemm", 0).unwrap()).init(&device).unwrap();
    let wrong_channels = m.forward(Tensor::zeros([2, 5, 8, 8], &device)).unwrap_err();
    assert!(matches!(wrong_channels, QatError::ShapeMismatch { .. }), "{wrong_channels}");
    assert_error!(m.forward(Tensor::zeros([2, 3, 2, 2], &device)), QatError::ShapeMismatch { .. }, "smaller than the kernel");
    // One value per channel in training BN: batch 1 with a 1x1 output.
    let one = m.forward(Tensor::zeros([1, 3, 3, 3], &device)).unwrap_err();
    assert!(matches!(one, QatError::SingleValuePerChannel { .. }), "{one}");
    // The same input is fine once BN is frozen.
    m.freeze_bn_stats();
    assert!(m.forward(Tensor::zeros([1, 3, 3, 3], &device)).is_ok());

    let mut l =
        LinearConfig::new(20, 30, get_default_qat_qconfig("x86", 0).unwrap()).init_relu(&device).unwrap().with_output_fake_quant().unwrap();
    assert!(matches!(l.forward(Tensor::<2>::zeros([4, 21], &device)), Err(QatError::ShapeMismatch { .. })));
    // NaN input: the observer refuses it rather than poisoning its range.
    let nan = Tensor::<2>::from_floats([[f32::NAN; 20]], &device);
    let err = l.forward(nan).unwrap_err();
    assert!(matches!(&err, QatError::NonFinite { context, .. } if context == "LinearReLU (output)"), "{err}");
}

#[test]
fn to_float_folds_bn_with_running_stats() {
    let _serial = serial();
    // With fake quant off and BN frozen, the module computes exactly the folded float conv
    // that to_float returns (up to f32 rounding of the fold).
    let device = device();
    let mut m = ConvBn2dConfig::new(Conv2dOptions::new(3, 5, 3).with_padding(1), get_default_qat_qconfig("fbgemm", 0).unwrap())
        .with_bias(true)
        .init(&device)
        .unwrap();
    let x = Tensor::<4>::random([4, 3, 6, 6], Distribution::Normal(0.5, 1.0), &device);
    m.forward(x.clone()).unwrap(); // move the running stats away from 0 / 1
    m.disable_fake_quant();
    m.eval();
    let folded = m.to_float();
    assert_close("to_float", &to_vec(&folded.forward(x.clone()).unwrap()), &to_vec(&m.forward(x).unwrap()), 1e-5, 1e-5);
}

#[test]
fn linear_bn_takes_pytorchs_eps_momentum_and_freeze_bn() {
    let _serial = serial();
    let device = device();
    let qconfig = get_default_qat_qconfig("fbgemm", 0).unwrap();
    let x = Tensor::<2>::random([6, 4], Distribution::Normal(1.0, 2.0), &device);
    let config = LinearBn1dConfig::new(4, 2, qconfig).with_eps(1e-3).with_momentum(None);
    let mut moving = config.clone().init(&device).unwrap();
    assert_eq!((moving.bn.eps, moving.bn.momentum), (1e-3, None));
    moving.forward(x.clone()).unwrap();
    assert_ne!(moving.bn.running_mean(), &[0.0, 0.0], "a training forward moves the statistics");
    let mut frozen = config.with_freeze_bn(true).init(&device).unwrap();
    assert!(frozen.bn.is_frozen());
    frozen.forward(x).unwrap();
    assert_eq!(frozen.bn.running_mean(), &[0.0, 0.0], "freeze_bn = True keeps the running statistics");
}
