use super::{ConvBn2d, ConvBnReLU2d};
use crate::error::Result;
use crate::nn::Conv2dOptions;
use crate::qconfig::QConfig;

/// The constructor arguments of PyTorch's `ConvBn2d` / `ConvBnReLU2d`, with its defaults:
/// no conv bias, `eps = 1e-5`, `momentum = 0.1`, `freeze_bn = false`.
#[derive(Clone, Debug)]
pub struct ConvBn2dConfig {
    pub conv: Conv2dOptions,
    pub bias: bool,
    pub eps: f64,
    /// `None`: a cumulative average of the batch statistics.
    pub momentum: Option<f64>,
    pub freeze_bn: bool,
    pub qconfig: QConfig,
}

impl ConvBn2dConfig {
    pub fn new(conv: Conv2dOptions, qconfig: QConfig) -> Self {
        Self { conv, bias: false, eps: 1e-5, momentum: Some(0.1), freeze_bn: false, qconfig }
    }

    pub fn with_bias(mut self, bias: bool) -> Self {
        self.bias = bias;
        self
    }

    pub fn with_eps(mut self, eps: f64) -> Self {
        self.eps = eps;
        self
    }

    pub fn with_momentum(mut self, momentum: Option<f64>) -> Self {
        self.momentum = momentum;
        self
    }

    pub fn with_freeze_bn(mut self, freeze_bn: bool) -> Self {
        self.freeze_bn = freeze_bn;
        self
    }

    pub fn init(&self, device: &burn::tensor::Device) -> Result<ConvBn2d> {
        ConvBn2d::new(self, device)
    }

    pub fn init_relu(&self, device: &burn::tensor::Device) -> Result<ConvBnReLU2d> {
        Ok(ConvBnReLU2d { inner: ConvBn2d::new(self, device)? })
    }
}
