//! The float stage of the layer table: each layer kind a user builds a [`super::FloatModel`]
//! from implements [`FloatOp`] (in `kinds/`, beside its QAT and int8 stages), and [`Layer`] is
//! generated from one list of those kinds. The float forward, the BN switch and the state dict
//! dispatch through the trait; the QAT stage adds `prepare` ([`super::qat_layer::PrepareQat`]).

use burn::module::Module;

use super::layer_enum::{layer_enum, with_unweighted_kinds};
use super::layers::{Named, Value};
use crate::error::Result;
use crate::state_dict::{StateDict, StateReader, join};

/// One layer kind of a float model.
pub(crate) trait FloatOp {
    /// The kind's name in messages.
    fn kind(&self) -> &'static str;

    fn forward(&mut self, x: Value, path: &str) -> Result<Value>;

    /// Batch norms inside use batch statistics (`true`) or running ones (`false`).
    fn set_training(&mut self, _training: bool) {}

    /// Whether the layer has a weight (a qconfig map's weight layers).
    fn has_weight(&self) -> bool {
        false
    }

    /// Whether a batch norm right after this layer should have been fused into it.
    fn absorbs_next_batch_norm(&self) -> bool {
        false
    }

    fn write_state(&self, _prefix: &str, _out: &mut StateDict) {}

    fn read_state(&mut self, _prefix: &str, _reader: &mut StateReader<'_>) {}
}

/// Declares [`Layer`] from a list of kinds.
macro_rules! float_layers {
    ($($kinds:tt)*) => {
        layer_enum! {
            /// A float layer.
            Layer: FloatOp { $($kinds)* }
        }
    };
}

/// Calls `$callback!` with the list of float layer kinds: the enum below is declared from it,
/// and the QAT stage declares its `prepare` dispatch from it.
macro_rules! with_float_kinds {
    ($callback:ident) => {
        with_unweighted_kinds! { $callback! {
            QuantStub(crate::workflow::layers::QuantStub),
            DeQuantStub(crate::workflow::layers::DeQuantStub),
            Conv2d(crate::nn::float::Conv2d),
            BatchNorm2d(crate::nn::BatchNorm),
            /// Batch norm over features `[N, F]`.
            BatchNorm1d(crate::workflow::layers::BatchNorm1d),
            Linear(crate::nn::float::Linear),
            Residual(crate::workflow::float_layer::Residual),
            Concat(crate::workflow::float_layer::Concat),
            Hardswish(crate::workflow::layers::Hardswish),
            ConvBn2d(crate::nn::intrinsic::ConvBn2d),
            ConvBnReLU2d(crate::nn::intrinsic::ConvBnReLU2d),
            ConvReLU2d(crate::nn::intrinsic::ConvReLU2d),
            LinearReLU(crate::nn::intrinsic::LinearReLU),
            LinearBn1d(crate::nn::intrinsic::LinearBn1d),
            BNReLU2d(crate::nn::intrinsic::BNReLU2d),
            Conv3d(crate::nn::float::Conv3d),
            Conv1d(crate::nn::float::Conv1d),
            ConvTranspose2d(crate::nn::float::ConvTranspose2d),
            ConvTransposeBn2d(crate::nn::intrinsic::ConvTransposeBn2d),
            ConvTransposeBnReLU2d(crate::nn::intrinsic::ConvTransposeBnReLU2d),
            ConvTransposeReLU2d(crate::nn::intrinsic::ConvTransposeReLU2d),
            ConvBn1d(crate::nn::intrinsic::ConvBn1d),
            ConvBnReLU1d(crate::nn::intrinsic::ConvBnReLU1d),
            ConvReLU1d(crate::nn::intrinsic::ConvReLU1d),
            /// Batch norm over volumes `[N, C, D, H, W]`.
            BatchNorm3d(crate::workflow::layers::BatchNorm3d),
            ConvBn3d(crate::nn::intrinsic::ConvBn3d),
            ConvBnReLU3d(crate::nn::intrinsic::ConvBnReLU3d),
            ConvReLU3d(crate::nn::intrinsic::ConvReLU3d),
        } }
    };
}
pub(crate) use with_float_kinds;

with_float_kinds!(float_layers);

/// A block's BN switch and state: its body's layers, under `body.<name>.`.
macro_rules! block_body_ops {
    () => {
        fn set_training(&mut self, training: bool) {
            self.body.iter_mut().for_each(|l| l.layer.op_mut().set_training(training));
        }

        fn write_state(&self, prefix: &str, out: &mut StateDict) {
            self.body.iter().for_each(|l| l.layer.op().write_state(&join(prefix, &format!("body.{}.", l.name)), out));
        }

        fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
            self.body.iter_mut().for_each(|l| l.layer.op_mut().read_state(&join(prefix, &format!("body.{}.", l.name)), reader));
        }
    };
}

/// A block body's float forward (layers named `<path>.<name>` in errors).
fn body_forward(body: &mut [Named<Layer>], mut x: Value, path: &str) -> Result<Value> {
    for l in body {
        x = l.layer.op_mut().forward(x, &format!("{path}.{}", l.name))?;
    }
    Ok(x)
}

/// `relu?(body(x) + x)`: a residual block with an identity shortcut.
#[derive(Module, Debug)]
pub struct Residual {
    pub body: Vec<Named<Layer>>,
    pub relu: bool,
}

impl FloatOp for Residual {
    fn kind(&self) -> &'static str {
        "Residual"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        let sum = body_forward(&mut self.body, x.clone(), path)?.float_add(x, path)?;
        Ok(if self.relu { sum.relu() } else { sum })
    }

    block_body_ops!();
}

/// `cat([x, body(x)], channels)`: a skip connection joined along the channel axis, as U-Net
/// decoders and Inception blocks join theirs (PyTorch's `torch.cat` through a
/// `FloatFunctional`).
#[derive(Module, Debug)]
pub struct Concat {
    pub body: Vec<Named<Layer>>,
}

impl FloatOp for Concat {
    fn kind(&self) -> &'static str {
        "Concat"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        let y = body_forward(&mut self.body, x.clone(), path)?;
        x.concat_channels(y, path)
    }

    block_body_ops!();
}
