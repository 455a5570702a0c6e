//! What a QAT conv module needs from its geometry, whatever the number of spatial dimensions:
//! `D` is the tensor rank (4 for 2-d convs on `[N, C, H, W]`, 5 for 3-d ones).

use burn::tensor::Tensor;

use crate::error::Result;

/// Geometries are burn modules without parameters, so that generic modules holding them derive
/// `Module` (see [`constant_module`]).
pub trait ConvGeometry<const D: usize>:
    burn::module::Module + burn::module::ModuleDisplay + Clone + std::fmt::Debug + PartialEq + Send + Sync + 'static
{
    /// `"Conv"` or `"ConvTranspose"`: with [`DIMS`](Self::DIMS), the layer names in errors.
    const PREFIX: &'static str = "Conv";
    /// `"2d"` or `"3d"`.
    const DIMS: &'static str;
    /// The weight axis of the output channels: 0 for convolutions, 1 for transposed ones. BN
    /// folding scales along it and per-channel weight quantization runs along it.
    const WEIGHT_CHANNEL_AXIS: usize = 0;
    fn out_channels(&self) -> usize;
    /// `[out, in / groups, k...]`.
    fn weight_shape(&self) -> [usize; D];
    /// Inputs per output value, for PyTorch's default init bound `1 / sqrt(fan_in)`.
    fn fan_in(&self) -> usize;
    /// PyTorch's constructor checks, as errors.
    fn validate(&self) -> Result<()>;
    /// Checks an input shape against this geometry.
    fn check_input(&self, dims: [usize; D], layer: &str) -> Result<()>;
    /// The convolution, padding modes included, without checks.
    fn forward(&self, x: Tensor<D>, weight: Tensor<D>, bias: Option<Tensor<1>>) -> Tensor<D>;
}

/// Wraps `pad` elements around each end of `dim` (PyTorch's circular padding).
pub(crate) fn circular_pad<const D: usize>(x: Tensor<D>, dim: usize, pad: usize) -> Tensor<D> {
    if pad == 0 {
        return x;
    }
    let size = x.dims()[dim];
    let head = x.clone().narrow(dim, 0, pad);
    let tail = x.clone().narrow(dim, size - pad, pad);
    Tensor::cat(vec![tail, x, head], dim)
}

/// Makes a plain configuration type a burn module with no parameters.
macro_rules! constant_module {
    ($ty:ty) => {
        impl burn::module::Module for $ty {
            burn::empty!(module);
        }

        impl burn::module::ModuleDisplayDefault for $ty {
            fn content(&self, content: burn::module::Content) -> Option<burn::module::Content> {
                content.add_formatted(&format!("{self:?}")).optional()
            }
        }

        impl burn::module::ModuleDisplay for $ty {}
    };
}

pub(crate) use constant_module;
