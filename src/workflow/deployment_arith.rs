//! The deployment arithmetic written on burn tensors, from a QAT module's own parameters and the
//! qparams its fake quants train with. It shares nothing with `convert` or the int8 engine but
//! the specification ([`crate::quant::requant`]'s module docs): weights and activations become
//! integer codes with the fake quant's rule (`clamp(z + rne(x * f32(1/s)))`), products are
//! accumulated exactly (f64 holds every integer below 2^53), the bias is quantized at
//! `s_in * s_w` and the accumulator requantized with the f32 multiplier `s_in * s_w / s_out`
//! formed in f64, rounding ties to even once. Outputs are the real values `(q - z) * s` of the
//! integers the int8 model stores, so the two can be compared bit for bit.
//!
//! Every function here computes on detached values: [`super::deployment_eval`] adds the
//! straight-through gradient.

use burn::tensor::{DType, Device, Tensor, TensorData};

use super::layers::{Value, map_float, zip_float};
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::BatchNorm;
use crate::nn::tensor_util::{channel_shape, weight_axis_shape};

/// The integer grid an activation lies on: the qparams its fake quant trains with and the
/// quantization range.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Grid {
    pub scale: f32,
    pub zero_point: i32,
    pub quant_min: i32,
    pub quant_max: i32,
}

impl Grid {
    /// The grid of a per-tensor activation fake quant: its current `scale` / `zero_point`
    /// buffers (not the observer's convert-time formula), so that an inconsistency between
    /// the two shows as a difference from the int8 model.
    pub fn of(fq: &FakeQuantize, layer: &str) -> Result<Self> {
        if !fq.observer.has_observed() {
            return Err(QatError::lifecycle(
                layer,
                "its observer never saw data, so it has no qparams; run the model on some data (with observers enabled) first",
            ));
        }
        let q = fq.qparams();
        if q.scale.len() != 1 || fq.observer.ch_axis().is_some() {
            return Err(QatError::invalid("qscheme", format!("{layer}: activations must be quantized per tensor")));
        }
        let range = fq.observer.spec().range;
        let grid = Self { scale: q.scale[0], zero_point: q.zero_point[0], quant_min: range.quant_min, quant_max: range.quant_max };
        if !(grid.scale.is_finite() && grid.scale > 0.0) {
            return Err(QatError::NonFinite { context: layer.into(), what: format!("the activation scale {}", grid.scale) });
        }
        Ok(grid)
    }

    /// The grid of a layer's output fake quant, which prepare attaches.
    pub fn of_output(fq: &Option<FakeQuantize>, layer: &str) -> Result<Self> {
        let fq = fq
            .as_ref()
            .ok_or_else(|| QatError::structure(layer, "no output fake quant, so its output has no grid; prepare_qat attaches one"))?;
        Self::of(fq, layer)
    }

    /// `q - z` for real values: `clamp(z + rne(x * f32(1/s)), qmin, qmax) - z`, as f32 (exact:
    /// the codes are small integers).
    pub fn codes<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let z = self.zero_point as f32;
        ((x * (1.0 / self.scale)).round() + z).clamp(self.quant_min as f32, self.quant_max as f32) - z
    }

    /// The real values `(q - z) * s` of centered codes.
    pub fn real<const D: usize>(&self, codes: Tensor<D>) -> Tensor<D> {
        codes * self.scale
    }

    /// Values in output steps, not yet rounded (a scaled accumulator, sum or mean), onto this
    /// grid: `clamp(z + rne(y), lo, qmax) - z`, real values out. `lo` is `z` under a fused
    /// ReLU (real 0), else `qmin`.
    fn round_onto<const D: usize>(&self, steps: Tensor<D>, relu: bool) -> Tensor<D> {
        let z = self.zero_point as f32;
        let lo = if relu { self.zero_point.max(self.quant_min) } else { self.quant_min };
        self.real((steps.round() + z).clamp(lo as f32, self.quant_max as f32) - z)
    }
}

fn f64_tensor<const D: usize>(values: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F64))
}

fn f32_tensor<const D: usize>(values: Vec<f32>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F32))
}

/// A weight as centered integer codes (f64) with one scale per index of its channel axis.
pub(crate) struct WeightCodes<const W: usize> {
    pub codes: Tensor<W>,
    pub scale: Vec<f32>,
}

/// Quantizes a (folded) float weight with the weight fake quant's training qparams, per tensor
/// or along `axis`, as the fake quant rounds it.
pub(crate) fn weight_codes<const W: usize>(weight: Tensor<W>, fq: &FakeQuantize, axis: usize, layer: &str) -> Result<WeightCodes<W>> {
    if !fq.observer.has_observed() {
        return Err(QatError::lifecycle(layer, "its weight observer never saw data, so it has no qparams; run a forward first"));
    }
    let channels = weight.dims()[axis];
    let q = fq.qparams();
    if fq.observer.ch_axis().is_some_and(|a| a != axis) || (q.scale.len() != 1 && q.scale.len() != channels) {
        return Err(QatError::shape(
            layer,
            format!("one weight scale, or {channels} along weight axis {axis}"),
            format!("{} scales along axis {:?}", q.scale.len(), fq.observer.ch_axis()),
        ));
    }
    let per_channel = |i: usize| if q.scale.len() == 1 { 0 } else { i };
    let scale: Vec<f32> = (0..channels).map(|i| q.scale[per_channel(i)]).collect();
    let inverse: Vec<f32> = scale.iter().map(|s| 1.0 / s).collect();
    let zero_point: Vec<f32> = (0..channels).map(|i| q.zero_point[per_channel(i)] as f32).collect();
    let (device, shape) = (weight.device(), weight_axis_shape::<W>(channels, axis));
    let (inverse, zero_point) = (f32_tensor(inverse, shape, &device), f32_tensor(zero_point, shape, &device));
    let range = fq.observer.spec().range;
    let codes =
        ((weight.detach() * inverse).round() + zero_point.clone()).clamp(range.quant_min as f32, range.quant_max as f32) - zero_point;
    Ok(WeightCodes { codes: codes.cast(DType::F64), scale })
}

/// A weight-linear layer's output from its exact f64 accumulator `[N, O, ...]` (channels on axis
/// 1): the float bias quantized at `s_in * s_w` (ties to even, saturated to i32), added, the sum
/// saturated to i32 and rounded to f32, requantized into `output`. `weight_scale` has one entry
/// per output channel.
pub(crate) fn requantize_accumulator<const D: usize>(
    acc: Tensor<D>,
    bias: Option<Tensor<1>>,
    input: Grid,
    weight_scale: &[f32],
    output: Grid,
    relu: bool,
) -> Tensor<D> {
    let (device, c) = (acc.device(), weight_scale.len());
    let step: Vec<f64> = weight_scale.iter().map(|&s| input.scale as f64 * s as f64).collect();
    let multiplier: Vec<f32> = step.iter().map(|&st| (st / output.scale as f64) as f32).collect();
    let (i32_min, i32_max) = (i32::MIN as f64, i32::MAX as f64);
    let acc = match bias {
        Some(bias) => {
            let step = f64_tensor(step, [c], &device);
            let bias = (bias.detach().cast(DType::F64) / step).round().clamp(i32_min, i32_max);
            acc + bias.reshape(channel_shape::<D>(c))
        }
        None => acc,
    };
    let acc = acc.clamp(i32_min, i32_max).cast(DType::F32);
    output.round_onto(acc * f32_tensor(multiplier, [c], &device).reshape(channel_shape::<D>(c)), relu)
}

/// A residual addition on two grids: `clamp(z + rne(f32(ca) * ma + f32(cb) * mb))` with
/// `m = f32(s / s_out)` formed in f64.
pub(crate) fn add<const D: usize>(a: Tensor<D>, a_grid: Grid, b: Tensor<D>, b_grid: Grid, output: Grid, relu: bool) -> Tensor<D> {
    let ratio = |g: Grid| (g.scale as f64 / output.scale as f64) as f32;
    let sum = a_grid.codes(a) * ratio(a_grid) + b_grid.codes(b) * ratio(b_grid);
    output.round_onto(sum, relu)
}

/// The mean of `count` codes whose sum is `sum` (exact), rounded once in the input's grid:
/// `clamp(z + rne(f32(sum) * f32(1 / count)))`.
pub(crate) fn mean_of_sum<const D: usize>(sum: Tensor<D>, count: usize, grid: Grid) -> Tensor<D> {
    grid.round_onto(sum * (1.0 / count as f32), false)
}

/// A batch norm with its running statistics as a per-channel map on `[N, C, H, W]` codes:
/// `clamp(z_out + rne(f32(c) * m + b))` with `m = f32(s_in * alpha / s_out)` and
/// `b = f32((beta - mean * alpha) / s_out)`, `alpha = gamma / sqrt(var + eps)` in f64.
pub(crate) fn batch_norm(x: Tensor<4>, bn: &BatchNorm, input: Grid, output: Grid, relu: bool) -> Tensor<4> {
    let (device, c) = (x.device(), bn.num_features());
    let gamma = bn.weight.val().detach().cast(DType::F64);
    let beta = bn.bias.val().detach().cast(DType::F64);
    let mean = f64_tensor(bn.running_mean().to_vec(), [c], &device);
    let var = f64_tensor(bn.running_var().to_vec(), [c], &device);
    let alpha = gamma / (var + bn.eps).sqrt();
    let multiplier = (alpha.clone() * input.scale as f64 / output.scale as f64).cast(DType::F32);
    let offset = ((beta - mean * alpha) / output.scale as f64).cast(DType::F32);
    let shape = channel_shape::<4>(c);
    output.round_onto(input.codes(x) * multiplier.reshape(shape) + offset.reshape(shape), relu)
}

/// A value between layers and the grid it lies on (`None` in float: before the QuantStub,
/// after a DeQuantStub).
pub(crate) type Flow = (Value, Option<Grid>);

/// The input grid of a layer that computes on integers.
pub(crate) fn need_grid(grid: Option<Grid>, path: &str) -> Result<Grid> {
    grid.ok_or_else(|| QatError::structure(path, "receives float input but is quantized; put a QuantStub before it"))
}

pub(crate) fn detach(value: Value) -> Value {
    map_float!(value, |t| t.detach(), |q| Value::Quantized(q))
}

/// `exact`'s values with `surrogate`'s gradient: `exact + (s - detach(s))`. The difference is
/// exactly +0 for finite `s`, and `x + 0 == x` for every `x` the grid produces (never -0).
pub(crate) fn with_gradient_of(exact: Value, surrogate: Value, path: &str) -> Result<Value> {
    Ok(zip_float!(exact, surrogate, |e, s| e + (s.clone() - s.detach()), |e, s| {
        let (e, s) = (e.describe(), s.describe());
        return Err(QatError::shape(path, format!("{s} (the fake-quant forward)"), format!("{e} (the deployment forward)")));
    }))
}
