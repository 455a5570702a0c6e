//! The whole-model road on a small CNN with a residual block: fuse -> prepare_qat -> train ->
//! freeze BN / disable observers -> convert, and the int8 model's outputs against the QAT
//! model's eval outputs, bit for bit. The eval computes the deployment arithmetic from the QAT
//! modules themselves (`QatModel::forward_deployment`), the int8 model from what `convert` made
//! of them: two computations that share only the specification.

#[macro_use]
mod common;

use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::QatError;
use burn_qat::nn::{Conv2dOptions, PaddingMode, QatModule};
use burn_qat::qconfig::{QConfig, get_default_qat_qconfig};
use burn_qat::state_dict::{LoadStateDict, SaveStateDict};
use burn_qat::workflow::{EvalArithmetic, FloatModel, Layer, QConfigMap, QatModel, Value, convert, prepare_qat};
use common::*;

fn small_cnn(device: &Device) -> FloatModel {
    common::small_cnn(device, PaddingMode::Zeros)
}

fn logits(model: &mut QatModel, x: Tensor<4>) -> Vec<f32> {
    let device = x.device();
    to_vec(&model.forward(x).unwrap().into_features(&device).unwrap())
}

fn trained(qconfig: QConfig) -> QatModel {
    trained_from(small_cnn, qconfig)
}

/// Builds the float model after seeding, so that its weights do not depend on what ran before.
fn trained_from(build: impl FnOnce(&Device) -> FloatModel, qconfig: QConfig) -> QatModel {
    let device = Device::flex().autodiff();
    device.seed(3);
    let mut model = prepare_qat(build(&device).fuse().unwrap(), qconfig).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..6 {
        if step == 4 {
            model.freeze_bn_stats();
        }
        if step == 5 {
            model.disable_observer();
        }
        let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
        let out = model.forward(x).unwrap().into_features(&device).unwrap();
        let grads = GradientsParams::from_grads(out.powi_scalar(2).mean().backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    model
}

#[test]
fn int8_equals_the_qat_eval_output_bit_for_bit() {
    let _serial = serial();
    let mut model = trained(QConfig::consistent("fbgemm").unwrap());
    assert_eq!(model.eval_arithmetic, EvalArithmetic::Deployment);
    model.set_training(false);
    let int8 = convert(&model).unwrap();
    let device = Device::flex();
    let (mut mismatched, mut total, mut worst_steps) = (0, 0, 0);
    let head = int8.layers.iter().find(|l| l.name == "fc2").expect("fc2");
    let burn_qat::workflow::Int8Layer::Linear(head) = &head.layer else { panic!("fc2 is a quantized Linear") };
    let output_step = head.qparams.output.scale;
    for seed in 0..4 {
        device.seed(100 + seed);
        let x = Tensor::<4>::random([16, 1, 12, 12], Distribution::Normal(0.0, 1.5), &device);
        let qat_eval = logits(&mut model, x.clone());
        let int8_out = to_vec(&int8.forward(x.clone()).unwrap().into_features(&device).unwrap());
        assert_bits_eq("int8 vs QAT eval", &int8_out, &qat_eval);
        // PyTorch's float fake-quant arithmetic: measured 12 of 640 logits (1.9%) one output
        // step away.
        let float_eval = to_vec(&model.forward_float(x).unwrap().into_features(&device).unwrap());
        mismatched += float_eval.iter().zip(&int8_out).filter(|(a, b)| a != b).count();
        total += float_eval.len();
        worst_steps =
            float_eval.iter().zip(&int8_out).map(|(a, b)| ((a - b) / output_step).abs().round() as i32).fold(worst_steps, i32::max);
    }
    println!("float fake-quant eval vs int8: {mismatched}/{total} elements differ, by at most {worst_steps} output steps");
    assert!(
        worst_steps <= 1 && mismatched * 100 <= total * 3,
        "float vs deployment arithmetic: {mismatched}/{total} differ, by up to {worst_steps} steps"
    );
}

/// Every qconfig we call consistent: the four backends' presets, low bit widths, per-tensor
/// weights. The integer-exact eval and the int8 engine agree on every logit.
#[test]
fn int8_equals_the_qat_eval_for_every_consistent_qconfig() {
    let _serial = serial();
    use burn_qat::qconfig::QConfigBuilder;
    let mut qconfigs: Vec<(String, QConfig)> =
        ["fbgemm", "x86", "qnnpack", "onednn"].iter().map(|b| (b.to_string(), QConfig::consistent(b).unwrap())).collect();
    qconfigs.push(("w4/a4".into(), QConfigBuilder::new().weight_bits(4).activation_bits(4).build().unwrap()));
    qconfigs
        .push(("w2/a3 per tensor".into(), QConfigBuilder::new().weight_bits(2).activation_bits(3).per_tensor_weights().build().unwrap()));
    for (name, qconfig) in qconfigs {
        assert!(qconfig.is_consistent(), "{name}");
        let mut model = trained(qconfig);
        assert_eq!(model.eval_arithmetic, EvalArithmetic::Deployment, "{name}");
        model.set_training(false);
        let int8 = convert(&model).unwrap();
        let device = Device::flex().autodiff();
        device.seed(9);
        let x = Tensor::<4>::random([16, 1, 12, 12], Distribution::Normal(0.0, 1.5), &device);
        let int8_out = to_vec(&int8.forward(x.clone().inner()).unwrap().into_features(&Device::flex()).unwrap());
        assert_bits_eq(&format!("{name}: int8 vs QAT eval"), &int8_out, &logits(&mut model, x));
    }
}

#[test]
fn pytorch_presets_evaluate_in_float_arithmetic() {
    let _serial = serial();
    let model = prepare_qat(small_cnn(&Device::flex().autodiff()).fuse().unwrap(), get_default_qat_qconfig("fbgemm", 1).unwrap()).unwrap();
    assert_eq!(model.eval_arithmetic, EvalArithmetic::Float);
}

#[test]
fn state_dict_round_trip_reproduces_the_model() {
    let _serial = serial();
    let mut model = trained(QConfig::consistent("x86").unwrap());
    model.set_training(false);
    let state = model.state_dict();
    assert!(state.contains_key("block.body.conv_a.bn.running_var"), "{:?}", state.keys().collect::<Vec<_>>());
    assert!(state.contains_key("block.add.activation_post_process.scale"));
    assert!(state.contains_key("quant.activation_post_process.scale"));
    let device = Device::flex().autodiff();
    let mut fresh = prepare_qat(small_cnn(&device).fuse().unwrap(), QConfig::consistent("x86").unwrap()).unwrap();
    fresh.load_state_dict(&state).unwrap();
    fresh.set_training(false);
    let x = Tensor::<4>::random([4, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    assert_bits_eq("reloaded model", &logits(&mut fresh, x.clone()), &logits(&mut model, x));
}

#[test]
fn workflow_errors_name_the_layer() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    // An unobserved model cannot be converted.
    let model = prepare_qat(small_cnn(&device).fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let err = convert(&model).unwrap_err();
    assert!(err.to_string().contains("quant") && err.to_string().contains("never saw data"), "{err}");
    assert!(
        matches!(&err, QatError::Lifecycle { context, .. } if context.contains("quant")),
        "a lifecycle error, naming the layer: {err:?}"
    );
    // An unfused BatchNorm cannot be prepared.
    let err = prepare_qat(small_cnn(&device), QConfig::consistent("fbgemm").unwrap()).unwrap_err();
    assert!(err.to_string().contains("bn1"), "{err}");
    // Fusion checks the BN width.
    let bad = FloatModel::new(vec![
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 4, 3), false, &device).unwrap()),
        ("bn", Layer::batch_norm2d(5, &device).unwrap()),
    ])
    .unwrap();
    let err = bad.fuse().unwrap_err();
    assert!(matches!(&err, QatError::ModelStructure { layer, reason } if layer == "bn" && reason.contains("conv")), "{err}");
    // A quantized layer after float input.
    let no_stub = FloatModel::new(vec![("fc", Layer::linear(4, 2, true, &device).unwrap())]).unwrap();
    let mut m = prepare_qat(no_stub, QConfig::consistent("fbgemm").unwrap()).unwrap();
    let _ = m.forward(Tensor::<4>::zeros([2, 1, 2, 2], &device));
    assert_error!(convert(&m), QatError::ModelStructure { layer, reason } if layer == "fc" && reason.contains("QuantStub"));
    // Duplicate names.
    assert_error!(FloatModel::new(vec![("a", Layer::Relu(Default::default())), ("a", Layer::Relu(Default::default()))]), QatError::ModelStructure { layer, reason } if layer == "a" && reason.contains("two layers are named a"));
}

#[test]
fn a_layer_with_qconfig_none_stays_float() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let map = QConfigMap::from(QConfig::consistent("fbgemm").unwrap()).with("head", None);
    let model = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 2, 3), true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("head", Layer::linear(2 * 4 * 4, 3, true, &device).unwrap()),
    ])
    .unwrap();
    let mut qat = prepare_qat(model, map).unwrap();
    qat.forward(Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &device)).unwrap();
    let int8 = convert(&qat).unwrap();
    assert!(matches!(int8.layers[4].layer, burn_qat::workflow::Int8Layer::Float(_)));
    let out = int8.forward(Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &Device::flex())).unwrap();
    assert!(matches!(out, Value::Features(_)));
    let _ = qat.valid();
}

#[test]
fn the_int8_model_saves_and_loads_without_the_float_model() {
    let _serial = serial();
    let mut model = trained(QConfig::consistent("fbgemm").unwrap());
    model.set_training(false);
    let int8 = convert(&model).unwrap();
    let dir = std::env::temp_dir().join(format!("burn-qat-int8-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("int8.safetensors");
    int8.save(&path).unwrap();
    let loaded = burn_qat::workflow::Int8Model::load(&path).unwrap();
    let device = Device::flex();
    let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    let a = to_vec(&int8.forward(x.clone()).unwrap().into_features(&device).unwrap());
    let b = to_vec(&loaded.forward(x).unwrap().into_features(&device).unwrap());
    assert_bits_eq("reloaded int8 model", &b, &a);

    // A tensor that does not fit the architecture is named; a truncated file is an error.
    let (mut state, metadata) = burn_qat::state_dict::load_safetensors(&path).unwrap();
    state.insert(
        "block.body.conv_a.weight".into(),
        burn_qat::state_dict::TensorValue { shape: vec![1], values: burn_qat::state_dict::Values::I8(vec![0]) },
    );
    let tampered = dir.join("tampered.safetensors");
    burn_qat::state_dict::save_safetensors(&tampered, &state, &metadata).unwrap();
    let err = burn_qat::workflow::Int8Model::load(&tampered).unwrap_err().to_string();
    assert!(err.contains("block.body.conv_a.weight"), "{err}");
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    assert_error!(burn_qat::workflow::Int8Model::load(&truncated), QatError::File { path, .. } if path.contains("truncated"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Sub-8-bit weights are stored packed at their width: a 4-bit model's weights take half the
/// bytes, and the reloaded model computes the same bits; a corrupt packed tensor is named.
#[test]
fn four_bit_weights_are_stored_packed() {
    let _serial = serial();
    use burn_qat::qconfig::QConfigBuilder;
    use burn_qat::state_dict::{Values, load_safetensors, save_safetensors};
    let mut model = trained(QConfigBuilder::new().weight_bits(4).activation_bits(4).build().unwrap());
    model.set_training(false);
    let int8 = convert(&model).unwrap();
    let dir = std::env::temp_dir().join(format!("burn-qat-packed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("int4.safetensors");
    int8.save(&path).unwrap();
    let (state, metadata) = load_safetensors(&path).unwrap();
    let weights = 8 * 9 + 8 * 8 * 9 * 2 + 8 * 6 * 6 * 32 + 32 * 10; // conv1, conv_a, conv_b, fc1, fc2
    let mut packed_bytes = 0;
    for layer in ["conv1", "block.body.conv_a", "block.body.conv_b", "fc1", "fc2"] {
        assert!(!state.contains_key(&format!("{layer}.weight")), "{layer} stored unpacked");
        let bits = state[&format!("{layer}.weight_bits")].to_f64_vec()[0];
        assert!((2.0..=4.0).contains(&bits), "{layer}: {bits} bits");
        let Values::U8(bytes) = &state[&format!("{layer}.weight_packed")].values else { panic!("{layer}: packed weights are u8") };
        packed_bytes += bytes.len();
    }
    assert!(packed_bytes * 2 <= weights + 5, "{packed_bytes} bytes for {weights} 4-bit weights");
    let loaded = burn_qat::workflow::Int8Model::load(&path).unwrap();
    let device = Device::flex();
    let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    let a = to_vec(&int8.forward(x.clone()).unwrap().into_features(&device).unwrap());
    let b = to_vec(&loaded.forward(x).unwrap().into_features(&device).unwrap());
    assert_bits_eq("reloaded 4-bit model", &b, &a);

    let mut tampered = state.clone();
    tampered.insert("fc1.weight_packed".into(), burn_qat::state_dict::TensorValue { shape: vec![3], values: Values::U8(vec![0; 3]) });
    let bad = dir.join("tampered.safetensors");
    save_safetensors(&bad, &tampered, &metadata).unwrap();
    let err = burn_qat::workflow::Int8Model::load(&bad).unwrap_err().to_string();
    assert!(err.contains("fc1.weight_packed"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn linear_bn_fuses_and_converts_exactly() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(11);
    let mlp = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc1", Layer::linear(36, 16, true, &device).unwrap()),
        ("bn", Layer::batch_norm1d(16, &device).unwrap()),
        ("relu", Layer::Relu(Default::default())),
        ("fc2", Layer::linear(16, 4, true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap();
    let fused = mlp.fuse().unwrap();
    assert!(matches!(fused.layers[2].layer, Layer::LinearBn1d(_)), "Linear + BatchNorm1d fuse");
    let mut model = prepare_qat(fused, QConfig::consistent("x86").unwrap()).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..4 {
        if step == 2 {
            model.freeze_bn_stats();
        }
        if step == 3 {
            model.disable_observer();
        }
        let x = Tensor::<4>::random([8, 1, 6, 6], Distribution::Normal(0.0, 1.0), &device);
        let out = model.forward(x).unwrap().into_features(&device).unwrap();
        let grads = GradientsParams::from_grads(out.powi_scalar(2).mean().backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    model.set_training(false);
    let int8 = convert(&model).unwrap();
    let x = Tensor::<4>::random([16, 1, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let qat_eval = logits(&mut model, x.clone());
    let eval_device = Device::flex();
    let int8_out = to_vec(&int8.forward(x.inner()).unwrap().into_features(&eval_device).unwrap());
    assert_bits_eq("LinearBn1d model: int8 vs QAT eval", &int8_out, &qat_eval);
}

#[test]
fn a_float_model_round_trips_its_state_dict() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let mut a = small_cnn(&device).fuse().unwrap();
    let state = a.state_dict();
    assert!(
        state.contains_key("conv1.0.weight") && state.contains_key("conv1.1.running_var") && state.contains_key("fc2.bias"),
        "{:?}",
        state.keys()
    );
    let mut b = small_cnn(&device).fuse().unwrap();
    b.load_state_dict(&state).unwrap();
    a.set_training(false);
    b.set_training(false);
    let x = Tensor::<4>::random([2, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    let (ya, yb) = (a.forward(x.clone()).unwrap().into_features(&device).unwrap(), b.forward(x).unwrap().into_features(&device).unwrap());
    assert_bits_eq("reloaded float model", &to_vec(&yb), &to_vec(&ya));
}

/// Prepares `model` with `preset`, trains it `steps` SGD steps on normal inputs of standard
/// deviation `std` (BN frozen and observers off for the last), converts it, saves and reloads the
/// int8 model, and checks that its logits equal the QAT model's deployment eval bit for bit.
fn check_converts_exactly_and_saves(what: &str, model: FloatModel, preset: &str, input: [usize; 3], std: f32, steps: usize) {
    let device = Device::flex().autodiff();
    let mut model = prepare_qat(model.fuse().unwrap(), QConfig::consistent(preset).unwrap()).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    let [c, h, w] = input;
    for step in 0..steps {
        if step + 1 == steps {
            model.freeze_bn_stats();
            model.disable_observer();
        }
        let x = Tensor::<4>::random([8, c, h, w], Distribution::Normal(0.0, std as f64), &device);
        let out = model.forward(x).unwrap().into_features(&device).unwrap();
        let grads = GradientsParams::from_grads(out.powi_scalar(2).mean().backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    model.set_training(false);
    let int8 = convert(&model).unwrap();
    let path = std::env::temp_dir().join(format!("burn-qat-{}-{}.safetensors", what.replace(' ', "-"), std::process::id()));
    int8.save(&path).unwrap();
    let loaded = burn_qat::workflow::Int8Model::load(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let x = Tensor::<4>::random([16, c, h, w], Distribution::Normal(0.0, std as f64), &device);
    let qat_eval = logits(&mut model, x.clone());
    let int8_out = to_vec(&loaded.forward(x.inner()).unwrap().into_features(&Device::flex()).unwrap());
    assert_bits_eq(&format!("{what}: int8 vs QAT eval"), &int8_out, &qat_eval);
}

#[test]
fn global_average_pooling_converts_exactly_and_saves() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(21);
    let model = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 6, 3).with_padding(1), false, &device).unwrap()),
        ("bn", Layer::batch_norm2d(6, &device).unwrap()),
        ("relu", Layer::Relu(Default::default())),
        ("gap", Layer::GlobalAvgPool2d(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(6, 3, true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap();
    check_converts_exactly_and_saves("global average pooling", model, "qnnpack", [1, 7, 7], 1.0, 3);
}

/// ReLU6 and windowed average pooling keep their input's qparams; the int8 model clamps at the
/// quantized 6 and rounds each window's mean once, exactly as the QAT model's deployment eval.
#[test]
fn relu6_and_average_pooling_convert_exactly_and_save() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(22);
    let model = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 6, 3).with_padding(1), false, &device).unwrap()),
        ("bn", Layer::batch_norm2d(6, &device).unwrap()),
        ("relu6", Layer::Relu6(Default::default())),
        ("pool", Layer::avg_pool2d(3, 2).unwrap()),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(6 * 4 * 4, 3, true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap();
    // Wide inputs, so that some activations pass 6 and the clamp matters.
    check_converts_exactly_and_saves("ReLU6 + AvgPool2d", model, "fbgemm", [1, 9, 9], 4.0, 3);
    assert_error!(Layer::avg_pool2d(0, 1), QatError::InvalidConfig { field, .. } if field == "kernel_size");
    assert_error!(Layer::avg_pool2d(2, 0), QatError::InvalidConfig { field, .. } if field == "stride");
}

/// A batch norm no conv precedes stays a batch norm: fused with a following ReLU into BNReLU2d,
/// run in float with an output fake quant while training, converted to a per-channel map on
/// the integers that equals the QAT model's deployment eval bit for bit.
#[test]
fn standalone_batch_norms_convert_exactly_and_save() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(23);
    let model = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 4, 3).with_padding(1), true, &device).unwrap()),
        ("relu", Layer::Relu(Default::default())),
        ("pool", Layer::max_pool2d(2, 2).unwrap()),
        ("bn", Layer::batch_norm2d(4, &device).unwrap()),
        ("bn_relu", Layer::Relu(Default::default())),
        ("bn2", Layer::batch_norm2d(4, &device).unwrap()),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(4 * 4 * 4, 3, true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap();
    let fused = model.clone().fuse().unwrap();
    let kinds: Vec<&str> = fused.layers.iter().map(|l| l.layer.kind()).collect();
    assert_eq!(kinds, ["QuantStub", "ConvReLU2d", "MaxPool2d", "BNReLU2d", "BatchNorm2d", "Flatten", "Linear", "DeQuantStub"]);
    let state = prepare_qat(fused, QConfig::consistent("fbgemm").unwrap()).unwrap().state_dict();
    for key in ["bn.0.running_var", "bn.activation_post_process.scale", "bn2.weight", "bn2.activation_post_process.zero_point"] {
        assert!(state.contains_key(key), "{key} missing: {:?}", state.keys().collect::<Vec<_>>());
    }
    check_converts_exactly_and_saves("standalone BN", model, "fbgemm", [1, 8, 8], 2.0, 4);
}

#[test]
fn a_tensor_of_the_right_size_but_the_wrong_shape_does_not_load() {
    let _serial = serial();
    let model = trained(QConfig::consistent("fbgemm").unwrap());
    let mut state = model.state_dict();
    // fc2.weight is [10, 32]; the same 320 values as [32, 10] (a transposed export) must be refused.
    let weight = state.get_mut("fc2.weight").unwrap();
    assert_eq!(weight.shape, vec![10, 32]);
    weight.shape = vec![32, 10];
    let mut fresh = prepare_qat(small_cnn(&Device::flex().autodiff()).fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let err = fresh.load_state_dict(&state).unwrap_err();
    assert!(
        matches!(&err, QatError::StateDict { problems } if problems.iter().any(|p| p.contains("fc2.weight") && p.contains("[32, 10]"))),
        "{err}"
    );
}

#[test]
fn the_deployment_eval_leaves_observers_and_statistics_alone() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(5);
    let mut model = prepare_qat(small_cnn(&device).fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    model.forward(Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device)).unwrap();
    model.set_training(false);
    let before = model.state_dict();
    // Observers are still enabled: a float fake-quant eval would move them (as PyTorch's does).
    let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 4.0), &device);
    model.forward_deployment(x).unwrap();
    let after = model.state_dict();
    for (key, value) in &before {
        assert_eq!(Some(value), after.get(key), "{key} changed during the deployment eval");
    }
}

#[test]
fn training_on_the_deployment_arithmetic_needs_settled_qparams_and_statistics() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(6);
    let mut model = prepare_qat(small_cnn(&device).fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    model.forward(x.clone()).unwrap();
    model.deployment_training = true;
    let err = model.forward(x.clone()).unwrap_err();
    assert!(matches!(&err, QatError::Lifecycle { reason: m, .. } if m.contains("disable_observer()")), "{err}");
    model.disable_observer();
    let err = model.forward(x.clone()).unwrap_err();
    assert!(
        matches!(&err, QatError::Lifecycle { reason: m, .. } if m.contains("freeze_bn_stats()") && m.contains("block.body.conv_a")),
        "{err}"
    );
    model.freeze_bn_stats();
    model.forward(x).unwrap();
}

/// With observers off and BN frozen, training on the deployment arithmetic computes exactly the
/// eval's integers, its gradients flow straight through to every parameter, and after SGD steps
/// the int8 model still equals the eval bit for bit.
#[test]
fn training_on_the_deployment_arithmetic_outputs_the_integers_and_learns() {
    let _serial = serial();
    let mut model = trained(QConfig::consistent("fbgemm").unwrap());
    let device = Device::flex().autodiff();
    device.seed(7);
    let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    model.set_training(false);
    let eval = logits(&mut model, x.clone());
    model.set_training(true);
    model.deployment_training = true;
    let out = model.forward(x.clone()).unwrap().into_features(&device).unwrap();
    assert_bits_eq("deployment training forward vs eval", &to_vec(&out), &eval);

    let grads = out.powi_scalar(2).mean().backward();
    let weight = |m: &QatModel| match &m.layers.iter().find(|l| l.name == "fc1").unwrap().layer {
        burn_qat::workflow::QatLayer::LinearReLU(m) => m.linear.weight.val(),
        _ => panic!("fc1 is a LinearReLU"),
    };
    let grad = weight(&model).grad(&grads).expect("fc1.weight has a gradient");
    let grad = to_vec(&grad);
    assert!(grad.iter().all(|g| g.is_finite()) && grad.iter().any(|&g| g != 0.0), "fc1.weight gradient {grad:?}");

    let mut optim = SgdConfig::new().init();
    let before = to_vec(&weight(&model));
    for _ in 0..3 {
        let out = model.forward(x.clone()).unwrap().into_features(&device).unwrap();
        let grads = GradientsParams::from_grads(out.powi_scalar(2).mean().backward(), &model);
        model = optim.step(0.05, model, grads);
    }
    assert_ne!(to_vec(&weight(&model)), before, "SGD on the deployment arithmetic moves the weights");
    model.set_training(false);
    let int8 = convert(&model).unwrap();
    let eval = logits(&mut model, x.clone());
    let int8_out = to_vec(&int8.forward(x.inner()).unwrap().into_features(&Device::flex()).unwrap());
    assert_bits_eq("int8 vs QAT eval after deployment training", &int8_out, &eval);
}

/// Conv and linear biases folded with BN (a ConvBnReLU2d with a conv bias, a LinearBn1d): the
/// integer-exact eval folds them from the modules, convert from its own code; bit for bit.
#[test]
fn int8_equals_the_qat_eval_with_biases_folded_into_batch_norm() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    for qconfig in [QConfig::consistent("fbgemm").unwrap(), QConfig::consistent("qnnpack").unwrap()] {
        let mut model = trained_from(|device| biased_cnn(device, PaddingMode::Zeros), qconfig);
        model.set_training(false);
        let int8 = convert(&model).unwrap();
        device.seed(8);
        let x = Tensor::<4>::random([16, 1, 12, 12], Distribution::Normal(0.0, 1.5), &device);
        let int8_out = to_vec(&int8.forward(x.clone().inner()).unwrap().into_features(&Device::flex()).unwrap());
        assert_bits_eq("int8 vs QAT eval with folded biases", &int8_out, &logits(&mut model, x));
    }
}

/// inspect counts clipping on the integers: a value that rounds exactly to the top of the range
/// is not clipped (MNIST's white pixels, 1.0, at scale f32(1/127), were counted as clipped).
#[test]
fn inspect_counts_clipping_on_the_integers() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(10);
    let mut model = prepare_qat(small_cnn(&device).fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    // Pixels in [0, 1], 1.0 among them: the QuantStub's observer range is exactly [0, 1].
    let pixels = Tensor::<4>::random([8, 1, 12, 12], Distribution::Uniform(0.0, 1.0), &device).clamp(0.0, 1.0);
    let mut values = to_vec(&pixels);
    values.iter_mut().step_by(7).for_each(|v| *v = 1.0);
    let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [8, 1, 12, 12]), &device);
    model.forward(x.clone()).unwrap();
    model.set_training(false);
    let rows = burn_qat::workflow::inspect(&model, x.clone()).unwrap();
    let quant = rows.iter().find(|r| r.path == "quant").and_then(|r| r.output.as_ref()).expect("a quant row with output stats");
    assert_eq!((quant.max, quant.clipped), (1.0, 0.0), "{quant:?}");
    // Twice the range: the values above it are clipped, counted exactly.
    let doubled = x * 2.0;
    let above = to_vec(&doubled).iter().filter(|&&v| v > 1.0 + 0.5 / 127.0).count() as f64 / (8.0 * 144.0);
    let rows = burn_qat::workflow::inspect(&model, doubled).unwrap();
    let quant = rows.iter().find(|r| r.path == "quant").and_then(|r| r.output.as_ref()).unwrap();
    assert!((quant.clipped - above).abs() < 1e-12 && quant.clipped > 0.3, "{} vs {above}", quant.clipped);
}
