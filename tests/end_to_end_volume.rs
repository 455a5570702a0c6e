//! A small 3-d CNN on volumes `[N, C, D, H, W]` the whole way (issue 15): float model, fuse
//! (Conv3d + BatchNorm3d + ReLU), prepare_qat, training with observers and BN statistics moving,
//! convert; the int8 model equals the QAT model's eval bit for bit, survives its file, and its
//! ONNX export runs in tract within one output step.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::nn::Conv3dOptions;
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::{FloatModel, Int8Layer, Layer, QatLayer, QatModel, convert, prepare_qat};
use common::road;

const INPUT: [usize; 5] = [1, 2, 6, 8, 8];
const CLASSES: usize = 3;

fn volume_cnn(device: &Device) -> FloatModel {
    let conv = |cin, cout, stride| Layer::conv3d(Conv3dOptions::new(cin, cout, 3).with_stride(stride).with_padding(1), false, device);
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv1", conv(2, 4, 1).unwrap()),
        ("bn1", Layer::batch_norm3d(4, device).unwrap()),
        ("relu1", Layer::Relu(Default::default())),
        ("conv2", conv(4, 8, 2).unwrap()),
        ("bn2", Layer::batch_norm3d(8, device).unwrap()),
        ("conv3", Layer::conv3d(Conv3dOptions::new(8, 8, [1, 3, 3]), true, device).unwrap()),
        ("relu3", Layer::Relu(Default::default())),
        ("pool", Layer::GlobalAvgPool2d(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(8, CLASSES, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

fn batch(n: usize, std: f64, device: &Device) -> Tensor<5> {
    Tensor::<5>::random([n, INPUT[1], INPUT[2], INPUT[3], INPUT[4]], Distribution::Normal(0.0, std), device)
}

fn trained() -> QatModel {
    let device = Device::flex().autodiff();
    device.seed(11);
    let float = volume_cnn(&device).fuse().unwrap();
    let kinds: Vec<&str> = float.layers.iter().map(|l| l.layer.kind()).collect();
    assert_eq!(kinds, ["QuantStub", "ConvBnReLU3d", "ConvBn3d", "ConvReLU3d", "GlobalAvgPool2d", "Flatten", "Linear", "DeQuantStub"]);
    road::trained(float, QConfig::consistent("fbgemm").unwrap(), &device, |device| batch(8, 1.0, device))
}

#[test]
fn a_3d_cnn_goes_float_to_int8_and_onnx() {
    let mut model = trained();
    assert!(matches!(model.layers[1].layer, QatLayer::ConvBnReLU3d(_)), "conv1 is prepared as ConvBnReLU3d");
    let int8 = convert(&model).unwrap();
    assert!(matches!(int8.layers[1].layer, Int8Layer::Conv3d(_)), "conv1 converts to a quantized Conv3d");

    road::assert_int8_equals_the_qat_eval(&mut model, &int8, |std, device| batch(9, std, device));
    let device = Device::flex();
    device.seed(4);
    let x = batch(5, 2.0, &device);
    road::assert_file_round_trip(&int8, "volume_cnn", x.clone());
    road::assert_onnx_within_one_step(&int8, x, CLASSES, "3-d CNN");
}

#[test]
fn a_3d_batch_norm_left_unfused_is_refused_by_name() {
    let device = Device::flex().autodiff();
    let error = prepare_qat(volume_cnn(&device), QConfig::consistent("fbgemm").unwrap()).unwrap_err().to_string();
    assert!(error.contains("bn1") && error.contains("fuse()"), "{error}");
}
