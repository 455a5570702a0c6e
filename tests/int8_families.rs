//! The int8 conv family beyond 2-d: Conv1d, Conv3d, ConvTranspose2d (each with its fused ReLU).
//!
//! 1. Kernels against the f64 reference on adversarial settings (requantization ties,
//!    saturation, weight zero points, every padding mode, stride / dilation / groups, 1-wide
//!    shapes). Bit equality.
//! 2. Conversion from trained QAT modules: the int8 output equals, element for element, the QAT
//!    module's eval in the deployment arithmetic, computed here from the QAT module's own parts
//!    (its float convolution in f64 on the integers its fake quants put on the grid, its folded
//!    bias at `s_in * s_w`, its output fake quant's qparams), and independent of the int8 module.
//!    PyTorch's float fake-quant eval is recorded too: at most one output step away.
//! 3. Shape errors are typed and name the layer.

mod common;

use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{DType, Device, Distribution, Tensor, TensorData};
use burn_qat::QatError;
use burn_qat::fake_quantize::FakeQuantize;
use burn_qat::nn::intrinsic::qat::{self as iqat, ConvBn1dConfig, ConvBn3dConfig, ConvBnNd, ConvReLU3d, ConvTransposeBn2dConfig};
use burn_qat::nn::qat::ConvConfig;
use burn_qat::nn::qat::{self, ConvNd};
use burn_qat::nn::quantized::{ActivationQParams, Conv1d, Conv3d, ConvTranspose2d, Int8Weight, LayerQParams, QTensor, Quantize};
use burn_qat::nn::{Conv1dOptions, Conv3dOptions, ConvGeometry, ConvTranspose2dOptions, PaddingMode, QatModule};
use burn_qat::qconfig::QConfig;
use burn_qat::quant::{quantize_bias, requant_multiplier, requantize};
use burn_qat::workflow::ToQuantized;
use common::*;

const MODES: [PaddingMode; 4] = [PaddingMode::Zeros, PaddingMode::Reflect, PaddingMode::Replicate, PaddingMode::Circular];
/// (input scale, weight scale, output scale): 0.5 multipliers make exact ties; 4.0 saturates.
const SCALES: [(f32, f32, f32); 4] = [(1.0, 0.5, 1.0), (0.02, 0.01, 0.05), (0.1, 0.4, 0.01), (0.003, 0.002, 1.0)];

fn act(scale: f32, zero_point: i32, quant_max: i32) -> ActivationQParams {
    ActivationQParams { scale, zero_point, quant_min: 0, quant_max }
}

fn random_input(rng: &mut Rng, shape: Vec<usize>, qparams: ActivationQParams) -> QTensor {
    let n = shape.iter().product();
    QTensor { values: (0..n).map(|_| rng.int(qparams.quant_min, qparams.quant_max) as u8).collect(), shape, qparams }
}

/// Random integer parameters for `o` output channels: i8 weights, zero points on some
/// channels, and float biases; activations with random zero points (a 7-bit output for `j == 1`).
struct Parts {
    weight: Vec<i8>,
    zero_point: Vec<i32>,
    bias: Vec<f32>,
    input: ActivationQParams,
    output: ActivationQParams,
}

fn parts(rng: &mut Rng, weights: usize, o: usize, (si, _, so): (f32, f32, f32), j: usize) -> Parts {
    Parts {
        weight: (0..weights).map(|_| rng.int(-128, 127) as i8).collect(),
        zero_point: (0..o).map(|c| if c % 3 == 0 { rng.int(-20, 20) } else { 0 }).collect(),
        bias: (0..o).map(|_| rng.int(-1000, 1000) as f32 * 0.01).collect(),
        input: act(si, rng.int(0, 255), 255),
        output: act(so, rng.int(0, 127), if j == 1 { 127 } else { 255 }),
    }
}

#[test]
fn conv1d_kernel_equals_the_reference_on_adversarial_cases() {
    let device = Device::flex();
    let mut rng = Rng(101);
    let mut cases = 0;
    for (i, mode) in MODES.iter().enumerate() {
        for (j, &scales) in SCALES.iter().enumerate() {
            for groups in [1, 2] {
                let options = Conv1dOptions::new(4, 6, 3)
                    .with_stride(1 + (i + j) % 2)
                    .with_dilation(1 + j % 2)
                    .with_padding(1 + j % 2)
                    .with_groups(groups)
                    .with_padding_mode(*mode);
                let p = parts(&mut rng, options.weight_shape().iter().product(), 6, scales, j);
                let conv = Conv1d::new(
                    options,
                    Int8Weight::new(p.weight, vec![scales.1; 6], p.zero_point),
                    &p.bias,
                    LayerQParams::new(p.input, p.output, (i + j) % 2 == 0),
                )
                .unwrap();
                for shape in [vec![2, 4, 9], vec![1, 4, 3]] {
                    let x = random_input(&mut rng, shape.clone(), p.input);
                    let y = conv.forward(&x).unwrap();
                    assert_eq!(
                        y,
                        conv.forward_reference(&x, &device).unwrap(),
                        "mode {mode:?} scales {scales:?} groups {groups} {shape:?}"
                    );
                    assert_eq!(y.shape.len(), 3);
                    cases += 1;
                }
            }
        }
    }
    // One column: a 1-wide input with a 1-wide kernel and no padding.
    let p = parts(&mut rng, 4 * 2, 4, SCALES[0], 0);
    let conv = Conv1d::new(
        Conv1dOptions::new(2, 4, 1),
        Int8Weight::new(p.weight, vec![0.5; 4], p.zero_point),
        &p.bias,
        LayerQParams::new(p.input, p.output, false),
    )
    .unwrap();
    let x = random_input(&mut rng, vec![3, 2, 1], p.input);
    assert_eq!(conv.forward(&x).unwrap(), conv.forward_reference(&x, &device).unwrap());
    assert_eq!(cases, 64);
}

#[test]
fn conv3d_kernel_equals_the_reference_on_adversarial_cases() {
    let device = Device::flex();
    let mut rng = Rng(303);
    let mut cases = 0;
    for (i, mode) in MODES.iter().enumerate() {
        for (j, &scales) in SCALES.iter().enumerate() {
            for groups in [1, 2] {
                let options = Conv3dOptions::new(4, 6, [2, 3, 1])
                    .with_stride([1 + (i + j) % 2, 1, 1 + j % 2])
                    .with_dilation([1 + j % 2, 1, 1])
                    .with_padding([1, j % 2, 1])
                    .with_groups(groups)
                    .with_padding_mode(*mode);
                let p = parts(&mut rng, options.weight_shape().iter().product(), 6, scales, j);
                let wscale: Vec<f32> = (0..6).map(|o| scales.1 * (1.0 + o as f32 / 4.0)).collect();
                let conv = Conv3d::new(
                    options,
                    Int8Weight::new(p.weight, wscale, p.zero_point),
                    &p.bias,
                    LayerQParams::new(p.input, p.output, (i + j) % 2 == 1),
                )
                .unwrap();
                // A regular volume and an edge shape: one slice deep and one column wide (reflect
                // padding needs more than its padding on every axis).
                let edge = if *mode == PaddingMode::Reflect { vec![1, 4, 2, 3, 2] } else { vec![1, 4, 1, 3, 1] };
                for shape in [vec![2, 4, 3, 5, 4], vec![1, 4, 2, 3, 5], edge] {
                    let x = random_input(&mut rng, shape.clone(), p.input);
                    assert_eq!(
                        conv.forward(&x).unwrap(),
                        conv.forward_reference(&x, &device).unwrap(),
                        "mode {mode:?} scales {scales:?} groups {groups} {shape:?}"
                    );
                    cases += 1;
                }
            }
        }
    }
    // Depth 1 with a depth-1 kernel: a 2-d conv inside a 3-d tensor.
    let p = parts(&mut rng, 3 * 2 * 3 * 3, 3, SCALES[1], 0);
    let options = Conv3dOptions::new(2, 3, [1, 3, 3]).with_padding([0, 1, 1]);
    let conv =
        Conv3d::new(options, Int8Weight::new(p.weight, vec![0.01; 3], p.zero_point), &p.bias, LayerQParams::new(p.input, p.output, true))
            .unwrap();
    let x = random_input(&mut rng, vec![2, 2, 1, 1, 4], p.input);
    assert_eq!(conv.forward(&x).unwrap(), conv.forward_reference(&x, &device).unwrap());
    assert_eq!(cases, 96);
}

/// One input and one output channel per group in three dimensions: the direct depthwise
/// kernel's stride phases along depth as well as height and width.
#[test]
fn conv3d_depthwise_equals_the_reference() {
    let device = Device::flex();
    let mut rng = Rng(304);
    let geometries = [
        ([3, 3, 3], [2, 2, 2], [1, 1, 1], [1, 1, 1]),
        ([2, 3, 1], [1, 2, 3], [2, 1, 1], [0, 2, 1]),
        ([3, 1, 2], [3, 1, 2], [1, 1, 2], [2, 0, 2]),
    ];
    for (i, mode) in MODES.iter().enumerate() {
        for (j, &(kernel, stride, dilation, padding)) in geometries.iter().enumerate() {
            let padding = if *mode == PaddingMode::Zeros { padding } else { [1, 1, 1] };
            let options = Conv3dOptions::new(3, 3, kernel)
                .with_stride(stride)
                .with_dilation(dilation)
                .with_padding(padding)
                .with_groups(3)
                .with_padding_mode(*mode);
            let scales = SCALES[(i + j) % SCALES.len()];
            let p = parts(&mut rng, options.weight_shape().iter().product(), 3, scales, j);
            let conv = Conv3d::new(
                options,
                Int8Weight::new(p.weight, vec![scales.1; 3], p.zero_point),
                &p.bias,
                LayerQParams::new(p.input, p.output, j % 2 == 0),
            )
            .unwrap();
            for shape in [vec![2, 3, 5, 6, 7], vec![1, 3, 4, 9, 5]] {
                let x = random_input(&mut rng, shape.clone(), p.input);
                assert_eq!(
                    conv.forward(&x).unwrap(),
                    conv.forward_reference(&x, &device).unwrap(),
                    "mode {mode:?} {:?} {shape:?}",
                    conv.options
                );
            }
        }
    }
}

#[test]
fn conv_transpose2d_kernel_equals_the_reference_on_adversarial_cases() {
    let device = Device::flex();
    let mut rng = Rng(505);
    let mut cases = 0;
    for (j, &scales) in SCALES.iter().enumerate() {
        for groups in [1, 2] {
            for (stride, dilation, padding, output_padding) in
                [([1, 1], [1, 1], [0, 0], [0, 0]), ([2, 1], [1, 2], [1, 1], [1, 1]), ([3, 2], [2, 1], [2, 0], [2, 0])]
            {
                let options = ConvTranspose2dOptions::new(4, 6, [3, 2])
                    .with_stride(stride)
                    .with_dilation(dilation)
                    .with_padding(padding)
                    .with_output_padding(output_padding)
                    .with_groups(groups);
                let p = parts(&mut rng, options.weight_shape().iter().product(), 6, scales, j);
                let wscale: Vec<f32> = (0..6).map(|o| scales.1 * (1.0 + o as f32 / 8.0)).collect();
                let relu = (j + groups) % 2 == 0;
                let conv = ConvTranspose2d::new(
                    options,
                    Int8Weight::new(p.weight, wscale, p.zero_point),
                    &p.bias,
                    LayerQParams::new(p.input, p.output, relu),
                )
                .unwrap();
                for shape in [vec![2, 4, 5, 3], vec![1, 4, 1, 1], vec![1, 4, 1, 6], vec![3, 4, 4, 1]] {
                    let x = random_input(&mut rng, shape.clone(), p.input);
                    assert_eq!(
                        conv.forward(&x).unwrap(),
                        conv.forward_reference(&x, &device).unwrap(),
                        "scales {scales:?} groups {groups} stride {stride:?} {shape:?}"
                    );
                    cases += 1;
                }
            }
        }
    }
    assert_eq!(cases, 96);
}

/// Layers big enough that the work splits across threads: one image's product column blocks
/// (400 input positions, 7 blocks of 64) and output planes, and two images in parallel. The
/// kernel still equals the reference, with groups and weight zero points.
#[test]
fn conv_transpose2d_kernel_equals_the_reference_where_the_work_splits() {
    let device = Device::flex();
    let mut rng = Rng(606);
    for groups in [1, 2] {
        let options = ConvTranspose2dOptions::new(32, 24, 3).with_stride(2).with_padding(1).with_output_padding(1).with_groups(groups);
        let p = parts(&mut rng, options.weight_shape().iter().product(), 24, SCALES[1], 1);
        let wscale: Vec<f32> = (0..24).map(|o| 0.004 * (1.0 + o as f32 / 16.0)).collect();
        let conv = ConvTranspose2d::new(
            options,
            Int8Weight::new(p.weight, wscale, p.zero_point),
            &p.bias,
            LayerQParams::new(p.input, p.output, false),
        )
        .unwrap();
        for batch in [1, 2] {
            let x = random_input(&mut rng, vec![batch, 32, 20, 20], p.input);
            let y = conv.forward(&x).unwrap();
            assert_eq!(y.shape, vec![batch, 24, 40, 40]);
            assert_eq!(y, conv.forward_reference(&x, &device).unwrap(), "groups {groups} batch {batch}");
        }
    }
}

/// A depthwise transposed conv (groups = input channels, one or two outputs each): every group
/// is a GEMM with one input channel, the quad of K padded with zeros.
#[test]
fn depthwise_conv_transpose2d_equals_the_reference() {
    let device = Device::flex();
    let mut rng = Rng(808);
    for multiplier in [1, 2] {
        let o = 6 * multiplier;
        let options = ConvTranspose2dOptions::new(6, o, 3).with_stride(2).with_padding(1).with_groups(6);
        let p = parts(&mut rng, options.weight_shape().iter().product(), o, SCALES[1], 1);
        let conv = ConvTranspose2d::new(
            options,
            Int8Weight::new(p.weight, vec![0.01; o], p.zero_point),
            &p.bias,
            LayerQParams::new(p.input, p.output, true),
        )
        .unwrap();
        for batch in [1, 3] {
            let x = random_input(&mut rng, vec![batch, 6, 7, 5], p.input);
            assert_eq!(conv.forward(&x).unwrap(), conv.forward_reference(&x, &device).unwrap(), "multiplier {multiplier} batch {batch}");
        }
    }
}

/// The int8 modules' fields are public: a weight, weight zero point or input zero point edited
/// after construction must not leave the kernel on the packing made before (a transposed conv
/// packs its weights reordered, so it checks them against what it was built from).
#[test]
fn edited_fields_are_repacked_before_the_next_forward() {
    let device = Device::flex();
    let mut rng = Rng(707);
    let p = parts(&mut rng, 4 * 3 * 3 * 3, 6, SCALES[1], 1);
    let options = ConvTranspose2dOptions::new(4, 6, 3).with_stride(2).with_groups(2);
    let qparams = LayerQParams::new(p.input, p.output, false);
    let mut up =
        ConvTranspose2d::new(options, Int8Weight::new(p.weight.clone(), vec![0.01; 6], p.zero_point.clone()), &p.bias, qparams).unwrap();
    let options = Conv3dOptions::new(4, 6, 3).with_padding(1).with_groups(2);
    let weight = Int8Weight::new((0..6 * 2 * 27).map(|_| rng.int(-128, 127) as i8).collect(), vec![0.01; 6], p.zero_point.clone());
    let mut conv = Conv3d::new(options, weight, &p.bias, qparams).unwrap();
    let x_up = random_input(&mut rng, vec![1, 4, 3, 5], p.input);
    let x_conv = random_input(&mut rng, vec![2, 4, 3, 4, 5], p.input);
    let (before_up, before_conv) = (up.forward(&x_up).unwrap(), conv.forward(&x_conv).unwrap());

    up.weight.values[7] = up.weight.values[7].wrapping_add(90);
    up.weight.zero_point[4] += 3;
    conv.weight.values[11] = conv.weight.values[11].wrapping_add(90);
    conv.weight.zero_point[1] += 3;
    let (after_up, after_conv) = (up.forward(&x_up).unwrap(), conv.forward(&x_conv).unwrap());
    assert_ne!(after_up, before_up, "the edit changes the transposed conv's output");
    assert_ne!(after_conv, before_conv, "the edit changes the conv's output");
    assert_eq!(after_up, up.forward_reference(&x_up, &device).unwrap());
    assert_eq!(after_conv, conv.forward_reference(&x_conv, &device).unwrap());

    // A new input grid: the zero-point corrections were packed for the old one.
    let input = act(p.input.scale, (p.input.zero_point + 40) % 256, 255);
    up.qparams.input = input;
    conv.qparams.input = input;
    let (x_up, x_conv) = (QTensor { qparams: input, ..x_up }, QTensor { qparams: input, ..x_conv });
    assert_eq!(up.forward(&x_up).unwrap(), up.forward_reference(&x_up, &device).unwrap());
    assert_eq!(conv.forward(&x_conv).unwrap(), conv.forward_reference(&x_conv, &device).unwrap());

    // A transposed conv's options edited, its weights not: three times the input channels and
    // a third of the taps keep its 108 weights, but regroup them into other GEMM rows.
    let options = ConvTranspose2dOptions::new(4, 6, 3).with_stride(2).with_groups(2);
    let mut up = ConvTranspose2d::new(options, Int8Weight::new(p.weight, vec![0.01; 6], p.zero_point), &p.bias, qparams).unwrap();
    (up.options.in_channels, up.options.kernel_size) = (12, [3, 1]);
    let x_up = random_input(&mut rng, vec![1, 12, 3, 5], p.input);
    assert_eq!(up.forward(&x_up).unwrap(), up.forward_reference(&x_up, &device).unwrap());
}

/// The transposed weight layout by hand: `[C_in, O / groups, 1, 1]` with groups 2, a zero point
/// on one output channel, `y[o] = sum over the group's c of x[c] * (w[c, j] - z[o])`.
#[test]
fn conv_transpose2d_weight_channels_follow_the_groups() {
    let one = act(1.0, 0, 255);
    let options = ConvTranspose2dOptions::new(4, 4, 1).with_groups(2);
    let weight: Vec<i8> = vec![1, 2, 3, 4, 5, 6, 7, 8]; // [c][j]
    let zero_point = vec![0, 0, 0, 1];
    let conv =
        ConvTranspose2d::new(options, Int8Weight::new(weight, vec![1.0; 4], zero_point), &[0.0; 4], LayerQParams::new(one, one, false))
            .unwrap();
    let x = QTensor { values: vec![1, 10, 2, 20], shape: vec![1, 4, 1, 1], qparams: one };
    // Group 0 (c 0, 1 -> o 0, 1): o0 = 1*1 + 10*3, o1 = 1*2 + 10*4.
    // Group 1 (c 2, 3 -> o 2, 3): o2 = 2*5 + 20*7, o3 = 2*(6-1) + 20*(8-1).
    assert_eq!(conv.forward(&x).unwrap().values, vec![31, 42, 150, 150]);
}

/// An int8 conv module as the conversion tests drive it.
trait Int8Conv {
    fn run(&self, x: &QTensor) -> burn_qat::Result<QTensor>;
    fn reference(&self, x: &QTensor, device: &Device) -> burn_qat::Result<QTensor>;
}

macro_rules! int8_conv {
    ($($ty:ty),*) => {$(
        impl Int8Conv for $ty {
            fn run(&self, x: &QTensor) -> burn_qat::Result<QTensor> {
                self.forward(x)
            }
            fn reference(&self, x: &QTensor, device: &Device) -> burn_qat::Result<QTensor> {
                self.forward_reference(x, device)
            }
        }
    )*};
}

int8_conv!(Conv1d, Conv3d, ConvTranspose2d);

/// The QAT module's eval in the deployment arithmetic, from its own parts: the integers its
/// weight fake quant puts on the grid (recovered exactly from the fake-quantized weight, as
/// `round(w_fq / s)`), its geometry's float convolution in f64 over the centered input
/// integers (exact), its folded bias at `s_in * s_w`, and the specified requantization with
/// its output fake quant's qparams. Nothing here comes from the int8 module.
fn deployment<const D: usize, O: ConvGeometry<D>>(
    options: &O,
    weight_fake_quant: &FakeQuantize,
    weight: Tensor<D>,
    bias: &[f32],
    output: &Option<FakeQuantize>,
    relu: bool,
    x: &QTensor,
) -> Vec<u8> {
    let dims: [usize; D] = x.shape.clone().try_into().expect("an input of the module's rank");
    let w_fq = to_vec(&weight_fake_quant.clone().forward(weight).unwrap());
    let scales = weight_fake_quant.qparams().scale;
    let shape = options.weight_shape();
    let axis = O::WEIGHT_CHANNEL_AXIS;
    let inner: usize = shape[axis + 1..].iter().product();
    let scale_at = |index: usize| scales[if scales.len() == 1 { 0 } else { index % scales.len() }];
    let w_int: Vec<f64> = w_fq
        .iter()
        .enumerate()
        .map(|(i, &w)| {
            let s = scale_at((i / inner) % shape[axis]);
            let k = (w as f64 / s as f64).round();
            assert_eq!((k as f32 * s).to_bits(), w.to_bits(), "the fake-quantized weight is on the grid");
            k
        })
        .collect();
    let device = Device::flex();
    let f64_tensor = |v: Vec<f64>, s: [usize; D]| Tensor::<D>::from_data(TensorData::new(v, s), (&device, DType::F64));
    let z = x.qparams.zero_point;
    let centered = x.values.iter().map(|&q| (q as i32 - z) as f64).collect();
    let acc = options.forward(f64_tensor(centered, dims), f64_tensor(w_int, shape), None);
    let plane: usize = acc.dims()[2..].iter().product();
    let acc = acc.into_data().convert::<f64>().try_into_vec::<f64>().unwrap();
    let out = output.as_ref().unwrap().activation_qparams("output").unwrap();
    let lo = if relu { out.zero_point } else { out.quant_min };
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let o = (i / plane) % options.out_channels();
            let s = scale_at(o);
            let total = (a as i64 + quantize_bias(bias[o], x.qparams.scale, s) as i64).clamp(i32::MIN as i64, i32::MAX as i64);
            requantize(total as i32, requant_multiplier(x.qparams.scale, s, out.scale), out.zero_point, lo, out.quant_max) as u8
        })
        .collect()
}

/// The fake-quantized operands of a ConvBn module: its folded weight and folded bias.
fn bn_parts<const D: usize, O: ConvGeometry<D>>(m: &ConvBnNd<D, O>) -> (Tensor<D>, Vec<f32>) {
    (m.folded_weight_tensor(), m.folded_weight_and_bias().1)
}

/// The same for a conv without BN: its weight and bias (zeros when it has none).
fn conv_parts<const D: usize, O: ConvGeometry<D>>(m: &ConvNd<D, O>) -> (Tensor<D>, Vec<f32>) {
    let bias = m.bias.as_ref().map(|b| to_vec(&b.val())).unwrap_or_else(|| vec![0.0; m.options.out_channels()]);
    (m.weight.val(), bias)
}

/// A QAT conv module of input rank `R` as the conversion tests drive it.
trait QatConv<const R: usize>: Module + QatModule + ToQuantized<Quantized: Int8Conv> {
    fn run(&mut self, x: Tensor<R>) -> Tensor<R>;
    /// [`deployment`] for this module.
    fn deployment(&self, x: &QTensor) -> Vec<u8>;
}

macro_rules! qat_conv {
    // `$rank`: the input rank; `$get`: the module holding the parts; `$parts`: bn_parts or
    // conv_parts.
    ($ty:ty, $rank:literal, |$m:ident| $get:expr, $parts:ident, $relu:expr) => {
        impl QatConv<$rank> for $ty {
            fn run(&mut self, x: Tensor<$rank>) -> Tensor<$rank> {
                self.forward(x).unwrap()
            }
            fn deployment(&self, x: &QTensor) -> Vec<u8> {
                let $m = self;
                let inner = $get;
                let (weight, bias) = $parts(inner);
                deployment(&inner.options, &inner.weight_fake_quant, weight, &bias, &inner.activation_post_process, $relu, x)
            }
        }
    };
}

qat_conv!(iqat::ConvBn1d, 3, |m| m, bn_parts, false);
qat_conv!(iqat::ConvBnReLU1d, 3, |m| &m.inner, bn_parts, true);
qat_conv!(iqat::ConvReLU1d, 3, |m| &m.conv, conv_parts, true);
qat_conv!(qat::Conv1d, 3, |m| m, conv_parts, false);
qat_conv!(iqat::ConvBn3d, 5, |m| m, bn_parts, false);
qat_conv!(iqat::ConvBnReLU3d, 5, |m| &m.inner, bn_parts, true);
qat_conv!(ConvReLU3d, 5, |m| &m.conv, conv_parts, true);
qat_conv!(qat::Conv3d, 5, |m| m, conv_parts, false);
qat_conv!(iqat::ConvTransposeBn2d, 4, |m| m, bn_parts, false);
qat_conv!(iqat::ConvTransposeBnReLU2d, 4, |m| &m.inner, bn_parts, true);
qat_conv!(ConvNd<4, ConvTranspose2dOptions>, 4, |m| m, conv_parts, false);

/// Float inputs for one shape: ordinary values, values 8x the trained range (saturating the
/// input and the output ranges), and values exactly between two input grid points (ties).
fn inputs<const R: usize>(shape: [usize; R], input: ActivationQParams, seed: u64, device: &Device) -> Vec<Tensor<R>> {
    device.seed(seed);
    let normal = Tensor::<R>::random(shape, Distribution::Normal(0.0, 1.0), device);
    let mut rng = Rng(seed);
    let n: usize = shape.iter().product();
    let (lo, hi) = (input.quant_min - input.zero_point - 3, input.quant_max - input.zero_point + 3);
    let ties: Vec<f32> = (0..n).map(|_| (rng.int(lo, hi) as f32 + 0.5) * input.scale).collect();
    vec![normal.clone(), normal * 8.0, Tensor::from_data(TensorData::new(ties, shape), device)]
}

/// Trains `m` a few steps behind an input fake quant (BN frozen, then observers off, as the
/// official schedule does), converts it, and checks the int8 module on every input of every
/// shape: equal to the deployment eval and to its own f64 reference, bit for bit, and within
/// one output step of the float fake-quant eval. Returns how many outputs sat at the floor
/// (quant_min, or the zero point under a fused ReLU) and at quant_max.
fn check_conversion<const R: usize, M: QatConv<R>>(
    name: &str,
    mut m: M,
    qconfig: &QConfig,
    train: [usize; R],
    eval: &[[usize; R]],
) -> [usize; 2] {
    let device = Device::flex().autodiff();
    device.seed(7);
    let mut input_fq = qconfig.activation.init().unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..4 {
        if step == 2 {
            m.freeze_bn_stats();
        }
        if step == 3 {
            m.disable_observer();
            input_fq.disable_observer();
        }
        let x = input_fq.forward(Tensor::<R>::random(train, Distribution::Normal(0.0, 1.0), &device)).unwrap();
        let loss = m.run(x).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        m = optim.step(0.05, m, grads);
    }
    m.set_training(false);
    let input = input_fq.activation_qparams("input").unwrap();
    let int8 = m.to_quantized(input, name).unwrap();
    let quantize = Quantize::new(input).unwrap();
    let (mut mismatched, mut total, mut saturated) = (0, 0, [0, 0]);
    for (k, &shape) in eval.iter().enumerate() {
        for (kind, x) in inputs(shape, input, 40 + k as u64, &device).into_iter().enumerate() {
            let what = format!("{name} {shape:?} input kind {kind}");
            let xq = quantize.forward(&x).unwrap();
            // The QAT model's input fake quant and Quantize agree, ties and saturation included.
            assert_bits_eq(&format!("{what}: input"), &xq.dequantize(), &to_vec(&input_fq.forward(x).unwrap()));
            let y = int8.run(&xq).unwrap();
            let out = y.qparams;
            saturated[0] += y.values.iter().filter(|&&v| v as i32 == out.quant_min || v as i32 == out.zero_point).count();
            saturated[1] += y.values.iter().filter(|&&v| v as i32 == out.quant_max).count();
            assert_eq!(y.values, m.deployment(&xq), "{what}: int8 vs the QAT module's deployment eval");
            assert_eq!(y, int8.reference(&xq, &Device::flex()).unwrap(), "{what}: kernel vs reference");
            let float_eval = to_vec(&m.run(xq.to_tensor::<R>(&device).unwrap()));
            let step = y.qparams.scale;
            for (a, b) in float_eval.iter().zip(y.dequantize()) {
                assert!((a - b).abs() <= step * 1.001, "{what}: float eval {a} vs int8 {b}, more than one step {step}");
                mismatched += usize::from(*a != b);
            }
            total += float_eval.len();
        }
    }
    println!("{name}: float fake-quant eval vs int8: {mismatched}/{total} elements one step apart; {saturated:?} at the floor / the top");
    saturated
}

/// Checks that a family's conversions saw outputs saturate at both ends of the range.
fn assert_saturation(name: &str, counts: impl IntoIterator<Item = [usize; 2]>) {
    let [floor, top] = counts.into_iter().fold([0, 0], |[a, b], [c, d]| [a + c, b + d]);
    assert!(floor > 0 && top > 0, "{name}: outputs reach both ends of the range ({floor} at the floor, {top} at the top)");
}

fn fbgemm() -> QConfig {
    QConfig::consistent("fbgemm").unwrap()
}

#[test]
fn conv1d_family_converts_exactly() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let mut counts = Vec::new();
    let (train, eval) = ([8, 4, 12], [[3, 4, 12], [2, 4, 2], [1, 4, 1]]);
    for (mode, q) in MODES.iter().zip([fbgemm(), QConfig::consistent("qnnpack").unwrap(), fbgemm(), QConfig::consistent("x86").unwrap()]) {
        // Reflect and circular padding need inputs at least as wide as their padding.
        let eval: &[[usize; 3]] = match mode {
            PaddingMode::Reflect => &eval[..1],
            PaddingMode::Circular => &eval[..2],
            _ => &eval,
        };
        let options = Conv1dOptions::new(4, 6, 3).with_padding(1).with_padding_mode(*mode);
        let strided = Conv1dOptions::new(4, 6, 3).with_stride(2).with_dilation(2).with_padding(2).with_groups(2).with_padding_mode(*mode);
        let config = ConvBn1dConfig::new(options.clone(), q.clone()).with_bias(true);
        counts.push(check_conversion("ConvBn1d", config.init(&device).unwrap().with_output_fake_quant().unwrap(), &q, train, eval));
        let config = ConvBn1dConfig::new(strided.clone(), q.clone());
        counts.push(check_conversion(
            "ConvBnReLU1d",
            config.init_relu(&device).unwrap().with_output_fake_quant().unwrap(),
            &q,
            train,
            eval,
        ));
        let m = ConvConfig::new(strided, q.clone()).init_relu(&device).unwrap().with_output_fake_quant().unwrap();
        counts.push(check_conversion("ConvReLU1d", m, &q, train, eval));
        let m = ConvConfig::new(options, q.clone()).with_bias(false).init(&device).unwrap().with_output_fake_quant().unwrap();
        counts.push(check_conversion("Conv1d", m, &q, train, eval));
    }
    assert_saturation("1-d family", counts);
}

#[test]
fn conv3d_family_converts_exactly() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let mut counts = Vec::new();
    let (train, eval) = ([4, 4, 4, 6, 5], [[2, 4, 4, 6, 5], [1, 4, 2, 1, 3], [1, 4, 1, 3, 1]]);
    for (mode, q) in MODES.iter().zip([fbgemm(), QConfig::consistent("x86").unwrap(), QConfig::consistent("qnnpack").unwrap(), fbgemm()]) {
        let eval: &[[usize; 5]] = match mode {
            PaddingMode::Reflect => &eval[..1],
            PaddingMode::Circular => &eval[..2],
            _ => &eval,
        };
        let options = Conv3dOptions::new(4, 6, [3, 1, 2]).with_padding([1, 0, 1]).with_padding_mode(*mode);
        let strided = Conv3dOptions::new(4, 6, [2, 1, 3])
            .with_stride([2, 1, 1])
            .with_dilation([1, 1, 2])
            .with_padding([1, 0, 2])
            .with_groups(2)
            .with_padding_mode(*mode);
        let config = ConvBn3dConfig::new(options.clone(), q.clone()).with_bias(true);
        counts.push(check_conversion("ConvBn3d", config.init(&device).unwrap().with_output_fake_quant().unwrap(), &q, train, eval));
        let config = ConvBn3dConfig::new(strided.clone(), q.clone());
        counts.push(check_conversion(
            "ConvBnReLU3d",
            config.init_relu(&device).unwrap().with_output_fake_quant().unwrap(),
            &q,
            train,
            eval,
        ));
        let m = ConvConfig::new(strided, q.clone()).init_relu(&device).unwrap().with_output_fake_quant().unwrap();
        counts.push(check_conversion("ConvReLU3d", m, &q, train, eval));
        let m = ConvConfig::new(options, q.clone()).with_bias(false).init(&device).unwrap().with_output_fake_quant().unwrap();
        counts.push(check_conversion("Conv3d", m, &q, train, eval));
    }
    assert_saturation("3-d family", counts);
}

#[test]
fn conv_transpose2d_family_converts_exactly() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let mut counts = Vec::new();
    let (train, eval) = ([6, 4, 5, 5], [[2, 4, 5, 5], [1, 4, 1, 4], [2, 4, 3, 1], [1, 4, 1, 1]]);
    for q in [fbgemm(), QConfig::consistent("qnnpack").unwrap()] {
        let plain = ConvTranspose2dOptions::new(4, 6, 3).with_padding(1);
        let strided = ConvTranspose2dOptions::new(4, 6, [3, 2]).with_stride([2, 3]).with_dilation([1, 2]).with_output_padding([1, 2]);
        let config = ConvTransposeBn2dConfig::new(plain, q.clone()).with_bias(true);
        counts.push(check_conversion(
            "ConvTransposeBn2d",
            config.init(&device).unwrap().with_output_fake_quant().unwrap(),
            &q,
            train,
            &eval,
        ));
        let config = ConvTransposeBn2dConfig::new(strided.clone(), q.clone());
        counts.push(check_conversion(
            "ConvTransposeBnReLU2d",
            config.init_relu(&device).unwrap().with_output_fake_quant().unwrap(),
            &q,
            train,
            &eval,
        ));
        // Groups: per-channel scales along weight axis 1 repeat for each group's channels.
        let grouped = strided.with_groups(2).with_padding([1, 0]);
        let m = qat::ConvTranspose2dConfig::new(grouped, q.clone()).init(&device).unwrap().with_output_fake_quant().unwrap();
        counts.push(check_conversion("ConvTranspose2d groups 2", m, &q, train, &eval));
    }
    assert_saturation("transposed family", counts);
}

#[test]
fn conv_transpose_bn_with_groups_is_a_typed_error() {
    let device = Device::flex().autodiff();
    let options = ConvTranspose2dOptions::new(4, 6, 3).with_groups(2);
    // BN folding cannot scale a grouped transposed conv's shared weight slices: refused when built.
    let err = ConvTransposeBn2dConfig::new(options, fbgemm()).init(&device).unwrap_err();
    assert!(
        matches!(&err, QatError::InvalidConfig { field, reason } if field == "groups" && reason.contains("ConvTransposeBn2d")),
        "{err}"
    );
}

fn assert_shape_error(result: burn_qat::Result<QTensor>, layer: &str) {
    match result {
        Err(QatError::ShapeMismatch { context, .. }) => assert!(context.contains(layer), "{context} should name {layer}"),
        other => panic!("expected a shape mismatch naming {layer}, got {other:?}"),
    }
}

#[test]
fn wrong_shapes_are_typed_errors_naming_the_layer() {
    let device = Device::flex();
    let q = act(0.1, 3, 255);
    let x = |shape: Vec<usize>| QTensor { values: vec![3; shape.iter().product()], shape, qparams: q };
    let conv1d = Conv1d::new(
        Conv1dOptions::new(2, 4, 3),
        Int8Weight::new(vec![1; 24], vec![0.1; 4], vec![0; 4]),
        &[0.0; 4],
        LayerQParams::new(q, q, false),
    )
    .unwrap();
    assert_shape_error(conv1d.forward(&x(vec![1, 2, 1, 5])), "Conv1d");
    assert_shape_error(conv1d.forward(&x(vec![1, 3, 5])), "Conv1d");
    assert_shape_error(conv1d.forward(&x(vec![1, 2, 2])), "Conv1d");
    assert_shape_error(conv1d.forward_reference(&x(vec![1, 3, 5]), &device), "Conv1d");
    let conv3d = Conv3d::new(
        Conv3dOptions::new(2, 4, 2),
        Int8Weight::new(vec![1; 64], vec![0.1; 4], vec![0; 4]),
        &[0.0; 4],
        LayerQParams::new(q, q, true),
    )
    .unwrap();
    assert_shape_error(conv3d.forward(&x(vec![1, 2, 4, 4])), "Conv3d");
    assert_shape_error(conv3d.forward(&x(vec![1, 3, 4, 4, 4])), "Conv3d");
    assert_shape_error(conv3d.forward(&x(vec![1, 2, 1, 4, 4])), "Conv3d");
    assert_shape_error(conv3d.forward(&x(vec![1, 2, 0, 4, 4])), "Conv3d");
    let up = ConvTranspose2dOptions::new(2, 4, 3).with_padding(1);
    let up = ConvTranspose2d::new(up, Int8Weight::new(vec![1; 72], vec![0.1; 4], vec![0; 4]), &[0.0; 4], LayerQParams::new(q, q, false))
        .unwrap();
    assert_shape_error(up.forward(&x(vec![1, 2, 4])), "ConvTranspose2d");
    assert_shape_error(up.forward(&x(vec![1, 4, 4, 4])), "ConvTranspose2d");
    assert_shape_error(up.forward(&x(vec![1, 2, 0, 4])), "ConvTranspose2d");
    let mut short = x(vec![1, 2, 3, 3]);
    short.values.pop();
    assert_shape_error(up.forward(&short), "ConvTranspose2d");
    // Parts that do not fit the geometry are shape errors too; other qparams are config errors.
    assert!(matches!(
        ConvTranspose2d::new(
            ConvTranspose2dOptions::new(2, 4, 3),
            Int8Weight::new(vec![1; 35], vec![0.1; 4], vec![0; 4]),
            &[0.0; 4],
            LayerQParams::new(q, q, false)
        ),
        Err(QatError::ShapeMismatch { .. })
    ));
    assert!(matches!(up.forward(&QTensor { qparams: act(0.2, 3, 255), ..x(vec![1, 2, 3, 3]) }), Err(QatError::ModelStructure { .. })));
}
