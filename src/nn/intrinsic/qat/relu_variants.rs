//! The ReLU variants: the same module with a ReLU before the output fake quant. They deref to
//! the module they extend, so every method (`freeze_bn_stats`, ...) is there.

use std::ops::{Deref, DerefMut};

use burn::module::Module;
use burn::tensor::Tensor;

use super::ConvBnNd;
use crate::error::Result;
use crate::nn::qat::{self, ConvConfig, ConvNd, LinearConfig};
use crate::nn::{ConvGeometry, float};
use crate::qconfig::QConfig;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader};

macro_rules! relu_variant {
    // The shared impls, for a type with its generic parameters and their bounds.
    (@impls [$($params:tt)*] $ty:ty, $field:ident: $inner:ty) => {
        impl<$($params)*> Deref for $ty {
            type Target = $inner;
            fn deref(&self) -> &$inner {
                &self.$field
            }
        }

        impl<$($params)*> DerefMut for $ty {
            fn deref_mut(&mut self) -> &mut $inner {
                &mut self.$field
            }
        }

        impl<$($params)*> SaveStateDict for $ty {
            fn write_state(&self, prefix: &str, out: &mut StateDict) {
                self.$field.write_state(prefix, out);
            }
        }

        impl<$($params)*> LoadStateDict for $ty {
            fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
                self.$field.read_state(prefix, reader);
            }
        }

        impl<$($params)*> $ty {
            /// Attaches the output fake quant from the qconfig (what `prepare_qat` does).
            pub fn with_output_fake_quant(self) -> Result<Self> {
                Ok(Self { $field: self.$field.with_output_fake_quant()? })
            }
        }
    };
    // A conv variant, generic over the geometry like the module it wraps.
    ($(#[$doc:meta])* conv $name:ident, $field:ident: $inner:ident) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $name<const D: usize, O: ConvGeometry<D>> {
            pub $field: $inner<D, O>,
        }
        relu_variant!(@impls [const D: usize, O: ConvGeometry<D>] $name<D, O>, $field: $inner<D, O>);
    };
    ($(#[$doc:meta])* $name:ident, $field:ident: $inner:ty) => {
        $(#[$doc])*
        #[derive(Module, Debug)]
        pub struct $name {
            pub $field: $inner,
        }
        relu_variant!(@impls [] $name, $field: $inner);
    };
}

relu_variant!(
    /// `relu(ConvBnNd(x))`: PyTorch's `ConvBnReLU1d` / `2d` / `3d`; the transposed one is beyond
    /// PyTorch (see [`ConvBnNd`]).
    conv ConvBnReLUNd, inner: ConvBnNd
);
relu_variant!(
    /// `relu(conv(x, weight_fake_quant(W), bias))`: PyTorch's `ConvReLU1d` / `2d` / `3d` (its
    /// default mapping leaves a fused ConvReLU1d float under QAT; we swap it like every other
    /// conv); the transposed one is beyond PyTorch.
    conv ConvReLUNd, conv: ConvNd
);

per_geometry!(ConvBnReLUNd: ConvBnReLU1d, ConvBnReLU2d, ConvBnReLU3d, ConvTransposeBnReLU2d);
per_geometry!(ConvReLUNd: ConvReLU1d, ConvReLU2d, ConvReLU3d, ConvTransposeReLU2d);
relu_variant!(
    /// `torch.ao.nn.intrinsic.qat.LinearReLU`: `relu(linear(x, weight_fake_quant(W), bias))`.
    ///
    /// ```
    /// # use burn::tensor::{Device, Tensor};
    /// # use burn_qat::{nn::qat::LinearConfig, qconfig::get_default_qat_qconfig};
    /// let device = Device::flex().autodiff();
    /// let mut m = LinearConfig::new(20, 30, get_default_qat_qconfig("x86", 1).unwrap()).init_relu(&device).unwrap();
    /// let y = m.forward(Tensor::<2>::random([128, 20], burn::tensor::Distribution::Default, &device)).unwrap();
    /// assert_eq!(y.dims(), [128, 30]);
    /// ```
    LinearReLU, linear: qat::Linear
);

impl<const D: usize, O: ConvGeometry<D>> ConvBnReLUNd<D, O> {
    pub fn forward(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        let layer = format!("{}BnReLU{}", O::PREFIX, O::DIMS);
        self.inner.forward_with(x, true, &layer)
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvBnReLUNd<D, O> {
    pub fn from_float(conv: &float::ConvNd<D, O>, bn: &crate::nn::BatchNorm, qconfig: QConfig) -> Result<Self> {
        Ok(Self { inner: ConvBnNd::from_float(conv, bn, qconfig)? })
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvReLUNd<D, O> {
    pub fn forward(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        let layer = format!("{}ReLU{}", O::PREFIX, O::DIMS);
        self.conv.forward_with(x, true, &layer)
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvReLUNd<D, O> {
    pub fn from_float(conv: &float::ConvNd<D, O>, qconfig: QConfig) -> Result<Self> {
        Ok(Self { conv: ConvNd::from_float(conv, qconfig)? })
    }
}

impl LinearReLU {
    pub fn from_float(linear: &float::Linear, qconfig: QConfig) -> Result<Self> {
        Ok(Self { linear: qat::Linear::from_float(linear, qconfig)? })
    }

    pub fn forward<const D: usize>(&mut self, x: Tensor<D>) -> Result<Tensor<D>> {
        self.linear.forward_with(x, true, "LinearReLU")
    }
}

impl<const D: usize, O: ConvGeometry<D>> ConvConfig<D, O> {
    /// PyTorch's `ConvReLU2d(..., bias=True, qconfig)` (and 1-d, 3-d, transposed): the conv of
    /// [`init`](Self::init) with its ReLU fused.
    pub fn init_relu(&self, device: &burn::tensor::Device) -> Result<ConvReLUNd<D, O>> {
        Ok(ConvReLUNd { conv: self.init(device)? })
    }
}

impl LinearConfig {
    /// PyTorch's `LinearReLU(in_features, out_features, bias=True, qconfig)`.
    pub fn init_relu(&self, device: &burn::tensor::Device) -> Result<LinearReLU> {
        Ok(LinearReLU { linear: self.init(device)? })
    }
}
