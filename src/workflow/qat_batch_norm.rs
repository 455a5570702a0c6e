//! A batch norm that stands on its own in a prepared model (after pooling, say, where no conv
//! can absorb it), with or without a ReLU: float BN with an output fake quant, as PyTorch's
//! prepare leaves `BatchNorm2d` / `BNReLU2d`; convert turns it into `quantized::BatchNorm2d`.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::batch_norm::bn_keys;
use crate::nn::quantized::{self, ActivationQParams, LayerQParams};
use crate::nn::tensor_util::host_values;
use crate::nn::{BatchNorm, QatModule};
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader, join};

/// `BatchNorm2d` (or `BNReLU2d` with `relu`) after prepare.
#[derive(Module, Debug)]
pub struct QatBatchNorm2d {
    pub bn: BatchNorm,
    #[module(skip)]
    pub relu: bool,
    pub activation_post_process: Option<FakeQuantize>,
}

impl QatBatchNorm2d {
    pub fn forward(&mut self, x: Tensor<4>, layer: &str) -> Result<Tensor<4>> {
        let y = self.bn.forward(x, layer)?;
        let y = if self.relu { relu(y) } else { y };
        match &mut self.activation_post_process {
            Some(fq) => fq.forward(y),
            None => Ok(y),
        }
    }

    /// The int8 module: BN with its running statistics as a per-channel map on the integers.
    pub fn to_quantized(&self, input: ActivationQParams, layer: &str) -> Result<quantized::BatchNorm2d> {
        let output = super::convert_module::output_qparams(&self.activation_post_process, layer)?;
        let (gamma, beta) = (host_values(&self.bn.weight.val()), host_values(&self.bn.bias.val()));
        quantized::BatchNorm2d::new(
            &gamma,
            &beta,
            self.bn.running_mean(),
            self.bn.running_var(),
            self.bn.eps,
            LayerQParams::new(input, output, self.relu),
        )
    }

    /// PyTorch's keys: a `BatchNorm2d` under the layer's name, a `BNReLU2d`'s under `0.`
    /// (its Sequential child); the fake quant under `activation_post_process.`.
    fn bn_prefix(&self, prefix: &str) -> String {
        if self.relu { join(prefix, "0.") } else { prefix.to_string() }
    }
}

impl SaveStateDict for QatBatchNorm2d {
    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        self.bn.write_state(&self.bn_prefix(prefix), out);
        if let Some(fq) = &self.activation_post_process {
            fq.write_state(&join(prefix, "activation_post_process."), out);
        }
    }
}

impl LoadStateDict for QatBatchNorm2d {
    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        let bn_prefix = self.bn_prefix(prefix);
        self.bn.read_state(bn_keys(&bn_prefix), reader);
        if let Some(fq) = &mut self.activation_post_process {
            fq.read_state(&join(prefix, "activation_post_process."), reader);
        }
    }
}

impl QatModule for QatBatchNorm2d {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        self.activation_post_process.iter_mut().collect()
    }

    fn set_training(&mut self, mode: bool) {
        self.bn.follow_mode(mode);
    }

    fn freeze_bn_stats(&mut self) {
        self.bn.freeze_stats();
    }

    fn update_bn_stats(&mut self) {
        self.bn.unfreeze_stats();
    }
}
