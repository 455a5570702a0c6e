//! Fake quantization on the GPU backends: the same arithmetic as the CPU kernel
//! (`kernels/f32/fake_quant.rs`), one thread per element. `q = z + rne(x * inv_s)` with the f32
//! reciprocal multiplied; cubecl's `round` is ties-to-even on every runtime (WGSL `round`,
//! CUDA/HIP `rint`); the clamp is written as comparisons so that NaN maps to `quant_min`, as
//! C's `fmax`/`fmin` do in PyTorch (WGSL's `max` leaves NaN implementation-defined); the
//! gradient is multiplied by the 0/1 mask, so signs of zero match too.

use burn::backend::Cube;
use burn::backend::cubecl::dtype_to_storage_type;
use burn::backend::ops::FloatTensorOps;
use burn::tensor::TensorData;
use burn_cubecl::cubecl::prelude::*;
use burn_cubecl::cubecl::{self, calculate_cube_count_elemwise};
use burn_cubecl::kernel::into_contiguous;
use burn_cubecl::ops::numeric::empty_device_dtype;
use burn_cubecl::tensor::CubeTensor;

use crate::kernels::f32::fake_quant::ChannelLayout;
use crate::ops::fake_quant::{FakeQuantKernels, FakeQuantOps, FakeQuantParams};

/// `params`: `[quant_min, quant_max]`, then `[inv_scale, zero_point, scale]` per channel.
#[cube]
fn quantize<F: Float>(x: F, params: &Tensor<F>, channel: usize) -> F {
    params[2 + 3 * channel + 1] + F::round(x * params[2 + 3 * channel])
}

/// The forward, `out = (clamp(q) - z) * s`, or with `backward` the gradient,
/// `out = grad * [quant_min <= q <= quant_max]`: one kernel, so both round and compare the same
/// `q`. The forward passes `x` again as `grad`, which it does not read.
#[cube(launch)]
fn fake_quant_kernel<F: Float>(
    x: &Tensor<F>,
    grad: &Tensor<F>,
    params: &Tensor<F>,
    out: &mut Tensor<F>,
    inner: u32,
    channels: u32,
    #[comptime] backward: bool,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= x.len() {
        terminate!();
    }
    let channel = (ABSOLUTE_POS / inner as usize) % channels as usize;
    let q = quantize::<F>(x[ABSOLUTE_POS], params, channel);
    let (quant_min, quant_max) = (params[0], params[1]);
    if backward {
        let mut mask = F::new(0.0);
        if q >= quant_min {
            if q <= quant_max {
                mask = F::new(1.0);
            }
        }
        out[ABSOLUTE_POS] = grad[ABSOLUTE_POS] * mask;
    } else {
        let mut low = quant_min;
        if q >= quant_min {
            low = q;
        }
        let mut clamped = quant_max;
        if low <= quant_max {
            clamped = low;
        }
        out[ABSOLUTE_POS] = (clamped - params[2 + 3 * channel + 1]) * params[2 + 3 * channel + 2];
    }
}

/// The parameter table on `like`'s device, in its dtype (an f64 tensor gets the f32
/// reciprocal widened, as on the CPU).
fn param_table(params: &FakeQuantParams, like: &CubeTensor) -> CubeTensor {
    let mut table = vec![params.quant_min as f64, params.quant_max as f64];
    for (&s, &z) in params.scale.iter().zip(&params.zero_point) {
        table.extend([(1.0f32 / s) as f64, z as f64, s as f64]);
    }
    let len = table.len();
    let data = TensorData::new(table, [len]).convert_dtype(like.dtype);
    Cube::float_from_data(data, &like.device)
}

/// Launches [`fake_quant_kernel`] over the contiguous `x`, one thread per element: the
/// forward, or with `grad` the backward.
fn launch(x: CubeTensor, grad: Option<CubeTensor>, params: &FakeQuantParams) -> CubeTensor {
    let x = into_contiguous(x);
    let backward = grad.is_some();
    let grad = grad.map_or_else(|| x.clone(), into_contiguous);
    let out = empty_device_dtype(grad.client.clone(), grad.device.clone(), grad.meta.shape().clone(), grad.dtype);
    let shape = x.meta.shape().to_vec();
    let n: usize = shape.iter().product();
    if n == 0 {
        return out;
    }
    let layout = ChannelLayout::new(&shape, params.axis);
    let client = x.client.clone();
    let dim = CubeDim::new(&client, n);
    let count = calculate_cube_count_elemwise(&client, n, dim);
    let table = param_table(params, &x);
    let dtype = dtype_to_storage_type(x.dtype);
    let (inner, channels) = (layout.inner as u32, layout.channels as u32);
    let (x, grad, table, y) = (x.into_tensor_arg(), grad.into_tensor_arg(), table.into_tensor_arg(), out.clone().into_tensor_arg());
    fake_quant_kernel::launch(&client, count, dim, x, grad, table, y, inner, channels, backward, dtype);
    out
}

impl FakeQuantKernels for Cube {
    fn fake_quantize_forward(x: CubeTensor, params: &FakeQuantParams) -> CubeTensor {
        launch(x, None, params)
    }

    fn fake_quantize_backward(x: CubeTensor, grad: CubeTensor, params: &FakeQuantParams) -> CubeTensor {
        launch(x, Some(grad), params)
    }
}

impl FakeQuantOps for Cube {
    fn fake_quantize(x: CubeTensor, params: FakeQuantParams) -> CubeTensor {
        Self::fake_quantize_forward(x, &params)
    }
}
