use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::{OutputFakeQuant, in_layer};
use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::ConvGeometry;
use crate::nn::float;
use crate::qconfig::QConfig;

/// PyTorch's `torch.ao.nn.qat._ConvNd`: `conv(x, weight_fake_quant(W), bias)`, generic over the
/// geometry (`D` the tensor rank): `Conv1d`, `Conv2d`, `Conv3d` as `torch.ao.nn.qat`, and a
/// transposed `ConvTranspose2d` beyond it (weights fake quantized along axis 1).
#[derive(Module, Debug)]
pub struct ConvNd<const D: usize, O: ConvGeometry<D>> {
    pub weight: Param<Tensor<D>>,
    pub bias: Option<Param<Tensor<1>>>,
    #[module(skip)]
    pub options: O,
    pub weight_fake_quant: FakeQuantize,
    /// The output fake quant `prepare_qat` attaches; `None` until then.
    pub activation_post_process: Option<FakeQuantize>,
    #[module(skip)]
    pub qconfig: QConfig,
}

per_geometry!(ConvNd: Conv1d, Conv2d, Conv3d, ConvTranspose2d);

/// PyTorch's `Conv2d(..., bias=True, qconfig)` (and 1-d, 3-d, transposed): the geometry, whether
/// the conv has a bias (default true), and the qconfig.
#[derive(Clone, Debug)]
pub struct ConvConfig<const D: usize, O: ConvGeometry<D>> {
    pub conv: O,
    pub bias: bool,
    pub qconfig: QConfig,
}

per_geometry!(ConvConfig: Conv1dConfig, Conv2dConfig, Conv3dConfig, ConvTranspose2dConfig);

impl<const D: usize, O: ConvGeometry<D>> ConvConfig<D, O> {
    pub fn new(conv: O, qconfig: QConfig) -> Self {
        Self { conv, bias: true, qconfig }
    }

    setters! {
        with_bias => bias: bool,
    }

    /// The QAT conv with PyTorch's default init: weight and bias `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn init(&self, device: &burn::tensor::Device) -> Result<ConvNd<D, O>> {
        ConvNd::new(self, device)
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvNd<D, O> {
    /// [`ConvConfig::init`]: a float conv with PyTorch's default init, swapped for its QAT version.
    pub(crate) fn new(config: &ConvConfig<D, O>, device: &burn::tensor::Device) -> Result<Self> {
        Self::from_float(&float::ConvNd::new(config.conv.clone(), config.bias, device)?, config.qconfig.clone())
    }

    /// Attaches the output fake quant from the qconfig (what `prepare_qat` does).
    pub fn with_output_fake_quant(mut self) -> Result<Self> {
        self.activation_post_process = Some(self.qconfig.activation.init()?);
        Ok(self)
    }

    pub fn forward(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        let layer = format!("{}{}", O::PREFIX, O::DIMS);
        self.forward_with(x, false, &layer)
    }

    pub(crate) fn forward_with(&mut self, x: Tensor<D>, fused_relu: bool, layer: &str) -> Result<Tensor<D>> {
        self.options.check_input(x.dims(), layer)?;
        let weight = self.weight_fake_quant.forward(self.weight.val()).map_err(|e| in_layer(e, layer, "weight"))?;
        let y = self.options.forward(x, weight, self.bias.as_ref().map(Param::val));
        let y = if fused_relu { relu(y) } else { y };
        self.activation_post_process.apply(y, layer)
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvNd<D, O> {
    /// Swaps a float conv for its QAT version (sharing its parameters). Per-channel weight
    /// qparams run along the geometry's output-channel axis (1 for transposed convs).
    pub fn from_float(conv: &float::ConvNd<D, O>, qconfig: QConfig) -> Result<Self> {
        let qconfig = qconfig.with_weight_channel_axis(O::WEIGHT_CHANNEL_AXIS);
        Ok(Self {
            weight: conv.weight.clone(),
            bias: conv.bias.clone(),
            options: conv.options.clone(),
            weight_fake_quant: qconfig.weight.init()?,
            activation_post_process: None,
            qconfig,
        })
    }

    /// The float conv with the current (not fake-quantized) weights.
    pub fn to_float(&self) -> float::ConvNd<D, O> {
        float::ConvNd { weight: self.weight.clone(), bias: self.bias.clone(), options: self.options.clone() }
    }
}

weighted_state_dict!(impl[const D: usize, O: ConvGeometry<D>] ConvNd<D, O>);
