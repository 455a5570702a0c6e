//! What `#[derive(QatModule)]` (crate `burn-qat-derive`) builds on to convert a hand-written
//! model field by field: the quant stub that starts the chain, the output qparams of each int8
//! module, and the switches and state-dict layout of the stub itself.

use super::layers::QatQuantStub;
use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::QatModule;
use crate::nn::quantized::{self, ActivationQParams};

/// A fake quant on a model's float input (PyTorch's `QuantStub`) becomes a `Quantize`.
pub trait QuantizeInput {
    fn to_quantize(&self, layer: &str) -> Result<quantized::Quantize>;
}

impl QuantizeInput for FakeQuantize {
    fn to_quantize(&self, layer: &str) -> Result<quantized::Quantize> {
        quantized::Quantize::new(self.activation_qparams(layer)?)
    }
}

impl QuantizeInput for QatQuantStub {
    fn to_quantize(&self, layer: &str) -> Result<quantized::Quantize> {
        self.activation_post_process.to_quantize(layer)
    }
}

/// The qparams of an int8 module's output: the next module's input.
pub trait Int8Output {
    fn output_qparams(&self) -> ActivationQParams;
}

impl Int8Output for quantized::Quantize {
    fn output_qparams(&self) -> ActivationQParams {
        self.qparams
    }
}

/// `self$(.$grids)?.output`: the layers with weights keep their grids in `qparams`.
macro_rules! output_field {
    ($($ty:ty => [$($grids:ident)?]),*) => {$(
        impl Int8Output for $ty {
            fn output_qparams(&self) -> ActivationQParams {
                self$(.$grids)?.output
            }
        }
    )*};
}

output_field!(
    quantized::Conv1d => [qparams], quantized::Conv2d => [qparams], quantized::Conv3d => [qparams],
    quantized::ConvTranspose2d => [qparams], quantized::Linear => [qparams], quantized::Add => []
);

impl QatQuantStub {
    /// A quant stub with this fake quant (usually `qconfig.activation.init()?`).
    pub fn new(activation_post_process: FakeQuantize) -> Self {
        Self { activation_post_process }
    }

    /// Fake quantizes the float input.
    pub fn forward<const D: usize>(&mut self, x: burn::tensor::Tensor<D>) -> Result<burn::tensor::Tensor<D>> {
        self.activation_post_process.forward(x)
    }
}

impl QatModule for QatQuantStub {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        vec![&mut self.activation_post_process]
    }
}

impl QatModule for FakeQuantize {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        vec![self]
    }
}

// PyTorch's layout: a `QuantStub`'s fake quant is its `activation_post_process` child.
crate::state_dict::output_fake_quant_state!(QatQuantStub);
