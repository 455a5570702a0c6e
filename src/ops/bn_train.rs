//! Batch norm in training mode as two burn ops, for f32 and f64 `[N, C, ...]` tensors:
//! [`bn_batch_stats`] (per-channel mean and squared deviations in f64, one pass each, no
//! gradient) and [`bn_train_apply`] (normalization, affine and optional ReLU in one pass, with
//! its own backward). Both take the approximate BN fold's pre-transform `y = z / div + add`, so
//! that a QAT conv's output goes through the division, the bias, the BN and the ReLU with one
//! read and one write instead of a dozen stock ops and their autodiff nodes.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{Flex, FlexTensor, Layout};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, AutodiffBackend, Backend, Dispatch, backend_extension};
use burn::tensor::{Bytes, DType, Shape, Tensor};

use crate::kernels::f32::bn::{self as kernel, BackwardChannel, BnFloat, BnLayout, Pre};
use crate::kernels::f32::minmax::AsF32;

/// The element types the batch norm kernels run on that burn's Flex tensors also store.
trait BnElement: BnFloat + burn::tensor::Element {}
impl<T: BnFloat + burn::tensor::Element> BnElement for T {}

/// Host values of the pre-transform for [`bn_batch_stats`].
#[derive(Clone, Debug)]
pub struct BnPreValues {
    pub div: Option<Vec<f64>>,
    pub add: Option<Vec<f64>>,
}

/// What [`bn_train_apply`] needs besides its tensors: which pre-transform steps apply, the ReLU,
/// and the batch statistics (`mean`, `invstd = 1 / sqrt(var + eps)`, computed in f64).
#[derive(Clone, Debug)]
pub struct BnApplyParams {
    pub has_div: bool,
    pub has_add: bool,
    pub relu: bool,
    pub mean: Vec<f64>,
    pub invstd: Vec<f64>,
}

thread_local! {
    /// Set while [`BnApplyParams::observing_output`] runs: `Some(None)` asks the next
    /// [`bn_train_apply`] forward on this thread for its output's min/max, which it stores here.
    static OUTPUT_MIN_MAX: std::cell::Cell<Option<Option<(f32, f32, bool)>>> = const { std::cell::Cell::new(None) };
}

impl BnApplyParams {
    /// Runs `f`, and returns with its result the per-tensor `(min, max, all finite)` (as f32,
    /// what `ops::min_max(.., None)` gives) of the output of the last [`bn_train_apply`] forward
    /// `f` ran on this thread, computed while that output was written; `None` if there was none.
    pub fn observing_output<R>(f: impl FnOnce() -> R) -> (R, Option<(f32, f32, bool)>) {
        let outer = OUTPUT_MIN_MAX.replace(Some(None));
        let result = f();
        let observed = OUTPUT_MIN_MAX.replace(outer).flatten();
        (result, observed)
    }
}

/// Whether an output min/max is wanted on this thread.
fn output_min_max_wanted() -> bool {
    OUTPUT_MIN_MAX.get().is_some()
}

fn store_output_min_max(m: Option<(f32, f32, bool)>) {
    if let Some(m) = m
        && output_min_max_wanted()
    {
        OUTPUT_MIN_MAX.set(Some(Some(m)));
    }
}

/// Per channel `(mean, sum of squared deviations from it)` of `y = z / div + add`, in f64.
/// `z` is f32 or f64, `[N, C, ...]` with `N * prod(...) > 0`.
pub fn bn_batch_stats<const D: usize>(z: &Tensor<D>, pre: BnPreValues) -> Vec<(f64, f64)> {
    let stats: Tensor<2> = Tensor::from_dispatch(Dispatch::bn_batch_stats(z.clone().into_dispatch(), pre));
    let values = stats.to_data().convert::<f64>().try_into_vec::<f64>().expect("f64 statistics");
    values.chunks(2).map(|p| (p[0], p[1])).collect()
}

/// `max?((z / div + add) * alpha + shift, 0)` per channel with `alpha = invstd * gamma` and
/// `shift = beta - mean * alpha`; gradients for `z`, `div`, `add`, `gamma` and `beta` as
/// PyTorch's batch-norm backward (batch statistics) computes them. All tensors share `z`'s dtype;
/// `div` and `add` are ignored (and get no gradient) when their flag is off.
pub fn bn_train_apply<const D: usize>(
    z: Tensor<D>,
    div: Tensor<1>,
    add: Tensor<1>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    params: BnApplyParams,
) -> Tensor<D> {
    Tensor::from_dispatch(Dispatch::bn_train_apply(
        z.into_dispatch(),
        div.into_dispatch(),
        add.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
        params,
    ))
}

/// The ops as burn sees them: routed by `Dispatch` to the Flex kernels or the autodiff wrapper.
#[backend_extension(Flex, Autodiff)]
pub trait BnTrainOps: Backend {
    fn bn_batch_stats(z: FloatTensor<Self>, pre: BnPreValues) -> FloatTensor<Self>;
    fn bn_train_apply(
        z: FloatTensor<Self>,
        div: FloatTensor<Self>,
        add: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: BnApplyParams,
    ) -> FloatTensor<Self>;
}

/// The plain kernels the autodiff wrapper calls on its inner backend.
pub trait BnTrainKernels: Backend {
    fn bn_stats_kernel(z: FloatTensor<Self>, pre: &BnPreValues) -> FloatTensor<Self>;
    fn bn_apply_forward(
        z: FloatTensor<Self>,
        div: FloatTensor<Self>,
        add: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: &BnApplyParams,
    ) -> FloatTensor<Self>;
    /// `[grad z, grad div, grad add, grad gamma, grad beta]`.
    fn bn_apply_backward(
        z: FloatTensor<Self>,
        out: Option<FloatTensor<Self>>,
        grad: FloatTensor<Self>,
        div: FloatTensor<Self>,
        add: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        params: &BnApplyParams,
    ) -> [FloatTensor<Self>; 5];
}

fn slice<T: BnElement>(t: &FlexTensor) -> &[T] {
    t.as_slice::<T>().expect("bn: a contiguous tensor of the input's dtype")
}

fn tensor<T: BnElement>(data: Vec<T>, shape: Shape, dtype: DType) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(data), Layout::contiguous(shape), dtype)
}

fn channel_values<T: BnElement>(values: &[f64]) -> Vec<T> {
    values.iter().map(|&v| T::from_f64(v)).collect()
}

fn stats_for<T: BnElement>(z: &FlexTensor, pre: &BnPreValues) -> Vec<f64> {
    let l = BnLayout::new(z.layout().shape());
    let div = pre.div.as_deref().map(channel_values::<T>);
    let add = pre.add.as_deref().map(channel_values::<T>);
    let pre = Pre { div: div.as_deref(), add: add.as_deref() };
    kernel::stats(slice::<T>(z), l, pre).into_iter().flat_map(|(m, s)| [m, s]).collect()
}

fn apply_for<T: BnElement + AsF32>(
    z: &FlexTensor,
    div: &FlexTensor,
    add: &FlexTensor,
    gamma: &FlexTensor,
    beta: &FlexTensor,
    p: &BnApplyParams,
) -> Vec<T> {
    let l = BnLayout::new(z.layout().shape());
    let pre = Pre { div: p.has_div.then(|| slice::<T>(div)), add: p.has_add.then(|| slice::<T>(add)) };
    let (mean, invstd) = (channel_values::<T>(&p.mean), channel_values::<T>(&p.invstd));
    let (gamma, beta) = (slice::<T>(gamma), slice::<T>(beta));
    let alpha: Vec<T> = invstd.iter().zip(gamma).map(|(&i, &g)| i * g).collect();
    let shift: Vec<T> = (0..l.c).map(|c| beta[c] - mean[c] * alpha[c]).collect();
    let (out, min_max) = kernel::apply(slice::<T>(z), l, pre, &alpha, &shift, p.relu, output_min_max_wanted());
    store_output_min_max(min_max);
    out
}

fn backward_for<T: BnElement>(
    z: &FlexTensor,
    out: Option<&FlexTensor>,
    grad: FlexTensor,
    div: &FlexTensor,
    add: &FlexTensor,
    gamma: &FlexTensor,
    p: &BnApplyParams,
) -> [FlexTensor; 5] {
    let shape = z.layout().shape().clone();
    let l = BnLayout::new(&shape);
    let pre = Pre { div: p.has_div.then(|| slice::<T>(div)), add: p.has_add.then(|| slice::<T>(add)) };
    let (mean, invstd) = (channel_values::<T>(&p.mean), channel_values::<T>(&p.invstd));
    let ch = BackwardChannel { pre, mean: &mean, invstd: &invstd, gamma: slice::<T>(gamma) };
    let dtype = z.dtype();
    // The input gradient overwrites the upstream one: in its buffer when this op holds the only
    // reference to it (the usual case), else in a copy.
    let whole = grad.layout().contiguous_offsets() == Some((0, shape.num_elements())) && grad.storage::<T>().len() == shape.num_elements();
    let mut dz = if whole && grad.is_unique() { grad } else { tensor(slice::<T>(&grad.to_contiguous()).to_vec(), shape.clone(), dtype) };
    let g = kernel::backward(slice::<T>(z), out.map(slice::<T>), dz.try_storage_mut::<T>().expect("uniquely owned"), l, ch);
    let c = || Shape::from(vec![l.c]);
    [dz, tensor(g.div, c(), dtype), tensor(g.add, c(), dtype), tensor(g.gamma, c(), dtype), tensor(g.beta, c(), dtype)]
}

impl BnTrainKernels for Flex {
    fn bn_stats_kernel(z: FlexTensor, pre: &BnPreValues) -> FlexTensor {
        let z = z.to_contiguous();
        let c = z.layout().shape()[1];
        let values = match z.dtype() {
            DType::F64 => stats_for::<f64>(&z, pre),
            _ => stats_for::<f32>(&z, pre),
        };
        tensor(values, Shape::from(vec![c, 2]), DType::F64)
    }

    fn bn_apply_forward(
        z: FlexTensor,
        div: FlexTensor,
        add: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        p: &BnApplyParams,
    ) -> FlexTensor {
        let [z, div, add, gamma, beta] = [z, div, add, gamma, beta].map(|t| t.to_contiguous());
        let (shape, dtype) = (z.layout().shape().clone(), z.dtype());
        match dtype {
            DType::F64 => tensor(apply_for::<f64>(&z, &div, &add, &gamma, &beta, p), shape, dtype),
            _ => tensor(apply_for::<f32>(&z, &div, &add, &gamma, &beta, p), shape, dtype),
        }
    }

    fn bn_apply_backward(
        z: FlexTensor,
        out: Option<FlexTensor>,
        grad: FlexTensor,
        div: FlexTensor,
        add: FlexTensor,
        gamma: FlexTensor,
        p: &BnApplyParams,
    ) -> [FlexTensor; 5] {
        let [z, div, add, gamma] = [z, div, add, gamma].map(|t| t.to_contiguous());
        let out = out.map(|o| o.to_contiguous());
        match z.dtype() {
            DType::F64 => backward_for::<f64>(&z, out.as_ref(), grad, &div, &add, &gamma, p),
            _ => backward_for::<f32>(&z, out.as_ref(), grad, &div, &add, &gamma, p),
        }
    }
}

impl BnTrainOps for Flex {
    fn bn_batch_stats(z: FlexTensor, pre: BnPreValues) -> FlexTensor {
        Self::bn_stats_kernel(z, &pre)
    }

    fn bn_train_apply(
        z: FlexTensor,
        div: FlexTensor,
        add: FlexTensor,
        gamma: FlexTensor,
        beta: FlexTensor,
        params: BnApplyParams,
    ) -> FlexTensor {
        Self::bn_apply_forward(z, div, add, gamma, beta, &params)
    }
}

#[derive(Debug)]
struct BnApplyBackward;

impl<B: BnTrainKernels> Backward<B, 5> for BnApplyBackward {
    /// z, the output (for the ReLU mask), div, add, gamma, and the parameters.
    type State = (
        B::FloatTensorPrimitive,
        Option<B::FloatTensorPrimitive>,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        B::FloatTensorPrimitive,
        BnApplyParams,
    );

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = grads.consume::<B>(&ops.node);
        let (z, out, div, add, gamma, params) = ops.state;
        let results = B::bn_apply_backward(z, out, grad, div, add, gamma, &params);
        for (parent, result) in ops.parents.iter().zip(results) {
            if let Some(node) = parent {
                grads.register::<B>(node.id, result);
            }
        }
    }
}

impl<B: BnTrainKernels, C: CheckpointStrategy> BnTrainOps for Autodiff<B, C> {
    fn bn_batch_stats(z: FloatTensor<Self>, pre: BnPreValues) -> FloatTensor<Self> {
        <Self as AutodiffBackend>::from_inner(B::bn_stats_kernel(z.into_primitive(), &pre))
    }

    fn bn_train_apply(
        z: FloatTensor<Self>,
        div: FloatTensor<Self>,
        add: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        params: BnApplyParams,
    ) -> FloatTensor<Self> {
        let nodes = [z.node(), div.node(), add.node(), gamma.node(), beta.node()];
        let [z, div, add, gamma, beta] = [z, div, add, gamma, beta].map(|t| t.into_primitive());
        match BnApplyBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let out = B::bn_apply_forward(z.clone(), div.clone(), add.clone(), gamma.clone(), beta, &params);
                let saved_out = params.relu.then(|| out.clone());
                prep.finish((z, saved_out, div, add, gamma, params), out)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::bn_apply_forward(z, div, add, gamma, beta, &params)),
        }
    }
}
