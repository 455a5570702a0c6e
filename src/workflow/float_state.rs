//! State-dict keys of float layers (layers left in float inside a prepared model), in
//! PyTorch's naming: `weight`, `bias`, and for fused containers `0.` / `1.` as
//! `torch.ao.nn.intrinsic` Sequentials name their children.

use super::float_model::FloatModel;
use crate::nn::qat::{read_param, write_param};
use crate::state_dict::{StateDict, StateReader, join};

/// `weight` and `bias` of a float conv or linear layer.
pub(crate) trait FloatWeights {
    fn write_weights(&self, prefix: &str, out: &mut StateDict);
    fn read_weights(&mut self, prefix: &str, reader: &mut StateReader<'_>);
}

macro_rules! float_weights {
    ($($ty:ty),*) => {$(
        impl FloatWeights for $ty {
            fn write_weights(&self, prefix: &str, out: &mut StateDict) {
                write_param(&self.weight, join(prefix, "weight"), out);
                if let Some(b) = &self.bias {
                    write_param(b, join(prefix, "bias"), out);
                }
            }
            fn read_weights(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
                read_param(&mut self.weight, &join(prefix, "weight"), reader);
                if let Some(b) = &mut self.bias {
                    read_param(b, &join(prefix, "bias"), reader);
                }
            }
        }
    )*};
}

float_weights!(
    crate::nn::float::ConvTranspose2d,
    crate::nn::float::Conv1d,
    crate::nn::float::Conv2d,
    crate::nn::float::Conv3d,
    crate::nn::float::Linear
);

/// A float model's state dict in PyTorch's layout: `<layer>.weight`, fused containers' children
/// as `<layer>.0.` / `<layer>.1.` (as `torch.ao.nn.intrinsic` Sequentials name them).
impl crate::state_dict::SaveStateDict for FloatModel {
    fn write_state(&self, prefix: &str, out: &mut crate::state_dict::StateDict) {
        for l in &self.layers {
            l.layer.op().write_state(&format!("{prefix}{}.", l.name), out);
        }
    }
}

impl crate::state_dict::LoadStateDict for FloatModel {
    fn read_state(&mut self, prefix: &str, reader: &mut crate::state_dict::StateReader<'_>) {
        for l in &mut self.layers {
            l.layer.op_mut().read_state(&format!("{prefix}{}.", l.name), reader);
        }
    }
}
