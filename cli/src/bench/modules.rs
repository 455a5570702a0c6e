//! One fused QAT module, forward then backward, in training mode (batch statistics, observers
//! and fake quant on): `convbnrelu2d`, `dwconvbnrelu2d`, `linearrelu`.
//!
//! Each timed run is `y = m(x)`, then `y.sum().backward()`, which computes the gradients of the
//! input and of every parameter (checked once before timing). The qconfig is PyTorch's
//! `get_default_qat_qconfig("fbgemm", 1)`: per-channel weight fake quant with its moving-average
//! observer, and for the conv cases the output fake quant `prepare_qat` attaches.

use burn::module::Param;
use burn::tensor::{Distribution, Gradients, Tensor};

use super::{BenchOptions, BenchResult, measure, train_device};
use burn_qat::error::{QatError, Result};
use burn_qat::nn::Conv2dOptions;
use burn_qat::nn::intrinsic::qat::ConvBn2dConfig;
use burn_qat::nn::qat::LinearConfig;
use burn_qat::qconfig::get_default_qat_qconfig;

fn require<const D: usize>(t: &Tensor<D>, grads: &Gradients, what: &str) -> Result<()> {
    match t.grad(grads) {
        Some(_) => Ok(()),
        None => Err(QatError::structure("bench", format!("the backward pass gave no gradient for {what}"))),
    }
}

fn require_param<const D: usize>(p: &Param<Tensor<D>>, grads: &Gradients, what: &str) -> Result<()> {
    require(&p.val(), grads, what)
}

/// ConvBnReLU2d, N=32, 64 -> 64 channels, 32x32, 3x3, padding 1, no conv bias (PyTorch's
/// default), with `groups` (1: dense, 64: depthwise); output fake quant attached.
pub fn convbnrelu2d(case: &str, groups: usize, options: BenchOptions) -> Result<BenchResult> {
    let device = train_device(&options)?;
    let qconfig = get_default_qat_qconfig("fbgemm", 1)?;
    let conv = Conv2dOptions::new(64, 64, 3).with_padding(1).with_groups(groups);
    let mut m = ConvBn2dConfig::new(conv, qconfig).init_relu(&device)?.with_output_fake_quant()?;
    let x = Tensor::<4>::random([32, 64, 32, 32], Distribution::Normal(0.0, 1.0), &device).require_grad();

    let grads = m.forward(x.clone())?.sum().backward();
    require(&x, &grads, "the input")?;
    require_param(&m.weight, &grads, "the conv weight")?;
    require_param(&m.bn.weight, &grads, "gamma")?;
    require_param(&m.bn.bias, &grads, "beta")?;

    measure(case, options, || {
        let _grads = m.forward(x.clone())?.sum().backward();
        Ok(())
    })
}

/// LinearReLU 1024 -> 1024 with bias on a [128, 1024] input (no output fake quant: the module
/// alone, as PyTorch's `nniqat.LinearReLU` before `prepare_qat`).
pub fn linearrelu(case: &str, options: BenchOptions) -> Result<BenchResult> {
    let device = train_device(&options)?;
    let qconfig = get_default_qat_qconfig("fbgemm", 1)?;
    let mut m = LinearConfig::new(1024, 1024, qconfig).init_relu(&device)?;
    let x = Tensor::<2>::random([128, 1024], Distribution::Normal(0.0, 1.0), &device).require_grad();

    let grads = m.forward(x.clone())?.sum().backward();
    require(&x, &grads, "the input")?;
    require_param(&m.weight, &grads, "the weight")?;
    if let Some(bias) = &m.bias {
        require_param(bias, &grads, "the bias")?;
    }

    measure(case, options, || {
        let _grads = m.forward(x.clone())?.sum().backward();
        Ok(())
    })
}
