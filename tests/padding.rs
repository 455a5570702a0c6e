//! `padding="same"` and `"valid"` on the 1-d, 2-d and 3-d convs against PyTorch
//! (tests/golden/same_padding.json, from tools/golden/same_padding.py): the padding each axis
//! gets before and after and the output shape of a QAT conv, whichever order kernel, dilation
//! and padding are given in, asymmetric cases (an even kernel extent: one more element after)
//! included. Strided `"same"` convs, which PyTorch refuses, are a configuration error.

#[macro_use]
mod common;

use burn::module::Param;
use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::QatError;
use burn_qat::nn::qat::ConvConfig;
use burn_qat::nn::{Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvGeometry, Padding, PaddingMode, float};
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::Int8Layer;
use burn_qat::workflow::{FloatModel, Layer, convert};
use common::*;
use serde_json::Value;

fn usizes(v: &Value) -> Vec<usize> {
    v.as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()
}

/// The options of one case, padding given before the dilation or after it.
enum Options {
    D1(Conv1dOptions),
    D2(Conv2dOptions),
    D3(Conv3dOptions),
}

fn options(case: &Value, padding_first: bool) -> Options {
    let kernel = usizes(&case["kernel"]);
    let dilation = case["dilation"].as_u64().unwrap() as usize;
    let same = case["padding"] == "same";
    macro_rules! build {
        ($options:expr, $n:literal) => {{
            let padding: Padding<$n> = if same { Padding::Same } else { Padding::Valid };
            if padding_first {
                $options.with_padding(padding).with_dilation(dilation)
            } else {
                $options.with_dilation(dilation).with_padding(padding)
            }
        }};
    }
    match kernel.len() {
        1 => Options::D1(build!(Conv1dOptions::new(2, 3, kernel[0]), 1)),
        2 => Options::D2(build!(Conv2dOptions::new(2, 3, [kernel[0], kernel[1]]), 2)),
        _ => Options::D3(build!(Conv3dOptions::new(2, 3, [kernel[0], kernel[1], kernel[2]]), 3)),
    }
}

/// The padding per axis (before, after), the options' validation, and the QAT conv's output shape.
fn run(options: Options, input: &[usize]) -> (Vec<Vec<usize>>, Result<Vec<usize>, QatError>) {
    let device = Device::flex();
    let qconfig = QConfig::consistent("x86").unwrap();
    match options {
        Options::D1(o) => {
            let padding = vec![vec![o.padding, o.padding_after()]];
            let out = o
                .as_2d()
                .validate()
                .and_then(|_| ConvConfig::new(o, qconfig).init(&device))
                .and_then(|mut m| Ok(m.forward(Tensor::<3>::zeros([input[0], input[1], input[2]], &device))?.dims().to_vec()));
            (padding, out)
        }
        Options::D2(o) => {
            let padding = o.padding.iter().zip(o.padding_after()).map(|(&b, a)| vec![b, a]).collect();
            let out = ConvConfig::new(o, qconfig)
                .init(&device)
                .and_then(|mut m| Ok(m.forward(Tensor::<4>::zeros([input[0], input[1], input[2], input[3]], &device))?.dims().to_vec()));
            (padding, out)
        }
        Options::D3(o) => {
            let padding = o.padding.iter().zip(o.padding_after()).map(|(&b, a)| vec![b, a]).collect();
            let x = Tensor::<5>::zeros([input[0], input[1], input[2], input[3], input[4]], &device);
            let out = ConvConfig::new(o, qconfig).init(&device).and_then(|mut m| Ok(m.forward(x)?.dims().to_vec()));
            (padding, out)
        }
    }
}

#[test]
fn same_and_valid_padding_match_pytorch() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(golden_path("same_padding.json")).unwrap()).unwrap();
    let cases = golden["cases"].as_array().unwrap();
    let (mut symmetric, mut asymmetric) = (0, 0);
    for (i, case) in cases.iter().enumerate() {
        let pads: Vec<Vec<usize>> = case["pads"].as_array().unwrap().iter().map(usizes).collect();
        let input = usizes(&case["input"]);
        for padding_first in [true, false] {
            let (padding, out) = run(options(case, padding_first), &input);
            assert_eq!(padding, pads, "case {i} {case}");
            assert_eq!(out.unwrap(), usizes(&case["output"]), "case {i} {case}");
            if case["symmetric"].as_bool().unwrap() {
                symmetric += 1;
            } else {
                asymmetric += 1;
            }
        }
    }
    assert_eq!((symmetric, asymmetric, cases.len()), (60, 12, 36));
}

#[test]
fn same_padding_on_a_strided_conv_is_refused_as_in_pytorch() {
    let golden: Value = serde_json::from_str(&std::fs::read_to_string(golden_path("same_padding.json")).unwrap()).unwrap();
    assert_eq!(golden["strided_same_rejected"], true);
    let pytorch = golden["strided_message"].as_str().unwrap();
    let ours = Conv2dOptions::new(2, 3, 3).with_stride(2).with_padding(Padding::Same).validate().unwrap_err().to_string();
    assert!(ours.contains(&pytorch.replace('\'', "\"")), "{ours} / {pytorch}");
    let ours = Conv3dOptions::new(2, 3, 3).with_padding(Padding::Same).with_stride([1, 1, 2]).validate().unwrap_err().to_string();
    assert!(ours.contains("strided"), "{ours}");
    // Named as PyTorch spells them.
    assert_eq!(Padding::<2>::parse("same").unwrap(), Padding::Same);
    assert_eq!(Padding::<1>::parse("valid").unwrap(), Padding::Valid);
    assert!(Padding::<2>::parse("full").is_err());
}

/// One golden case: the float conv of `options` with PyTorch's weight and bias on its input, in
/// f64, against PyTorch's output.
fn check_values<const D: usize, O: ConvGeometry<D>>(options: O, name: &str, golden: &burn_qat::state_dict::StateDict) {
    let device = Device::flex();
    let key = |k: &str| format!("{name}.{k}");
    let conv = float::ConvNd {
        weight: Param::from_tensor(tensor_f64::<D>(golden, &key("weight"), &device)),
        bias: Some(Param::from_tensor(tensor_f64::<1>(golden, &key("bias"), &device))),
        options,
    };
    let y = conv.forward(tensor_f64::<D>(golden, &key("input"), &device)).unwrap();
    let expected = get(golden, &key("output"));
    assert_eq!(y.dims().to_vec(), expected.shape, "{name}: PyTorch keeps the input's size");
    assert_close_f64(name, &to_vec_f64(&y), &f64s(golden, &key("output")), 1e-12);
}

#[test]
fn asymmetric_same_padding_matches_pytorch_in_every_mode() {
    // PyTorch pads an odd total (an even kernel extent) with one more element after than
    // before, in every padding mode (tools/golden/same_padding_values.py).
    let (golden, _) = load_golden("same_padding_values.safetensors");
    let mut cases = 0;
    for mode in [PaddingMode::Zeros, PaddingMode::Reflect, PaddingMode::Replicate, PaddingMode::Circular] {
        for (kernel, dilation) in [([3, 3, 4], 1), ([2, 2, 2], 3)] {
            let tag = |k: &[usize]| format!("{mode}_k{}_d{dilation}", k.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("x"));
            let o1 = Conv1dOptions::new(3, 4, kernel[2]).with_dilation(dilation).with_padding(Padding::Same).with_padding_mode(mode);
            check_values(o1, &format!("1d_{}", tag(&kernel[2..])), &golden);
            let o2 = Conv2dOptions::new(3, 4, [kernel[1], kernel[2]])
                .with_dilation(dilation)
                .with_padding(Padding::Same)
                .with_padding_mode(mode);
            check_values(o2, &format!("2d_{}", tag(&kernel[1..])), &golden);
            let o3 = Conv3dOptions::new(3, 4, kernel).with_padding(Padding::Same).with_dilation(dilation).with_padding_mode(mode);
            check_values(o3, &format!("3d_{}", tag(&kernel)), &golden);
            cases += 3;
        }
    }
    assert_eq!(cases, 24);
}

/// A small CNN whose convs have even kernels with `padding="same"` (asymmetric), in `mode`.
fn even_kernel_cnn(mode: PaddingMode, device: &Device) -> FloatModel {
    let same = |options: Conv2dOptions| options.with_padding(Padding::Same).with_padding_mode(mode);
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv1", Layer::conv2d(same(Conv2dOptions::new(1, 4, 2)), false, device).unwrap()),
        ("bn1", Layer::batch_norm2d(4, device).unwrap()),
        ("relu1", Layer::Relu(Default::default())),
        ("conv2", Layer::conv2d(same(Conv2dOptions::new(4, 4, [4, 3])), true, device).unwrap()),
        ("relu2", Layer::Relu(Default::default())),
        ("pool", Layer::GlobalAvgPool2d(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(4, 3, true, device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
}

#[test]
fn even_kernel_same_convs_go_float_to_int8_file_and_onnx() {
    let _serial = serial();
    let batch = |n: usize, std: f64, device: &Device| Tensor::<4>::random([n, 1, 6, 5], Distribution::Normal(0.0, std), device);
    for (i, mode) in [PaddingMode::Zeros, PaddingMode::Reflect, PaddingMode::Circular].into_iter().enumerate() {
        let device = Device::flex().autodiff();
        device.seed(40 + i as u64);
        let float = even_kernel_cnn(mode, &device).fuse().unwrap();
        let mut model = road::trained(float, QConfig::consistent("fbgemm").unwrap(), &device, |device| batch(8, 1.0, device));
        let int8 = convert(&model).unwrap();
        // The integer kernels pad the odd element after, as the deployment arithmetic and the
        // f64 reference (burn's pad, then conv) do.
        road::assert_int8_equals_the_qat_eval(&mut model, &int8, |std, device| batch(7, std, device));
        let cpu = Device::flex();
        cpu.seed(50 + i as u64);
        let x = batch(4, 2.0, &cpu);
        // The file keeps `padding="same"`, so the loaded convs pad asymmetrically too.
        road::assert_file_round_trip(&int8, &format!("even_kernel_same_{mode}"), x.clone());
        if mode == PaddingMode::Zeros {
            // ONNX Conv takes the begin and end pads apart.
            road::assert_onnx_within_one_step(&int8, x, 3, "even-kernel same convs");
        }
    }
}

/// The 1-d family's asymmetric "same" through the integer kernels, the int8 file and ONNX: a
/// kernel of 4 pads 1 before and 2 after, a kernel of 2 dilated by 3 (extent 4) the same.
#[test]
fn even_extent_same_conv1d_goes_float_to_int8_file_and_onnx() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(61);
    let same = |options: Conv1dOptions| options.with_padding(Padding::Same);
    let (wide, dilated) = (same(Conv1dOptions::new(3, 4, 4)), same(Conv1dOptions::new(4, 4, 2).with_dilation(3)));
    for options in [&wide, &dilated] {
        assert_eq!((options.padding, options.padding_after()), (1, 2), "{options:?}");
    }
    let float = FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv1", Layer::conv1d(wide, true, &device).unwrap()),
        ("relu1", Layer::Relu(Default::default())),
        ("conv2", Layer::conv1d(dilated, true, &device).unwrap()),
        ("relu2", Layer::Relu(Default::default())),
        ("pool", Layer::GlobalAvgPool2d(Default::default())),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc", Layer::linear(4, 3, true, &device).unwrap()),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
    .unwrap()
    .fuse()
    .unwrap();
    let batch = |n: usize, std: f64, device: &Device| Tensor::<3>::random([n, 3, 11], Distribution::Normal(0.0, std), device);
    let mut model = road::trained(float, QConfig::consistent("fbgemm").unwrap(), &device, |device| batch(8, 1.0, device));
    let int8 = convert(&model).unwrap();
    assert!(matches!(int8.layers[1].layer, Int8Layer::Conv1d(_)), "conv1 converts to a quantized Conv1d");
    road::assert_int8_equals_the_qat_eval(&mut model, &int8, |std, device| batch(7, std, device));
    let cpu = Device::flex();
    cpu.seed(62);
    let x = batch(4, 2.0, &cpu);
    road::assert_file_round_trip(&int8, "even_extent_same_conv1d", x.clone());
    road::assert_onnx_within_one_step(&int8, x, 3, "even-extent same conv1d");
}

/// PyTorch refuses reflect padding as wide as the input ("Padding size should be less than the
/// corresponding input dimension") and circular padding wider than it; both are shape errors
/// here, on the 2-d and 3-d geometries alike, naming the layer.
#[test]
fn reflect_and_circular_padding_wider_than_the_input_are_shape_errors() {
    let reflect2 = Conv2dOptions::new(1, 1, 3).with_padding(2).with_padding_mode(PaddingMode::Reflect);
    assert!(reflect2.check_input([1, 1, 3, 5], "conv").is_ok());
    assert_error!(reflect2.check_input([1, 1, 2, 5], "conv"), QatError::ShapeMismatch { context, .. } if context == "conv");
    let reflect3 = Conv3dOptions::new(1, 1, 3).with_padding(2).with_padding_mode(PaddingMode::Reflect);
    assert!(ConvGeometry::check_input(&reflect3, [1, 1, 5, 3, 5], "conv3").is_ok());
    assert_error!(ConvGeometry::check_input(&reflect3, [1, 1, 5, 2, 5], "conv3"), QatError::ShapeMismatch { context, .. } if context == "conv3");
    let circular = Conv2dOptions::new(1, 1, 3).with_padding(2).with_padding_mode(PaddingMode::Circular);
    assert!(circular.check_input([1, 1, 2, 5], "conv").is_ok(), "circular padding as wide as the input wraps once");
    assert_error!(circular.check_input([1, 1, 1, 5], "conv"), QatError::ShapeMismatch { .. });
}
