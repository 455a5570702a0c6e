//! The ReLU variants: the same module with a ReLU before the output fake quant. They deref to
//! the module they extend, so every method (`freeze_bn_stats`, ...) is there.

use std::ops::{Deref, DerefMut};

use burn::module::Module;
use burn::tensor::Tensor;

use super::ConvBn2d;
use crate::error::Result;
use crate::nn::qat;
use crate::nn::{Conv2dOptions, float};
use crate::qconfig::QConfig;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader};

macro_rules! relu_variant {
    ($(#[$doc:meta])* $name:ident, $field:ident: $inner:ty) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $name {
            pub $field: $inner,
        }

        impl Deref for $name {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.$field
            }
        }

        impl DerefMut for $name {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.$field
            }
        }

        impl SaveStateDict for $name {
            fn write_state(&self, prefix: &str, out: &mut StateDict) {
                self.$field.write_state(prefix, out);
            }
        }

        impl LoadStateDict for $name {
            fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
                self.$field.read_state(prefix, reader);
            }
        }

        impl $name {
            /// Attaches the output fake quant from the qconfig (what `prepare_qat` does).
            pub fn with_output_fake_quant(self) -> Result<Self> {
                Ok(Self { $field: self.$field.with_output_fake_quant()? })
            }
        }
    };
}

relu_variant!(
    /// `torch.ao.nn.intrinsic.qat.ConvBnReLU2d`: `relu(ConvBn2d(x))`.
    ConvBnReLU2d, inner: ConvBn2d
);
relu_variant!(
    /// `torch.ao.nn.intrinsic.qat.ConvReLU2d`: `relu(conv(x, weight_fake_quant(W), bias))`.
    ConvReLU2d, conv: qat::Conv2d
);
relu_variant!(
    /// `torch.ao.nn.intrinsic.qat.LinearReLU`: `relu(linear(x, weight_fake_quant(W), bias))`.
    ///
    /// ```
    /// # use burn::tensor::{Device, Tensor};
    /// # use burn_qat::{nn::intrinsic::qat::LinearReLU, qconfig::get_default_qat_qconfig};
    /// let device = Device::flex().autodiff();
    /// let mut m = LinearReLU::new(20, 30, true, get_default_qat_qconfig("x86", 1).unwrap(), &device).unwrap();
    /// let y = m.forward(Tensor::<2>::random([128, 20], burn::tensor::Distribution::Default, &device)).unwrap();
    /// assert_eq!(y.dims(), [128, 30]);
    /// ```
    LinearReLU, linear: qat::Linear
);

impl ConvBnReLU2d {
    pub fn from_float(conv: &float::Conv2d, bn: &crate::nn::BatchNorm, qconfig: QConfig) -> Result<Self> {
        Ok(Self { inner: ConvBn2d::from_float(conv, bn, qconfig)? })
    }

    pub fn forward(&mut self, x: Tensor<4>) -> Result<Tensor<4>> {
        self.inner.forward_with(x, true, "ConvBnReLU2d")
    }
}

impl ConvReLU2d {
    /// PyTorch's `ConvReLU2d(..., bias=True, padding_mode='zeros', qconfig)`.
    pub fn new(options: Conv2dOptions, bias: bool, qconfig: QConfig, device: &burn::tensor::Device) -> Result<Self> {
        Ok(Self { conv: qat::Conv2d::new(options, bias, qconfig, device)? })
    }

    pub fn from_float(conv: &float::Conv2d, qconfig: QConfig) -> Result<Self> {
        Ok(Self { conv: qat::Conv2d::from_float(conv, qconfig)? })
    }

    pub fn forward(&mut self, x: Tensor<4>) -> Result<Tensor<4>> {
        self.conv.forward_with(x, true, "ConvReLU2d")
    }
}

impl LinearReLU {
    /// PyTorch's `LinearReLU(in_features, out_features, bias=True, qconfig)`.
    pub fn new(in_features: usize, out_features: usize, bias: bool, qconfig: QConfig, device: &burn::tensor::Device) -> Result<Self> {
        Ok(Self { linear: qat::Linear::new(in_features, out_features, bias, qconfig, device)? })
    }

    pub fn from_float(linear: &float::Linear, qconfig: QConfig) -> Result<Self> {
        Ok(Self { linear: qat::Linear::from_float(linear, qconfig)? })
    }

    pub fn forward<const D: usize>(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.linear.forward_with(x, true, "LinearReLU")
    }
}
