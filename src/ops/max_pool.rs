//! 2-d max pooling (square window, stride, no padding, floor mode: what `MaxPool2d` layers
//! take) as a burn op with its own backward.
//!
//! Ours rather than burn's `max_pool2d`: Flex runs it through a general 3-d kernel with
//! indices, a quarter of a LeNet training step. Here each plane is one task, the forward keeps
//! the argmax of every window, and the backward adds each output gradient at its argmax, in
//! output order (so overlapping windows sum in a fixed order whatever the thread count).
//! PyTorch's semantics: the first maximum in row-major window order wins, and a NaN in the
//! window is the maximum (it propagates).

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::tensor::ops::MaxPoolOptions;
use burn::tensor::{Bytes, DType, Tensor};
use rayon::prelude::*;

use crate::error::{QatError, Result};
use crate::kernels::f32::bn::BnFloat;

/// The element types the max pooling kernels run on that burn's Flex tensors also store.
trait PoolElement: BnFloat + burn::tensor::Element {}
impl<T: BnFloat + burn::tensor::Element> PoolElement for T {}

/// The window: `kernel x kernel`, moved by `stride` along both axes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaxPoolWindow {
    pub kernel: usize,
    pub stride: usize,
}

impl MaxPoolWindow {
    fn out(&self, size: usize) -> usize {
        (size - self.kernel) / self.stride + 1
    }
}

/// Max pooling of `x` `[N, C, H, W]` (f32 or f64). `H` and `W` must hold at least one window.
pub fn max_pool2d(x: Tensor<4>, window: MaxPoolWindow) -> Result<Tensor<4>> {
    let [_, _, h, w] = x.dims();
    if window.kernel == 0 || window.stride == 0 || h < window.kernel || w < window.kernel {
        return Err(QatError::shape(
            "max_pool2d",
            format!("[N, C, H, W] with H, W >= {} (kernel {}, stride {})", window.kernel, window.kernel, window.stride),
            format!("{:?}", x.dims()),
        ));
    }
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(QatError::invalid("dtype", format!("max_pool2d supports f32 and f64 tensors, got {:?}", x.dtype())));
    }
    if !super::on_flex(&x) {
        // burn's pooling on the other backends. A window with tied maxima may send its
        // gradient to another of them than PyTorch's first.
        let options = MaxPoolOptions::new([window.kernel; 2]).with_stride([window.stride; 2]);
        return Ok(burn::tensor::module::max_pool2d(x, options));
    }
    Ok(Tensor::from_dispatch(Dispatch::max_pool2d(x.into_dispatch(), window)))
}

/// The op as burn sees it: routed by `Dispatch` to the Flex kernel or to the autodiff wrapper.
#[backend_extension(Flex, Autodiff)]
pub trait MaxPoolOps: Backend {
    fn max_pool2d(x: FloatTensor<Self>, window: MaxPoolWindow) -> FloatTensor<Self>;
}

/// Each output's argmax within its input plane, and the input shape: what the backward needs.
#[derive(Clone, Debug)]
pub struct Argmax {
    indices: Arc<Vec<u32>>,
    input_shape: [usize; 4],
}

/// The plain kernels the autodiff wrapper calls on its inner backend.
pub trait MaxPoolKernels: Backend {
    fn max_pool2d_forward(x: FloatTensor<Self>, window: MaxPoolWindow) -> (FloatTensor<Self>, Argmax);
    fn max_pool2d_backward(grad: FloatTensor<Self>, argmax: &Argmax) -> FloatTensor<Self>;
}

fn shape4(t: &FlexTensor) -> [usize; 4] {
    t.layout().shape().to_vec().try_into().expect("a rank-4 tensor")
}

/// Values and argmax of every window, plane by plane.
fn forward<T: PoolElement>(x: &[T], [n, c, h, w]: [usize; 4], window: MaxPoolWindow) -> (Vec<T>, Vec<u32>) {
    let (oh, ow) = (window.out(h), window.out(w));
    let (k, s) = (window.kernel, window.stride);
    let mut values = vec![T::ZERO; n * c * oh * ow];
    let mut indices = vec![0u32; values.len()];
    values.par_chunks_mut(oh * ow).zip(indices.par_chunks_mut(oh * ow)).enumerate().for_each(|(p, (values, indices))| {
        let plane = &x[p * h * w..][..h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let first = oy * s * w + ox * s;
                let (mut best, mut at) = (plane[first], first);
                for ky in 0..k {
                    for (kx, &v) in plane[first + ky * w..][..k].iter().enumerate() {
                        // As PyTorch: a NaN always takes the window, so the last NaN is the
                        // argmax; otherwise the first maximum stays.
                        if v > best || v.is_nan() {
                            (best, at) = (v, first + ky * w + kx);
                        }
                    }
                }
                values[oy * ow + ox] = best;
                indices[oy * ow + ox] = at as u32;
            }
        }
    });
    (values, indices)
}

/// The input gradient: each output's gradient added at its argmax, in output order.
fn backward<T: PoolElement>(grad: &[T], argmax: &Argmax) -> Vec<T> {
    let [n, c, h, w] = argmax.input_shape;
    let per_plane = grad.len() / (n * c).max(1);
    let mut dx = vec![T::ZERO; n * c * h * w];
    dx.par_chunks_mut(h * w).enumerate().for_each(|(p, plane)| {
        let range = p * per_plane..(p + 1) * per_plane;
        for (&g, &i) in grad[range.clone()].iter().zip(&argmax.indices[range]) {
            plane[i as usize] = plane[i as usize] + g;
        }
    });
    dx
}

impl MaxPoolKernels for Flex {
    fn max_pool2d_forward(x: FlexTensor, window: MaxPoolWindow) -> (FlexTensor, Argmax) {
        let x = x.to_contiguous();
        let input_shape = shape4(&x);
        let [n, c, h, w] = input_shape;
        let dtype = x.dtype();
        let (bytes, indices) = match dtype {
            DType::F64 => {
                let (v, i) = forward::<f64>(x.as_slice().expect("contiguous"), input_shape, window);
                (Bytes::from_elems(v), i)
            }
            _ => {
                let (v, i) = forward::<f32>(x.as_slice().expect("contiguous"), input_shape, window);
                (Bytes::from_elems(v), i)
            }
        };
        let out = FlexTensor::new(bytes, Layout::contiguous(vec![n, c, window.out(h), window.out(w)].into()), dtype);
        (out, Argmax { indices: Arc::new(indices), input_shape })
    }

    fn max_pool2d_backward(grad: FlexTensor, argmax: &Argmax) -> FlexTensor {
        let grad = grad.to_contiguous();
        let dtype = grad.dtype();
        let bytes = match dtype {
            DType::F64 => Bytes::from_elems(backward::<f64>(grad.as_slice().expect("contiguous"), argmax)),
            _ => Bytes::from_elems(backward::<f32>(grad.as_slice().expect("contiguous"), argmax)),
        };
        FlexTensor::new(bytes, Layout::contiguous(argmax.input_shape.to_vec().into()), dtype)
    }
}

impl MaxPoolOps for Flex {
    fn max_pool2d(x: FlexTensor, window: MaxPoolWindow) -> FlexTensor {
        Self::max_pool2d_forward(x, window).0
    }
}

impl<B: MaxPoolKernels, C: CheckpointStrategy> MaxPoolOps for Autodiff<B, C> {
    fn max_pool2d(x: FloatTensor<Self>, window: MaxPoolWindow) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct MaxPoolBackward;

        impl<B: MaxPoolKernels> Backward<B, 1> for MaxPoolBackward {
            type State = Argmax;

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let argmax = ops.state;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| B::max_pool2d_backward(grad, &argmax));
            }
        }

        match MaxPoolBackward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, argmax) = B::max_pool2d_forward(x.into_primitive(), window);
                prep.finish(argmax, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::max_pool2d_forward(x.into_primitive(), window).0),
        }
    }
}
