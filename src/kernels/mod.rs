//! Kernels on plain slices, below everything that knows burn's tensors or the modules: the
//! f32 convolution kernels under the training ops (`f32`), the int8 engine's integer kernels
//! (`int8`), and the input padding modes both the modules and the kernels use. Pure functions of their inputs, so they are tested and benchmarked alone.

pub(crate) mod f32;
pub mod int8;
mod padding;

pub use padding::PaddingMode;
pub(crate) use padding::pad_for_kernel;
