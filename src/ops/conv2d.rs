//! 2-d convolution as a burn op with its own backward: forward, grad input, grad weight and grad
//! bias computed by this crate's kernels (im2col + GEMM for dense and grouped convolutions, direct
//! row loops for depthwise ones) instead of burn's generic backward built on transposed
//! convolution, which is most of the cost of a QAT training step.
//!
//! f32 only; [`conv2d`] hands every other call (f64, other dtypes, empty tensors) to burn's
//! `conv2d`. Results are bit-identical run to run and for any rayon thread count: every output
//! element is summed by one thread in a fixed order (see the kernel files).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, backend_extension};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Bytes, DType, Shape, Tensor};

use crate::kernels::f32::conv2d_shape::ConvShape;
use crate::kernels::f32::{conv2d_bias, conv2d_depthwise as depthwise, conv2d_gemm as dense};

/// `conv2d(x, weight, bias, options)` (burn's semantics: zero padding, `weight [c_out, c_in /
/// groups, kh, kw]`), on this crate's kernels for f32 tensors on the Flex CPU backend and on
/// burn's otherwise (on a GPU burn's own convolution is the fast one).
pub fn conv2d(x: Tensor<4>, weight: Tensor<4>, bias: Option<Tensor<1>>, options: ConvOptions<2>) -> Tensor<4> {
    let shape = conv_shape(&x.dims(), &weight.dims(), &options);
    let f32_only = x.dtype() == DType::F32 && weight.dtype() == DType::F32 && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32);
    let bias_fits = |s: &ConvShape| bias.as_ref().is_none_or(|b| b.dims() == [s.c_out]);
    if !f32_only || !super::on_flex(&x) || !shape.is_some_and(|s| bias_fits(&s)) {
        return burn::tensor::module::conv2d(x, weight, bias, options);
    }
    let (x, weight) = (x.into_dispatch(), weight.into_dispatch());
    Tensor::from_dispatch(match bias {
        Some(bias) => Dispatch::fast_conv2d_bias(x, weight, bias.into_dispatch(), options),
        None => Dispatch::fast_conv2d(x, weight, options),
    })
}

/// The op as burn sees it: routed by `Dispatch` to the Flex kernels or to the autodiff wrapper.
/// Two methods because backend extensions take no optional tensor arguments.
#[backend_extension(Flex, Autodiff)]
pub trait Conv2dOps: Backend {
    fn fast_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self>;
    fn fast_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self>;
}

/// Which gradients a backward pass needs: input, weight, bias.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub input: bool,
    pub weight: bool,
    pub bias: bool,
}

/// The plain kernels the autodiff wrapper calls on its inner backend.
pub trait Conv2dKernels: Backend {
    fn conv2d_forward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        options: &ConvOptions<2>,
    ) -> FloatTensor<Self>;

    /// `[grad input, grad weight, grad bias]`, each only if wanted.
    fn conv2d_backward(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        options: &ConvOptions<2>,
        wanted: Wanted,
    ) -> [Option<FloatTensor<Self>>; 3];
}

fn shape_of(x: &FlexTensor, weight: &FlexTensor, options: &ConvOptions<2>) -> ConvShape {
    conv_shape(x.layout().shape(), weight.layout().shape(), options).expect("conv2d: shapes checked by `conv2d`")
}

fn f32s(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("conv2d: a contiguous f32 tensor")
}

fn f32_tensor(data: Vec<f32>, shape: Vec<usize>) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(Shape::from(shape)), DType::F32)
}

impl Conv2dKernels for Flex {
    fn conv2d_forward(x: FlexTensor, weight: FlexTensor, bias: Option<FlexTensor>, options: &ConvOptions<2>) -> FlexTensor {
        let (x, weight, bias) = (x.to_contiguous(), weight.to_contiguous(), bias.map(|b| b.to_contiguous()));
        let s = shape_of(&x, &weight, options);
        let run = if s.is_depthwise() { depthwise::forward } else { dense::forward };
        let y = run(&s, f32s(&x), f32s(&weight), bias.as_ref().map(f32s));
        f32_tensor(y, vec![s.n, s.c_out, s.oh, s.ow])
    }

    fn conv2d_backward(
        x: FlexTensor,
        weight: FlexTensor,
        grad: FlexTensor,
        options: &ConvOptions<2>,
        wanted: Wanted,
    ) -> [Option<FlexTensor>; 3] {
        let (x, weight, grad) = (x.to_contiguous(), weight.to_contiguous(), grad.to_contiguous());
        let s = shape_of(&x, &weight, options);
        let (x_data, w_data, dy) = (f32s(&x), f32s(&weight), f32s(&grad));
        let input = wanted.input.then(|| {
            let run = if s.is_depthwise() { depthwise::grad_input } else { dense::grad_input };
            f32_tensor(run(&s, w_data, dy), vec![s.n, s.c_in, s.h, s.w])
        });
        let weight_grad = wanted.weight.then(|| {
            let run = if s.is_depthwise() { depthwise::grad_weight } else { dense::grad_weight };
            f32_tensor(run(&s, x_data, dy), weight.layout().shape().to_vec())
        });
        let bias = wanted.bias.then(|| f32_tensor(conv2d_bias::grad_bias(s.n, s.c_out, s.out_plane(), dy), vec![s.c_out]));
        [input, weight_grad, bias]
    }
}

impl Conv2dOps for Flex {
    fn fast_conv2d(x: FlexTensor, weight: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        Self::conv2d_forward(x, weight, None, &options)
    }

    fn fast_conv2d_bias(x: FlexTensor, weight: FlexTensor, bias: FlexTensor, options: ConvOptions<2>) -> FlexTensor {
        Self::conv2d_forward(x, weight, Some(bias), &options)
    }
}

/// The backward step, for `N = 2` (x, weight) or `N = 3` parents (x, weight, bias).
#[derive(Debug)]
struct Conv2dBackward<const N: usize>;

impl<B: Conv2dKernels, const N: usize> Backward<B, N> for Conv2dBackward<N> {
    type State = (B::FloatTensorPrimitive, B::FloatTensorPrimitive, ConvOptions<2>); // x, weight

    fn backward(self, ops: Ops<Self::State, N>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (x, weight, options) = ops.state;
        let parent = |i: usize| ops.parents.get(i).cloned().flatten();
        let parents = [parent(0), parent(1), parent(2)];
        let wanted = Wanted { input: parents[0].is_some(), weight: parents[1].is_some(), bias: parents[2].is_some() };
        let results = B::conv2d_backward(x, weight, grad, &options, wanted);
        for (node, result) in parents.into_iter().zip(results) {
            if let (Some(node), Some(result)) = (node, result) {
                grads.register::<B>(node.id, result);
            }
        }
    }
}

impl<B: Conv2dKernels, C: CheckpointStrategy> Conv2dOps for Autodiff<B, C> {
    fn fast_conv2d(x: FloatTensor<Self>, weight: FloatTensor<Self>, options: ConvOptions<2>) -> FloatTensor<Self> {
        match Conv2dBackward::<2>.prepare::<C>([x.node(), weight.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let y = B::conv2d_forward(x.clone(), weight.clone(), None, &options);
                prep.finish((x, weight, options), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::conv2d_forward(x.into_primitive(), weight.into_primitive(), None, &options)),
        }
    }

    fn fast_conv2d_bias(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        options: ConvOptions<2>,
    ) -> FloatTensor<Self> {
        match Conv2dBackward::<3>.prepare::<C>([x.node(), weight.node(), bias.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (x, weight) = (x.into_primitive(), weight.into_primitive());
                let y = B::conv2d_forward(x.clone(), weight.clone(), Some(bias.into_primitive()), &options);
                prep.finish((x, weight, options), y)
            }
            OpsKind::UnTracked(prep) => {
                let y = B::conv2d_forward(x.into_primitive(), weight.into_primitive(), Some(bias.into_primitive()), &options);
                prep.finish(y)
            }
        }
    }
}

/// The kernels' [`ConvShape`] of a call with burn's options.
fn conv_shape(x: &[usize], weight: &[usize], options: &ConvOptions<2>) -> Option<ConvShape> {
    ConvShape::new([x, weight], options.stride, options.padding, options.dilation, options.groups)
}
