//! Degenerate numerics and inputs (issue 6): what happens, pinned by a test each.

mod common;

use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::QatError;
use burn_qat::nn::Conv2dOptions;
use burn_qat::nn::QatModule;
use burn_qat::nn::intrinsic::qat::ConvBn2dConfig;
use burn_qat::nn::qat::LinearConfig;
use burn_qat::qconfig::{QConfig, get_default_qat_qconfig};
use common::*;

fn conv_bn() -> burn_qat::nn::intrinsic::qat::ConvBn2d {
    let device = Device::flex().autodiff();
    ConvBn2dConfig::new(Conv2dOptions::new(3, 4, 3).with_padding(1), QConfig::consistent("fbgemm").unwrap())
        .init(&device)
        .unwrap()
        .with_output_fake_quant()
        .unwrap()
}

#[test]
fn infinite_input_is_an_error_naming_the_layer() {
    let _serial = serial();
    let mut m = conv_bn();
    let mut x = vec![0.5f32; 2 * 3 * 4 * 4];
    x[7] = f32::INFINITY;
    let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(x, [2, 3, 4, 4]), &Device::flex().autodiff());
    let err = m.forward(x).unwrap_err();
    assert!(matches!(&err, QatError::NonFinite { context, .. } if context.contains("ConvBn2d")), "{err}");
}

#[test]
fn running_var_zero_stays_finite() {
    let _serial = serial();
    let mut m = conv_bn();
    m.bn.set_running_stats(vec![0.0; 4], vec![0.0; 4]).unwrap();
    m.freeze_bn_stats();
    let y = m.forward(Tensor::<4>::random([2, 3, 5, 5], Distribution::Normal(0.0, 1.0), &Device::flex().autodiff())).unwrap();
    assert!(to_vec(&y).iter().all(|v| v.is_finite()), "sqrt(0 + eps) is a valid divisor");
}

#[test]
fn an_empty_batch_is_an_error_in_training_bn_and_an_empty_output_otherwise() {
    // As in PyTorch: training BN cannot normalize zero values; everything else maps an empty
    // batch to an empty batch, and observers skip it.
    let _serial = serial();
    let device = Device::flex().autodiff();
    let mut m = conv_bn();
    assert!(matches!(m.forward(Tensor::<4>::zeros([0, 3, 5, 5], &device)), Err(QatError::SingleValuePerChannel { .. })));
    m.eval();
    assert_eq!(m.forward(Tensor::<4>::zeros([0, 3, 5, 5], &device)).unwrap().dims(), [0, 4, 5, 5]);
    let mut l =
        LinearConfig::new(4, 2, get_default_qat_qconfig("x86", 0).unwrap()).init_relu(&device).unwrap().with_output_fake_quant().unwrap();
    assert_eq!(l.forward(Tensor::<2>::zeros([0, 4], &device)).unwrap().dims(), [0, 2]);
}

#[test]
fn huge_activations_saturate_and_tiny_ones_give_the_eps_scale() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let mut fq = QConfig::consistent("fbgemm").unwrap().activation.init().unwrap();
    let y = fq.forward(Tensor::<1>::from_floats([0.0, 1e30, -1e30], &device)).unwrap();
    assert!(to_vec(&y).iter().all(|v| v.is_finite()), "saturated, not infinite: {:?}", to_vec(&y));
    let mut tiny = QConfig::consistent("fbgemm").unwrap().activation.init().unwrap();
    tiny.forward(Tensor::<1>::from_floats([1e-30, 2e-30], &device)).unwrap();
    let q = tiny.qparams();
    assert_eq!(q.scale, vec![f32::EPSILON], "the observer floors the scale at eps");
    // fbgemm's formula floors at 6.1e-5 instead.
    let mut fused = get_default_qat_qconfig("fbgemm", 1).unwrap().activation.init().unwrap();
    fused.forward(Tensor::<1>::from_floats([1e-30, 2e-30], &device)).unwrap();
    assert_eq!(fused.qparams().scale, vec![6.1e-5]);
}

#[test]
fn constant_input_gives_defined_qparams() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    for value in [0.0f32, 3.0, -3.0] {
        let mut fq = QConfig::consistent("fbgemm").unwrap().activation.init().unwrap();
        let y = fq.forward(Tensor::<1>::from_floats([value; 8], &device)).unwrap();
        let q = fq.qparams();
        assert!(q.scale[0].is_finite() && q.scale[0] > 0.0 && (0..=127).contains(&q.zero_point[0]), "{value}: {q:?}");
        assert!(to_vec(&y).iter().all(|v| v.is_finite()));
    }
}
