//! Plain float Conv2d and Linear with PyTorch's weight layout: what `to_float` returns and
//! `from_float` takes.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::module::linear;

use super::ConvGeometry;
use super::tensor_util::uniform_param;
use crate::error::{QatError, Result};

/// A float convolution of any geometry (PyTorch's `nn.Conv1d`, `nn.Conv2d`, `nn.Conv3d`,
/// `nn.ConvTranspose2d`), weight `[out, in / groups, k...]` (`[in, out / groups, k...]` when
/// transposed).
#[derive(Module, Debug)]
pub struct ConvNd<const D: usize, O: ConvGeometry<D>> {
    pub weight: Param<Tensor<D>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub options: O,
}

per_geometry!(ConvNd: Conv1d, Conv2d, Conv3d, ConvTranspose2d);

impl<const D: usize, O: ConvGeometry<D>> ConvNd<D, O> {
    /// PyTorch's default init: weight and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn new(options: O, bias: bool, device: &burn::tensor::Device) -> Result<Self> {
        options.validate()?;
        let bound = 1.0 / (options.fan_in() as f64).sqrt();
        let weight = uniform_param(options.weight_shape(), -bound, bound, device);
        let bias = bias.then(|| uniform_param([options.out_channels()], -bound, bound, device));
        Ok(Self { weight, bias, options })
    }

    pub fn forward(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.options.check_input(x.dims(), &format!("{}{}", O::PREFIX, O::DIMS))?;
        Ok(self.options.forward(x, self.weight.val(), self.bias.as_ref().map(Param::val)))
    }
}

/// A float linear layer, weight `[out_features, in_features]` as in PyTorch.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
}

impl Linear {
    pub fn new(in_features: usize, out_features: usize, bias: bool, device: &burn::tensor::Device) -> Result<Self> {
        let (weight, bias) = default_linear_params(in_features, out_features, bias, device)?;
        Ok(Self { weight, bias })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>> {
        linear_forward(x, self.weight.val(), self.bias.as_ref().map(Param::val), "Linear")
    }
}

pub(crate) fn default_linear_params(
    in_features: usize,
    out_features: usize,
    bias: bool,
    device: &burn::tensor::Device,
) -> Result<(Param<Tensor<2>>, Option<Param<Tensor<1>>>)> {
    if in_features == 0 || out_features == 0 {
        let field = if in_features == 0 { "in_features" } else { "out_features" };
        return Err(QatError::invalid(field, format!("in_features ({in_features}) and out_features ({out_features}) must be positive")));
    }
    let bound = 1.0 / (in_features as f64).sqrt();
    let weight = uniform_param([out_features, in_features], -bound, bound, device);
    let bias = bias.then(|| uniform_param([out_features], -bound, bound, device));
    Ok((weight, bias))
}

/// `x @ weight^T + bias` for `[..., in]` input and a PyTorch-layout `[out, in]` weight.
pub(crate) fn linear_forward<const D: usize>(x: Tensor<D>, weight: Tensor<2>, bias: Option<Tensor<1>>, layer: &str) -> Result<Tensor<D>> {
    let in_features = weight.dims()[1];
    let dims = x.dims();
    if dims[D - 1] != in_features {
        return Err(QatError::shape(layer, format!("input [..., {in_features}]"), format!("{dims:?}")));
    }
    Ok(linear(x, weight.transpose(), bias))
}
