//! What the code that treats every forward conv geometry alike reads: its window over the
//! spatial axes, one entry per axis (a 1-d conv's single numbers as one-entry slices). The int8
//! engine lifts it to its three-axis view (`nn::quantized::Int8Window::forward`), from which the
//! int8 kernels and the ONNX export read it.

use super::PaddingMode;

pub trait ConvWindow {
    fn kernel(&self) -> &[usize];
    fn stride(&self) -> &[usize];
    fn dilation(&self) -> &[usize];
    /// The padding before each axis.
    fn padding(&self) -> &[usize];
    /// The padding after each axis (one more than before for an asymmetric `"same"`).
    fn padding_after(&self) -> Vec<usize>;
    fn groups(&self) -> usize;
    fn padding_mode(&self) -> PaddingMode;
}
