use burn::tensor::Tensor;
use burn::tensor::module::conv3d;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::PaddingMode;
use super::geometry::{ConvGeometry, check_conv_parameters, circular_pad};
use super::padding::{Padding, check_same_padding};
use crate::error::{QatError, Result};

/// A 3-d size given as one number or a triple (PyTorch's `_triple`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size3(pub [usize; 3]);

impl From<usize> for Size3 {
    fn from(v: usize) -> Self {
        Self([v; 3])
    }
}

impl From<[usize; 3]> for Size3 {
    fn from(v: [usize; 3]) -> Self {
        Self(v)
    }
}

/// The geometry of a 3-d convolution over `[N, C, D, H, W]`, with PyTorch's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv3dOptions {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: [usize; 3],
    pub stride: [usize; 3],
    pub padding: [usize; 3],
    pub dilation: [usize; 3],
    pub groups: usize,
    pub padding_mode: PaddingMode,
    /// Whether `padding` was asked for as `"same"`: it then follows the kernel and dilation.
    pub padding_same: bool,
}

impl Conv3dOptions {
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl Into<Size3>) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size: kernel_size.into().0,
            stride: [1; 3],
            padding: [0; 3],
            dilation: [1; 3],
            groups: 1,
            padding_mode: PaddingMode::Zeros,
            padding_same: false,
        }
    }

    pub fn with_stride(mut self, stride: impl Into<Size3>) -> Self {
        self.stride = stride.into().0;
        self
    }

    /// Numbers (`1`, `[0, 1, 1]`), [`Padding::Valid`] or [`Padding::Same`].
    pub fn with_padding(mut self, padding: impl Into<Padding<3>>) -> Self {
        let padding = padding.into();
        self.padding_same = padding == Padding::Same;
        self.padding = padding.resolve(self.kernel_size, self.dilation);
        self
    }

    pub fn with_dilation(mut self, dilation: impl Into<Size3>) -> Self {
        self.dilation = dilation.into().0;
        if self.padding_same {
            self.padding = Padding::Same.resolve(self.kernel_size, self.dilation);
        }
        self
    }

    pub fn with_groups(mut self, groups: usize) -> Self {
        self.groups = groups;
        self
    }

    pub fn with_padding_mode(mut self, padding_mode: PaddingMode) -> Self {
        self.padding_mode = padding_mode;
        self
    }
}

impl ConvGeometry<5> for Conv3dOptions {
    const DIMS: &'static str = "3d";

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn weight_shape(&self) -> [usize; 5] {
        let [kd, kh, kw] = self.kernel_size;
        [self.out_channels, self.in_channels / self.groups.max(1), kd, kh, kw]
    }

    fn fan_in(&self) -> usize {
        self.weight_shape()[1..].iter().product()
    }

    fn validate(&self) -> Result<()> {
        check_conv_parameters(self.in_channels, self.out_channels, self.groups, &self.kernel_size, &self.stride, &self.dilation)?;
        if self.padding_same { check_same_padding(self.kernel_size, self.dilation, self.stride) } else { Ok(()) }
    }

    fn check_input(&self, dims: [usize; 5], layer: &str) -> Result<()> {
        if dims[1] != self.in_channels {
            return Err(QatError::shape(
                layer,
                format!("input with {} channels [N, {}, D, H, W]", self.in_channels, self.in_channels),
                format!("{dims:?}"),
            ));
        }
        for axis in 0..3 {
            let size = dims[2 + axis];
            let padded = size + 2 * self.padding[axis];
            let extent = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1;
            let bad_pad = match self.padding_mode {
                PaddingMode::Reflect => self.padding[axis] >= size,
                PaddingMode::Circular => self.padding[axis] > size,
                _ => false,
            };
            if padded < extent || bad_pad {
                return Err(QatError::shape(
                    layer,
                    format!("a spatial size that fits kernel extent {extent} with padding {:?}", self.padding),
                    format!("{dims:?}"),
                ));
            }
        }
        Ok(())
    }

    fn forward(&self, x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>) -> Tensor<5> {
        let [pd, ph, pw] = self.padding;
        let pairs = [(pd, pd), (ph, ph), (pw, pw)];
        let (x, padding) = match self.padding_mode {
            PaddingMode::Zeros => (x, self.padding),
            PaddingMode::Reflect => (x.pad(pairs, PadMode::Reflect), [0; 3]),
            PaddingMode::Replicate => (x.pad(pairs, PadMode::Edge), [0; 3]),
            PaddingMode::Circular => (circular_pad(circular_pad(circular_pad(x, 2, pd), 3, ph), 4, pw), [0; 3]),
        };
        conv3d(x, weight, bias, ConvOptions::new(self.stride, padding, self.dilation, self.groups))
    }
}

super::geometry::constant_module!(Conv3dOptions);
