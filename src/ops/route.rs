//! Which road an op takes: this crate's own kernels on the Flex CPU backend, burn's ops (and,
//! for fake quantization, our CubeCL kernels in `ops/cube`) on every other backend.
//!
//! The Flex kernels exist for speed on the CPU (bench/README.md). On a GPU burn's convolution,
//! pooling and reductions are already good kernels, so the other road composes them; only where
//! the numerics are ours (fake quantization) do we bring a kernel of our own.

use burn::backend::DispatchDevice;
use burn::tensor::{Device, Tensor};

/// Whether `device` (with or without autodiff) is burn's Flex CPU backend.
pub fn is_flex(device: &Device) -> bool {
    match device.as_dispatch() {
        DispatchDevice::Flex(_) => true,
        DispatchDevice::Autodiff(inner) => matches!(inner.clone().inner(), DispatchDevice::Flex(_)),
        #[allow(unreachable_patterns)] // the GPU variants exist only with a GPU feature
        _ => false,
    }
}

/// Whether `x` lives on the Flex CPU backend, where the crate's own kernels run.
pub(crate) fn on_flex<const D: usize>(x: &Tensor<D>) -> bool {
    is_flex(&x.device())
}
