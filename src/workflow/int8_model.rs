//! The converted model: int8 layers on integer kernels, float layers where the qconfig was
//! `None`, and quantize / dequantize at the stubs.

use burn::tensor::{Device, Tensor};
use rayon::prelude::*;

use super::convert_chain::ConvertChain;
pub use super::int8_layer::Int8Layer;
use super::int8_layer::{Engine, run_layers};
use super::layers::{Named, Value};
use super::qat_layer::convert_layers;
use super::qat_model::QatModel;
use crate::error::Result;
use crate::nn::quantized::ActivationQParams;

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
    let mut layers = convert_layers(&model.layers, "", &mut ConvertChain::new())?;
    if options.pytorch_saturation {
        layers.iter_mut().for_each(|l| l.layer.saturate_at_full_range());
    }
    Ok(Int8Model { layers })
}

/// The fewest samples a thread's slice of a batch gets: below that, one pass over the batch
/// with each layer split across the threads.
const MIN_SAMPLES_PER_SLICE: usize = 4;

impl Int8Model {
    /// Runs the model on a float batch of rank 2 to 5 (quantized at the first QuantStub).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Value> {
        let device = x.device();
        let n = x.dims()[0];
        // One sample runs on the caller's thread: its layers are mostly too small to split
        // (MIN_PARALLEL_MACS), and a hop onto the pool and back costs two thread wake-ups (a
        // fifth of MobileNetV2-tiny's time at batch 1). A layer large enough to split still
        // hands its tasks to the pool.
        if n == 1 {
            return run_layers(&self.layers, Value::from_tensor(x)?, "", Engine::Kernels, &device);
        }
        let slices = self.batch_slices(n);
        // A small batch runs its layers one after the other, each split across the pool. Called
        // from outside the pool, every layer would hand its work to a worker and sleep until it
        // returns (a futex wake and a context switch per layer); run on a worker, the whole
        // forward makes that handoff once.
        if slices.len() < 2 {
            return rayon::scope(|_| run_layers(&self.layers, Value::from_tensor(x)?, "", Engine::Kernels, &device));
        }
        // A large batch runs as one slice of samples per thread, each through the whole model:
        // no thread waits for the others at the end of every layer (a tenth of MobileNetV2-tiny's
        // time at batch 32 went to those waits), and each slice's activations stay in its core's
        // cache. Every layer computes each sample on its own, so the bits are the same.
        let outputs: Vec<Result<Value>> = slices
            .into_par_iter()
            .with_max_len(1)
            .map(|(start, len)| {
                run_layers(&self.layers, Value::from_tensor(x.clone().narrow(0, start, len))?, "", Engine::Kernels, &device)
            })
            .collect();
        Value::concat_batches(outputs.into_iter().collect::<Result<Vec<_>>>()?)
    }

    /// The slices `(first sample, samples)` a batch of `n` runs as: one per thread when each
    /// gets at least [`MIN_SAMPLES_PER_SLICE`] and every layer computes each sample on its own
    /// (a float layer may be a batch norm still in training mode, which mixes samples).
    fn batch_slices(&self, n: usize) -> Vec<(usize, usize)> {
        let slices = rayon::current_num_threads().min(n / MIN_SAMPLES_PER_SLICE);
        if slices < 2 || !self.layers.iter().all(|l| l.layer.per_sample()) {
            return vec![(0, n)];
        }
        (0..slices).map(|i| (i * n / slices, (i + 1) * n / slices - i * n / slices)).collect()
    }

    /// The qparams of the last quantized output (the grid of the logits, whether or not a
    /// DeQuantStub follows): the step to measure output differences in. `None` if nothing is
    /// quantized.
    pub fn output_qparams(&self) -> Option<ActivationQParams> {
        self.layers.iter().rev().find_map(|l| l.layer.output_qparams())
    }

    /// Predicted classes for a float batch (the argmax of the final features).
    pub fn predict<const D: usize>(&self, x: Tensor<D>) -> Result<Vec<usize>> {
        let device = x.device();
        crate::nn::tensor_util::argmax_classes(self.forward(x)?.into_features(&device)?)
    }

    /// The same with the integer layers computed on burn's f64 ops (the reference path).
    pub fn forward_reference<const D: usize>(&self, x: Tensor<D>, device: &Device) -> Result<Value> {
        run_layers(&self.layers, Value::from_tensor(x)?, "", Engine::Reference, device)
    }
}
