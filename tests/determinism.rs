//! The same seed and thread count give bit-identical training (issue 6): two QAT runs of the
//! small residual CNN, float pretraining included, end with equal state dicts.

mod common;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::nn::{PaddingMode, QatModule};
use burn_qat::qconfig::QConfig;
use burn_qat::state_dict::{SaveStateDict, StateDict};
use burn_qat::workflow::prepare_qat;
use common::*;

fn run(seed: u64) -> StateDict {
    let device = Device::flex().autodiff();
    device.seed(seed);
    let mut float = small_cnn(&device, PaddingMode::Zeros);
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for _ in 0..3 {
        let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
        let loss = float.forward(x).unwrap().into_features(&device).unwrap().powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &float);
        float = optim.step(0.01, float, grads);
    }
    let mut qat = prepare_qat(float.fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..4 {
        if step == 3 {
            qat.freeze_bn_stats();
            qat.disable_observer();
        }
        let x = Tensor::<4>::random([8, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
        let loss = qat.forward(x).unwrap().into_features(&device).unwrap().powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &qat);
        qat = optim.step(0.01, qat, grads);
    }
    qat.state_dict()
}

#[test]
fn same_seed_same_bits() {
    let _serial = serial();
    let (a, b) = (run(5), run(5));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (key, value) in &a {
        assert_eq!(value, &b[key], "{key} differs between two runs with the same seed");
    }
    let c = run(6);
    assert_ne!(a, c, "a different seed trains a different model");
}
