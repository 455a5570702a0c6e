//! A hand-written `#[derive(Module)]` model built from the QAT modules directly
//! (`models::QatLeNet`), without the workflow: it trains with a burn optimizer, takes the
//! model-wide switches, and round-trips its state dict.

mod common;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::models::QatLeNet;
use burn_qat::nn::QatModule;
use burn_qat::qconfig::QConfig;
use burn_qat::state_dict::{LoadStateDict, SaveStateDict};
use common::*;

#[test]
fn a_custom_struct_trains_switches_and_reloads() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(9);
    let qconfig = QConfig::consistent("fbgemm").unwrap();
    let mut model = QatLeNet::new(&qconfig, &device).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..3 {
        if step == 2 {
            model.freeze_bn_stats();
            model.disable_observer();
        }
        let x = Tensor::<4>::random([4, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
        let loss = model.forward(x).unwrap().powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    assert!(model.fake_quants_mut().iter().all(|fq| !fq.is_observer_enabled()), "the switch reaches every fake quant");
    assert!(model.conv1.is_bn_frozen() && model.conv2.is_bn_frozen());

    let state = model.state_dict();
    assert!(state.contains_key("quant.activation_post_process.scale") && state.contains_key("conv2.bn.running_var"));
    let mut fresh = QatLeNet::new(&qconfig, &device).unwrap();
    fresh.load_state_dict(&state).unwrap();
    model.set_training(false);
    fresh.set_training(false);
    fresh.disable_observer();
    let x = Tensor::<4>::random([2, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    assert_bits_eq("reloaded custom model", &to_vec(&fresh.forward(x.clone()).unwrap()), &to_vec(&model.forward(x).unwrap()));
}
