//! The integer kernels against the f64 reference path, on adversarial settings: requantization
//! multipliers that put results exactly on .5 (ties), saturating ranges, non-zero weight zero
//! points, every padding mode, groups, strides and dilations, fused ReLU. Bit equality.

#[macro_use]
mod common;

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::nn::quantized::{ActivationQParams, Add, Conv2d, Int8Weight, LayerQParams, Linear, QTensor};
use burn_qat::nn::{Conv2dOptions, PaddingMode};
use common::Rng;

fn act(scale: f32, zero_point: i32, quant_max: i32) -> ActivationQParams {
    ActivationQParams { scale, zero_point, quant_min: 0, quant_max }
}

fn random_input(rng: &mut Rng, shape: Vec<usize>, qparams: ActivationQParams) -> QTensor {
    let n = shape.iter().product();
    QTensor { values: (0..n).map(|_| rng.int(qparams.quant_min, qparams.quant_max) as u8).collect(), shape, qparams }
}

#[test]
fn conv2d_kernel_equals_the_reference_on_adversarial_cases() {
    let device = Device::flex();
    let mut rng = Rng(42);
    let modes = [PaddingMode::Zeros, PaddingMode::Reflect, PaddingMode::Replicate, PaddingMode::Circular];
    // (input scale, weight scale, output scale): 0.5 multipliers make exact ties; 4.0 saturates.
    let scales = [(1.0, 0.5, 1.0), (0.02, 0.01, 0.05), (0.1, 0.4, 0.01), (0.003, 0.002, 1.0)];
    let mut cases = 0;
    for (i, mode) in modes.iter().enumerate() {
        for (j, &(si, sw, so)) in scales.iter().enumerate() {
            for groups in [1, 2] {
                let (stride, dilation, pad) = ([1 + (i + j) % 2, 1], [1, 1 + j % 2], [1 + j % 2, 1]);
                let options = Conv2dOptions::new(4, 6, [3, 2])
                    .with_stride(stride)
                    .with_dilation(dilation)
                    .with_padding(pad)
                    .with_groups(groups)
                    .with_padding_mode(*mode);
                let wlen: usize = options.weight_shape().iter().product();
                let weight: Vec<i8> = (0..wlen).map(|_| rng.int(-128, 127) as i8).collect();
                let wzp: Vec<i32> = (0..6).map(|o| if o % 3 == 0 { rng.int(-20, 20) } else { 0 }).collect();
                let bias: Vec<f32> = (0..6).map(|_| rng.int(-1000, 1000) as f32 * 0.01).collect();
                let (input, output) = (act(si, rng.int(0, 255), 255), act(so, rng.int(0, 127), if j == 1 { 127 } else { 255 }));
                let conv = Conv2d::new(
                    options,
                    Int8Weight::new(weight, vec![sw; 6], wzp),
                    &bias,
                    LayerQParams::new(input, output, (i + j) % 2 == 0),
                )
                .unwrap();
                let x = random_input(&mut rng, vec![2, 4, 7, 6], input);
                assert_eq!(
                    conv.forward(&x).unwrap(),
                    conv.forward_reference(&x, &device).unwrap(),
                    "mode {mode:?} scales {:?} groups {groups}",
                    scales[j]
                );
                cases += 1;
            }
        }
    }
    assert_eq!(cases, 32);
}

#[test]
fn linear_kernel_equals_the_reference() {
    let device = Device::flex();
    let mut rng = Rng(7);
    for (si, sw, so, relu) in [(1.0, 0.5, 1.0, false), (0.05, 0.01, 0.02, true), (0.5, 0.5, 0.001, false)] {
        let (i, o) = (37, 11);
        let weight: Vec<i8> = (0..i * o).map(|_| rng.int(-128, 127) as i8).collect();
        let bias: Vec<f32> = (0..o).map(|_| rng.int(-500, 500) as f32 * 0.013).collect();
        let scales: Vec<f32> = (0..o).map(|c| sw * (1.0 + c as f32 / 8.0)).collect();
        let input = act(si, 17, 255);
        let lin = Linear::new(i, o, Int8Weight::new(weight, scales, vec![0; o]), &bias, LayerQParams::new(input, act(so, 100, 255), relu))
            .unwrap();
        let x = random_input(&mut rng, vec![5, i], input);
        assert_eq!(lin.forward(&x).unwrap(), lin.forward_reference(&x, &device).unwrap());
    }
}

#[test]
fn add_rounds_ties_to_even_and_saturates() {
    let add = Add::new(act(1.0, 0, 255), false).unwrap();
    let a = QTensor { values: vec![1, 3, 200, 255], shape: vec![4], qparams: act(0.5, 0, 255) };
    let b = QTensor { values: vec![0, 0, 200, 255], shape: vec![4], qparams: act(1.0, 0, 255) };
    // 0.5 -> 0, 1.5 -> 2, 300 -> 255 (saturated), 382.5 -> 255.
    assert_eq!(add.forward(&a, &b).unwrap().values, vec![0, 2, 255, 255]);
    let relu = Add::new(act(1.0, 10, 255), true).unwrap();
    let neg = QTensor { values: vec![0], shape: vec![1], qparams: act(1.0, 50, 255) };
    assert_eq!(relu.forward(&neg, &neg).unwrap().values, vec![10], "add_relu floors at the zero point");
}

#[test]
fn mismatched_inputs_are_errors() {
    let input = act(0.1, 0, 255);
    let conv = Conv2d::new(
        Conv2dOptions::new(2, 2, 1),
        Int8Weight::new(vec![1; 4], vec![0.1; 2], vec![0; 2]),
        &[0.0; 2],
        LayerQParams::new(input, input, false),
    )
    .unwrap();
    let wrong_qparams = QTensor { values: vec![0; 8], shape: vec![1, 2, 2, 2], qparams: act(0.2, 0, 255) };
    assert_error!(conv.forward(&wrong_qparams), QatError::ModelStructure { reason, .. } if reason.contains("qparams"));
    let wrong_shape = QTensor { values: vec![0; 12], shape: vec![1, 3, 2, 2], qparams: input };
    assert_error!(conv.forward(&wrong_shape), QatError::ShapeMismatch { .. });
    assert_error!(
        Conv2d::new(
            Conv2dOptions::new(2, 2, 1),
            Int8Weight::new(vec![1; 3], vec![0.1; 2], vec![0; 2]),
            &[0.0; 2],
            LayerQParams::new(input, input, false)
        ),
        QatError::ShapeMismatch { .. }
    );
    assert_error!(
        Conv2d::new(Conv2dOptions::new(2, 2, 1), Int8Weight::new(vec![1; 4], vec![0.1; 2], vec![0; 2]), &[0.0; 2], LayerQParams::new(input, act(0.1, 0, 300), false)),
        QatError::InvalidConfig { field, reason } if field == "quant_max" && reason.contains("u8")
    );
}

#[test]
fn conv2d_gemm_equals_the_reference_on_random_geometries() {
    // Strides and dilations on both axes, padding wider than the kernel reach, one image (the
    // split over column blocks) and several (the split over images), planes past one block.
    let device = Device::flex();
    let mut rng = Rng(99);
    let modes = [PaddingMode::Zeros, PaddingMode::Zeros, PaddingMode::Reflect, PaddingMode::Circular];
    for case in 0..24 {
        let groups = [1, 2, 3][case % 3];
        let (c, o) = (groups * rng.int(1, 3) as usize, groups * rng.int(1, 6) as usize);
        let kernel = [rng.int(1, 4) as usize, rng.int(1, 4) as usize];
        let stride = [rng.int(1, 3) as usize, rng.int(1, 3) as usize];
        let dilation = [rng.int(1, 2) as usize, rng.int(1, 2) as usize];
        let mode = modes[case % 4];
        let pad = if mode == PaddingMode::Zeros { [rng.int(0, 4) as usize, rng.int(0, 4) as usize] } else { [1, 1] };
        let options = Conv2dOptions::new(c, o, kernel)
            .with_stride(stride)
            .with_dilation(dilation)
            .with_padding(pad)
            .with_groups(groups)
            .with_padding_mode(mode);
        let wlen: usize = options.weight_shape().iter().product();
        let weight: Vec<i8> = (0..wlen).map(|_| rng.int(-128, 127) as i8).collect();
        let wzp: Vec<i32> = (0..o).map(|_| if case % 2 == 0 { rng.int(-30, 30) } else { 0 }).collect();
        let bias: Vec<f32> = (0..o).map(|_| rng.int(-1000, 1000) as f32 * 0.01).collect();
        let input = act(0.02, [0, 255, rng.int(0, 255)][case % 3], 255);
        let conv = Conv2d::new(
            options,
            Int8Weight::new(weight, vec![0.01; o], wzp),
            &bias,
            LayerQParams::new(input, act(0.05, 60, 255), case % 5 == 0),
        )
        .unwrap();
        let n = [1, 3][case % 2];
        let (h, w) = (rng.int(8, 21) as usize, rng.int(8, 23) as usize);
        let x = random_input(&mut rng, vec![n, c, h, w], input);
        assert_eq!(conv.forward(&x).unwrap(), conv.forward_reference(&x, &device).unwrap(), "case {case}: {:?}", conv.options);
    }
}

#[test]
fn depthwise_conv2d_equals_the_reference() {
    // One input and one output channel per group: the direct depthwise kernel.
    let device = Device::flex();
    let mut rng = Rng(314);
    let modes = [PaddingMode::Zeros, PaddingMode::Replicate, PaddingMode::Zeros, PaddingMode::Reflect];
    for case in 0..16 {
        let c = rng.int(1, 9) as usize;
        let kernel = [rng.int(1, 3) as usize, rng.int(1, 3) as usize];
        let stride = [rng.int(1, 2) as usize, rng.int(1, 3) as usize];
        let dilation = [rng.int(1, 2) as usize, rng.int(1, 2) as usize];
        let mode = modes[case % 4];
        let pad = if mode == PaddingMode::Zeros { [rng.int(0, 3) as usize, rng.int(0, 3) as usize] } else { [1, 1] };
        let options = Conv2dOptions::new(c, c, kernel)
            .with_stride(stride)
            .with_dilation(dilation)
            .with_padding(pad)
            .with_groups(c)
            .with_padding_mode(mode);
        let weight: Vec<i8> =
            (0..c * kernel[0] * kernel[1]).map(|i| if case == 0 { [-128, 127][i % 2] } else { rng.int(-128, 127) as i8 }).collect();
        let wzp: Vec<i32> = (0..c).map(|_| if case % 2 == 1 { rng.int(-30, 30) } else { 0 }).collect();
        let bias: Vec<f32> = (0..c).map(|_| rng.int(-1000, 1000) as f32 * 0.01).collect();
        let input = act(0.03, [0, 255, rng.int(0, 255)][case % 3], 255);
        let conv = Conv2d::new(
            options,
            Int8Weight::new(weight, vec![0.02; c], wzp),
            &bias,
            LayerQParams::new(input, act(0.07, 30, 255), case % 3 == 0),
        )
        .unwrap();
        let (h, w) = (rng.int(5, 17) as usize, rng.int(5, 19) as usize);
        let x = random_input(&mut rng, vec![1 + case % 3, c, h, w], input);
        assert_eq!(conv.forward(&x).unwrap(), conv.forward_reference(&x, &device).unwrap(), "case {case}: {:?}", conv.options);
    }
}

#[test]
fn mobilenet_depthwise_shapes_equal_the_reference() {
    // The 3x3 depthwise convs of MobileNetV2 (stride 1 and 2, padding 1) on planes wider than
    // a vector, batched: the flat whole-plane kernel, extreme weights and zero points included.
    let device = Device::flex();
    let mut rng = Rng(2718);
    for (case, (c, stride, hw)) in [(32, 1, 14), (64, 2, 14), (96, 1, 7), (96, 2, 7), (24, 2, 15), (16, 1, 4)].into_iter().enumerate() {
        let options = Conv2dOptions::new(c, c, 3).with_stride(stride).with_padding(1).with_groups(c);
        let weight: Vec<i8> = (0..c * 9).map(|i| if case == 0 { [-128, 127][i % 2] } else { rng.int(-128, 127) as i8 }).collect();
        let wzp: Vec<i32> = (0..c).map(|_| if case % 2 == 1 { rng.int(-30, 30) } else { 0 }).collect();
        let bias: Vec<f32> = (0..c).map(|_| rng.int(-1000, 1000) as f32 * 0.01).collect();
        let input = act(0.03, [0, 255, rng.int(0, 255)][case % 3], 255);
        let conv = Conv2d::new(
            options,
            Int8Weight::new(weight, vec![0.02; c], wzp),
            &bias,
            LayerQParams::new(input, act(0.07, 30, 255), case % 2 == 0),
        )
        .unwrap();
        let x = random_input(&mut rng, vec![1 + case % 3, c, hw, hw], input);
        assert_eq!(conv.forward(&x).unwrap(), conv.forward_reference(&x, &device).unwrap(), "case {case}: {:?}", conv.options);
    }
}
