//! The 1-d family: `ConvBn1d`, `ConvBnReLU1d`, `ConvReLU1d` and `nn::qat::Conv1d`, each the 2-d
//! module over `[N, C, 1, L]` with a `1 x K` kernel (see [`Conv1dOptions`]). State dicts use
//! PyTorch's 3-d weight shape `[O, I / groups, K]`.

use std::ops::{Deref, DerefMut};

use burn::module::Module;
use burn::tensor::Tensor;

use super::{ConvBn2d, ConvBn2dConfig};
use crate::error::Result;
use crate::nn::conv1d_options::Conv1dOptions;
use crate::nn::qat;
use crate::qconfig::QConfig;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader, join};

/// The constructor arguments of `ConvBn1d` / `ConvBnReLU1d`, with PyTorch's defaults.
#[derive(Clone, Debug)]
pub struct ConvBn1dConfig {
    pub conv: Conv1dOptions,
    pub bias: bool,
    pub eps: f64,
    pub momentum: Option<f64>,
    pub freeze_bn: bool,
    pub qconfig: QConfig,
}

impl ConvBn1dConfig {
    pub fn new(conv: Conv1dOptions, qconfig: QConfig) -> Self {
        Self { conv, bias: false, eps: 1e-5, momentum: Some(0.1), freeze_bn: false, qconfig }
    }

    setters! {
        with_bias => bias: bool,
        with_eps => eps: f64,
        with_momentum => momentum: Option<f64>,
        with_freeze_bn => freeze_bn: bool,
    }

    fn as_2d(&self) -> ConvBn2dConfig {
        ConvBn2dConfig::new(self.conv.as_2d(), self.qconfig.clone())
            .with_bias(self.bias)
            .with_eps(self.eps)
            .with_momentum(self.momentum)
            .with_freeze_bn(self.freeze_bn)
    }

    pub fn init(&self, device: &burn::tensor::Device) -> Result<ConvBn1d> {
        Ok(ConvBn1d { inner: self.as_2d().init(device)? })
    }

    pub fn init_relu(&self, device: &burn::tensor::Device) -> Result<ConvBnReLU1d> {
        Ok(ConvBnReLU1d { inner: self.as_2d().init(device)? })
    }
}

/// The 3-d stored weight shape of a `[O, I, 1, K]` weight.
fn stored_weight_shape(dims: [usize; 4]) -> Vec<usize> {
    vec![dims[0], dims[1], dims[3]]
}

macro_rules! one_d {
    ($(#[$doc:meta])* $name:ident, $inner:ty, $relu:expr, $layer:expr) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $name {
            pub inner: $inner,
        }

        impl Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.inner
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.inner
            }
        }

        impl $name {
            /// `[N, C, L]` in, `[N, out_channels, L_out]` out.
            pub fn forward(&mut self, x: Tensor<3>) -> Result<Tensor<3>> {
                let y = self.inner.forward_with(x.unsqueeze_dim(2), $relu, $layer)?;
                Ok(y.squeeze_dim(2))
            }

            /// Attaches the output fake quant from the qconfig (what `prepare_qat` does).
            pub fn with_output_fake_quant(self) -> Result<Self> {
                Ok(Self { inner: self.inner.with_output_fake_quant()? })
            }
        }

        impl SaveStateDict for $name {
            fn write_state(&self, prefix: &str, out: &mut StateDict) {
                self.inner.write_state(prefix, out);
                if let Some(w) = out.get_mut(&join(prefix, "weight")) {
                    w.shape = stored_weight_shape(self.inner.weight.dims());
                }
            }
        }

        impl LoadStateDict for $name {
            fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
                reader.expect_stored_shape(join(prefix, "weight"), stored_weight_shape(self.inner.weight.dims()));
                self.inner.read_state(prefix, reader);
            }
        }

        impl crate::nn::QatModule for $name {
            fn fake_quants_mut(&mut self) -> Vec<&mut crate::fake_quantize::FakeQuantize> {
                self.inner.fake_quants_mut()
            }
            fn set_training(&mut self, mode: bool) {
                self.inner.set_training(mode);
            }
            fn freeze_bn_stats(&mut self) {
                crate::nn::QatModule::freeze_bn_stats(&mut self.inner);
            }
            fn update_bn_stats(&mut self) {
                crate::nn::QatModule::update_bn_stats(&mut self.inner);
            }
        }
    };
}

one_d!(
    /// `torch.ao.nn.intrinsic.qat.ConvBn1d`.
    ConvBn1d, ConvBn2d, false, "ConvBn1d"
);
one_d!(
    /// `torch.ao.nn.intrinsic.qat.ConvBnReLU1d`.
    ConvBnReLU1d, ConvBn2d, true, "ConvBnReLU1d"
);
one_d!(
    /// `torch.ao.nn.intrinsic.qat.ConvReLU1d` (PyTorch's default mapping leaves Conv1d float
    /// under QAT; we swap it like every other conv).
    ConvReLU1d, qat::Conv2d, true, "ConvReLU1d"
);
one_d!(
    /// `torch.ao.nn.qat.Conv1d`.
    Conv1d, qat::Conv2d, false, "Conv1d"
);

impl ConvReLU1d {
    /// PyTorch's `ConvReLU1d(..., bias=True, padding_mode='zeros', qconfig)`.
    pub fn new(options: Conv1dOptions, bias: bool, qconfig: QConfig, device: &burn::tensor::Device) -> Result<Self> {
        Ok(Self { inner: qat::Conv2d::new(options.as_2d(), bias, qconfig, device)? })
    }
}

impl Conv1d {
    /// PyTorch's `Conv1d(..., bias=True, padding_mode='zeros', qconfig)`.
    pub fn new(options: Conv1dOptions, bias: bool, qconfig: QConfig, device: &burn::tensor::Device) -> Result<Self> {
        Ok(Self { inner: qat::Conv2d::new(options.as_2d(), bias, qconfig, device)? })
    }
}
