//! ONNX export: a small CNN with a residual block is trained, converted, exported as QDQ ONNX,
//! loaded and run by tract (a pure-Rust ONNX runtime that knows nothing of this crate), and its
//! logits compared with `Int8Model::forward`'s, in output steps (LSB).

mod common;

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::export::proto::{ModelProto, tensor_shape_proto::dimension, type_proto};
use burn_qat::export::{export_onnx, onnx_bytes};
use burn_qat::nn::quantized::ActivationQParams;
use burn_qat::nn::{Conv2dOptions, PaddingMode};
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::{FloatModel, Int8Layer, Int8Model, Layer, QConfigMap, QatModel, convert, prepare_qat};
use common::*;
use prost::Message;
use tract_onnx::prelude::*;

fn trained(qconfig: QConfig, build: impl Fn(&Device) -> FloatModel) -> QatModel {
    let device = Device::flex().autodiff();
    device.seed(3);
    road::trained(build(&device).fuse().unwrap(), qconfig, &device, |device| {
        Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), device)
    })
}

fn out_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("onnx_export");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Every activation's qparams, in layer order.
fn activation_qparams(layers: &[burn_qat::workflow::Named<Int8Layer>]) -> Vec<ActivationQParams> {
    let mut out = vec![];
    for l in layers {
        match &l.layer {
            Int8Layer::Quantize(q) => out.push(q.qparams),
            Int8Layer::Conv2d(m) => out.push(m.qparams.output),
            Int8Layer::Linear(m) => out.push(m.qparams.output),
            Int8Layer::Residual { body, add } => {
                out.extend(activation_qparams(body));
                out.push(add.output);
            }
            _ => {}
        }
    }
    out
}

/// The qparams of the logits: the output of the Linear before the final DeQuantStub.
fn output_qparams(int8: &Int8Model) -> ActivationQParams {
    let head = &int8.layers[int8.layers.len() - 2];
    let Int8Layer::Linear(linear) = &head.layer else { panic!("{} is not a quantized Linear", head.name) };
    linear.qparams.output
}

/// Runs the ONNX model with tract on `x` `[n, 1, 12, 12]`.
fn run_tract(model: &[u8], x: &[f32], n: usize) -> Vec<f32> {
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &model[..])
        .unwrap()
        .with_input_fact(0, f32::fact([n, 1, 12, 12]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_onnx::prelude::Tensor::from_shape(&[n, 1, 12, 12], x).unwrap();
    let out = plan.run(tvec![input.into_tvalue()]).unwrap();
    let view = out[0].to_plain_array_view::<f32>().unwrap();
    assert_eq!(view.shape(), &[n, 10]);
    view.iter().copied().collect()
}

/// Raw little-endian f32, for checking the exported file with other runtimes by hand (the
/// shapes are `[n, 1, 12, 12]` and `[n, 10]`).
fn save_f32(path: &Path, values: &[f32]) {
    std::fs::write(path, values.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()).unwrap();
}

/// (max difference in output steps, number of elements that are bit-identical).
fn compare(ours: &[f32], onnx: &[f32], scale: f32) -> (f32, usize) {
    assert_eq!(ours.len(), onnx.len());
    let max = ours.iter().zip(onnx).map(|(a, b)| (a - b).abs() / scale).fold(0.0f32, f32::max);
    let exact = ours.iter().zip(onnx).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    (max, exact)
}

fn ops(model: &ModelProto) -> Vec<String> {
    let graph = model.graph.as_ref().unwrap();
    graph.node.iter().map(|n| n.op_type.clone().unwrap_or_default()).collect()
}

/// Checks the file's structure: opset, input/output with the symbolic batch, the Clip nodes.
fn check_structure(bytes: &[u8], expected_ops: &[&str], expected_clips: usize) -> ModelProto {
    let model = ModelProto::decode(bytes).unwrap();
    assert_eq!(model.opset_import[0].version, Some(13));
    let graph = model.graph.as_ref().unwrap();
    let dims = |v: &burn_qat::export::proto::ValueInfoProto| -> Vec<String> {
        let Some(type_proto::Value::TensorType(t)) = &v.r#type.as_ref().unwrap().value else { panic!("tensor type") };
        t.shape
            .as_ref()
            .unwrap()
            .dim
            .iter()
            .map(|d| match d.value.as_ref().unwrap() {
                dimension::Value::DimParam(p) => p.clone(),
                dimension::Value::DimValue(v) => v.to_string(),
            })
            .collect()
    };
    assert_eq!(graph.input.len(), 1);
    assert_eq!(graph.input[0].name.as_deref(), Some("input"));
    assert_eq!(dims(&graph.input[0]), ["N", "1", "12", "12"]);
    assert_eq!(graph.output[0].name.as_deref(), Some("logits"));
    assert_eq!(dims(&graph.output[0]), ["N", "10"]);
    let ops = ops(&model);
    for op in expected_ops {
        assert!(ops.iter().any(|o| o == op), "no {op} in {ops:?}");
    }
    let clips = ops.iter().filter(|o| *o == "Clip").count();
    assert_eq!(clips, expected_clips, "{ops:?}");
    model
}

/// The same model with every Clip bypassed, to show what the Clips are for.
fn without_clips(model: &ModelProto) -> Vec<u8> {
    let mut model = model.clone();
    let graph = model.graph.as_mut().unwrap();
    let clips: Vec<(String, String)> =
        graph.node.iter().filter(|n| n.op_type.as_deref() == Some("Clip")).map(|n| (n.output[0].clone(), n.input[0].clone())).collect();
    graph.node.retain(|n| n.op_type.as_deref() != Some("Clip"));
    for node in &mut graph.node {
        for input in &mut node.input {
            if let Some((_, source)) = clips.iter().find(|(out, _)| out == input) {
                *input = source.clone();
            }
        }
    }
    model.encode_to_vec()
}

/// Trains `build`'s model with `preset`, exports it, checks the file's structure (`ops` present,
/// `clips` Clip nodes), and compares tract's logits with `Int8Model::forward`'s.
fn export_and_compare(name: &str, build: impl Fn(&Device) -> FloatModel, preset: &str, reduced: bool, ops: &[&str], clips: usize) {
    let model = trained(QConfig::consistent(preset).unwrap(), build);
    let int8 = convert(&model).unwrap();
    let qparams = activation_qparams(&int8.layers);
    let expected_max = if reduced { 127 } else { 255 };
    assert!(qparams.iter().all(|q| q.quant_min == 0 && q.quant_max == expected_max), "{preset}: {qparams:?}");

    let path = out_dir().join(format!("{name}_{preset}.onnx"));
    export_onnx(&int8, [1, 1, 12, 12], &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes, onnx_bytes(&int8, [16, 1, 12, 12]).unwrap());
    let proto = check_structure(&bytes, ops, clips);
    let unclipped = reduced.then(|| without_clips(&proto));

    let scale = output_qparams(&int8).scale;
    let device = Device::flex();
    let (mut max_lsb, mut exact, mut total) = (0.0f32, 0, 0);
    let mut unclipped_max_lsb = 0.0f32;
    // Batches of different sizes through the symbolic N; the last ones push activations into
    // saturation.
    for (seed, (n, std)) in [(64, 1.0), (64, 1.5), (5, 1.5), (64, 2.5), (64, 4.0), (64, 10.0)].into_iter().enumerate() {
        device.seed(200 + seed as u64);
        let x = Tensor::<4>::random([n, 1, 12, 12], Distribution::Normal(0.0, std), &device);
        let ours = to_vec(&int8.forward(x.clone()).unwrap().into_features(&device).unwrap());
        let x = to_vec(&x);
        save_f32(&path.with_extension(format!("batch{seed}.input.f32")), &x);
        save_f32(&path.with_extension(format!("batch{seed}.logits.f32")), &ours);
        let theirs = run_tract(&bytes, &x, n);
        let (m, e) = compare(&ours, &theirs, scale);
        max_lsb = max_lsb.max(m);
        exact += e;
        total += ours.len();
        if let Some(unclipped) = &unclipped {
            let (m, _) = compare(&ours, &run_tract(unclipped, &x, n), scale);
            unclipped_max_lsb = unclipped_max_lsb.max(m);
        }
    }
    println!(
        "{name} {preset}: tract vs Int8Model::forward over {total} logits: max difference {max_lsb:.3} \
         LSB, {exact}/{total} ({:.2}%) exact",
        100.0 * exact as f64 / total as f64
    );
    if reduced {
        println!("{name} {preset}: the same graph without its Clips: max difference {unclipped_max_lsb:.1} LSB");
        assert!(unclipped_max_lsb > 1.5, "the Clips should matter for a reduced range");
    }
    assert!(max_lsb <= 1.0 + 1e-3, "{preset}: max difference {max_lsb} LSB");
    // Measured: 100% exact but for the qnnpack small CNN (3245 of 3250, the rest one step off).
    assert!(exact * 1000 >= total * 995, "{preset}: only {exact}/{total} exact");
}

const SMALL_CNN_OPS: &[&str] = &["QuantizeLinear", "DequantizeLinear", "Conv", "Relu", "Add", "MaxPool", "Flatten", "Gemm"];

#[test]
fn fbgemm_reduced_range_model_runs_in_tract_within_one_lsb() {
    // One saturating Clip per newly produced activation: quant, conv1, conv_a, conv_b,
    // block.add, fc1, fc2.
    export_and_compare("small_cnn", |d| small_cnn(d, PaddingMode::Zeros), "fbgemm", true, SMALL_CNN_OPS, 7);
}

#[test]
fn qnnpack_full_range_model_runs_in_tract_within_one_lsb() {
    export_and_compare("small_cnn", |d| small_cnn(d, PaddingMode::Zeros), "qnnpack", false, SMALL_CNN_OPS, 0);
}

#[test]
fn reflect_and_replicate_padding_export_as_pad_nodes_within_one_lsb() {
    // The uint8 input padded by ONNX Pad (modes reflect and edge), then a Conv without pads.
    const PADDED_OPS: &[&str] = &["QuantizeLinear", "DequantizeLinear", "Pad", "Conv", "Relu", "Add", "MaxPool", "Flatten", "Gemm"];
    export_and_compare("small_cnn_reflect", |d| small_cnn(d, PaddingMode::Reflect), "qnnpack", false, PADDED_OPS, 0);
    export_and_compare("small_cnn_replicate", |d| small_cnn(d, PaddingMode::Replicate), "qnnpack", false, PADDED_OPS, 0);
}

/// A ReLU that cannot be fused (after the pool), and a float stretch between a DeQuantStub and
/// a second QuantStub holding a Flatten.
fn unfused_relu_and_float_flatten(device: &Device) -> FloatModel {
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 4, 3).with_padding(1), false, device).unwrap()),
        ("bn", Layer::batch_norm2d(4, device).unwrap()),
        ("pool", Layer::max_pool2d(2, 2).unwrap()),
        ("relu", Layer::Relu(Default::default())),
        ("dequant", Layer::DeQuantStub(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("quant2", Layer::QuantStub(Default::default())),
        ("fc", Layer::linear(4 * 6 * 6, 10, true, device).unwrap()),
        ("dequant2", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

#[test]
fn standalone_relu_and_float_flatten_export_within_one_lsb() {
    let ops = ["QuantizeLinear", "DequantizeLinear", "Conv", "MaxPool", "Relu", "Flatten", "Gemm"];
    // Clips after quant, conv, quant2 and fc.
    export_and_compare("relu_float_flatten", unfused_relu_and_float_flatten, "fbgemm", true, &ops, 4);
    export_and_compare("relu_float_flatten", unfused_relu_and_float_flatten, "qnnpack", false, &ops, 0);
}

fn relu6_and_average_pooling(device: &Device) -> FloatModel {
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 4, 3).with_padding(1), false, device).unwrap()),
        ("bn", Layer::batch_norm2d(4, device).unwrap()),
        ("relu6", Layer::Relu6(Default::default())),
        ("pool", Layer::avg_pool2d(2, 2).unwrap()),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(4 * 6 * 6, 10, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

/// ReLU6 exports as Clip(0, 6) and windowed average pooling as AveragePool, both between a
/// DequantizeLinear and a QuantizeLinear with the input's qparams.
#[test]
fn relu6_and_average_pooling_export_within_one_lsb() {
    let ops = ["QuantizeLinear", "DequantizeLinear", "Conv", "Clip", "AveragePool", "Flatten", "Gemm"];
    export_and_compare("relu6_avgpool", relu6_and_average_pooling, "qnnpack", false, &ops, 1);
}

fn standalone_batch_norms(device: &Device) -> FloatModel {
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 4, 3).with_padding(1), true, device).unwrap()),
        ("relu", Layer::Relu(Default::default())),
        ("pool", Layer::max_pool2d(2, 2).unwrap()),
        ("bn", Layer::batch_norm2d(4, device).unwrap()),
        ("bn_relu", Layer::Relu(Default::default())),
        ("bn2", Layer::batch_norm2d(4, device).unwrap()),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(4 * 6 * 6, 10, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

/// A standalone BatchNorm2d and a BNReLU2d export as Mul and Add in quantization steps.
#[test]
fn standalone_batch_norms_export_within_one_lsb() {
    let ops = ["QuantizeLinear", "DequantizeLinear", "Conv", "MaxPool", "Mul", "Add", "Flatten", "Gemm"];
    // The BNReLU2d's ReLU is QuantizeLinear's saturation: its output zero point is 0 here.
    export_and_compare("standalone_bn", standalone_batch_norms, "qnnpack", false, &ops, 0);
}

#[test]
fn unsupported_layers_are_refused_by_name() {
    let path = out_dir().join("unsupported.onnx");
    // Circular padding.
    let model = trained(QConfig::consistent("qnnpack").unwrap(), |d| small_cnn(d, PaddingMode::Circular));
    let int8 = convert(&model).unwrap();
    let err = export_onnx(&int8, [1, 1, 12, 12], &path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("conv1") && msg.contains("circular"), "{msg}");
    assert!(!Path::new(&path).exists());

    // A float layer (qconfig None) in the middle.
    let device = Device::flex().autodiff();
    let map = QConfigMap::from(QConfig::consistent("qnnpack").unwrap()).with("mid", None);
    let float = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv", Layer::conv2d(Conv2dOptions::new(1, 2, 3), true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("mid", Layer::linear(2 * 4 * 4, 8, true, &device).unwrap()),
        ("quant2", Layer::QuantStub(Default::default())),
        ("fc", Layer::linear(8, 3, true, &device).unwrap()),
        ("dequant2", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap();
    let mut qat = prepare_qat(float, map).unwrap();
    qat.forward(Tensor::<4>::random([2, 1, 6, 6], Distribution::Default, &device)).unwrap();
    let int8 = convert(&qat).unwrap();
    let err = export_onnx(&int8, [1, 1, 6, 6], &path).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("mid") && msg.contains("not exportable yet"), "{msg}");

    // A model that does not end with Linear + DeQuantStub.
    let mut int8 = int8;
    int8.layers.pop();
    let err = export_onnx(&int8, [1, 1, 6, 6], &path).unwrap_err();
    assert!(err.to_string().contains("DeQuantStub"), "{err}");
    assert!(!Path::new(&path).exists());
}

/// Opset 21: 4-bit weights go out as INT4 initializers (two per byte, the first in the low
/// nibble) with INT4 zero points; everything else is the opset-13 graph unchanged. (onnxruntime
/// runs such a file to the same logits as the opset-13 one: `tools/onnx/check_int4.py`.)
#[test]
fn four_bit_weights_are_int4_initializers_at_opset_21() {
    use burn_qat::export::proto::data_type;
    use burn_qat::export::{OnnxOpset, to_model_proto_with};
    use burn_qat::qconfig::QConfigBuilder;
    let qconfig = QConfigBuilder::new().weight_bits(4).activation_bits(8).build().unwrap();
    let int8 = convert(&trained(qconfig, |d| small_cnn(d, PaddingMode::Zeros))).unwrap();
    let v13 = to_model_proto_with(&int8, [1, 1, 12, 12], OnnxOpset::V13).unwrap();
    let v21 = to_model_proto_with(&int8, [1, 1, 12, 12], OnnxOpset::V21).unwrap();
    assert_eq!((v21.ir_version, v21.opset_import[0].version), (Some(10), Some(21)));
    let (g13, g21) = (v13.graph.as_ref().unwrap(), v21.graph.as_ref().unwrap());
    assert_eq!(g13.node, g21.node, "the same nodes");
    let mut int4_tensors = 0;
    for (a, b) in g13.initializer.iter().zip(&g21.initializer) {
        assert_eq!((&a.name, &a.dims), (&b.name, &b.dims));
        if b.data_type != Some(data_type::INT4) {
            assert_eq!(a, b, "only weights change");
            continue;
        }
        assert_eq!(a.data_type, Some(data_type::INT8));
        let name = b.name.as_deref().unwrap();
        assert!(name.ends_with(".weight_quantized") || name.ends_with(".weight_zero_point"), "{name}");
        let int8_values: Vec<i8> = a.raw_data.as_ref().unwrap().iter().map(|&v| v as i8).collect();
        let packed = b.raw_data.as_ref().unwrap();
        assert_eq!(packed.len(), int8_values.len().div_ceil(2), "{name}: two values per byte");
        // Each nibble, sign-extended: the low one first.
        let unpacked: Vec<i8> =
            packed.iter().flat_map(|&byte| [((byte << 4) as i8) >> 4, (byte as i8) >> 4]).take(int8_values.len()).collect();
        assert_eq!(unpacked, int8_values, "{name}");
        int4_tensors += 1;
    }
    let weight_layers = g13.initializer.iter().filter(|t| t.name.as_deref().is_some_and(|n| n.ends_with(".weight_quantized"))).count();
    assert!(weight_layers >= 3);
    assert_eq!(int4_tensors, 2 * weight_layers, "weights and zero points of every conv and linear");

    // 8-bit weights stay INT8 at opset 21.
    let int8_8bit = convert(&trained(QConfig::consistent("qnnpack").unwrap(), |d| small_cnn(d, PaddingMode::Zeros))).unwrap();
    let v21 = to_model_proto_with(&int8_8bit, [1, 1, 12, 12], OnnxOpset::V21).unwrap();
    assert!(v21.graph.unwrap().initializer.iter().all(|t| t.data_type != Some(data_type::INT4)));
    assert!(OnnxOpset::parse("17").unwrap_err().to_string().contains("choose 13"));
}
