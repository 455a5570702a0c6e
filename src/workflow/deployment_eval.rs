//! The prepared model run in the deployment arithmetic ([`super::deployment_arith`]), layer by
//! layer from the QAT modules' own parameters and fake-quant qparams, without converting. In
//! training it carries straight-through gradients: each layer's output is the integer-exact
//! value, and its gradient is the float fake-quant forward's (`exact + (float - float)`, where
//! the difference is exactly zero but carries the float path's graph).

use burn::module::Module;
use burn::tensor::{DType, Device, Tensor};

use super::deployment_arith::{Grid, add, batch_norm, mean_of_sum, requantize_accumulator, weight_codes};
use super::layers::{Named, Value};
use super::qat_model::{QatLayer, QatModel, QatResidual, visit_named};
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::intrinsic::qat::{ConvBnNd, LinearBn1d, scale_factor};
use crate::nn::qat::{self, ConvNd};
use crate::nn::tensor_util::weight_axis_shape;
use crate::nn::{BatchNorm, ConvGeometry, QatModule};

impl QatModel {
    /// The deployment arithmetic computed from this model's own parameters and the qparams its
    /// fake quants hold, independently of [`convert`](super::convert): activations and weights
    /// as integer codes, products accumulated exactly, biases and requantization as specified in
    /// [`crate::quant::requant`], every output the real value of the integer the int8 model
    /// stores. Observers and BN statistics are left as they are, and the fake-quant enable
    /// flags are not consulted: the deployment always quantizes (for a float eval, use
    /// [`EvalArithmetic::Float`] with fake quant disabled). In training mode the outputs carry
    /// the float fake-quant forward's gradients (straight through), which needs every observer
    /// disabled and every BN frozen.
    ///
    /// The arithmetic accumulates in f64. On a device without f64 (Metal; wgpu where the adapter
    /// lacks `SHADER_F64`; lavapipe has it) the eval
    /// runs on a copy of the model on the Flex CPU backend and returns its output on `x`'s
    /// device; training on the deployment arithmetic there is refused.
    pub fn forward_deployment(&mut self, x: Tensor<4>) -> Result<Value> {
        let device = x.device();
        if !device.supports_dtype(DType::F64) {
            if self.training {
                return Err(QatError::config(format!(
                    "training on the deployment arithmetic needs f64, which {device:?} lacks: train with float fake quantization there (deployment_training off)"
                )));
            }
            let cpu = Device::flex();
            let mut on_cpu = self.clone().to_device(&cpu);
            let out = on_cpu.forward_deployment(x.to_device(&cpu))?;
            return Ok(out.to_device(&device));
        }
        if self.training {
            self.check_settled()?;
        }
        let (value, _) = run_layers(&mut self.layers, (Value::Image(x), None), "", self.training)?;
        Ok(value)
    }

    /// Training on the deployment arithmetic needs qparams and BN statistics that the forward
    /// does not move.
    fn check_settled(&mut self) -> Result<()> {
        if self.fake_quants_mut().iter().any(|fq| fq.is_observer_enabled()) {
            return Err(QatError::lifecycle("training on the deployment arithmetic", "needs fixed qparams: call disable_observer() first"));
        }
        let mut unfrozen = Vec::new();
        visit_named(&self.layers, "", &mut |path, l| {
            let frozen = match l {
                QatLayer::ConvBn2d(m) => m.is_bn_frozen(),
                QatLayer::ConvBnReLU2d(m) => m.is_bn_frozen(),
                QatLayer::LinearBn1d(m) => m.is_bn_frozen(),
                QatLayer::BatchNorm2d(m) => m.bn.is_frozen(),
                _ => true,
            };
            if !frozen {
                unfrozen.push(path.to_string());
            }
        });
        if !unfrozen.is_empty() {
            return Err(QatError::lifecycle(
                "training on the deployment arithmetic",
                format!("needs fixed BN statistics: call freeze_bn_stats() first ({} not frozen)", unfrozen.join(", ")),
            ));
        }
        Ok(())
    }
}

/// A value between layers and the grid it lies on (`None` in float: before the QuantStub,
/// after a DeQuantStub).
type Flow = (Value, Option<Grid>);

/// Runs `layers` in the deployment arithmetic; with `straight_through`, each layer's float
/// fake-quant forward runs too, for its gradient.
pub(crate) fn run_layers(layers: &mut [Named<QatLayer>], mut flow: Flow, prefix: &str, straight_through: bool) -> Result<Flow> {
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        flow = run_layer(&mut l.layer, flow, &path, straight_through)?;
    }
    Ok(flow)
}

fn run_layer(layer: &mut QatLayer, (value, grid): Flow, path: &str, straight_through: bool) -> Result<Flow> {
    if let QatLayer::Residual(r) = layer {
        return residual(r, (value, grid), path, straight_through);
    }
    let (exact, grid) = exact_layer(layer, detach(value.clone()), grid, path)?;
    if !straight_through {
        return Ok((exact, grid));
    }
    let surrogate = layer.forward(value, path)?;
    Ok((with_gradient_of(exact, surrogate, path)?, grid))
}

/// The input grid of a layer that computes on integers.
fn need_grid(grid: Option<Grid>, path: &str) -> Result<Grid> {
    grid.ok_or_else(|| QatError::config(format!("{path}: receives float input but is quantized; put a QuantStub before it")))
}

fn exact_layer(layer: &QatLayer, value: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
    let image = |(t, grid): (Tensor<4>, Grid)| -> Result<Flow> { Ok((Value::Image(t), Some(grid))) };
    let features = |(t, grid): (Tensor<2>, Grid)| -> Result<Flow> { Ok((Value::Features(t), Some(grid))) };
    match layer {
        QatLayer::QuantStub(s) => quant_stub(&s.activation_post_process, value, path),
        QatLayer::DeQuantStub(_) => Ok((value, None)),
        QatLayer::ConvBn2d(m) => image(conv_bn(m, false, value.image(path)?, need_grid(grid, path)?, path)?),
        QatLayer::ConvBnReLU2d(m) => image(conv_bn(&m.inner, true, value.image(path)?, need_grid(grid, path)?, path)?),
        QatLayer::ConvReLU2d(m) => image(conv(&m.conv, true, value.image(path)?, need_grid(grid, path)?, path)?),
        QatLayer::Conv2d(m) => image(conv(m, false, value.image(path)?, need_grid(grid, path)?, path)?),
        QatLayer::Linear(m) => features(linear(m, false, value.features(path)?, need_grid(grid, path)?, path)?),
        QatLayer::LinearReLU(m) => features(linear(&m.linear, true, value.features(path)?, need_grid(grid, path)?, path)?),
        QatLayer::LinearBn1d(m) => features(linear_bn(m, value.features(path)?, need_grid(grid, path)?, path)?),
        QatLayer::BatchNorm2d(m) => {
            let input = need_grid(grid, path)?;
            let output = Grid::of_output(&m.activation_post_process, path)?;
            Ok((Value::Image(batch_norm(value.image(path)?, &m.bn, input, output, m.relu)), Some(output)))
        }
        // On a grid, ReLU floors the codes at 0 (real 0) and max pooling takes the largest code:
        // both commute with the monotone dequantization, so the float ops give the same values.
        QatLayer::Relu(_) => Ok((value.relu(), grid)),
        QatLayer::MaxPool2d(p) => Ok((p.forward(value, path)?, grid)),
        QatLayer::Flatten(f) => Ok((f.forward(value, path)?, grid)),
        QatLayer::Relu6(_) => Ok((relu6(value, grid, path)?, grid)),
        QatLayer::AvgPool2d(p) => match grid {
            Some(g) => {
                let x = value.image(path)?;
                let [_, _, h, w] = x.dims();
                if h < p.kernel_size || w < p.kernel_size {
                    return Err(QatError::shape(path, format!("spatial size at least {}", p.kernel_size), format!("{:?}", x.dims())));
                }
                let count = p.kernel_size * p.kernel_size;
                let options = burn::tensor::ops::AvgPoolOptions::new([p.kernel_size; 2]).with_stride([p.stride; 2]);
                let mean = burn::tensor::module::avg_pool2d(g.codes(x).cast(DType::F64), options);
                Ok((Value::Image(mean_of_sum(window_sum(mean, count), count, g)), grid))
            }
            None => Ok((p.forward(value, path)?, None)),
        },
        QatLayer::GlobalAvgPool2d(p) => match grid {
            Some(g) => {
                let x = value.image(path)?;
                let [n, c, h, w] = x.dims();
                if h * w == 0 {
                    return Err(QatError::shape(path, "a non-empty spatial size", format!("{:?}", x.dims())));
                }
                let sum = g.codes(x).cast(DType::F64).flatten::<3>(2, 3).sum_dim(2).reshape([n, c, 1, 1]);
                Ok((Value::Image(mean_of_sum(sum.cast(DType::F32), h * w, g)), grid))
            }
            None => Ok((p.forward(value, path)?, None)),
        },
        QatLayer::Float(f) => {
            if grid.is_some() {
                return Err(QatError::config(format!(
                    "{path}: a float layer (qconfig None) receives quantized input; put a DeQuantStub before it"
                )));
            }
            Ok((f.clone().forward(value, path)?, None))
        }
        QatLayer::Residual(_) => unreachable!("residual blocks run through `residual`"),
    }
}

/// The exact sums of `count`-element windows from their f64 means (`mean * count` is within
/// far less than 0.5 of the integer sum), as f32: exact below 2^24.
fn window_sum(mean: Tensor<4>, count: usize) -> Tensor<4> {
    (mean * count as f64).round().cast(DType::F32)
}

/// The QuantStub: real input onto its grid. NaN has no integer: an error, as in the int8 model.
fn quant_stub(fq: &FakeQuantize, value: Value, path: &str) -> Result<Flow> {
    let grid = Grid::of(fq, path)?;
    let nan = |has: bool| -> Result<()> {
        if has {
            return Err(QatError::NonFinite { context: format!("{path} (QuantStub)"), what: "an input value (NaN)".into() });
        }
        Ok(())
    };
    Ok(match value {
        Value::Image(x) => {
            nan(x.clone().is_nan().any().into_scalar())?;
            (Value::Image(grid.real(grid.codes(x))), Some(grid))
        }
        Value::Features(x) => {
            nan(x.clone().is_nan().any().into_scalar())?;
            (Value::Features(grid.real(grid.codes(x))), Some(grid))
        }
        q @ Value::Quantized(_) => return Err(QatError::shape(path, "a float tensor", q.describe())),
    })
}

/// ReLU6 on a grid keeps the grid and clamps the codes to `[0, q(6) - z]`, `q(6)` being 6
/// rounded onto the grid (so the top may be a step away from 6.0), as quantized ReLU6 does.
fn relu6(value: Value, grid: Option<Grid>, path: &str) -> Result<Value> {
    let Some(g) = grid else { return Ok(value.relu6()) };
    let six = (g.zero_point as f32 + (6.0f32 * (1.0 / g.scale)).round_ties_even()).clamp(g.quant_min as f32, g.quant_max as f32);
    let top = (six - g.zero_point as f32).max(0.0);
    Ok(match value {
        Value::Image(x) => Value::Image(g.real(g.codes(x).clamp(0.0, top))),
        Value::Features(x) => Value::Features(g.real(g.codes(x).clamp(0.0, top))),
        q @ Value::Quantized(_) => return Err(QatError::shape(path, "a float tensor", q.describe())),
    })
}

/// A layer with weights as the deployment arithmetic sees it: the float (or BN-folded) weight
/// and bias, the fake quants giving the weight's and the output's grids, and the fused ReLU.
struct Weighted<'a, const W: usize> {
    weight: Tensor<W>,
    bias: Option<Tensor<1>>,
    weight_fq: &'a FakeQuantize,
    output_fq: &'a Option<FakeQuantize>,
    relu: bool,
}

/// A conv of any geometry from its float (or folded) weight and bias.
fn conv_from<const D: usize, O: ConvGeometry<D>>(
    options: &O,
    layer: Weighted<'_, D>,
    x: Tensor<D>,
    input: Grid,
    path: &str,
) -> Result<(Tensor<D>, Grid)> {
    let Weighted { weight, bias, weight_fq, output_fq, relu } = layer;
    options.check_input(x.dims(), path)?;
    let w = weight_codes(weight, weight_fq, O::WEIGHT_CHANNEL_AXIS, path)?;
    let output = Grid::of_output(output_fq, path)?;
    let acc = options.forward(input.codes(x).cast(DType::F64), w.codes, None);
    // A transposed conv with groups has out / groups scales on its channel axis, repeating.
    let scale: Vec<f32> = (0..options.out_channels()).map(|i| w.scale[i % w.scale.len()]).collect();
    Ok((requantize_accumulator(acc, bias, input, &scale, output, relu), output))
}

fn conv<const D: usize, O: ConvGeometry<D>>(
    m: &ConvNd<D, O>,
    relu: bool,
    x: Tensor<D>,
    input: Grid,
    path: &str,
) -> Result<(Tensor<D>, Grid)> {
    let bias = m.bias.as_ref().map(|b| b.val());
    let layer = Weighted { weight: m.weight.val(), bias, weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu };
    conv_from(&m.options, layer, x, input, path)
}

/// The BN fold with the running statistics, written here from the batch norm itself:
/// `sf = gamma / sqrt(rv + eps)`, `W * sf` along `axis`, bias `(b - rm) * sf + beta` in f32.
fn fold<const W: usize>(weight: Tensor<W>, bias: Option<Tensor<1>>, bn: &BatchNorm, axis: usize) -> (Tensor<W>, Tensor<1>) {
    let c = bn.num_features();
    let sf = scale_factor(bn).detach();
    let device = sf.device();
    let mean: Vec<f32> = bn.running_mean().iter().map(|&m| m as f32).collect();
    let mean = Tensor::<1>::from_data(burn::tensor::TensorData::new(mean, [c]), (&device, DType::F32));
    let bias = bias.map(|b| b.detach()).unwrap_or_else(|| Tensor::zeros([c], &device));
    let folded_bias = (bias - mean) * sf.clone() + bn.bias.val().detach();
    (weight.detach() * sf.reshape(weight_axis_shape::<W>(c, axis)), folded_bias)
}

fn conv_bn<const D: usize, O: ConvGeometry<D>>(
    m: &ConvBnNd<D, O>,
    relu: bool,
    x: Tensor<D>,
    input: Grid,
    path: &str,
) -> Result<(Tensor<D>, Grid)> {
    if m.options.weight_shape()[O::WEIGHT_CHANNEL_AXIS] != m.options.out_channels() {
        return Err(QatError::config(format!(
            "{path}: batch norm folds only into a conv whose weight has one entry per output channel on its channel axis; use groups = 1"
        )));
    }
    let (weight, bias) = fold(m.weight.val(), m.bias.as_ref().map(|b| b.val()), &m.bn, O::WEIGHT_CHANNEL_AXIS);
    let layer = Weighted { weight, bias: Some(bias), weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu };
    conv_from(&m.options, layer, x, input, path)
}

fn linear_from(layer: Weighted<'_, 2>, x: Tensor<2>, input: Grid, path: &str) -> Result<(Tensor<2>, Grid)> {
    let Weighted { weight, bias, weight_fq, output_fq, relu } = layer;
    let [o, i] = weight.dims();
    if x.dims()[1] != i {
        return Err(QatError::shape(path, format!("input [N, {i}]"), format!("{:?}", x.dims())));
    }
    let w = weight_codes(weight, weight_fq, 0, path)?;
    let output = Grid::of_output(output_fq, path)?;
    let acc = input.codes(x).cast(DType::F64).matmul(w.codes.transpose());
    debug_assert_eq!(w.scale.len(), o);
    Ok((requantize_accumulator(acc, bias, input, &w.scale, output, relu), output))
}

fn linear(m: &qat::Linear, relu: bool, x: Tensor<2>, input: Grid, path: &str) -> Result<(Tensor<2>, Grid)> {
    let bias = m.bias.as_ref().map(|b| b.val());
    let layer = Weighted { weight: m.weight.val(), bias, weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu };
    linear_from(layer, x, input, path)
}

fn linear_bn(m: &LinearBn1d, x: Tensor<2>, input: Grid, path: &str) -> Result<(Tensor<2>, Grid)> {
    let (weight, bias) = fold(m.weight.val(), m.bias.as_ref().map(|b| b.val()), &m.bn, 0);
    let layer = Weighted { weight, bias: Some(bias), weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu: false };
    linear_from(layer, x, input, path)
}

/// A residual block: the body from the block's input, then the two grids added into the add's.
fn residual(r: &mut QatResidual, (value, grid): Flow, path: &str, straight_through: bool) -> Result<Flow> {
    let shortcut_grid = need_grid(grid, path)?;
    let (body, body_grid) = run_layers(&mut r.body, (value.clone(), grid), &format!("{path}.body."), straight_through)?;
    let body_grid = need_grid(body_grid, &format!("{path} (end of its body)"))?;
    let output = Grid::of(&r.add, &format!("{path}.add"))?;
    let exact = match (detach(body.clone()), detach(value.clone())) {
        (Value::Image(a), Value::Image(b)) if a.dims() == b.dims() => Value::Image(add(a, body_grid, b, shortcut_grid, output, r.relu)),
        (Value::Features(a), Value::Features(b)) if a.dims() == b.dims() => {
            Value::Features(add(a, body_grid, b, shortcut_grid, output, r.relu))
        }
        (a, b) => return Err(QatError::shape(path, format!("the residual shape {}", b.describe()), a.describe())),
    };
    if !straight_through {
        return Ok((exact, Some(output)));
    }
    let sum = body.float_add(value, path)?;
    let sum = if r.relu { sum.relu() } else { sum };
    let surrogate = match sum {
        Value::Image(t) => Value::Image(r.add.forward(t)?),
        Value::Features(t) => Value::Features(r.add.forward(t)?),
        q => q,
    };
    Ok((with_gradient_of(exact, surrogate, path)?, Some(output)))
}

fn detach(value: Value) -> Value {
    match value {
        Value::Image(t) => Value::Image(t.detach()),
        Value::Features(t) => Value::Features(t.detach()),
        q => q,
    }
}

/// `exact`'s values with `surrogate`'s gradient: `exact + (s - detach(s))`. The difference is
/// exactly +0 for finite `s`, and `x + 0 == x` for every `x` the grid produces (never -0).
fn with_gradient_of(exact: Value, surrogate: Value, path: &str) -> Result<Value> {
    Ok(match (exact, surrogate) {
        (Value::Image(e), Value::Image(s)) => Value::Image(e + (s.clone() - s.detach())),
        (Value::Features(e), Value::Features(s)) => Value::Features(e + (s.clone() - s.detach())),
        (e, s) => {
            let (e, s) = (e.describe(), s.describe());
            return Err(QatError::config(format!("{path}: the deployment forward gave {e}, the fake-quant forward {s}")));
        }
    })
}
