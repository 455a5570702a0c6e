//! What the 2-d and 3-d conv geometries share: a size taking one number or one per axis
//! (PyTorch's `_pair` / `_triple`), the options with PyTorch's defaults (stride 1, padding 0,
//! dilation 1, groups 1, zeros padding) and their builders, PyTorch's constructor checks, the
//! input checks, and the forward that pads non-zero modes explicitly first, as PyTorch's
//! `_conv_forward` does. One text for both, so their checks and messages cannot drift apart.

/// Declares the size type `$size` and the options `$options` over `$axes` spatial axes (named
/// `$spatial` in messages), a geometry of tensors of rank `$rank` whose convolution is `$conv`.
macro_rules! spatial_conv_options {
    (
        $(#[$doc:meta])* $options:ident, $size:ident, $axes:literal, $size_doc:literal,
        rank: $rank:literal, spatial: $spatial:literal, dims: $dims:literal, conv: $conv:path
    ) => {
        #[doc = $size_doc]
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $size(pub [usize; $axes]);

        impl From<usize> for $size {
            fn from(v: usize) -> Self {
                Self([v; $axes])
            }
        }

        impl From<[usize; $axes]> for $size {
            fn from(v: [usize; $axes]) -> Self {
                Self(v)
            }
        }

        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $options {
            pub in_channels: usize,
            pub out_channels: usize,
            pub kernel_size: [usize; $axes],
            pub stride: [usize; $axes],
            pub padding: [usize; $axes],
            pub dilation: [usize; $axes],
            pub groups: usize,
            pub padding_mode: PaddingMode,
            /// Whether `padding` was asked for as `"same"`: it then follows the kernel and dilation.
            pub padding_same: bool,
        }

        impl $options {
            pub fn new(in_channels: usize, out_channels: usize, kernel_size: impl Into<$size>) -> Self {
                Self {
                    in_channels,
                    out_channels,
                    kernel_size: kernel_size.into().0,
                    stride: [1; $axes],
                    padding: [0; $axes],
                    dilation: [1; $axes],
                    groups: 1,
                    padding_mode: PaddingMode::Zeros,
                    padding_same: false,
                }
            }

            setters! { sizes $size: with_stride => stride }

            /// Numbers (one, or one per axis), [`Padding::Valid`] or [`Padding::Same`].
            pub fn with_padding(mut self, padding: impl Into<Padding<$axes>>) -> Self {
                let padding = padding.into();
                self.padding_same = padding == Padding::Same;
                self.padding = padding.resolve(self.kernel_size, self.dilation);
                self
            }

            /// The padding after each axis: `padding`, plus one where `"same"` padding's total is
            /// odd (PyTorch pads the extra element after).
            pub fn padding_after(&self) -> [usize; $axes] {
                super::padding::padding_after(self.padding_same, self.padding, self.kernel_size, self.dilation)
            }

            pub fn with_dilation(mut self, dilation: impl Into<$size>) -> Self {
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

        impl $options {
            /// The weight shape `[out, in / groups, k...]`.
            pub fn weight_shape(&self) -> [usize; $rank] {
                let mut shape = [0; $rank];
                shape[0] = self.out_channels;
                shape[1] = self.in_channels / self.groups.max(1);
                shape[2..].copy_from_slice(&self.kernel_size);
                shape
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

            /// Checks an input `[N, C, spatial...]` against this geometry.
            pub fn check_input(&self, dims: [usize; $rank], layer: &str) -> Result<()> {
                if dims[1] != self.in_channels {
                    return Err(QatError::shape(
                        layer,
                        format!("input with {0} channels [N, {0}, {1}]", self.in_channels, $spatial),
                        format!("{dims:?}"),
                    ));
                }
                let after = self.padding_after();
                for (axis, &size) in dims[2..].iter().enumerate() {
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

            /// `conv(pad(x), weight, bias)`: zeros padding inside the convolution (the odd
            /// element of an asymmetric `"same"` padded first, as PyTorch does), other modes
            /// padded explicitly first (PyTorch's `_conv_forward`).
            pub(crate) fn forward(&self, x: Tensor<$rank>, weight: Tensor<$rank>, bias: Option<Tensor<1>>) -> Tensor<$rank> {
                let after = self.padding_after();
                let pairs: [(usize, usize); $axes] = std::array::from_fn(|i| (self.padding[i], after[i]));
                let (x, padding) = match self.padding_mode {
                    PaddingMode::Zeros if after == self.padding => (x, self.padding),
                    PaddingMode::Zeros => (x.pad(pairs.map(|(before, after)| (0, after - before)), PadMode::Constant(0.0)), self.padding),
                    PaddingMode::Reflect => (x.pad(pairs, PadMode::Reflect), [0; $axes]),
                    PaddingMode::Replicate => (x.pad(pairs, PadMode::Edge), [0; $axes]),
                    PaddingMode::Circular => ((0..$axes).fold(x, |x, axis| circular_pad(x, 2 + axis, pairs[axis])), [0; $axes]),
                };
                $conv(x, weight, bias, ConvOptions::new(self.stride, padding, self.dilation, self.groups))
            }
        }

        impl ConvGeometry<$rank> for $options {
            const DIMS: &'static str = $dims;

            fn out_channels(&self) -> usize {
                self.out_channels
            }

            fn weight_shape(&self) -> [usize; $rank] {
                <$options>::weight_shape(self)
            }

            fn fan_in(&self) -> usize {
                <$options>::fan_in(self)
            }

            fn validate(&self) -> Result<()> {
                <$options>::validate(self)
            }

            fn check_input(&self, dims: [usize; $rank], layer: &str) -> Result<()> {
                <$options>::check_input(self, dims, layer)
            }

            fn forward(&self, x: Tensor<$rank>, weight: Tensor<$rank>, bias: Option<Tensor<1>>) -> Tensor<$rank> {
                <$options>::forward(self, x, weight, bias)
            }
        }

        impl super::ConvWindow for $options {
            fn kernel(&self) -> &[usize] {
                &self.kernel_size
            }
            fn stride(&self) -> &[usize] {
                &self.stride
            }
            fn dilation(&self) -> &[usize] {
                &self.dilation
            }
            fn padding(&self) -> &[usize] {
                &self.padding
            }
            fn padding_after(&self) -> Vec<usize> {
                <$options>::padding_after(self).to_vec()
            }
            fn groups(&self) -> usize {
                self.groups
            }
            fn padding_mode(&self) -> PaddingMode {
                self.padding_mode
            }
        }
    };
}

pub(crate) use spatial_conv_options;
