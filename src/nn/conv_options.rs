//! Convolution geometry shared by every 2-d conv module: sizes, padding mode, validation, and
//! the functional forward that applies non-zero padding modes explicitly, as PyTorch does.

use burn::tensor::Tensor;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::geometry::{ConvGeometry, check_conv_parameters, circular_pad};
use super::padding::{Padding, check_same_padding};
use crate::error::{QatError, Result};
pub use crate::kernels::PaddingMode;

impl From<(usize, usize)> for Size2 {
    fn from((a, b): (usize, usize)) -> Self {
        Self([a, b])
    }
}

super::spatial_options::spatial_conv_options!(
    /// The geometry of a 2-d convolution, with PyTorch's defaults (stride 1, padding 0, dilation
    /// 1, groups 1, zeros padding).
    Conv2dOptions,
    Size2,
    2,
    "A 2-d size given as one number or a pair (PyTorch's `_pair`)."
);

impl Conv2dOptions {
    /// The weight shape `[out, in / groups, kh, kw]`.
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.out_channels, self.in_channels / self.groups.max(1), self.kernel_size[0], self.kernel_size[1]]
    }

    /// Inputs per output value, the fan-in used for PyTorch's default init.
    pub fn fan_in(&self) -> usize {
        self.weight_shape()[1..].iter().product()
    }

    /// PyTorch's constructor checks, as errors.
    pub fn validate(&self) -> Result<()> {
        check_conv_parameters(self.in_channels, self.out_channels, self.groups, &self.kernel_size, &self.stride, &self.dilation)?;
        if self.padding_same { check_same_padding(self.stride) } else { Ok(()) }
    }

    /// Checks an input `[N, C, H, W]` against this geometry.
    pub fn check_input(&self, dims: [usize; 4], layer: &str) -> Result<()> {
        let [_, c, h, w] = dims;
        if c != self.in_channels {
            return Err(QatError::shape(
                layer,
                format!("input with {} channels [N, {}, H, W]", self.in_channels, self.in_channels),
                format!("{dims:?}"),
            ));
        }
        let after = self.padding_after();
        for (axis, size) in [h, w].into_iter().enumerate() {
            let padded = size + self.padding[axis] + after[axis];
            let extent = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1;
            if padded < extent {
                return Err(QatError::shape(
                    layer,
                    format!("spatial size at least {} (kernel extent) after padding", extent),
                    format!("{dims:?} padded to {padded}"),
                ));
            }
            if self.padding_mode == PaddingMode::Reflect && after[axis] >= size {
                return Err(QatError::shape(layer, format!("reflect padding {} below the input size", after[axis]), format!("{dims:?}")));
            }
            if self.padding_mode == PaddingMode::Circular && after[axis] > size {
                return Err(QatError::shape(
                    layer,
                    format!("circular padding {} at most the input size", after[axis]),
                    format!("{dims:?}"),
                ));
            }
        }
        Ok(())
    }

    /// `conv2d(pad(x), weight, bias)`: zeros padding inside the convolution (the odd element of
    /// an asymmetric `"same"` padded first, as PyTorch does), other modes padded explicitly
    /// first (PyTorch's `_conv_forward`).
    pub(crate) fn forward(&self, x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let ([ph, pw], [ah, aw]) = (self.padding, self.padding_after());
        let (x, padding) = match self.padding_mode {
            PaddingMode::Zeros if [ah, aw] == self.padding => (x, self.padding),
            PaddingMode::Zeros => (x.pad([(0, ah - ph), (0, aw - pw)], PadMode::Constant(0.0)), self.padding),
            PaddingMode::Reflect => (x.pad([(ph, ah), (pw, aw)], PadMode::Reflect), [0, 0]),
            PaddingMode::Replicate => (x.pad([(ph, ah), (pw, aw)], PadMode::Edge), [0, 0]),
            PaddingMode::Circular => (circular_pad(circular_pad(x, 2, (ph, ah)), 3, (pw, aw)), [0, 0]),
        };
        // This crate's convolution (its own backward); it falls back to burn's for non-f32 tensors.
        crate::ops::conv2d(x, weight, bias, ConvOptions::new(self.stride, padding, self.dilation, self.groups))
    }
}

impl ConvGeometry<4> for Conv2dOptions {
    const DIMS: &'static str = "2d";

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn weight_shape(&self) -> [usize; 4] {
        Conv2dOptions::weight_shape(self)
    }

    fn fan_in(&self) -> usize {
        Conv2dOptions::fan_in(self)
    }

    fn validate(&self) -> Result<()> {
        Conv2dOptions::validate(self)
    }

    fn check_input(&self, dims: [usize; 4], layer: &str) -> Result<()> {
        Conv2dOptions::check_input(self, dims, layer)
    }

    fn forward(&self, x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        Conv2dOptions::forward(self, x, weight, bias)
    }
}

super::geometry::constant_module!(Conv2dOptions);
