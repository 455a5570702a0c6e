//! PACT (Choi et al. 2018): the clip level learns from the values it clips, and nothing else.
//! Checked against the paper's gradient computed here in f64 loops, independently of the op,
//! and against its SGD step on the clip level α.

#[macro_use]
mod common;

use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor, TensorData};
use burn_qat::fake_quantize::{FakeQuantizeConfig, FakeQuantizeVariant, LearnedGradient};
use burn_qat::observer::ObserverConfig;
use burn_qat::ops::{LearnableFakeQuantParams, ScaleGradient, fake_quantize_learnable};
use burn_qat::qconfig::{QConfigBuilder, Quantizer};
use burn_qat::quant::QScheme;
use common::*;

fn vector(values: Vec<f32>, device: &Device) -> Tensor<1> {
    let n = values.len();
    Tensor::from_data(TensorData::new(values, [n]), device)
}

/// The paper's gradient of the scale, in f64: `(quant_max - z) * g` per element above the
/// range, `(quant_min - z) * g` below, 0 inside; summed with dy.
fn pact_scale_gradient(x: &[f32], dy: &[f32], s: f32, z: i32, qmin: i32, qmax: i32, g: f64) -> f64 {
    x.iter()
        .zip(dy)
        .map(|(&x, &dy)| {
            let q = (x as f64 / s as f64).round() + z as f64;
            let factor = if q > qmax as f64 {
                (qmax - z) as f64
            } else if q < qmin as f64 {
                (qmin - z) as f64
            } else {
                0.0
            };
            factor * g * dy as f64
        })
        .sum()
}

#[test]
fn the_scale_learns_from_clipped_values_only() {
    for device in devices() {
        clipped_values_only_on(&device.autodiff());
    }
}

fn clipped_values_only_on(device: &Device) {
    let device = device.clone();
    device.seed(17);
    for (z, qmin, qmax) in [(0, 0, 15), (3, 0, 15), (0, -8, 7)] {
        let lsq = LearnableFakeQuantParams {
            axis: None,
            quant_min: qmin,
            quant_max: qmax,
            grad_factor: 0.37,
            scale_gradient: ScaleGradient::Every,
        };
        let x = Tensor::<1>::random([400], Distribution::Normal(0.5, 2.0), &device);
        let dy = Tensor::<1>::random([400], Distribution::Normal(0.0, 1.0), &device);
        let (s, zf) = (0.2f32, z as f32);
        let run = |pact: bool| {
            let (xg, sg, zg) =
                (x.clone().require_grad(), vector(vec![s], &device).require_grad(), vector(vec![zf], &device).require_grad());
            let params = if pact { LearnableFakeQuantParams { scale_gradient: ScaleGradient::Clipped, ..lsq } } else { lsq };
            let y = fake_quantize_learnable(xg.clone(), sg.clone(), zg.clone(), &params).unwrap();
            let grads = (y.clone() * dy.clone()).sum().backward();
            (to_vec(&y), to_vec(&xg.grad(&grads).unwrap()), to_vec(&sg.grad(&grads).unwrap())[0], to_vec(&zg.grad(&grads).unwrap())[0])
        };
        let (pact, lsq) = (run(true), run(false));
        let what = format!("z {z}, [{qmin}, {qmax}] on {device:?}");
        assert_bits_eq(&format!("{what}: forward"), &pact.0, &lsq.0);
        assert_bits_eq(&format!("{what}: input gradient (straight through)"), &pact.1, &lsq.1);
        assert_eq!(pact.3, lsq.3, "{what}: the zero point's gradient is LSQ's");
        let expected = pact_scale_gradient(&to_vec(&x), &to_vec(&dy), s, z, qmin, qmax, 0.37);
        assert!((pact.2 as f64 - expected).abs() <= 1e-5 * expected.abs().max(1.0), "{what}: dscale {} vs the paper's {expected}", pact.2);
        assert!((lsq.2 - pact.2).abs() > 1e-3, "{what}: LSQ adds the rounding error inside the range ({} vs {})", lsq.2, pact.2);
    }
}

#[test]
fn per_channel_clip_levels_learn_per_channel() {
    let device = Device::flex().autodiff();
    device.seed(5);
    let params =
        LearnableFakeQuantParams { axis: Some(1), quant_min: 0, quant_max: 15, grad_factor: 1.0, scale_gradient: ScaleGradient::Clipped };
    let x = Tensor::<2>::random([50, 3], Distribution::Normal(0.5, 2.0), &device);
    let dy = Tensor::<2>::random([50, 3], Distribution::Normal(0.0, 1.0), &device);
    let scales = [0.1f32, 0.2, 0.4];
    let sg = vector(scales.to_vec(), &device).require_grad();
    let y = fake_quantize_learnable(x.clone(), sg.clone(), vector(vec![0.0; 3], &device), &params).unwrap();
    let ds = to_vec(&sg.grad(&(y * dy.clone()).sum().backward()).unwrap());
    let (xv, dyv) = (to_vec(&x), to_vec(&dy));
    for (c, &s) in scales.iter().enumerate() {
        let column = |v: &[f32]| v.iter().skip(c).step_by(3).copied().collect::<Vec<_>>();
        let expected = pact_scale_gradient(&column(&xv), &column(&dyv), s, 0, 0, 15, 1.0);
        assert!((ds[c] as f64 - expected).abs() <= 1e-5 * expected.abs().max(1.0), "channel {c}: {} vs {expected}", ds[c]);
    }
}

/// With its factor `1 / (quant_max - quant_min)^2`, one SGD step on the scale moves the clip
/// level `α = s * quant_max` (zero point 0) exactly as PACT's step on α: `-lr * sum(dL/dy over
/// x >= α)`.
#[test]
fn an_sgd_step_moves_the_clip_level_by_pacts_step() {
    let device = Device::flex().autodiff();
    device.seed(11);
    let observer = ObserverConfig::min_max().with_quant_range(0, 15);
    let mut fq = FakeQuantizeConfig::pact(observer).unwrap().init().unwrap();
    fq.enable_static_estimate();
    let first = Tensor::<2>::random([16, 8], Distribution::Uniform(0.0, 3.0), &device);
    fq.forward(first).unwrap();
    fq.enable_param_learning();
    let (scale_before, zero_point) = fq.learned_values().unwrap();
    assert_eq!(zero_point, vec![0.0], "ReLU-like data: the clip range starts at 0");
    let alpha_before = scale_before[0] as f64 * 15.0;

    let x = Tensor::<2>::random([16, 8], Distribution::Uniform(0.0, 4.5), &device);
    let w = Tensor::<2>::random([16, 8], Distribution::Normal(0.0, 1.0), &device);
    let y = fq.forward(x.clone()).unwrap();
    let grads = GradientsParams::from_grads((y * w.clone()).sum().backward(), &fq);
    let lr = 0.01;
    let fq = SgdConfig::new().init().step(lr, fq, grads);
    let alpha_after = fq.learned_values().unwrap().0[0] as f64 * 15.0;

    let s = scale_before[0];
    let pact_gradient: f64 = to_vec(&x).iter().zip(to_vec(&w)).filter(|(x, _)| (**x / s).round() > 15.0).map(|(_, w)| w as f64).sum();
    let expected = alpha_before - lr * pact_gradient;
    assert!((alpha_after - expected).abs() < 1e-5 * alpha_before, "α {alpha_before} -> {alpha_after}, PACT's step gives {expected}");
    assert!((alpha_after - alpha_before).abs() > 1e-4, "the step moved α");
}

#[test]
fn pact_is_for_activations_and_weights_choose_their_own() {
    let q = QConfigBuilder::new().activation_bits(4).weight_bits(4).quantizer(Quantizer::Pact).build().unwrap();
    assert_eq!(q.activation.variant, FakeQuantizeVariant::Learnable { gradient: LearnedGradient::Pact, learn_zero_point: false });
    assert!(!matches!(q.weight.variant, FakeQuantizeVariant::Learnable { .. }), "weights stay fixed: {:?}", q.weight.variant);

    let q = QConfigBuilder::new().quantizer(Quantizer::Pact).weight_quantizer(Quantizer::Lsq).build().unwrap();
    assert_eq!(q.weight.variant, FakeQuantizeVariant::Learnable { gradient: LearnedGradient::LsqScaled, learn_zero_point: false });

    let err = QConfigBuilder::new().weight_quantizer(Quantizer::Pact).build().unwrap_err();
    assert!(err.to_string().contains("PACT learns an activation clip level"), "{err}");
    let symmetric = ObserverConfig::min_max().with_qscheme(QScheme::PerTensorSymmetric);
    assert!(FakeQuantizeConfig::pact(symmetric).is_err());
    assert!(QConfigBuilder::new().quantizer(Quantizer::Pact).symmetric_activations().build().is_err());
}
