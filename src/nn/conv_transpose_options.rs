use burn::tensor::Tensor;
use burn::tensor::module::conv_transpose2d;
use burn::tensor::ops::ConvTransposeOptions;

use super::Size2;
use super::geometry::{ConvGeometry, check_conv_parameters, constant_module};
use crate::error::{QatError, Result};

/// The geometry of a 2-d transposed convolution, with PyTorch's defaults. Its weight is
/// `[in, out / groups, kh, kw]`: the output channel is weight axis 1, which BN folding and
/// per-channel weight quantization must follow (PyTorch's eager QAT has no ConvTranspose;
/// pytorch/ao#1462).
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose2dOptions {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvTranspose2dOptions {
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl Into<Size2>) -> Self {
        Self {
            in_channels,
            out_channels,
            kernel_size: kernel_size.into().0,
            stride: [1, 1],
            padding: [0, 0],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
        }
    }

    setters! {
        sizes Size2:
        with_stride => stride,
        with_padding => padding,
        with_output_padding => output_padding,
        with_dilation => dilation,
    }

    setters! { with_groups => groups: usize }
}

impl ConvGeometry<4> for ConvTranspose2dOptions {
    const PREFIX: &'static str = "ConvTranspose";
    const DIMS: &'static str = "2d";
    const WEIGHT_CHANNEL_AXIS: usize = 1;

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn weight_shape(&self) -> [usize; 4] {
        [self.in_channels, self.out_channels / self.groups.max(1), self.kernel_size[0], self.kernel_size[1]]
    }

    /// PyTorch computes the init bound from weight dimension 1: `out / groups * kh * kw`.
    fn fan_in(&self) -> usize {
        self.weight_shape()[1..].iter().product()
    }

    fn validate(&self) -> Result<()> {
        check_conv_parameters(self.in_channels, self.out_channels, self.groups, &self.kernel_size, &self.stride, &self.dilation)?;
        for axis in 0..2 {
            if self.output_padding[axis] >= self.stride[axis].max(self.dilation[axis]) {
                return Err(QatError::invalid(
                    "output_padding",
                    format!(
                        "output_padding {:?} must be smaller than stride {:?} or dilation {:?}",
                        self.output_padding, self.stride, self.dilation
                    ),
                ));
            }
        }
        Ok(())
    }

    fn check_input(&self, dims: [usize; 4], layer: &str) -> Result<()> {
        if dims[1] != self.in_channels {
            return Err(QatError::shape(
                layer,
                format!("input with {} channels [N, {}, H, W]", self.in_channels, self.in_channels),
                format!("{dims:?}"),
            ));
        }
        for axis in 0..2 {
            let full = (dims[2 + axis] - 1) * self.stride[axis]
                + self.dilation[axis] * (self.kernel_size[axis] - 1)
                + self.output_padding[axis]
                + 1;
            if dims[2 + axis] == 0 || full <= 2 * self.padding[axis] {
                return Err(QatError::shape(
                    layer,
                    format!("an input whose output size stays positive with padding {:?}", self.padding),
                    format!("{dims:?}"),
                ));
            }
        }
        Ok(())
    }

    fn forward(&self, x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>) -> Tensor<4> {
        let options = ConvTransposeOptions::new(self.stride, self.padding, self.output_padding, self.dilation, self.groups);
        conv_transpose2d(x, weight, bias, options)
    }
}

constant_module!(ConvTranspose2dOptions);
