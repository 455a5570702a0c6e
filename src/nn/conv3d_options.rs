use burn::tensor::Tensor;
use burn::tensor::module::conv3d;
use burn::tensor::ops::{ConvOptions, PadMode};

use super::PaddingMode;
use super::geometry::{ConvGeometry, check_conv_parameters, circular_pad};
use super::padding::{Padding, check_same_padding};
use crate::error::{QatError, Result};

super::spatial_options::spatial_conv_options!(
    /// The geometry of a 3-d convolution over `[N, C, D, H, W]`, with PyTorch's defaults.
    Conv3dOptions,
    Size3,
    3,
    "A 3-d size given as one number or a triple (PyTorch's `_triple`)."
);

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
        if self.padding_same { check_same_padding(self.stride) } else { Ok(()) }
    }

    fn check_input(&self, dims: [usize; 5], layer: &str) -> Result<()> {
        if dims[1] != self.in_channels {
            return Err(QatError::shape(
                layer,
                format!("input with {} channels [N, {}, D, H, W]", self.in_channels, self.in_channels),
                format!("{dims:?}"),
            ));
        }
        let after = self.padding_after();
        for axis in 0..3 {
            let size = dims[2 + axis];
            let padded = size + self.padding[axis] + after[axis];
            let extent = self.dilation[axis] * (self.kernel_size[axis] - 1) + 1;
            let bad_pad = match self.padding_mode {
                PaddingMode::Reflect => after[axis] >= size,
                PaddingMode::Circular => after[axis] > size,
                _ => false,
            };
            if padded < extent || bad_pad {
                return Err(QatError::shape(
                    layer,
                    format!("a spatial size that fits kernel extent {extent} with padding {:?} before and {after:?} after", self.padding),
                    format!("{dims:?}"),
                ));
            }
        }
        Ok(())
    }

    fn forward(&self, x: Tensor<5>, weight: Tensor<5>, bias: Option<Tensor<1>>) -> Tensor<5> {
        let after = self.padding_after();
        let pairs: [(usize, usize); 3] = std::array::from_fn(|i| (self.padding[i], after[i]));
        let (x, padding) = match self.padding_mode {
            PaddingMode::Zeros if after == self.padding => (x, self.padding),
            // The odd element of an asymmetric "same" padding first, the rest inside the conv.
            PaddingMode::Zeros => (x.pad(pairs.map(|(before, after)| (0, after - before)), PadMode::Constant(0.0)), self.padding),
            PaddingMode::Reflect => (x.pad(pairs, PadMode::Reflect), [0; 3]),
            PaddingMode::Replicate => (x.pad(pairs, PadMode::Edge), [0; 3]),
            PaddingMode::Circular => (circular_pad(circular_pad(circular_pad(x, 2, pairs[0]), 3, pairs[1]), 4, pairs[2]), [0; 3]),
        };
        conv3d(x, weight, bias, ConvOptions::new(self.stride, padding, self.dilation, self.groups))
    }
}

super::geometry::constant_module!(Conv3dOptions);
