//! What the 2-d and 3-d conv geometries share: a size taking one number or one per axis
//! (PyTorch's `_pair` / `_triple`), and the options with PyTorch's defaults (stride 1, padding 0,
//! dilation 1, groups 1, zeros padding) and their builders.

/// Declares the size type `$size` and the options `$options` over `$axes` spatial axes.
macro_rules! spatial_conv_options {
    ($(#[$doc:meta])* $options:ident, $size:ident, $axes:literal, $size_doc:literal) => {
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
