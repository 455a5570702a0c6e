//! ConvTransposeBn2d / ConvTransposeBnReLU2d (beyond PyTorch, which has no QAT ConvTranspose)
//! against tools/golden/conv_transpose_bn.py: with fake quant off, PyTorch's float
//! ConvTranspose2d -> BatchNorm2d (-> ReLU) in train and eval mode; with it on, the folded
//! weight and its per-channel fake quant along weight axis 1, computed by hand in PyTorch.

mod common;

use burn::tensor::{Device, Tensor};
use burn_qat::nn::intrinsic::qat::{ConvBnNd, ConvTransposeBn2dConfig};
use burn_qat::nn::{ConvTranspose2dOptions, QatModule};
use burn_qat::qconfig::QConfig;
use burn_qat::state_dict::{LoadStateDict, SaveStateDict, StateDict};
use common::*;
use serde_json::Value;

fn pair(c: &Value, k: &str) -> [usize; 2] {
    [c[k][0].as_u64().unwrap() as usize, c[k][1].as_u64().unwrap() as usize]
}

/// The module for case `t{i}`, its weights and BN state from the fixture (fake-quant state kept
/// as constructed).
fn build(g: &StateDict, c: &Value, i: usize, device: &Device) -> ConvBnNd<4, ConvTranspose2dOptions> {
    let options = ConvTranspose2dOptions::new(
        c["in_channels"].as_u64().unwrap() as usize,
        c["out_channels"].as_u64().unwrap() as usize,
        pair(c, "kernel_size"),
    )
    .with_stride(pair(c, "stride"))
    .with_padding(pair(c, "padding"))
    .with_output_padding(pair(c, "output_padding"));
    let mut m = ConvTransposeBn2dConfig::new(options, QConfig::consistent("fbgemm").unwrap())
        .with_bias(c["bias"].as_bool().unwrap())
        .init(device)
        .unwrap();
    let mut state = m.state_dict();
    for (k, v) in g.iter().filter_map(|(k, v)| k.strip_prefix(&format!("t{i}/init/")).map(|k| (k, v))) {
        state.insert(k.to_string(), v.clone());
    }
    m.load_state_dict(&state).unwrap();
    m
}

#[test]
fn with_fake_quant_off_it_is_conv_transpose_then_batch_norm() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let (g, meta) = load_golden("conv_transpose_bn.safetensors");
    for i in 0..4 {
        let c: Value = serde_json::from_str(&meta[&format!("t{i}")]).unwrap();
        let mut m = build(&g, &c, i, &device);
        m.disable_fake_quant();
        let relu = c["relu"].as_bool().unwrap();
        for it in 0..2 {
            let at = |k: &str| format!("t{i}/iter{it}/{k}");
            let x: Tensor<4> = tensor::<4>(&g, &at("input"), &device).require_grad();
            let y = m.forward(x.clone()).unwrap();
            let y = if relu { burn::tensor::activation::relu(y) } else { y };
            assert_close(&format!("t{i} iter {it} output"), &to_vec(&y), &f32s(&g, &at("output")), 1e-5, 1e-5);
            let grads = (y * tensor::<4>(&g, &at("dy"), &device)).sum().backward();
            let scale =
                ["grad/weight", "grad/bn.weight", "grad/bn.bias"].iter().flat_map(|k| f32s(&g, &at(k))).fold(0.0f32, |a, v| a.max(v.abs()));
            let tol = 1e-6 + REDUCTION_NOISE * scale;
            assert_close(
                &format!("t{i} iter {it} input grad"),
                &to_vec(&x.grad(&grads).unwrap()),
                &f32s(&g, &at("input_grad")),
                1e-5,
                1e-5,
            );
            assert_close(
                &format!("t{i} iter {it} weight grad"),
                &to_vec(&m.weight.val().grad(&grads).unwrap()),
                &f32s(&g, &at("grad/weight")),
                1e-5,
                tol,
            );
            assert_close(
                &format!("t{i} iter {it} gamma grad"),
                &to_vec(&m.bn.weight.val().grad(&grads).unwrap()),
                &f32s(&g, &at("grad/bn.weight")),
                1e-5,
                tol,
            );
            assert_close(
                &format!("t{i} iter {it} beta grad"),
                &to_vec(&m.bn.bias.val().grad(&grads).unwrap()),
                &f32s(&g, &at("grad/bn.bias")),
                1e-5,
                tol,
            );
            let rm: Vec<f32> = m.bn.running_mean().iter().map(|&v| v as f32).collect();
            let rv: Vec<f32> = m.bn.running_var().iter().map(|&v| v as f32).collect();
            assert_close(&format!("t{i} iter {it} running_mean"), &rm, &f32s(&g, &at("running_mean")), 1e-5, 1e-6);
            assert_close(&format!("t{i} iter {it} running_var"), &rv, &f32s(&g, &at("running_var")), 1e-5, 1e-6);
        }
        m.eval();
        let y = m.forward(tensor(&g, &format!("t{i}/eval/input"), &device)).unwrap();
        let y = if relu { burn::tensor::activation::relu(y) } else { y };
        assert_close(&format!("t{i} eval output"), &to_vec(&y), &f32s(&g, &format!("t{i}/eval/output")), 1e-5, 1e-5);
    }
}

#[test]
fn the_weight_is_folded_and_fake_quantized_along_axis_1() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let (g, meta) = load_golden("conv_transpose_bn.safetensors");
    for i in 0..2 {
        let c: Value = serde_json::from_str(&meta[&format!("t{i}")]).unwrap();
        let mut m = build(&g, &c, i, &device);
        assert_eq!(m.weight_fake_quant.observer.ch_axis(), Some(1), "per-channel weight quantization follows the output channel");
        let folded = m.folded_weight_tensor();
        assert_bits_eq(&format!("t{i} folded weight"), &to_vec(&folded), &f32s(&g, &format!("t{i}/fq/w_fold")));
        // One training forward: the weight fake quant observes the folded weight for the first
        // time and takes its range as is (the forward then updates the running statistics, so
        // the fold is captured before it).
        m.forward(tensor(&g, &format!("t{i}/iter0/input"), &device)).unwrap();
        assert_bits_eq(&format!("t{i} weight scales"), &m.weight_fake_quant.qparams().scale, &f32s(&g, &format!("t{i}/fq/scale")));
        let w_fq = burn_qat::ops::fake_quantize(folded, &m.weight_fake_quant.fake_quant_params()).unwrap();
        assert_bits_eq(&format!("t{i} fake-quantized weight"), &to_vec(&w_fq), &f32s(&g, &format!("t{i}/fq/w_fq")));
    }
}
