//! Float fused containers (`torch.ao.nn.intrinsic`): what fusion produces from a float model
//! and what `prepare_qat` swaps for the QAT modules. They compute exactly what their parts do.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::error::Result;
use crate::nn::tensor_util::{host_tensor, weight_axis_shape};
use crate::nn::{BatchNorm, ConvGeometry, float};

/// A conv then its batch norm (`ConvBn2d`, `ConvBn3d`).
#[derive(Module, Debug)]
pub struct ConvBnNd<const D: usize, O: ConvGeometry<D>> {
    pub conv: float::ConvNd<D, O>,
    pub bn: BatchNorm,
}

/// A conv, its batch norm, then ReLU (`ConvBnReLU2d`, `ConvBnReLU3d`).
#[derive(Module, Debug)]
pub struct ConvBnReLUNd<const D: usize, O: ConvGeometry<D>> {
    pub conv: float::ConvNd<D, O>,
    pub bn: BatchNorm,
}

/// A conv then ReLU (`ConvReLU2d`, `ConvReLU3d`).
#[derive(Module, Debug)]
pub struct ConvReLUNd<const D: usize, O: ConvGeometry<D>> {
    pub conv: float::ConvNd<D, O>,
}

per_geometry!(ConvBnNd: ConvBn1d, ConvBn2d, ConvBn3d, ConvTransposeBn2d);
per_geometry!(ConvBnReLUNd: ConvBnReLU1d, ConvBnReLU2d, ConvBnReLU3d, ConvTransposeBnReLU2d);
per_geometry!(ConvReLUNd: ConvReLU1d, ConvReLU2d, ConvReLU3d, ConvTransposeReLU2d);

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

impl<const D: usize, O: ConvGeometry<D>> ConvBnNd<D, O> {
    pub fn forward(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.bn.forward(self.conv.forward(x)?, &format!("{}Bn{}", O::PREFIX, O::DIMS))
    }

    /// BN folded into the conv with the running statistics (inference fusion).
    pub fn fold(&self) -> float::ConvNd<D, O> {
        fuse_conv_bn_weights(&self.conv, &self.bn)
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvBnReLUNd<D, O> {
    pub fn forward(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        Ok(relu(self.bn.forward(self.conv.forward(x)?, &format!("{}BnReLU{}", O::PREFIX, O::DIMS))?))
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvReLUNd<D, O> {
    pub fn forward(&self, x: Tensor<D>) -> Result<Tensor<D>> {
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
pub fn fuse_conv_bn_weights<const D: usize, O: ConvGeometry<D>>(conv: &float::ConvNd<D, O>, bn: &BatchNorm) -> float::ConvNd<D, O> {
    let c = conv.options.out_channels();
    let w = conv.weight.val();
    let rsqrt: Tensor<1> = host_tensor(bn.running_std().iter().map(|s| 1.0 / s).collect(), [c], &w);
    let mean: Tensor<1> = host_tensor(bn.running_mean().to_vec(), [c], &w);
    let gamma = bn.weight.val();
    let weight = w.clone() * (gamma.clone() * rsqrt.clone()).reshape(weight_axis_shape::<D>(c, O::WEIGHT_CHANNEL_AXIS));
    let bias = conv.bias.as_ref().map(Param::val).unwrap_or_else(|| Tensor::zeros([c], &w.device()));
    let bias = (bias - mean) * rsqrt * gamma + bn.bias.val();
    float::ConvNd {
        weight: Param::from_tensor(weight.detach()),
        bias: Some(Param::from_tensor(bias.detach())),
        options: conv.options.clone(),
    }
}
