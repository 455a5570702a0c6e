//! PyTorch's `test_conv_bn_relu` in float64 with fake quant disabled: ConvBn2d and ConvBnReLU2d
//! against PyTorch's modules over two iterations, outputs, every gradient and the BN buffers
//! to atol 1e-10 (PyTorch's own tolerance). Both BN foldings must pass: with fake quant off they
//! are the same function.

mod common;

use burn::tensor::{Device, Tensor};
use burn_qat::nn::intrinsic::qat::{BnFolding, ConvBn2d, ConvBn2dConfig};
use burn_qat::nn::{Conv2dOptions, PaddingMode, QatModule};
use burn_qat::qconfig::get_default_qat_qconfig;
use burn_qat::state_dict::{LoadStateDict, NamedParameters, SaveStateDict, StateDict};
use common::*;
use serde_json::Value;

const ATOL: f64 = 1e-10;

fn prefixed(g: &StateDict, prefix: &str) -> StateDict {
    g.iter().filter_map(|(k, v)| k.strip_prefix(prefix).map(|k| (k.to_string(), v.clone()))).collect()
}

fn build(c: &Value, device: &Device) -> ConvBn2d {
    let u = |k: &str| c[k].as_u64().unwrap() as usize;
    let pair = |k: &str| [c[k][0].as_u64().unwrap() as usize, c[k][1].as_u64().unwrap() as usize];
    let options = Conv2dOptions::new(u("in_channels"), u("out_channels"), pair("kernel_size"))
        .with_stride(u("stride"))
        .with_padding(u("padding"))
        .with_groups(u("groups"))
        .with_padding_mode(PaddingMode::parse(c["padding_mode"].as_str().unwrap()).unwrap());
    ConvBn2dConfig::new(options, get_default_qat_qconfig("fbgemm", 0).unwrap())
        .with_bias(c["has_bias"].as_bool().unwrap())
        .with_eps(c["eps"].as_f64().unwrap())
        .with_momentum(Some(c["momentum"].as_f64().unwrap()))
        .with_freeze_bn(c["freeze_bn"].as_bool().unwrap())
        .init(device)
        .unwrap()
}

fn run(folding: BnFolding) {
    let device = Device::flex().autodiff();
    let (g, meta) = load_golden("conv_bn_f64.safetensors");
    let mut n = 0;
    for i in 0.. {
        let Some(config) = meta.get(&format!("c{i}")) else {
            break;
        };
        n += 1;
        let c: Value = serde_json::from_str(config).unwrap();
        let label = format!("c{i} {folding:?} {c}");
        let mut m = build(&c, &device).with_folding(folding);
        m.load_state_dict(&prefixed(&g, &format!("c{i}/init/"))).unwrap();
        m.disable_fake_quant();
        let relu = c["use_relu"].as_bool().unwrap();
        for it in 0..c["iters"].as_u64().unwrap() {
            let at = |k: &str| format!("c{i}/iter{it}/{k}");
            let x: Tensor<4> = tensor_f64::<4>(&g, &at("input"), &device).require_grad();
            let y = m.forward(x.clone()).unwrap();
            let y = if relu { burn::tensor::activation::relu(y) } else { y };
            assert_close_f64(&format!("{label} iter {it} output"), &to_vec_f64(&y), &f64s(&g, &at("output")), ATOL);
            let grads = (y * tensor_f64::<4>(&g, &at("dy"), &device)).sum().backward();
            assert_close_f64(
                &format!("{label} iter {it} input grad"),
                &to_vec_f64(&x.grad(&grads).unwrap()),
                &f64s(&g, &at("input_grad")),
                ATOL,
            );
            let check = |name: &str, t: Option<Tensor<1>>| {
                assert_close_f64(
                    &format!("{label} iter {it} grad {name}"),
                    &to_vec_f64(&t.unwrap()),
                    &f64s(&g, &at(&format!("grad/{name}"))),
                    ATOL,
                )
            };
            check("bn.weight", m.bn.weight.val().grad(&grads));
            check("bn.bias", m.bn.bias.val().grad(&grads));
            let wg = m.weight.val().grad(&grads).unwrap();
            assert_close_f64(&format!("{label} iter {it} grad weight"), &to_vec_f64(&wg), &f64s(&g, &at("grad/weight")), ATOL);
            if let Some(b) = &m.bias {
                check("bias", b.val().grad(&grads));
            }
            assert_close_f64(&format!("{label} iter {it} running_mean"), m.bn.running_mean(), &f64s(&g, &at("running_mean")), ATOL);
            assert_close_f64(&format!("{label} iter {it} running_var"), m.bn.running_var(), &f64s(&g, &at("running_var")), ATOL);
            assert_eq!(m.bn.num_batches_tracked() as f64, f64s(&g, &at("num_batches_tracked"))[0], "{label}");
        }
    }
    assert!(n >= 6, "expected 6 cases, found {n}");
}

#[test]
fn approximate_folding_matches_pytorch_in_f64() {
    run(BnFolding::Approximate);
}

#[test]
fn exact_folding_matches_pytorch_in_f64() {
    run(BnFolding::Exact);
}

/// `named_parameters()` and the gradients under those names: the keys are PyTorch's own (the
/// fixture's `grad/<name>` entries were written from `m.named_parameters()`), the values its
/// gradients, for every case with and without a conv bias.
#[test]
fn named_gradients_are_pytorchs_named_parameters_grads() {
    let device = Device::flex().autodiff();
    let (g, meta) = load_golden("conv_bn_f64.safetensors");
    let mut cases = 0;
    while let Some(config) = meta.get(&format!("c{cases}")) {
        let (c, i): (Value, usize) = (serde_json::from_str(config).unwrap(), cases);
        cases += 1;
        let mut m = build(&c, &device);
        m.load_state_dict(&prefixed(&g, &format!("c{i}/init/"))).unwrap();
        m.disable_fake_quant();
        let pytorch = prefixed(&g, &format!("c{i}/iter0/grad/"));
        let names = |s: &StateDict| s.keys().cloned().collect::<Vec<_>>();
        assert_eq!(names(&m.named_parameters()), names(&pytorch), "c{i}: the parameters' names");
        assert_eq!(m.named_parameters()["bn.weight"], m.state_dict()["bn.weight"], "c{i}: a parameter's value is its state-dict value");

        let x: Tensor<4> = tensor_f64::<4>(&g, &format!("c{i}/iter0/input"), &device).require_grad();
        let y = m.forward(x).unwrap();
        let y = if c["use_relu"].as_bool().unwrap() { burn::tensor::activation::relu(y) } else { y };
        let grads = (y * tensor_f64::<4>(&g, &format!("c{i}/iter0/dy"), &device)).sum().backward();
        let ours = m.named_gradients(&grads);
        assert_eq!(names(&ours), names(&pytorch), "c{i}: the gradients' names");
        for (name, value) in &ours {
            assert_close_f64(&format!("c{i} grad {name}"), &f64s(&ours, name), &f64s(&pytorch, name), ATOL);
            assert_eq!(value.shape, pytorch[name].shape, "c{i} grad {name}");
        }
    }
    assert!(cases >= 6, "expected 6 cases, found {cases}");
}
