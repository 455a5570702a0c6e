//! The converted model: int8 layers on integer kernels, float layers where the qconfig was
//! `None`, and quantize / dequantize at the stubs.

use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::ToQuantized;
use super::float_model::Layer;
use super::layers::{Flatten, Named, Value};
use super::pooling::{AvgPool2d, GlobalAvgPool2d, MaxPool2d};
use super::qat_model::{QatLayer, QatModel};
use crate::error::{QatError, Result};
use crate::nn::quantized::{self, ActivationQParams, QTensor};

/// A layer of a converted model.
#[derive(Clone, Debug)]
pub enum Int8Layer {
    Quantize(quantized::Quantize),
    DeQuantize,
    Conv2d(quantized::Conv2d),
    Linear(quantized::Linear),
    BatchNorm2d(quantized::BatchNorm2d),
    Relu,
    Relu6,
    MaxPool2d(MaxPool2d),
    AvgPool2d(AvgPool2d),
    GlobalAvgPool2d,
    Flatten,
    Residual {
        body: Vec<Named<Int8Layer>>,
        add: quantized::Add,
    },
    /// Left in float (qconfig `None`), between a DeQuantStub and a QuantStub.
    Float(Layer),
}

crate::nn::geometry::constant_module!(Int8Layer);

/// The int8 model.
#[derive(Clone, Debug)]
pub struct Int8Model {
    pub layers: Vec<Named<Int8Layer>>,
}

/// PyTorch `convert`: every QAT layer becomes its int8 module, BN folded with the running
/// statistics, weights quantized with the weight fake quant's convert-time qparams, outputs
/// requantized to each output fake quant's qparams. The QAT model is not changed (PyTorch's
/// convert runs the weight observers once more; ours does not, so a model whose observers are
/// off converts to exactly what it evaluated).
pub fn convert(model: &QatModel) -> Result<Int8Model> {
    convert_with(model, ConvertOptions::default())
}

/// How [`convert_with`] maps the trained qparams onto the int8 model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConvertOptions {
    /// Saturate activations at the full u8 range instead of the trained one, as PyTorch's
    /// converted fbgemm / x86 models do: they train with `reduce_range` (0..127) but their
    /// quint8 kernels clamp to 0..255, so values the QAT model clipped pass through (measured
    /// on PyTorch 2.15: about a third of the logits of a small CNN change). Off by default:
    /// our int8 model clamps where training clamped.
    pub pytorch_saturation: bool,
}

/// [`convert`] with options.
pub fn convert_with(model: &QatModel, options: ConvertOptions) -> Result<Int8Model> {
    let mut current = None;
    let mut layers = convert_layers(&model.layers, "", &mut current)?;
    if options.pytorch_saturation {
        widen_ranges(&mut layers);
    }
    Ok(Int8Model { layers })
}

fn widen(q: &mut ActivationQParams) {
    q.quant_min = 0;
    q.quant_max = 255;
}

fn widen_ranges(layers: &mut [Named<Int8Layer>]) {
    for l in layers {
        match &mut l.layer {
            Int8Layer::Quantize(q) => widen(&mut q.qparams),
            Int8Layer::Conv2d(m) => {
                widen(&mut m.input);
                widen(&mut m.output);
            }
            Int8Layer::Linear(m) => {
                widen(&mut m.input);
                widen(&mut m.output);
            }
            Int8Layer::BatchNorm2d(m) => {
                widen(&mut m.input);
                widen(&mut m.output);
            }
            Int8Layer::Residual { body, add } => {
                widen_ranges(body);
                widen(&mut add.output);
            }
            _ => {}
        }
    }
}

fn need_input(current: &Option<ActivationQParams>, path: &str) -> Result<ActivationQParams> {
    current.ok_or_else(|| QatError::config(format!("{path}: receives float input but is quantized; put a QuantStub before it")))
}

fn convert_layers(layers: &[Named<QatLayer>], prefix: &str, current: &mut Option<ActivationQParams>) -> Result<Vec<Named<Int8Layer>>> {
    let mut out = Vec::with_capacity(layers.len());
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        let layer = match &l.layer {
            QatLayer::QuantStub(s) => {
                let q = s.activation_post_process.activation_qparams(&path)?;
                *current = Some(q);
                Int8Layer::Quantize(quantized::Quantize::new(q)?)
            }
            QatLayer::DeQuantStub(_) => {
                *current = None;
                Int8Layer::DeQuantize
            }
            QatLayer::ConvBn2d(m) => Int8Layer::Conv2d(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::ConvBnReLU2d(m) => Int8Layer::Conv2d(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::ConvReLU2d(m) => Int8Layer::Conv2d(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::Conv2d(m) => Int8Layer::Conv2d(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::Linear(m) => Int8Layer::Linear(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::LinearReLU(m) => Int8Layer::Linear(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::LinearBn1d(m) => Int8Layer::Linear(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::BatchNorm2d(m) => Int8Layer::BatchNorm2d(m.to_quantized(need_input(current, &path)?, &path)?),
            QatLayer::Relu(_) => Int8Layer::Relu,
            QatLayer::Relu6(_) => Int8Layer::Relu6,
            QatLayer::AvgPool2d(p) => Int8Layer::AvgPool2d(p.clone()),
            QatLayer::MaxPool2d(p) => Int8Layer::MaxPool2d(p.clone()),
            QatLayer::GlobalAvgPool2d(_) => Int8Layer::GlobalAvgPool2d,
            QatLayer::Flatten(_) => Int8Layer::Flatten,
            QatLayer::Residual(r) => {
                need_input(current, &path)?;
                let body = convert_layers(&r.body, &format!("{path}.body."), current)?;
                need_input(current, &format!("{path} (end of its body)"))?;
                let add = quantized::Add::new(r.add.activation_qparams(&format!("{path}.add"))?, r.relu)?;
                *current = Some(add.output);
                Int8Layer::Residual { body, add }
            }
            QatLayer::Float(f) => {
                if current.is_some() {
                    return Err(QatError::config(format!(
                        "{path}: a float layer (qconfig None) receives quantized input; put a DeQuantStub before it"
                    )));
                }
                Int8Layer::Float(f.clone())
            }
        };
        match &layer {
            Int8Layer::Conv2d(m) => *current = Some(m.output),
            Int8Layer::Linear(m) => *current = Some(m.output),
            Int8Layer::BatchNorm2d(m) => *current = Some(m.output),
            _ => {}
        }
        out.push(Named { name: l.name.clone(), layer });
    }
    Ok(out)
}

/// The fewest samples a thread's slice of a batch gets: below that, one pass over the batch
/// with each layer split across the threads.
const MIN_SAMPLES_PER_SLICE: usize = 4;

fn layers_are_per_sample(layers: &[Named<Int8Layer>]) -> bool {
    layers.iter().all(|l| match &l.layer {
        Int8Layer::Float(_) => false,
        Int8Layer::Residual { body, .. } => layers_are_per_sample(body),
        _ => true,
    })
}

/// Which implementation runs the integer layers.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Engine {
    Kernels,
    Reference,
}

impl Int8Model {
    /// Runs the model on float images `[N, C, H, W]` (quantized at the first QuantStub).
    pub fn forward(&self, x: Tensor<4>) -> Result<Value> {
        let device = x.device();
        let n = x.dims()[0];
        // One sample runs on the caller's thread: its layers are mostly too small to split
        // (MIN_PARALLEL_MACS), and a hop onto the pool and back costs two thread wake-ups (a
        // fifth of MobileNetV2-tiny's time at batch 1). A layer large enough to split still
        // hands its tasks to the pool.
        if n == 1 {
            return run_layers(&self.layers, Value::Image(x), "", Engine::Kernels, &device);
        }
        let slices = self.batch_slices(n);
        // A small batch runs its layers one after the other, each split across the pool. Called
        // from outside the pool, every layer would hand its work to a worker and sleep until it
        // returns (a futex wake and a context switch per layer); run on a worker, the whole
        // forward makes that handoff once.
        if slices.len() < 2 {
            return rayon::scope(|_| run_layers(&self.layers, Value::Image(x), "", Engine::Kernels, &device));
        }
        // A large batch runs as one slice of samples per thread, each through the whole model:
        // no thread waits for the others at the end of every layer (a tenth of MobileNetV2-tiny's
        // time at batch 32 went to those waits), and each slice's activations stay in its core's
        // cache. Every layer computes each sample on its own, so the bits are the same.
        let outputs: Vec<Result<Value>> = slices
            .into_par_iter()
            .with_max_len(1)
            .map(|(start, len)| run_layers(&self.layers, Value::Image(x.clone().narrow(0, start, len)), "", Engine::Kernels, &device))
            .collect();
        Value::concat_batches(outputs.into_iter().collect::<Result<Vec<_>>>()?)
    }

    /// The slices `(first sample, samples)` a batch of `n` runs as: one per thread when each
    /// gets at least [`MIN_SAMPLES_PER_SLICE`] and every layer computes each sample on its own
    /// (a float layer may be a batch norm still in training mode, which mixes samples).
    fn batch_slices(&self, n: usize) -> Vec<(usize, usize)> {
        let slices = rayon::current_num_threads().min(n / MIN_SAMPLES_PER_SLICE);
        if slices < 2 || !layers_are_per_sample(&self.layers) {
            return vec![(0, n)];
        }
        (0..slices).map(|i| (i * n / slices, (i + 1) * n / slices - i * n / slices)).collect()
    }

    /// The qparams of the last quantized output (the grid of the logits, whether or not a
    /// DeQuantStub follows): the step to measure output differences in. `None` if nothing is
    /// quantized.
    pub fn output_qparams(&self) -> Option<ActivationQParams> {
        fn last(layers: &[Named<Int8Layer>]) -> Option<ActivationQParams> {
            layers.iter().rev().find_map(|l| match &l.layer {
                Int8Layer::Quantize(q) => Some(q.qparams),
                Int8Layer::Conv2d(m) => Some(m.output),
                Int8Layer::Linear(m) => Some(m.output),
                Int8Layer::BatchNorm2d(m) => Some(m.output),
                Int8Layer::Residual { add, .. } => Some(add.output),
                _ => None,
            })
        }
        last(&self.layers)
    }

    /// Predicted classes for float images (the argmax of the final features).
    pub fn predict(&self, x: Tensor<4>) -> Result<Vec<usize>> {
        let device = x.device();
        crate::nn::tensor_util::argmax_classes(self.forward(x)?.into_features(&device)?)
    }

    /// The same with the integer layers computed on burn's f64 ops (the reference path).
    pub fn forward_reference(&self, x: Tensor<4>, device: &Device) -> Result<Value> {
        run_layers(&self.layers, Value::Image(x), "", Engine::Reference, device)
    }
}

fn run_layers(layers: &[Named<Int8Layer>], mut value: Value, prefix: &str, engine: Engine, device: &Device) -> Result<Value> {
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        value = match &l.layer {
            Int8Layer::Quantize(q) => match value {
                Value::Image(t) => Value::Quantized(q.forward(&t)?),
                Value::Features(t) => Value::Quantized(q.forward(&t)?),
                Value::Quantized(_) => {
                    return Err(QatError::config(format!("{path}: Quantize received an already quantized tensor")));
                }
            },
            Int8Layer::DeQuantize => {
                let q = value.quantized(&path)?;
                match q.shape.len() {
                    4 => Value::Image(q.to_tensor::<4>(device)?),
                    2 => Value::Features(q.to_tensor::<2>(device)?),
                    _ => {
                        return Err(QatError::shape(&path, "a rank-2 or rank-4 tensor", format!("{:?}", q.shape)));
                    }
                }
            }
            Int8Layer::Conv2d(m) => {
                let x = value.quantized(&path)?;
                Value::Quantized(if engine == Engine::Kernels { m.forward(&x)? } else { m.forward_reference(&x, device)? })
            }
            Int8Layer::Linear(m) => {
                let x = value.quantized(&path)?;
                Value::Quantized(if engine == Engine::Kernels { m.forward(&x)? } else { m.forward_reference(&x, device)? })
            }
            // Elementwise in f32 either way: the kernel is its own reference.
            Int8Layer::BatchNorm2d(m) => Value::Quantized(m.forward(&value.quantized(&path)?)?),
            Int8Layer::Relu => value.relu(),
            Int8Layer::Relu6 => value.relu6(),
            Int8Layer::AvgPool2d(p) => p.forward(value, &path)?,
            Int8Layer::MaxPool2d(p) => p.forward(value, &path)?,
            Int8Layer::GlobalAvgPool2d => GlobalAvgPool2d.forward(value, &path)?,
            Int8Layer::Flatten => Flatten.forward(value, &path)?,
            Int8Layer::Residual { body, add } => {
                let shortcut: QTensor = value.clone().quantized(&path)?;
                let y = run_layers(body, value, &format!("{path}.body."), engine, device)?.quantized(&path)?;
                Value::Quantized(add.forward(&y, &shortcut)?)
            }
            Int8Layer::Float(f) => f.clone().forward(value, &path)?,
        };
    }
    Ok(value)
}
