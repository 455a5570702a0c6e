//! A keyword-spotting-style 1-d CNN on sequences `[N, C, L]` (MFCC-like coefficients over time)
//! the whole way (issue 15): float model, fuse (Conv1d + BatchNorm1d + ReLU), prepare_qat,
//! training with observers and BN statistics moving, convert; the int8 model equals the QAT
//! model's eval bit for bit, survives its file, and its ONNX export runs in tract within one
//! output step.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::nn::{Conv1dOptions, Padding};
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::{FloatModel, Int8Layer, Layer, QatLayer, QatModel, convert, prepare_qat};
use common::road;

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

fn trained() -> QatModel {
    let device = Device::flex().autodiff();
    device.seed(11);
    let float = keyword_cnn(&device).fuse().unwrap();
    let kinds: Vec<&str> = float.layers.iter().map(|l| l.layer.kind()).collect();
    assert_eq!(kinds, ["QuantStub", "ConvBnReLU1d", "ConvBnReLU1d", "ConvReLU1d", "GlobalAvgPool2d", "Flatten", "Linear", "DeQuantStub"]);
    road::trained(float, QConfig::consistent("fbgemm").unwrap(), &device, |device| batch(8, 1.0, device))
}

#[test]
fn a_keyword_spotting_cnn_goes_float_to_int8_and_onnx() {
    let mut model = trained();
    assert!(matches!(model.layers[1].layer, QatLayer::ConvBnReLU1d(_)), "conv1 is prepared as ConvBnReLU1d");
    let int8 = convert(&model).unwrap();
    assert!(matches!(int8.layers[1].layer, Int8Layer::Conv1d(_)), "conv1 converts to a quantized Conv1d");

    road::assert_int8_equals_the_qat_eval(&mut model, &int8, |std, device| batch(9, std, device));
    let device = Device::flex();
    device.seed(4);
    let x = batch(5, 2.0, &device);
    road::assert_file_round_trip(&int8, "keyword_cnn", x.clone());
    road::assert_onnx_within_one_step(&int8, x, CLASSES, "1-d keyword CNN");
}

#[test]
fn a_sequence_batch_norm_left_unfused_is_refused_by_name() {
    let device = Device::flex().autodiff();
    let error = prepare_qat(keyword_cnn(&device), QConfig::consistent("fbgemm").unwrap()).unwrap_err().to_string();
    assert!(error.contains("bn1") && error.contains("fuse()"), "{error}");
}
