//! Fake quantization as a burn op with its own backward (the straight-through estimator with
//! PyTorch's clamp mask), per tensor or per channel along any axis.
//!
//! A custom op rather than a composition of stock ops: it is one pass over the data instead of
//! six, and the mask it needs (on the *unclamped* rounded value) is awkward to compose exactly.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::tensor::{Bytes, DType, Tensor};

use crate::error::{QatError, Result};
use crate::kernels::f32::fake_quant::{self as kernel, ChannelLayout, ChannelParams, FqFloat};

/// The element types the fake quantization kernels run on that burn's Flex tensors also store.
trait FqElement: FqFloat + burn::tensor::Element {}
impl<T: FqFloat + burn::tensor::Element> FqElement for T {}

/// The parameters of one fake-quant call: one (scale, zero point) per tensor (`axis: None`) or
/// one per index along `axis`, and the integer range to clamp to.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeQuantParams {
    pub scale: Vec<f32>,
    pub zero_point: Vec<i32>,
    pub axis: Option<usize>,
    pub quant_min: i32,
    pub quant_max: i32,
}

impl FakeQuantParams {
    /// Per-tensor parameters.
    pub fn per_tensor(scale: f32, zero_point: i32, quant_min: i32, quant_max: i32) -> Self {
        Self { scale: vec![scale], zero_point: vec![zero_point], axis: None, quant_min, quant_max }
    }

    /// Per-channel parameters along `axis`.
    pub fn per_channel(scale: Vec<f32>, zero_point: Vec<i32>, axis: usize, quant_min: i32, quant_max: i32) -> Self {
        Self { scale, zero_point, axis: Some(axis), quant_min, quant_max }
    }

    /// Checks the parameters against a tensor shape: what PyTorch's op checks, plus a finite,
    /// positive scale (PyTorch would silently produce inf or NaN).
    pub fn validate(&self, shape: &[usize]) -> Result<()> {
        let context = "fake_quantize";
        if self.quant_min > self.quant_max {
            return Err(QatError::InvalidRange {
                quant_min: self.quant_min as i64,
                quant_max: self.quant_max as i64,
                reason: "quant_min must be <= quant_max".into(),
            });
        }
        if self.scale.len() != self.zero_point.len() {
            return Err(QatError::shape(context, format!("{} zero points", self.scale.len()), format!("{}", self.zero_point.len())));
        }
        let expected = match self.axis {
            None => 1,
            Some(axis) if axis < shape.len() => shape[axis],
            Some(axis) => {
                return Err(QatError::shape(context, format!("a channel axis below the rank {}", shape.len()), format!("axis {axis}")));
            }
        };
        if self.scale.len() != expected {
            return Err(QatError::shape(
                context,
                format!("{expected} scales (input shape {shape:?}, axis {:?})", self.axis),
                format!("{}", self.scale.len()),
            ));
        }
        if let Some(s) = self.scale.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(QatError::invalid("scale", format!("fake_quantize: scale {s} must be finite and positive")));
        }
        if let Some(z) = self.zero_point.iter().find(|&&z| z < self.quant_min || z > self.quant_max) {
            return Err(QatError::invalid(
                "zero_point",
                format!("fake_quantize: zero point {z} outside [{}, {}]", self.quant_min, self.quant_max),
            ));
        }
        Ok(())
    }

    fn channel_params(&self) -> Vec<ChannelParams> {
        self.scale.iter().zip(&self.zero_point).map(|(&s, &z)| ChannelParams::new(s, z, self.quant_min, self.quant_max)).collect()
    }
}

/// Fake quantizes `x` (f32 or f64): forward `(clamp(z + rne(x * (1/s)), qmin, qmax) - z) * s`,
/// backward the upstream gradient where the unclamped value is in range, else 0. Scale and zero
/// point get no gradient. Bit-exact with `torch.fake_quantize_per_tensor_affine` and
/// `torch.fake_quantize_per_channel_affine`.
pub fn fake_quantize<const D: usize>(x: Tensor<D>, params: &FakeQuantParams) -> Result<Tensor<D>> {
    params.validate(&x.dims())?;
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return Err(QatError::invalid("dtype", format!("fake_quantize supports f32 and f64 tensors, got {:?}", x.dtype())));
    }
    Ok(Tensor::from_dispatch(Dispatch::fake_quantize(x.into_dispatch(), params.clone())))
}

/// The op as burn sees it: routed by `Dispatch` to the Flex kernel or to the autodiff wrapper.
#[backend_extension(Flex, Cube: cfg(feature = "cube"), Autodiff)]
pub trait FakeQuantOps: Backend {
    fn fake_quantize(x: FloatTensor<Self>, params: FakeQuantParams) -> FloatTensor<Self>;
}

/// The plain kernels the autodiff wrapper calls on its inner backend.
pub trait FakeQuantKernels: Backend {
    fn fake_quantize_forward(x: FloatTensor<Self>, params: &FakeQuantParams) -> FloatTensor<Self>;
    fn fake_quantize_backward(x: FloatTensor<Self>, grad: FloatTensor<Self>, params: &FakeQuantParams) -> FloatTensor<Self>;
}

fn run_forward<T: FqElement>(x: &FlexTensor, params: &FakeQuantParams) -> Vec<T> {
    let layout = ChannelLayout::new(x.layout().shape(), params.axis);
    kernel::forward(x.as_slice::<T>().expect("contiguous"), layout, &params.channel_params())
}

/// Masks `grad` in place: in its own buffer when the op holds the only reference to a
/// contiguous one (the usual case in a backward pass), else in a copy.
fn run_backward<T: FqElement>(x: &FlexTensor, grad: FlexTensor, params: &FakeQuantParams) -> FlexTensor {
    let layout = ChannelLayout::new(x.layout().shape(), params.axis);
    let xs = x.as_slice::<T>().expect("contiguous");
    let params = params.channel_params();
    let shape = grad.layout().shape().clone();
    let whole = grad.layout().contiguous_offsets() == Some((0, shape.num_elements())) && grad.storage::<T>().len() == shape.num_elements();
    let mut grad = if whole && grad.is_unique() {
        grad
    } else {
        let copy = grad.to_contiguous().as_slice::<T>().expect("contiguous").to_vec();
        FlexTensor::new(Bytes::from_elems(copy), Layout::contiguous(shape), grad.dtype())
    };
    let gs = grad.try_storage_mut::<T>().expect("uniquely owned: checked, or a fresh copy");
    kernel::backward_in_place(xs, gs, layout, &params);
    grad
}

impl FakeQuantKernels for Flex {
    fn fake_quantize_forward(x: FlexTensor, params: &FakeQuantParams) -> FlexTensor {
        let x = x.to_contiguous();
        let shape = x.layout().shape().clone();
        let dtype = x.dtype();
        let bytes = match dtype {
            DType::F64 => Bytes::from_elems(run_forward::<f64>(&x, params)),
            _ => Bytes::from_elems(run_forward::<f32>(&x, params)),
        };
        FlexTensor::new(bytes, Layout::contiguous(shape), dtype)
    }

    fn fake_quantize_backward(x: FlexTensor, grad: FlexTensor, params: &FakeQuantParams) -> FlexTensor {
        let x = x.to_contiguous();
        match grad.dtype() {
            DType::F64 => run_backward::<f64>(&x, grad, params),
            _ => run_backward::<f32>(&x, grad, params),
        }
    }
}

impl FakeQuantOps for Flex {
    fn fake_quantize(x: FlexTensor, params: FakeQuantParams) -> FlexTensor {
        Self::fake_quantize_forward(x, &params)
    }
}

impl<B: FakeQuantKernels, C: CheckpointStrategy> FakeQuantOps for Autodiff<B, C> {
    fn fake_quantize(x: FloatTensor<Self>, params: FakeQuantParams) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct FakeQuantBackward {
            params: FakeQuantParams,
        }

        impl<B: FakeQuantKernels> Backward<B, 1> for FakeQuantBackward {
            type State = B::FloatTensorPrimitive; // the input x, to rebuild the mask

            fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
                let x = ops.state;
                let params = self.params;
                unary::<B, _>(ops.parents, ops.node, grads, |grad| B::fake_quantize_backward(x, grad, &params));
            }
        }

        let backward = FakeQuantBackward { params: params.clone() };
        match backward.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                let out = B::fake_quantize_forward(x.clone(), &params);
                prep.finish(x, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fake_quantize_forward(x.into_primitive(), &params)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: Vec<f32>) -> FlexTensor {
        let shape = vec![values.len()];
        FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(shape.into()), DType::F32)
    }

    #[test]
    fn backward_masks_in_place_only_when_it_owns_the_gradient() {
        let params = FakeQuantParams::per_tensor(1.0, 0, -2, 2);
        let x = tensor(vec![0.0, 1.0, 2.6, -3.0]);
        let expected = [5.0f32, 6.0, 0.0, 0.0];
        // Shared: a copy is masked, the other holder's values stay.
        let grad = tensor(vec![5.0, 6.0, 7.0, 8.0]);
        let other = grad.clone();
        let masked = Flex::fake_quantize_backward(x.clone(), grad, &params);
        assert_eq!(masked.as_slice::<f32>().unwrap(), expected);
        assert_eq!(other.as_slice::<f32>().unwrap(), [5.0, 6.0, 7.0, 8.0]);
        // Owned: the same values, in the same buffer.
        let grad = tensor(vec![5.0, 6.0, 7.0, 8.0]);
        let before = grad.bytes().as_ptr();
        let masked = Flex::fake_quantize_backward(x, grad, &params);
        assert_eq!(masked.as_slice::<f32>().unwrap(), expected);
        assert_eq!(masked.bytes().as_ptr(), before);
    }
}
