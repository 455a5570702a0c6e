//! What quantization does to each layer of a prepared model: its qparams, its weight range, and
//! the signal-to-quantization-noise ratio (SNR) of its weights and output activations. The
//! numbers behind `burn-qat inspect`, and the first thing to look at when a layer loses accuracy.
//!
//! Weight SNR compares the weight the layer deploys in float (BN folded with the running
//! statistics, as convert folds it) with its int8 version dequantized. Activation SNR compares a
//! layer's float output with the same output after its fake quant, on the batch given, each
//! layer fed the fake-quantized output of the one before (what the deployed model sees).

use burn::tensor::Tensor;

use super::layers::{Named, Value, match_float};
use super::qat_layer::DeployedWeight;
use super::qat_model::{QatLayer, QatModel};
use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::QatModule;
use crate::nn::tensor_util::host_values;

/// A weight's quantization, per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct WeightStats {
    /// Smallest and largest float weight (after BN folding).
    pub min: f32,
    pub max: f32,
    /// Smallest and largest scale over the output channels (equal when per tensor).
    pub scale_min: f32,
    pub scale_max: f32,
    /// Number of scales: output channels when per channel, 1 when per tensor.
    pub scales: usize,
    /// `10 log10(sum w^2 / sum (w - dequant(quant(w)))^2)`; infinite when exact.
    pub snr_db: f64,
}

/// An output activation's quantization, per layer.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationStats {
    pub scale: f32,
    pub zero_point: i32,
    pub quant_min: i32,
    pub quant_max: i32,
    /// Smallest and largest float output on the batch, before fake quant.
    pub min: f32,
    pub max: f32,
    /// Fraction of outputs whose integer code (before clamping) falls outside
    /// `[quant_min, quant_max]`: the values the fake quant clips.
    pub clipped: f64,
    /// `10 log10(sum a^2 / sum (a - fake_quant(a))^2)` on the batch.
    pub snr_db: f64,
}

/// One row of [`inspect`]'s table.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// The layer's path, as in the state dict (`block1.body.conv_a`).
    pub path: String,
    /// Its QAT module type (`ConvBnReLU2d`, `QuantStub`, `Add`, ...).
    pub kind: &'static str,
    pub weight: Option<WeightStats>,
    pub output: Option<ActivationStats>,
}

/// Quantization statistics of every quantized layer of `model`, with activation SNR measured on
/// `batch` in eval mode (a copy of the model: observers and BN statistics do not move).
pub fn inspect<const D: usize>(model: &QatModel, batch: Tensor<D>) -> Result<Vec<LayerReport>> {
    let mut model = model.clone();
    model.set_training(false);
    model.disable_observer();
    let mut rows = Vec::new();
    walk(&model.layers, Value::from_tensor(batch)?, "", &mut rows)?;
    Ok(rows)
}

fn snr_db(signal: f64, noise: f64) -> f64 {
    if noise == 0.0 { f64::INFINITY } else { 10.0 * (signal / noise).log10() }
}

fn values<const D: usize>(t: &Tensor<D>) -> Vec<f64> {
    host_values(t)
}

/// Runs `layers` on `x`, recording a row for each quantized layer; returns the output.
fn walk(layers: &[Named<QatLayer>], mut x: Value, prefix: &str, rows: &mut Vec<LayerReport>) -> Result<Value> {
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        x = match &l.layer {
            QatLayer::Residual(r) => {
                let y = walk(&r.body, x.clone(), &format!("{path}.body."), rows)?;
                let sum = y.float_add(x, &path)?;
                let sum = if r.relu { sum.relu() } else { sum };
                let (out, stats) = fake_quant_output(&r.add, sum, &path)?;
                rows.push(LayerReport { path: format!("{path}.add"), kind: "Add", weight: None, output: stats });
                out
            }
            QatLayer::Concat(c) => {
                let y = walk(&c.body, x.clone(), &format!("{path}.body."), rows)?;
                let (out, stats) = fake_quant_output(&c.cat, x.concat_channels(y, &path)?, &path)?;
                rows.push(LayerReport { path: format!("{path}.cat"), kind: "Concat", weight: None, output: stats });
                out
            }
            layer => {
                let mut float_layer = layer.clone();
                let fq = take_output_fake_quant(&mut float_layer);
                let y = float_layer.op_mut().forward(x, &path)?;
                let weight = weight_stats(layer, &path)?;
                match fq {
                    Some(fq) => {
                        let (out, stats) = fake_quant_output(&fq, y, &path)?;
                        rows.push(LayerReport { path, kind: layer.kind(), weight, output: stats });
                        out
                    }
                    None => {
                        if weight.is_some() {
                            rows.push(LayerReport { path, kind: layer.kind(), weight, output: None });
                        }
                        y
                    }
                }
            }
        };
    }
    Ok(x)
}

/// Applies `fq` to a float value and measures what it did; quantized values pass through.
fn fake_quant_output(fq: &FakeQuantize, y: Value, layer: &str) -> Result<(Value, Option<ActivationStats>)> {
    let mut fq = fq.clone();
    let (before, after, out) = match_float!(
        y,
        |t| {
            let q = fq.forward(t.clone())?;
            (values(&t), values(&q), Value::from_tensor(q)?)
        },
        |q| return Ok((Value::Quantized(q), None))
    );
    let qp = fq.activation_qparams(layer)?;
    // Clipped: the integer the value rounds to lies outside the range, counted on the integers
    // as the fake quant rounds (comparing reals with `(qmax - z) * s` counted values that round
    // exactly to qmax, such as 1.0 at scale f32(1/127)).
    let inverse = 1.0 / qp.scale;
    let code = |a: f64| qp.zero_point as f32 + crate::quant::round_half_even(a as f32 * inverse);
    let clipped = before.iter().filter(|&&a| !(qp.quant_min as f32..=qp.quant_max as f32).contains(&code(a))).count() as f64
        / before.len().max(1) as f64;
    let signal: f64 = before.iter().map(|a| a * a).sum();
    let noise: f64 = before.iter().zip(&after).map(|(a, q)| (a - q) * (a - q)).sum();
    let stats = ActivationStats {
        scale: qp.scale,
        zero_point: qp.zero_point,
        quant_min: qp.quant_min,
        quant_max: qp.quant_max,
        min: before.iter().cloned().fold(f64::INFINITY, f64::min) as f32,
        max: before.iter().cloned().fold(f64::NEG_INFINITY, f64::max) as f32,
        clipped,
        snr_db: snr_db(signal, noise),
    };
    Ok((out, Some(stats)))
}

/// Removes a layer's output fake quant (so that its forward returns the float output) and
/// returns it.
fn take_output_fake_quant(layer: &mut QatLayer) -> Option<FakeQuantize> {
    if let QatLayer::QuantStub(s) = layer {
        // A stub is nothing but its fake quant: forward the input unchanged.
        let fq = s.activation_post_process.clone();
        *layer = QatLayer::DeQuantStub(Default::default());
        return Some(fq);
    }
    layer.op_mut().take_output_fake_quant()
}

fn weight_stats(layer: &QatLayer, path: &str) -> Result<Option<WeightStats>> {
    let Some(DeployedWeight { values: weight, channels, fake_quant: fq }) = layer.op().deployed_weight() else { return Ok(None) };
    let (q, scale, zero_point) = fq.quantize_weight(&weight, channels, path)?;
    let per_channel = weight.len() / channels.max(1);
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (i, (&w, &q)) in weight.iter().zip(&q).enumerate() {
        let c = if scale.len() == 1 { 0 } else { i / per_channel };
        let dequantized = (q as i32 - zero_point[c]) as f64 * scale[c] as f64;
        signal += (w as f64) * (w as f64);
        noise += (w as f64 - dequantized).powi(2);
    }
    Ok(Some(WeightStats {
        min: weight.iter().cloned().fold(f32::INFINITY, f32::min),
        max: weight.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        scale_min: scale.iter().cloned().fold(f32::INFINITY, f32::min),
        scale_max: scale.iter().cloned().fold(f32::NEG_INFINITY, f32::max),
        scales: scale.len(),
        snr_db: snr_db(signal, noise),
    }))
}
