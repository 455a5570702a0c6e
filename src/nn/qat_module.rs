//! Model-wide switches over every QAT module: observers, fake quant, BN freezing and train/eval.
//! PyTorch does these with `model.apply(torch.ao.quantization.disable_observer)`; here a model
//! implements [`QatModule`] by listing its fake quants and its QAT children.

use super::ConvGeometry;
use super::intrinsic::qat::{ConvBnReLUNd, ConvReLUNd, LinearReLU};
use super::qat::{ConvNd, Linear};
use crate::fake_quantize::FakeQuantize;

/// A module (or a model) that contains fake quants and possibly batch norms.
pub trait QatModule {
    /// Every fake quant inside, weight and output alike.
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize>;

    /// PyTorch `train(mode)`: the hook every module with a mode implements (batch norms follow
    /// it unless frozen). Fake quants and observers ignore the mode, as in PyTorch: use
    /// [`disable_observer`](Self::disable_observer) / [`disable_fake_quant`](Self::disable_fake_quant).
    fn set_training(&mut self, _mode: bool) {}

    /// PyTorch `module.train(mode)`.
    fn train(&mut self, mode: bool) {
        self.set_training(mode);
    }

    /// PyTorch `module.eval()`: `train(false)`.
    fn eval(&mut self) {
        self.set_training(false);
    }

    /// PyTorch `freeze_bn_stats` for every BN-folding module inside (LinearBn too, unlike
    /// PyTorch's module function): BN stops updating its statistics and normalizes with the
    /// running ones (gamma and beta keep training), across `train` until `update_bn_stats`.
    fn freeze_bn_stats(&mut self) {}

    /// PyTorch `update_bn_stats` for every BN-folding module inside: batch statistics again,
    /// even in eval mode (as PyTorch does).
    fn update_bn_stats(&mut self) {}

    fn enable_observer(&mut self, enabled: bool) {
        self.fake_quants_mut().into_iter().for_each(|fq| fq.enable_observer(enabled));
    }

    fn disable_observer(&mut self) {
        self.enable_observer(false);
    }

    fn enable_fake_quant(&mut self, enabled: bool) {
        self.fake_quants_mut().into_iter().for_each(|fq| fq.enable_fake_quant(enabled));
    }

    fn disable_fake_quant(&mut self) {
        self.enable_fake_quant(false);
    }

    /// PyTorch `enable_param_learning` on every learnable fake quant inside (the others are
    /// left as they are): scale and zero point learn from here on, the observers stop.
    fn enable_param_learning(&mut self) {
        self.fake_quants_mut().into_iter().for_each(|fq| fq.enable_param_learning());
    }
}

macro_rules! conv_linear_fake_quants {
    ($($ty:ty),*) => {$(
        impl QatModule for $ty {
            fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
                let mut out = vec![&mut self.weight_fake_quant];
                out.extend(self.activation_post_process.as_mut());
                out
            }
        }
    )*};
}

conv_linear_fake_quants!(Linear);

impl<const D: usize, O: ConvGeometry<D>> QatModule for ConvNd<D, O> {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        let mut out = vec![&mut self.weight_fake_quant];
        out.extend(self.activation_post_process.as_mut());
        out
    }
}

macro_rules! delegate {
    ([$($params:tt)*] $ty:ty, $field:ident) => {
        impl<$($params)*> QatModule for $ty {
            fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
                self.$field.fake_quants_mut()
            }
            fn set_training(&mut self, mode: bool) {
                self.$field.set_training(mode);
            }
            fn freeze_bn_stats(&mut self) {
                QatModule::freeze_bn_stats(&mut self.$field);
            }
            fn update_bn_stats(&mut self) {
                QatModule::update_bn_stats(&mut self.$field);
            }
        }
    };
}

delegate!([const D: usize, O: ConvGeometry<D>] ConvBnReLUNd<D, O>, inner);
delegate!([const D: usize, O: ConvGeometry<D>] ConvReLUNd<D, O>, conv);
delegate!([] LinearReLU, linear);

/// The switches of a module that folds a batch norm (fields `weight_fake_quant`,
/// `activation_post_process`, `training`, `bn`): invoked beside each such module, where its
/// private fields are in reach.
macro_rules! bn_folding_switches {
    ([$($params:tt)*] $ty:ty) => {
        impl<$($params)*> $crate::nn::QatModule for $ty {
            fn fake_quants_mut(&mut self) -> Vec<&mut $crate::fake_quantize::FakeQuantize> {
                let mut out = vec![&mut self.weight_fake_quant];
                out.extend(self.activation_post_process.as_mut());
                out
            }

            fn set_training(&mut self, mode: bool) {
                self.training = mode;
                self.bn.follow_mode(mode);
            }

            fn freeze_bn_stats(&mut self) {
                self.bn.freeze_stats();
            }

            fn update_bn_stats(&mut self) {
                self.bn.unfreeze_stats();
            }
        }
    };
}

pub(crate) use bn_folding_switches;
