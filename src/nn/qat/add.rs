//! PyTorch's `FloatFunctional().add` / `add_relu` after `prepare_qat`: an addition (a residual
//! shortcut, say) with its own output fake quant, for hand-written models. The workflow's
//! residual blocks carry the same thing inside.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::QatModule;

/// `fake_quant(a + b)`, or `fake_quant(relu(a + b))` with `relu`.
#[derive(Module, Debug)]
pub struct Add {
    pub activation_post_process: FakeQuantize,
    #[module(skip)]
    pub relu: bool,
}

impl Add {
    /// `activation_post_process`: usually `qconfig.activation.init()?`.
    pub fn new(activation_post_process: FakeQuantize, relu: bool) -> Self {
        Self { activation_post_process, relu }
    }

    pub fn forward<const D: usize>(&mut self, a: Tensor<D>, b: Tensor<D>) -> Result<Tensor<D>> {
        if a.dims() != b.dims() {
            return Err(QatError::shape("Add", format!("{:?} (the first operand's shape)", a.dims()), format!("{:?}", b.dims())));
        }
        let sum = a + b;
        self.activation_post_process.forward(if self.relu { relu(sum) } else { sum })
    }
}

impl QatModule for Add {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        vec![&mut self.activation_post_process]
    }
}

// PyTorch's key: `<name>.activation_post_process.` (FloatFunctional's observer child).
crate::state_dict::output_fake_quant_state!(Add);
