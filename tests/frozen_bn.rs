//! A batch norm with frozen statistics against PyTorch's BatchNorm2d in eval mode
//! (tools/golden/frozen_bn.py), with running means 1e2 to 1e5 standard deviations from zero:
//! gamma's gradient must be formed as `sum(g * (x - mean)) / std` as PyTorch forms it, not as
//! `(sum(g * x) - mean * sum(g)) / std`, which cancels (1e-3 relative error at 1e4).

mod common;

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use burn_qat::nn::BatchNorm;
use common::*;

#[test]
fn frozen_statistics_give_pytorchs_output_and_gradients_far_from_zero_mean() {
    let (g, _) = load_golden("frozen_bn.safetensors");
    let device = Device::flex().autodiff();
    let mut bn = BatchNorm::new(4, 1e-5, Some(0.1), &device).unwrap();
    bn.weight = Param::from_tensor(tensor::<1>(&g, "weight", &device).require_grad());
    bn.bias = Param::from_tensor(tensor::<1>(&g, "bias", &device).require_grad());
    let widen = |key: &str| f32s(&g, key).into_iter().map(f64::from).collect::<Vec<_>>();
    bn.set_running_stats(widen("running_mean"), widen("running_var")).unwrap();
    bn.freeze_stats();

    let x: Tensor<4> = tensor::<4>(&g, "x", &device).require_grad();
    let y = bn.forward(x.clone(), "bn").unwrap();
    let grads = (y.clone() * tensor::<4>(&g, "grad_output", &device)).sum().backward();
    // The forward is `x * alpha + (beta - mean * alpha)`, rounded at each step; PyTorch's CPU
    // kernel fuses both steps into FMAs (checked in numpy: bit-equal). Far from zero mean the
    // unfused form loses the low bits of `x * alpha` (|x * alpha| up to 4e4 here: ulp 0.004).
    let (xs, weight, var) = (f32s(&g, "x"), f32s(&g, "weight"), f32s(&g, "running_var"));
    let alpha: Vec<f32> = (0..4).map(|c| weight[c] / (var[c] + 1e-5).sqrt()).collect();
    let magnitude = xs.iter().enumerate().fold(0f32, |m, (i, v)| m.max((v * alpha[(i / 25) % 4]).abs()));
    assert_close("y", &to_vec(&y), &f32s(&g, "y"), 0.0, 2.0 * magnitude * f32::EPSILON);
    assert_close("grad x", &to_vec(&x.grad(&grads).unwrap()), &f32s(&g, "grad_x"), 1e-6, 1e-6);
    assert_close("grad beta", &to_vec(&bn.bias.val().grad(&grads).unwrap()), &f32s(&g, "grad_bias"), 1e-6, 1e-6);
    // Sums of 150 terms in another order: a few ulps. The cancelling form was 1e-3 off.
    assert_close("grad gamma", &to_vec(&bn.weight.val().grad(&grads).unwrap()), &f32s(&g, "grad_weight"), 1e-5, 0.0);
}
