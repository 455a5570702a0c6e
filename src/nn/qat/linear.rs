use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use super::{OutputFakeQuant, in_layer};
use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::float::{self, linear_forward};
use crate::qconfig::QConfig;

/// `torch.ao.nn.qat.Linear`: `linear(x, weight_fake_quant(W), bias)`, weight `[out, in]`.
#[derive(Module, Debug)]
pub struct Linear {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub weight_fake_quant: FakeQuantize,
    /// The output fake quant `prepare_qat` attaches; `None` until then.
    pub activation_post_process: Option<FakeQuantize>,
    #[module(skip)]
    pub qconfig: QConfig,
}

/// PyTorch's `Linear(in_features, out_features, bias=True, qconfig)`.
#[derive(Clone, Debug)]
pub struct LinearConfig {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
    pub qconfig: QConfig,
}

impl LinearConfig {
    pub fn new(in_features: usize, out_features: usize, qconfig: QConfig) -> Self {
        Self { in_features, out_features, bias: true, qconfig }
    }

    setters! {
        with_bias => bias: bool,
    }

    /// The QAT linear layer with PyTorch's default init (weight and bias
    /// `U(-1/sqrt(in_features), 1/sqrt(in_features))`).
    pub fn init(&self, device: &burn::tensor::Device) -> Result<Linear> {
        Linear::new(self, device)
    }
}

impl Linear {
    /// [`LinearConfig::init`]: a float linear layer with PyTorch's default init, swapped for its
    /// QAT version.
    pub(crate) fn new(config: &LinearConfig, device: &burn::tensor::Device) -> Result<Self> {
        let linear = float::Linear::new(config.in_features, config.out_features, config.bias, device)?;
        Self::from_float(&linear, config.qconfig.clone())
    }

    pub fn from_float(linear: &float::Linear, qconfig: QConfig) -> Result<Self> {
        Ok(Self {
            weight: linear.weight.clone(),
            bias: linear.bias.clone(),
            weight_fake_quant: qconfig.weight.init()?,
            activation_post_process: None,
            qconfig,
        })
    }

    pub fn to_float(&self) -> float::Linear {
        float::Linear { weight: self.weight.clone(), bias: self.bias.clone() }
    }

    pub fn with_output_fake_quant(mut self) -> Result<Self> {
        self.activation_post_process = Some(self.qconfig.activation.init()?);
        Ok(self)
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    pub fn forward<const D: usize>(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.forward_with(x, false, "Linear")
    }

    pub(crate) fn forward_with<const D: usize>(&mut self, x: Tensor<D>, fused_relu: bool, layer: &str) -> Result<Tensor<D>> {
        let weight = self.weight_fake_quant.forward(self.weight.val()).map_err(|e| in_layer(e, layer, "weight"))?;
        let y = linear_forward(x, weight, self.bias.as_ref().map(Param::val), layer)?;
        let y = if fused_relu { relu(y) } else { y };
        self.activation_post_process.apply(y, layer)
    }
}

weighted_state_dict!(impl[] Linear);
