//! What a QAT conv module needs from its geometry, whatever the number of spatial dimensions:
//! `D` is the tensor rank (4 for 2-d convs on `[N, C, H, W]`, 5 for 3-d ones).

use burn::tensor::Tensor;

use crate::error::Result;

/// Geometries are burn modules without parameters, so that generic modules holding them derive
/// `Module` (see `constant_module!` in this file).
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

/// Wraps the last `before` elements of `dim` around before its start and the first `after` after its
/// end (PyTorch's circular padding).
pub(crate) fn circular_pad<const D: usize>(x: Tensor<D>, dim: usize, (before, after): (usize, usize)) -> Tensor<D> {
    if before == 0 && after == 0 {
        return x;
    }
    let size = x.dims()[dim];
    // burn refuses empty slices: an asymmetric "same" padding may have nothing before.
    let tail = (before > 0).then(|| x.clone().narrow(dim, size - before, before));
    let head = (after > 0).then(|| x.clone().narrow(dim, 0, after));
    Tensor::cat(tail.into_iter().chain([x]).chain(head).collect(), dim)
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

/// PyTorch's constructor checks shared by every convolution (1-3 spatial dimensions, transposed
/// or not), with one wording: positive channels, groups dividing both channel counts, positive
/// kernel size, stride and dilation.
pub(crate) fn check_conv_parameters(
    in_channels: usize,
    out_channels: usize,
    groups: usize,
    kernel_size: &[usize],
    stride: &[usize],
    dilation: &[usize],
) -> Result<()> {
    let fail = |field: &str, reason: String| Err(crate::QatError::invalid(field, reason));
    if in_channels == 0 || out_channels == 0 {
        let field = if in_channels == 0 { "in_channels" } else { "out_channels" };
        return fail(field, format!("in_channels ({in_channels}) and out_channels ({out_channels}) must be positive"));
    }
    if groups == 0 {
        return fail("groups", "groups must be positive".into());
    }
    for (name, channels) in [("in_channels", in_channels), ("out_channels", out_channels)] {
        if channels % groups != 0 {
            return fail("groups", format!("{name} ({channels}) must be divisible by groups ({groups})"));
        }
    }
    if kernel_size.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
        let field = if kernel_size.contains(&0) {
            "kernel_size"
        } else if stride.contains(&0) {
            "stride"
        } else {
            "dilation"
        };
        return fail(field, format!("kernel_size {kernel_size:?}, stride {stride:?} and dilation {dilation:?} must be positive"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ConvGeometry;
    use crate::nn::{Conv2dOptions, Conv3dOptions, ConvTranspose2dOptions};

    /// One check, so one wording, for every geometry (they had drifted apart).
    #[test]
    fn every_conv_geometry_refuses_bad_parameters_in_the_same_words() {
        let message = |r: crate::Result<()>| r.unwrap_err().to_string();
        let two_d = message(Conv2dOptions::new(4, 6, 3).with_groups(4).validate());
        assert_eq!(two_d, "invalid groups: out_channels (6) must be divisible by groups (4)");
        assert_eq!(message(ConvGeometry::<5>::validate(&Conv3dOptions::new(4, 6, 3).with_groups(4))), two_d);
        assert_eq!(message(ConvGeometry::<4>::validate(&ConvTranspose2dOptions::new(4, 6, 3).with_groups(4))), two_d);
        let zero = message(ConvGeometry::<5>::validate(&Conv3dOptions::new(0, 6, 3)));
        assert_eq!(zero, "invalid in_channels: in_channels (0) and out_channels (6) must be positive");
        assert_eq!(message(Conv2dOptions::new(0, 6, 3).validate()), zero);
    }
}
