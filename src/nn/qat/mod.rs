//! `torch.ao.nn.qat`: Conv2d and Linear whose weight passes through a fake quant on every
//! forward. The bias is never fake quantized. Every QAT module is built one way, as burn builds
//! its own: `XConfig::new(required).with_*(optional).init(&device)` with PyTorch's argument
//! names and defaults ([`ConvConfig`], [`LinearConfig`], and in `intrinsic::qat` the BN
//! families' configs); `init_relu` gives the fused ReLU variant.

/// PyTorch's state-dict layout of a QAT conv or linear module: `weight`, `bias`,
/// `weight_fake_quant.` and, once prepared, `activation_post_process.`.
macro_rules! weighted_state_dict {
    (impl[$($generics:tt)*] $ty:ty) => {
        impl<$($generics)*> crate::state_dict::SaveStateDict for $ty {
            fn write_state(&self, prefix: &str, out: &mut crate::state_dict::StateDict) {
                use crate::state_dict::join;
                crate::nn::qat::write_param(&self.weight, join(prefix, "weight"), out);
                if let Some(bias) = &self.bias {
                    crate::nn::qat::write_param(bias, join(prefix, "bias"), out);
                }
                self.weight_fake_quant.write_state(&join(prefix, "weight_fake_quant."), out);
                if let Some(fq) = &self.activation_post_process {
                    fq.write_state(&join(prefix, "activation_post_process."), out);
                }
            }
        }

        impl<$($generics)*> crate::state_dict::LoadStateDict for $ty {
            fn read_state(&mut self, prefix: &str, reader: &mut crate::state_dict::StateReader<'_>) {
                use crate::state_dict::join;
                crate::nn::qat::read_param(&mut self.weight, &join(prefix, "weight"), reader);
                if let Some(bias) = &mut self.bias {
                    crate::nn::qat::read_param(bias, &join(prefix, "bias"), reader);
                }
                self.weight_fake_quant.read_state(&join(prefix, "weight_fake_quant."), reader);
                if let Some(fq) = &mut self.activation_post_process {
                    fq.read_state(&join(prefix, "activation_post_process."), reader);
                }
            }
        }
    };
}

mod add;
mod conv;
mod linear;
mod output;

pub use add::Add;
pub use conv::{
    Conv1d, Conv1dConfig, Conv2d, Conv2dConfig, Conv3d, Conv3dConfig, ConvConfig, ConvNd, ConvTranspose2d, ConvTranspose2dConfig,
};
pub use linear::{Linear, LinearConfig};
pub(crate) use output::{OutputFakeQuant, in_layer, read_param, write_param};
