//! A keyword-spotting-style 1-d CNN on sequences `[N, C, L]` (MFCC-like coefficients over time)
//! the whole way (issue 15): float model, fuse (Conv1d + BatchNorm1d + ReLU), prepare_qat,
//! training with observers and BN statistics moving, convert; the int8 model equals the QAT
//! model's eval bit for bit, survives its file, and its ONNX export runs in tract within one
//! output step.

mod common;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::export::onnx_bytes;
use burn_qat::nn::{Conv1dOptions, Padding, QatModule};
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::{FloatModel, Int8Layer, Int8Model, Layer, QatLayer, QatModel, convert, prepare_qat};
use common::*;
use tract_onnx::prelude::*;

const INPUT: [usize; 3] = [1, 10, 32];
const CLASSES: usize = 4;

fn keyword_cnn(device: &Device) -> FloatModel {
    let conv = |options: Conv1dOptions| Layer::conv1d(options, false, device).unwrap();
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv1", conv(Conv1dOptions::new(10, 16, 3).with_padding(1))),
        ("bn1", Layer::batch_norm1d(16, device).unwrap()),
        ("relu1", Layer::Relu(Default::default())),
        ("conv2", conv(Conv1dOptions::new(16, 16, 3).with_stride(2).with_padding(1))),
        ("bn2", Layer::batch_norm1d(16, device).unwrap()),
        ("relu2", Layer::Relu(Default::default())),
        // Depthwise over time, PyTorch's padding="same".
        ("conv3", Layer::conv1d(Conv1dOptions::new(16, 16, 5).with_groups(16).with_padding(Padding::Same), true, device).unwrap()),
        ("relu3", Layer::Relu(Default::default())),
        ("pool", Layer::GlobalAvgPool2d(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(16, CLASSES, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

fn batch(n: usize, std: f64, device: &Device) -> Tensor<3> {
    Tensor::<3>::random([n, INPUT[1], INPUT[2]], Distribution::Normal(0.0, std), device)
}

/// Six SGD steps with observers and BN statistics moving, BN frozen at step 4, observers off at
/// step 5, then eval.
fn trained() -> QatModel {
    let device = Device::flex().autodiff();
    device.seed(11);
    let float = keyword_cnn(&device).fuse().unwrap();
    let kinds: Vec<&str> = float.layers.iter().map(|l| l.layer.kind()).collect();
    assert_eq!(kinds, ["QuantStub", "ConvBnReLU1d", "ConvBnReLU1d", "ConvReLU1d", "GlobalAvgPool2d", "Flatten", "Linear", "DeQuantStub"]);
    let mut model = prepare_qat(float, QConfig::consistent("fbgemm").unwrap()).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..6 {
        if step == 4 {
            model.freeze_bn_stats();
        }
        if step == 5 {
            model.disable_observer();
        }
        let out = model.forward(batch(8, 1.0, &device)).unwrap().into_features(&device).unwrap();
        let grads = GradientsParams::from_grads(out.powi_scalar(2).mean().backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    model.set_training(false);
    model
}

fn logits(int8: &Int8Model, x: Tensor<3>) -> Vec<f32> {
    let device = x.device();
    to_vec(&int8.forward(x).unwrap().into_features(&device).unwrap())
}

#[test]
fn a_keyword_spotting_cnn_goes_float_to_int8_and_onnx() {
    let mut model = trained();
    assert!(matches!(model.layers[1].layer, QatLayer::ConvBnReLU1d(_)), "conv1 is prepared as ConvBnReLU1d");
    let int8 = convert(&model).unwrap();
    assert!(matches!(int8.layers[1].layer, Int8Layer::Conv1d(_)), "conv1 converts to a quantized Conv1d");

    // int8 == QAT eval (the deployment arithmetic), bit for bit, on batches into saturation.
    let device = Device::flex();
    for (seed, std) in [(1, 1.0), (2, 3.0), (3, 10.0)] {
        device.seed(seed);
        let x = batch(9, std, &device);
        let qat = to_vec(&model.forward(x.clone().to_device(&Device::flex().autodiff())).unwrap().into_features(&device).unwrap());
        let ours = logits(&int8, x.clone());
        assert_bits_eq(&format!("int8 vs QAT eval, std {std}"), &ours, &qat);
        let reference = to_vec(&int8.forward_reference(x, &device).unwrap().into_features(&device).unwrap());
        assert_bits_eq(&format!("int8 kernels vs the f64 reference, std {std}"), &ours, &reference);
    }

    // The file round trip: the same layers, the same bits.
    let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("keyword_cnn.int8.safetensors");
    int8.save(&path).unwrap();
    let loaded = Int8Model::load(&path).unwrap();
    device.seed(4);
    let x = batch(5, 2.0, &device);
    assert_bits_eq("loaded int8 file", &logits(&loaded, x.clone()), &logits(&int8, x.clone()));

    // ONNX: Conv with one spatial axis, run by tract, within one output step.
    let bytes = onnx_bytes(&int8, INPUT).unwrap();
    let scale = int8.output_qparams().unwrap().scale;
    let n = 5;
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .with_input_fact(0, f32::fact([n, INPUT[1], INPUT[2]]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_onnx::prelude::Tensor::from_shape(&[n, INPUT[1], INPUT[2]], &to_vec(&x)).unwrap();
    let out = plan.run(tvec![input.into_tvalue()]).unwrap();
    let theirs: Vec<f32> = out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
    let ours = logits(&int8, x);
    assert_eq!(theirs.len(), n * CLASSES);
    let max_lsb = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / scale).fold(0.0f32, f32::max);
    println!("1-d keyword CNN: tract vs Int8Model::forward over {} logits: max difference {max_lsb:.3} LSB", ours.len());
    assert!(max_lsb <= 1.0 + 1e-3, "max difference {max_lsb} LSB");
}

#[test]
fn a_sequence_batch_norm_left_unfused_is_refused_by_name() {
    let device = Device::flex().autodiff();
    let error = prepare_qat(keyword_cnn(&device), QConfig::consistent("fbgemm").unwrap()).unwrap_err().to_string();
    assert!(error.contains("bn1") && error.contains("fuse()"), "{error}");
}
