//! PyTorch's `named_parameters()` and the gradients of those parameters, as state dicts under
//! the module's PyTorch keys (`weight`, `bn.weight`, `weight_fake_quant.scale` for a learnable
//! fake quant, ...), so that a training step can be compared key by key with PyTorch's
//! `{name: p.grad for name, p in m.named_parameters()}`.
//!
//! Which state-dict keys are parameters is found from the module itself, not from a second list
//! that could drift from the state-dict writers: a copy with every trainable float parameter
//! moved by one writes a different value exactly under the parameters' keys (buffers, running
//! statistics and observer state stay as they are).

use std::collections::BTreeSet;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Gradients, Tensor};

use super::{SaveStateDict, StateDict};

/// `named_parameters()` and `named_gradients()` for every module with a state dict.
pub trait NamedParameters: Module + SaveStateDict {
    /// The state dict's parameter entries (PyTorch's `named_parameters()`, with its names).
    fn named_parameters(&self) -> StateDict {
        let keys = parameter_keys(self);
        self.state_dict().into_iter().filter(|(k, _)| keys.contains(k)).collect()
    }

    /// The gradient of every parameter in `grads`, under its parameter's name. A parameter the
    /// loss did not reach has a zero gradient here (PyTorch's `None`).
    fn named_gradients(&self, grads: &Gradients) -> StateDict {
        struct ToGradient<'a>(&'a Gradients);
        impl ModuleMapper for ToGradient<'_> {
            fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
                let value = param.val();
                let grad = value.grad(self.0).unwrap_or_else(|| value.zeros_like().inner());
                Param::initialized(param.id, grad)
            }
        }
        let keys = parameter_keys(self);
        self.clone().map(&mut ToGradient(grads)).state_dict().into_iter().filter(|(k, _)| keys.contains(k)).collect()
    }
}

impl<M: Module + SaveStateDict> NamedParameters for M {}

/// The keys whose values move when every float parameter moves.
fn parameter_keys<M: Module + SaveStateDict>(module: &M) -> BTreeSet<String> {
    struct Shift;
    impl ModuleMapper for Shift {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            Param::initialized(param.id, param.val().detach() + 1.0)
        }
    }
    let before = module.state_dict();
    let after = module.clone().map(&mut Shift).state_dict();
    before.into_iter().filter(|(k, v)| after.get(k) != Some(v)).map(|(k, _)| k).collect()
}
