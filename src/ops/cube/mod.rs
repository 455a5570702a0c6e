//! Our kernels on burn's CubeCL backend (wgpu, CUDA, ROCm): only where the numerics are ours.
//! Convolution, pooling, reductions and batch norm compose burn's own Cube kernels instead
//! (`ops/route.rs`).

mod fake_quant;
