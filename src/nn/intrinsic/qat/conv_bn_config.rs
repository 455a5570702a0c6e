use super::{ConvBnNd, ConvBnReLUNd};
use crate::error::Result;
use crate::nn::ConvGeometry;
use crate::qconfig::QConfig;

/// The constructor arguments of PyTorch's `ConvBn2d` / `ConvBnReLU2d` (and 1-d, 3-d, transposed), with its
/// defaults: no conv bias, `eps = 1e-5`, `momentum = 0.1`, `freeze_bn = false`.
#[derive(Clone, Debug)]
pub struct ConvBnConfig<const D: usize, O: ConvGeometry<D>> {
    pub conv: O,
    pub bias: bool,
    pub eps: f64,
    /// `None`: a cumulative average of the batch statistics.
    pub momentum: Option<f64>,
    pub freeze_bn: bool,
    pub qconfig: QConfig,
}

per_geometry!(ConvBnConfig: ConvBn1dConfig, ConvBn2dConfig, ConvBn3dConfig, ConvTransposeBn2dConfig);

impl<const D: usize, O: ConvGeometry<D>> ConvBnConfig<D, O> {
    pub fn new(conv: O, qconfig: QConfig) -> Self {
        Self { conv, bias: false, eps: 1e-5, momentum: Some(0.1), freeze_bn: false, qconfig }
    }

    setters! {
        with_bias => bias: bool,
        with_eps => eps: f64,
        with_momentum => momentum: Option<f64>,
        with_freeze_bn => freeze_bn: bool,
    }

    pub fn init(&self, device: &burn::tensor::Device) -> Result<ConvBnNd<D, O>> {
        ConvBnNd::new(self, device)
    }

    pub fn init_relu(&self, device: &burn::tensor::Device) -> Result<ConvBnReLUNd<D, O>> {
        Ok(ConvBnReLUNd { inner: ConvBnNd::new(self, device)? })
    }
}
