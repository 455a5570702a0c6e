//! `LinearBn1d`: a linear layer whose weight is folded with the batch norm's scale before fake
//! quantization, as `ConvBn2d` does for convolutions.

use burn::module::{Module, Param};
use burn::tensor::{Distribution, Tensor};

use super::BnFolding;
use super::bn_fold::{self, BnFold};
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::BatchNorm;
use crate::nn::batch_norm::bn_keys;
use crate::nn::float::{self, default_linear_params};
use crate::nn::qat::{OutputFakeQuant, read_param, write_param};
use crate::nn::qat_module::bn_folding_switches;
use crate::nn::tensor_util::{host_values, replace_param};
use crate::qconfig::QConfig;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader, join};

/// `torch.ao.nn.intrinsic.qat.LinearBn1d(in_features, out_features, bias=True, eps=1e-5,
/// momentum=0.1, freeze_bn=False, qconfig)`. Differences from PyTorch, on purpose: the linear
/// bias starts at 0 (PyTorch leaves it uninitialized), gamma = 0 uses the exact folding (PyTorch
/// has none for LinearBn1d and returns NaN), and the model-wide `freeze_bn_stats` reaches it.
#[derive(Module, Debug)]
pub struct LinearBn1d {
    pub weight: Param<Tensor<2>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub bn: BatchNorm,
    pub weight_fake_quant: FakeQuantize,
    pub activation_post_process: Option<FakeQuantize>,
    #[module(skip)]
    pub qconfig: QConfig,
    #[module(skip)]
    pub folding: BnFolding,
    #[module(skip)]
    training: bool,
}

/// PyTorch's `LinearBn1d(in_features, out_features, bias=True, eps=1e-5, momentum=0.1,
/// freeze_bn=False, qconfig)`.
#[derive(Clone, Debug)]
pub struct LinearBn1dConfig {
    pub in_features: usize,
    pub out_features: usize,
    pub bias: bool,
    pub eps: f64,
    /// `None`: a cumulative average of the batch statistics.
    pub momentum: Option<f64>,
    pub freeze_bn: bool,
    pub qconfig: QConfig,
}

impl LinearBn1dConfig {
    pub fn new(in_features: usize, out_features: usize, qconfig: QConfig) -> Self {
        Self { in_features, out_features, bias: true, eps: 1e-5, momentum: Some(0.1), freeze_bn: false, qconfig }
    }

    setters! {
        with_bias => bias: bool,
        with_eps => eps: f64,
        with_momentum => momentum: Option<f64>,
        with_freeze_bn => freeze_bn: bool,
    }

    pub fn init(&self, device: &burn::tensor::Device) -> Result<LinearBn1d> {
        LinearBn1d::new(self, device)
    }
}

impl LinearBn1d {
    /// [`LinearBn1dConfig::init`]: PyTorch's init (the linear bias at 0 rather than
    /// uninitialized, BN gamma `U(0, 1)`).
    pub(crate) fn new(config: &LinearBn1dConfig, device: &burn::tensor::Device) -> Result<Self> {
        let LinearBn1dConfig { in_features, out_features, .. } = *config;
        let (weight, _) = default_linear_params(in_features, out_features, false, device)?;
        let bias = config.bias.then(|| Param::from_tensor(Tensor::zeros([out_features], device)));
        let mut bn = BatchNorm::new(out_features, config.eps, config.momentum, device)?;
        bn.weight = replace_param(&bn.weight, Tensor::random([out_features], Distribution::Uniform(0.0, 1.0), device));
        let mut module = Self::from_float(&float::Linear { weight, bias }, &bn, config.qconfig.clone())?;
        if config.freeze_bn {
            crate::nn::QatModule::freeze_bn_stats(&mut module);
        }
        Ok(module)
    }

    /// Builds the QAT module from a float linear layer and its BatchNorm1d (sharing parameters).
    pub fn from_float(linear: &float::Linear, bn: &BatchNorm, qconfig: QConfig) -> Result<Self> {
        let out = linear.weight.dims()[0];
        if bn.num_features() != out {
            return Err(QatError::structure(
                "LinearBn1d",
                format!("the batch norm has {} features but the linear layer has {out} outputs", bn.num_features()),
            ));
        }
        let mut bn = bn.clone();
        bn.unfreeze_stats();
        Ok(Self {
            weight: linear.weight.clone(),
            bias: linear.bias.clone(),
            bn,
            weight_fake_quant: qconfig.weight.init()?,
            activation_post_process: None,
            qconfig,
            folding: BnFolding::Approximate,
            training: true,
        })
    }

    pub fn with_output_fake_quant(mut self) -> Result<Self> {
        self.activation_post_process = Some(self.qconfig.activation.init()?);
        Ok(self)
    }

    setters! { with_folding => folding: BnFolding }

    pub fn is_bn_frozen(&self) -> bool {
        self.bn.is_frozen()
    }

    pub fn in_features(&self) -> usize {
        self.weight.dims()[1]
    }

    pub fn out_features(&self) -> usize {
        self.weight.dims()[0]
    }

    /// `[N, in]` to `[N, out]`.
    pub fn forward(&mut self, x: Tensor<2>) -> Result<Tensor<2>> {
        let layer = "LinearBn1d";
        let [_, i] = x.dims();
        if i != self.in_features() {
            return Err(QatError::shape(layer, format!("input [N, {}]", self.in_features()), format!("{:?}", x.dims())));
        }
        let linear = |w: Tensor<2>| x.clone().matmul(w.transpose());
        let fold = BnFold {
            weight: self.weight.val(),
            axis: 0,
            bias: self.bias.as_ref().map(Param::val),
            bn: &mut self.bn,
            fake_quant: &mut self.weight_fake_quant,
            layer,
        };
        let (y, min_max) = fold.forward(self.folding, linear, false)?;
        self.activation_post_process.apply_observed(y, min_max, layer)
    }

    /// `W * gamma / sqrt(rv + eps)` and `(b - rm) * gamma / sqrt(rv + eps) + beta`, as convert folds them.
    pub fn folded_weight_and_bias(&self) -> (Vec<f32>, Vec<f32>) {
        let sf: Vec<f32> = host_values(&bn_fold::scale_factor(&self.bn)).into_iter().map(|v| v as f32).collect();
        let c = sf.len();
        let sf_t = bn_fold::scale_factor(&self.bn).detach().reshape([c, 1]);
        let weight = host_values(&(self.weight.val().detach() * sf_t)).into_iter().map(|v| v as f32).collect();
        let beta: Vec<f32> = host_values(&self.bn.bias.val()).into_iter().map(|v| v as f32).collect();
        let bias: Vec<f32> =
            self.bias.as_ref().map(|b| host_values(&b.val()).into_iter().map(|v| v as f32).collect()).unwrap_or_else(|| vec![0.0; c]);
        let mean = self.bn.running_mean();
        (weight, (0..c).map(|k| (bias[k] - mean[k] as f32) * sf[k] + beta[k]).collect())
    }
}

bn_folding_switches!([] LinearBn1d);

impl SaveStateDict for LinearBn1d {
    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        write_param(&self.weight, join(prefix, "weight"), out);
        if let Some(bias) = &self.bias {
            write_param(bias, join(prefix, "bias"), out);
        }
        self.bn.write_state(&join(prefix, "bn."), out);
        self.weight_fake_quant.write_state(&join(prefix, "weight_fake_quant."), out);
        if let Some(fq) = &self.activation_post_process {
            fq.write_state(&join(prefix, "activation_post_process."), out);
        }
    }
}

impl LoadStateDict for LinearBn1d {
    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        read_param(&mut self.weight, &join(prefix, "weight"), reader);
        if let Some(bias) = &mut self.bias {
            read_param(bias, &join(prefix, "bias"), reader);
        }
        self.bn.read_state(bn_keys(&join(prefix, "bn.")), reader);
        self.weight_fake_quant.read_state(&join(prefix, "weight_fake_quant."), reader);
        if let Some(fq) = &mut self.activation_post_process {
            fq.read_state(&join(prefix, "activation_post_process."), reader);
        }
    }
}
