use burn::tensor::Tensor;

use super::padding::Padding;
use super::{Conv2dOptions, ConvGeometry, PaddingMode};
use crate::error::Result;

/// The geometry of a 1-d convolution over `[N, C, L]`, with PyTorch's defaults. One-dimensional
/// modules run as 2-d ones over `[N, C, 1, L]` with a `1 x K` kernel: the same sums, so the same
/// numerics, and one set of kernels to keep exact.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv1dOptions {
    pub in_channels: usize,
    pub out_channels: usize,
    pub kernel_size: usize,
    pub stride: usize,
    pub padding: usize,
    pub dilation: usize,
    pub groups: usize,
    pub padding_mode: PaddingMode,
    /// Whether `padding` was asked for as `"same"`: it then follows the kernel and dilation.
    pub padding_same: bool,
}

impl Conv1dOptions {
    pub fn new(in_channels: usize, out_channels: usize, kernel_size: usize) -> Self {
        let padding_mode = PaddingMode::Zeros;
        Self { in_channels, out_channels, kernel_size, stride: 1, padding: 0, dilation: 1, groups: 1, padding_mode, padding_same: false }
    }

    setters! { with_stride => stride: usize }

    /// A number, [`Padding::Valid`] or [`Padding::Same`].
    pub fn with_padding(mut self, padding: impl Into<Padding<1>>) -> Self {
        let padding = padding.into();
        self.padding_same = padding == Padding::Same;
        self.padding = padding.resolve([self.kernel_size], [self.dilation])[0];
        self
    }

    /// The padding after the input: `padding`, plus one where `"same"` padding's total is odd.
    pub fn padding_after(&self) -> usize {
        super::padding::padding_after(self.padding_same, [self.padding], [self.kernel_size], [self.dilation])[0]
    }

    pub fn with_dilation(mut self, dilation: usize) -> Self {
        self.dilation = dilation;
        if self.padding_same {
            self.padding = Padding::Same.resolve([self.kernel_size], [self.dilation])[0];
        }
        self
    }

    setters! {
        with_groups => groups: usize,
        with_padding_mode => padding_mode: PaddingMode,
    }

    /// PyTorch's weight shape `[out, in / groups, K]`.
    pub fn weight_shape(&self) -> [usize; 3] {
        [self.out_channels, self.in_channels / self.groups.max(1), self.kernel_size]
    }

    /// The equivalent 2-d geometry over `[N, C, 1, L]`.
    pub fn as_2d(&self) -> Conv2dOptions {
        Conv2dOptions::new(self.in_channels, self.out_channels, [1, self.kernel_size])
            .with_stride([1, self.stride])
            .with_padding(if self.padding_same { Padding::Same } else { Padding::Explicit([0, self.padding]) })
            .with_dilation([1, self.dilation])
            .with_groups(self.groups)
            .with_padding_mode(self.padding_mode)
    }
}

impl super::ConvWindow for Conv1dOptions {
    fn kernel(&self) -> &[usize] {
        std::slice::from_ref(&self.kernel_size)
    }
    fn stride(&self) -> &[usize] {
        std::slice::from_ref(&self.stride)
    }
    fn dilation(&self) -> &[usize] {
        std::slice::from_ref(&self.dilation)
    }
    fn padding(&self) -> &[usize] {
        std::slice::from_ref(&self.padding)
    }
    fn padding_after(&self) -> Vec<usize> {
        vec![Conv1dOptions::padding_after(self)]
    }
    fn groups(&self) -> usize {
        self.groups
    }
    fn padding_mode(&self) -> PaddingMode {
        self.padding_mode
    }
}

/// The 1-d geometry runs as the 2-d one over `[N, C, 1, L]` ([`Conv1dOptions::as_2d`]): the same
/// sums in the same order, so the 1-d family shares the 2-d numerics and kernels.
impl ConvGeometry<3> for Conv1dOptions {
    const DIMS: &'static str = "1d";

    fn out_channels(&self) -> usize {
        self.out_channels
    }

    fn weight_shape(&self) -> [usize; 3] {
        Conv1dOptions::weight_shape(self)
    }

    fn fan_in(&self) -> usize {
        self.as_2d().fan_in()
    }

    fn validate(&self) -> Result<()> {
        self.as_2d().validate()
    }

    fn check_input(&self, [n, c, l]: [usize; 3], layer: &str) -> Result<()> {
        self.as_2d().check_input([n, c, 1, l], layer)
    }

    fn forward(&self, x: Tensor<3>, weight: Tensor<3>, bias: Option<Tensor<1>>) -> Tensor<3> {
        let ([n, c, l], [o, i, k]) = (x.dims(), weight.dims());
        let y = self.as_2d().forward(x.reshape([n, c, 1, l]), weight.reshape([o, i, 1, k]), bias);
        let [_, o, _, l_out] = y.dims();
        y.reshape([n, o, l_out])
    }
}

super::geometry::constant_module!(Conv1dOptions);
