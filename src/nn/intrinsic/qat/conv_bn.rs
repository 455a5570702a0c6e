//! `ConvBn2d` / `ConvBn3d`: a conv whose weight is folded with the batch norm's scale before fake
//! quantization, so that training sees the quantization error the folded int8 conv will have.
//! One generic type, [`ConvBnNd`], over the geometry (PyTorch's `_ConvBnNd`).

use burn::module::{Module, Param};
use burn::tensor::{Distribution, Tensor};

use super::ConvBnConfig;
use super::bn_fold::{self, BnFold, BnFolding};
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::batch_norm::bn_keys;
use crate::nn::qat::{OutputFakeQuant, read_param, write_param};
use crate::nn::qat_module::bn_folding_switches;
use crate::nn::tensor_util::{replace_param, uniform_param, weight_axis_shape};
use crate::nn::{BatchNorm, ConvGeometry, QatModule, float};
use crate::qconfig::QConfig;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader, join};

/// PyTorch's `_ConvBnNd`: `D` is the tensor rank, `O` the geometry. Named per geometry below
/// (`ConvBn1d`, `ConvBn2d`, `ConvBn3d`, as `torch.ao.nn.intrinsic.qat`); `ConvTransposeBn2d` is
/// beyond PyTorch, which has no QAT transposed conv (pytorch/ao#1462): the BN scale and the
/// per-channel weight fake quant run along weight axis 1, the output channel of a transposed
/// conv's `[in, out / groups, kh, kw]` weight.
#[derive(Module, Debug)]
pub struct ConvBnNd<const D: usize, O: ConvGeometry<D>> {
    pub weight: Param<Tensor<D>>,
    pub bias: Option<Param<Tensor<1>>>,
    pub bn: BatchNorm,
    #[module(skip)]
    pub options: O,
    pub weight_fake_quant: FakeQuantize,
    /// The output fake quant `prepare_qat` attaches; `None` until then.
    pub activation_post_process: Option<FakeQuantize>,
    #[module(skip)]
    pub qconfig: QConfig,
    #[module(skip)]
    pub folding: BnFolding,
    #[module(skip)]
    training: bool,
}

per_geometry!(ConvBnNd: ConvBn1d, ConvBn2d, ConvBn3d, ConvTransposeBn2d);

impl<const D: usize, O: ConvGeometry<D>> ConvBnNd<D, O> {
    pub(crate) fn new(config: &ConvBnConfig<D, O>, device: &burn::tensor::Device) -> Result<Self> {
        config.conv.validate()?;
        let options = config.conv.clone();
        // BN folding scales one weight slice per output channel. A grouped transposed conv's
        // weight axis 1 holds out / groups channels, shared across groups: not foldable as is.
        let slices = options.weight_shape()[O::WEIGHT_CHANNEL_AXIS];
        if slices != options.out_channels() {
            return Err(QatError::invalid(
                "groups",
                format!(
                    "{}Bn{}: BN folding needs one weight slice per output channel on weight axis {}, but it has {slices} for {} output channels (a grouped transposed conv); use groups = 1",
                    O::PREFIX,
                    O::DIMS,
                    O::WEIGHT_CHANNEL_AXIS,
                    options.out_channels()
                ),
            ));
        }
        let qconfig = config.qconfig.clone().with_weight_channel_axis(O::WEIGHT_CHANNEL_AXIS);
        let bound = 1.0 / (options.fan_in() as f64).sqrt();
        let weight = uniform_param(options.weight_shape(), -bound, bound, device);
        let bias = config.bias.then(|| Param::from_tensor(Tensor::zeros([options.out_channels()], device)));
        let mut module = Self {
            weight,
            bias,
            bn: BatchNorm::new(options.out_channels(), config.eps, config.momentum, device)?,
            weight_fake_quant: qconfig.weight.init()?,
            activation_post_process: None,
            qconfig,
            folding: BnFolding::Approximate,
            training: true,
            options,
        };
        module.reset_bn_parameters();
        if config.freeze_bn {
            module.freeze_bn_stats();
        } else {
            module.update_bn_stats();
        }
        Ok(module)
    }

    /// Attaches the output fake quant from the qconfig (what `prepare_qat` does).
    pub fn with_output_fake_quant(mut self) -> Result<Self> {
        self.activation_post_process = Some(self.qconfig.activation.init()?);
        Ok(self)
    }

    setters! {
        /// Uses the given BN folding while training.
        with_folding => folding: BnFolding,
    }

    /// PyTorch `reset_bn_parameters`: running stats reset, gamma `U[0, 1)` (not ones: PyTorch's
    /// choice, kept for parity; `from_float` overwrites it), beta 0, and the conv bias, if any,
    /// `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    pub fn reset_bn_parameters(&mut self) {
        let c = self.options.out_channels();
        let device = self.weight.val().device();
        self.bn.reset_running_stats();
        self.bn.weight = replace_param(&self.bn.weight, Tensor::random([c], Distribution::Uniform(0.0, 1.0), &device));
        self.bn.bias = replace_param(&self.bn.bias, Tensor::zeros([c], &device));
        if let Some(bias) = &self.bias {
            let bound = 1.0 / (self.options.fan_in() as f64).sqrt();
            self.bias = Some(replace_param(bias, Tensor::random([c], Distribution::Uniform(-bound, bound), &device)));
        }
    }

    pub fn reset_running_stats(&mut self) {
        self.bn.reset_running_stats();
    }

    pub fn is_bn_frozen(&self) -> bool {
        self.bn.is_frozen()
    }

    pub fn is_training(&self) -> bool {
        self.training
    }

    pub fn forward(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        let layer = format!("{}Bn{}", O::PREFIX, O::DIMS);
        self.forward_with(x, false, &layer)
    }

    pub(crate) fn forward_with(&mut self, x: Tensor<D>, fused_relu: bool, layer: &str) -> Result<Tensor<D>> {
        self.options.check_input(x.dims(), layer)?;
        let options = &self.options;
        let conv = |w: Tensor<D>| options.forward(x.clone(), w, None);
        let fold = BnFold {
            weight: self.weight.val(),
            axis: O::WEIGHT_CHANNEL_AXIS,
            bias: self.bias.as_ref().map(Param::val),
            bn: &mut self.bn,
            fake_quant: &mut self.weight_fake_quant,
            layer,
        };
        let (y, min_max) = fold.forward(self.folding, conv, fused_relu)?;
        self.activation_post_process.apply_observed(y, min_max, layer)
    }

    /// `gamma / sqrt(running_var + eps)`, detached: the per-channel fold factor.
    pub(crate) fn scale_factor_tensor(&self) -> Tensor<1> {
        bn_fold::scale_factor(&self.bn).detach()
    }

    /// `W * gamma / sqrt(running_var + eps)`, detached: the weight the fake quant sees.
    pub fn folded_weight_tensor(&self) -> Tensor<D> {
        let c = self.options.out_channels();
        (self.weight.val() * self.scale_factor_tensor().reshape(weight_axis_shape::<D>(c, O::WEIGHT_CHANNEL_AXIS))).detach()
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvBnNd<D, O> {
    /// Builds the QAT module from a float conv and its batch norm, sharing their parameters
    /// (PyTorch `from_float`; `freeze_bn` starts false).
    pub fn from_float(conv: &float::ConvNd<D, O>, bn: &BatchNorm, qconfig: QConfig) -> Result<Self> {
        if bn.num_features() != conv.options.out_channels() {
            return Err(QatError::structure(
                format!("{}Bn{}", O::PREFIX, O::DIMS),
                format!(
                    "the batch norm has {} features but the conv has {} output channels",
                    bn.num_features(),
                    conv.options.out_channels()
                ),
            ));
        }
        let mut bn = bn.clone();
        bn.unfreeze_stats();
        let qconfig = qconfig.with_weight_channel_axis(O::WEIGHT_CHANNEL_AXIS);
        Ok(Self {
            weight: conv.weight.clone(),
            bias: conv.bias.clone(),
            bn,
            options: conv.options.clone(),
            weight_fake_quant: qconfig.weight.init()?,
            activation_post_process: None,
            qconfig,
            folding: BnFolding::Approximate,
            training: true,
        })
    }

    /// The float conv with BN folded in with its running statistics (PyTorch `to_float`,
    /// `fuse_conv_bn_weights`): `W' = W * gamma * rsqrt(rv + eps)`,
    /// `b' = (b - rm) * rsqrt(rv + eps) * gamma + beta`. Weights are not fake quantized.
    pub fn to_float(&self) -> float::ConvNd<D, O> {
        let conv = float::ConvNd { weight: self.weight.clone(), bias: self.bias.clone(), options: self.options.clone() };
        crate::nn::intrinsic::fuse_conv_bn_weights(&conv, &self.bn)
    }
}

impl<const D: usize, O: ConvGeometry<D>> SaveStateDict for ConvBnNd<D, O> {
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

impl<const D: usize, O: ConvGeometry<D>> LoadStateDict for ConvBnNd<D, O> {
    /// Reads PyTorch's v2 layout (`bn.weight`, ...) or the v1 one (`gamma`, `beta`,
    /// `running_mean`, ... at the module root).
    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        read_param(&mut self.weight, &join(prefix, "weight"), reader);
        if let Some(bias) = &mut self.bias {
            read_param(bias, &join(prefix, "bias"), reader);
        }
        let v2 = bn_keys(&join(prefix, "bn."));
        let names = if !reader.has(&v2[0]) && reader.has(&join(prefix, "gamma")) {
            ["gamma", "beta", "running_mean", "running_var", "num_batches_tracked"].map(|k| join(prefix, k))
        } else {
            v2
        };
        self.bn.read_state(names, reader);
        self.weight_fake_quant.read_state(&join(prefix, "weight_fake_quant."), reader);
        if let Some(fq) = &mut self.activation_post_process {
            fq.read_state(&join(prefix, "activation_post_process."), reader);
        }
    }
}

bn_folding_switches!([const D: usize, O: ConvGeometry<D>] ConvBnNd<D, O>);
