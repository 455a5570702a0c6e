//! Float fused containers (`torch.ao.nn.intrinsic`): what fusion produces from a float model
//! and what `prepare_qat` swaps for the QAT modules. They compute exactly what their parts do.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::error::Result;
use crate::nn::tensor_util::{host_tensor, weight_channel_shape};
use crate::nn::{BatchNorm, float};

/// Conv2d then BatchNorm2d.
#[derive(Module, Debug)]
pub struct ConvBn2d {
    pub conv: float::Conv2d,
    pub bn: BatchNorm,
}

/// Conv2d, BatchNorm2d, then ReLU.
#[derive(Module, Debug)]
pub struct ConvBnReLU2d {
    pub conv: float::Conv2d,
    pub bn: BatchNorm,
}

/// Conv2d then ReLU.
#[derive(Module, Debug)]
pub struct ConvReLU2d {
    pub conv: float::Conv2d,
}

/// BatchNorm2d then ReLU, where no conv precedes the BN (`torch.ao.nn.intrinsic.BNReLU2d`).
#[derive(Module, Debug)]
pub struct BNReLU2d {
    pub bn: BatchNorm,
}

impl BNReLU2d {
    pub fn forward(&mut self, x: Tensor<4>) -> Result<Tensor<4>> {
        Ok(relu(self.bn.forward(x, "BNReLU2d")?))
    }
}

/// Linear then BatchNorm1d.
#[derive(Module, Debug)]
pub struct LinearBn1d {
    pub linear: float::Linear,
    pub bn: BatchNorm,
}

impl LinearBn1d {
    pub fn forward(&mut self, x: Tensor<2>) -> Result<Tensor<2>> {
        self.bn.forward(self.linear.forward(x)?, "LinearBn1d")
    }
}

/// Linear then ReLU.
#[derive(Module, Debug)]
pub struct LinearReLU {
    pub linear: float::Linear,
}

impl ConvBn2d {
    pub fn forward(&mut self, x: Tensor<4>) -> Result<Tensor<4>> {
        self.bn.forward(self.conv.forward(x)?, "ConvBn2d")
    }

    /// BN folded into the conv with the running statistics (inference fusion).
    pub fn fold(&self) -> float::Conv2d {
        fuse_conv_bn_weights(&self.conv, &self.bn)
    }
}

impl ConvBnReLU2d {
    pub fn forward(&mut self, x: Tensor<4>) -> Result<Tensor<4>> {
        Ok(relu(self.bn.forward(self.conv.forward(x)?, "ConvBnReLU2d")?))
    }
}

impl ConvReLU2d {
    pub fn forward(&self, x: Tensor<4>) -> Result<Tensor<4>> {
        Ok(relu(self.conv.forward(x)?))
    }
}

impl LinearReLU {
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        Ok(relu(self.linear.forward(x)?))
    }
}

/// PyTorch `fuse_conv_bn_weights` with the running statistics:
/// `W' = W * gamma * rsqrt(rv + eps)`, `b' = (b - rm) * rsqrt(rv + eps) * gamma + beta`.
pub fn fuse_conv_bn_weights(conv: &float::Conv2d, bn: &BatchNorm) -> float::Conv2d {
    let c = conv.options.out_channels;
    let w = conv.weight.val();
    let rsqrt: Tensor<1> = host_tensor(bn.running_std().iter().map(|s| 1.0 / s).collect(), [c], &w);
    let mean: Tensor<1> = host_tensor(bn.running_mean().to_vec(), [c], &w);
    let gamma = bn.weight.val();
    let weight = w.clone() * (gamma.clone() * rsqrt.clone()).reshape(weight_channel_shape::<4>(c));
    let bias = conv.bias.as_ref().map(Param::val).unwrap_or_else(|| Tensor::zeros([c], &w.device()));
    let bias = (bias - mean) * rsqrt * gamma + bn.bias.val();
    float::Conv2d {
        weight: Param::from_tensor(weight.detach()),
        bias: Some(Param::from_tensor(bias.detach())),
        options: conv.options.clone(),
    }
}
