use super::{ConvBnNd, ConvBnReLUNd};
use crate::error::Result;
use crate::nn::{Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvGeometry, ConvTranspose2dOptions};
use crate::qconfig::QConfig;

/// The constructor arguments of PyTorch's `ConvBn2d` / `ConvBnReLU2d` (and 3-d), with its
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

/// [`ConvBnConfig`] for 1-d convs.
pub type ConvBn1dConfig = ConvBnConfig<3, Conv1dOptions>;

/// [`ConvBnConfig`] for 2-d convs.
pub type ConvBn2dConfig = ConvBnConfig<4, Conv2dOptions>;

/// [`ConvBnConfig`] for 3-d convs.
pub type ConvBn3dConfig = ConvBnConfig<5, Conv3dOptions>;

/// [`ConvBnConfig`] for 2-d transposed convs.
pub type ConvTransposeBn2dConfig = ConvBnConfig<4, ConvTranspose2dOptions>;

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
