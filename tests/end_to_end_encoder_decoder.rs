//! A small encoder-decoder on images the whole way (issue 15): a strided conv down, a
//! transposed conv back up, and the skip joined to the upsampled features by concatenation
//! (U-Net style), then a conv with hardswish and a classifier head. Float model, fuse (ConvTranspose2d + BatchNorm2d +
//! ReLU inside the block), prepare_qat, training with observers and BN statistics moving,
//! convert; the int8 model equals the QAT model's eval bit for bit, survives its file, and its
//! ONNX export runs in tract within one output step.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::nn::{Conv2dOptions, ConvTranspose2dOptions, QatModule};
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::{FloatModel, Int8Layer, Layer, QatLayer, QatModel, convert, inspect, prepare_qat};
use common::{assert_bits_eq, road, to_vec};

const INPUT: [usize; 4] = [1, 1, 8, 8];
const CLASSES: usize = 3;

fn encoder_decoder(device: &Device) -> FloatModel {
    let conv =
        |cin, cout, stride| Layer::conv2d(Conv2dOptions::new(cin, cout, 3).with_stride(stride).with_padding(1), false, device).unwrap();
    let up = Layer::conv_transpose2d(ConvTranspose2dOptions::new(16, 8, 2).with_stride(2), false, device).unwrap();
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("enc", conv(1, 8, 1)),
        ("enc_bn", Layer::batch_norm2d(8, device).unwrap()),
        ("enc_relu", Layer::Relu(Default::default())),
        (
            "skip",
            Layer::concat(vec![
                ("down", conv(8, 16, 2)),
                ("down_bn", Layer::batch_norm2d(16, device).unwrap()),
                ("down_relu", Layer::Relu(Default::default())),
                ("up", up),
                ("up_bn", Layer::batch_norm2d(8, device).unwrap()),
                ("up_relu", Layer::Relu(Default::default())),
            ]),
        ),
        ("dec", Layer::conv2d(Conv2dOptions::new(16, 8, 3).with_padding(1), true, device).unwrap()),
        // MobileNetV3's activation: its own output grid after prepare.
        ("dec_hardswish", Layer::Hardswish(Default::default())),
        ("pool", Layer::GlobalAvgPool2d(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(8, CLASSES, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

fn batch(n: usize, std: f64, device: &Device) -> Tensor<4> {
    Tensor::<4>::random([n, INPUT[1], INPUT[2], INPUT[3]], Distribution::Normal(0.0, std), device)
}

fn trained() -> QatModel {
    let device = Device::flex().autodiff();
    device.seed(5);
    let float = encoder_decoder(&device).fuse().unwrap();
    let kinds: Vec<&str> = float.layers.iter().map(|l| l.layer.kind()).collect();
    assert_eq!(
        kinds,
        ["QuantStub", "ConvBnReLU2d", "Concat", "Conv2d", "Hardswish", "GlobalAvgPool2d", "Flatten", "Linear", "DeQuantStub"]
    );
    let body: Vec<&str> = float.layers[2].layer.body().unwrap().iter().map(|l| l.layer.kind()).collect();
    assert_eq!(body, ["ConvBnReLU2d", "ConvTransposeBnReLU2d"], "the block's body is fused too");
    road::trained(float, QConfig::consistent("qnnpack").unwrap(), &device, |device| batch(8, 1.0, device))
}

#[test]
fn an_encoder_decoder_with_a_concatenated_skip_goes_float_to_int8_and_onnx() {
    let mut model = trained();
    let QatLayer::Concat(block) = &model.layers[2].layer else { panic!("skip is prepared as a concatenation block") };
    assert!(matches!(block.body[1].layer, QatLayer::ConvTransposeBnReLU2d(_)), "up is prepared as ConvTransposeBnReLU2d");
    let int8 = convert(&model).unwrap();
    let Int8Layer::Concat { body, .. } = &int8.layers[2].layer else { panic!("skip converts to an int8 concatenation") };
    assert!(matches!(body[1].layer, Int8Layer::ConvTranspose2d(_)), "up converts to a quantized ConvTranspose2d");

    road::assert_int8_equals_the_qat_eval(&mut model, &int8, |std, device| batch(9, std, device));
    let device = Device::flex();
    device.seed(4);
    let x = batch(5, 2.0, &device);
    road::assert_file_round_trip(&int8, "encoder_decoder", x.clone());

    // inspect reports the concatenation's output grid among the layers.
    let rows = inspect(&model, x.clone()).unwrap();
    assert!(rows.iter().any(|r| r.path == "skip.cat" && r.kind == "Concat" && r.output.is_some()), "{rows:?}");
    assert!(rows.iter().any(|r| r.path == "skip.body.up" && r.weight.is_some()), "{rows:?}");

    // ONNX: ConvTranspose, Concat and hardswish.
    road::assert_onnx_within_one_step(&int8, x, CLASSES, "encoder-decoder");
}

#[test]
fn a_concatenation_of_mismatched_spatial_sizes_is_a_shape_error_naming_the_block() {
    let device = Device::flex().autodiff();
    let mut model = FloatModel::new(vec![(
        "skip",
        Layer::concat(vec![("down", Layer::conv2d(Conv2dOptions::new(1, 2, 3).with_stride(2), false, &device).unwrap())]),
    )])
    .unwrap();
    let error = model.forward(batch(2, 1.0, &device)).unwrap_err().to_string();
    assert!(error.contains("skip"), "{error}");
}

/// A layer's own requantization shows at the output when nothing after it rounds again: the
/// QAT eval and the int8 model put its values on its grid alike.
fn int8_equals_the_qat_eval_at_the_output(name: &str, layer: Layer) {
    let device = Device::flex().autodiff();
    device.seed(9);
    let float = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        (name, layer),
        ("flatten", Layer::Flatten(Default::default())),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap();
    let mut model = prepare_qat(float, QConfig::consistent("qnnpack").unwrap()).unwrap();
    for _ in 0..3 {
        model.forward(batch(8, 2.0, &device)).unwrap();
    }
    model.disable_observer();
    model.set_training(false);
    let int8 = convert(&model).unwrap();
    let x = batch(4, 3.0, &device);
    let qat = to_vec(&model.forward(x.clone()).unwrap().into_features(&device).unwrap());
    assert_bits_eq(&format!("int8 vs QAT eval at {name}"), &road::int8_logits(&int8, x.inner()), &qat);
}

#[test]
fn a_concatenation_at_the_output_requantizes_both_parts_as_the_int8_model_does() {
    let device = Device::flex();
    let conv = Layer::conv2d(Conv2dOptions::new(1, 2, 3).with_padding(1), true, &device).unwrap();
    int8_equals_the_qat_eval_at_the_output("skip", Layer::concat(vec![("conv", conv)]));
}

#[test]
fn a_hardswish_at_the_output_lands_on_its_grid_as_in_the_int8_model() {
    int8_equals_the_qat_eval_at_the_output("hardswish", Layer::Hardswish(Default::default()));
}

/// The transposed conv's whole geometry at once, different along H and W (padding taken off
/// the output, output padding, dilation, stride, groups, a rectangular kernel), through the
/// int8 kernel and the ONNX `ConvTranspose` attributes, with per-channel weights.
#[test]
fn a_transposed_conv_with_its_whole_geometry_goes_to_int8_and_onnx() {
    let device = Device::flex().autodiff();
    device.seed(12);
    let up = ConvTranspose2dOptions::new(2, 4, [2, 3])
        .with_stride([3, 2])
        .with_padding([0, 1])
        .with_output_padding([2, 0])
        .with_dilation([1, 2])
        .with_groups(2);
    // 8 x 8 in: (8 - 1) * 3 + (2 - 1) + 2 + 1 = 25 rows, (8 - 1) * 2 - 2 + 2 * (3 - 1) + 1 = 17 columns.
    let float = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 2, 3).with_padding(1), true, &device).unwrap()),
        ("up", Layer::conv_transpose2d(up, true, &device).unwrap()),
        ("up_relu", Layer::Relu(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(4 * 25 * 17, CLASSES, true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
    .fuse()
    .unwrap();
    let mut model = road::trained(float, QConfig::consistent("fbgemm").unwrap(), &device, |device| batch(8, 1.0, device));
    assert!(matches!(model.layers[2].layer, QatLayer::ConvTransposeReLU2d(_)), "up and its ReLU fuse");
    let int8 = convert(&model).unwrap();
    road::assert_int8_equals_the_qat_eval(&mut model, &int8, |std, device| batch(9, std, device));
    let device = Device::flex();
    device.seed(13);
    road::assert_onnx_within_one_step(&int8, batch(3, 2.0, &device), CLASSES, "transposed conv, whole geometry");
}

#[test]
fn per_channel_weights_of_a_transposed_conv_are_quantized_along_its_output_channels() {
    // fbgemm quantizes weights per channel. A transposed conv's output channel is weight axis 1;
    // a model prepared from float must observe its weights there, or convert cannot build the
    // int8 layer (one scale per output channel).
    let device = Device::flex().autodiff();
    device.seed(6);
    let float = encoder_decoder(&device).fuse().unwrap();
    let mut model = road::trained(float, QConfig::consistent("fbgemm").unwrap(), &device, |device| batch(8, 1.0, device));
    let QatLayer::Concat(block) = &model.layers[2].layer else { panic!("skip is prepared as a concatenation block") };
    let QatLayer::ConvTransposeBnReLU2d(up) = &block.body[1].layer else { panic!("up is prepared as ConvTransposeBnReLU2d") };
    assert_eq!(up.inner.weight_fake_quant.observer.ch_axis(), Some(1));
    assert_eq!(up.inner.weight_fake_quant.qparams().scale.len(), 8, "one scale per output channel");
    let int8 = convert(&model).unwrap();
    road::assert_int8_equals_the_qat_eval(&mut model, &int8, |std, device| batch(9, std, device));
    // ONNX carries the eight scales on DequantizeLinear's axis 1.
    let device = Device::flex();
    device.seed(8);
    road::assert_onnx_within_one_step(&int8, batch(5, 2.0, &device), CLASSES, "encoder-decoder, per-channel weights");
}
