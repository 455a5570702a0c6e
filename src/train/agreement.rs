//! Logits of a whole test set and how closely two models' logits agree, measured on the output
//! grid of the int8 model: the numbers behind "what you train is what ships".

use burn::tensor::{Device, Tensor};

use super::Classifier;
use crate::data::Dataset;
use crate::error::{QatError, Result};
use crate::workflow::Int8Model;

/// Logits `[samples, classes]`, row-major, on the host.
#[derive(Clone, Debug, PartialEq)]
pub struct Logits {
    pub values: Vec<f32>,
    pub classes: usize,
}

impl Logits {
    fn collect(batches: impl IntoIterator<Item = Result<Tensor<2>>>) -> Result<Self> {
        let (mut values, mut classes) = (Vec::new(), 0);
        for batch in batches {
            let batch = batch?;
            classes = batch.dims()[1];
            values.extend(
                batch
                    .into_data()
                    .convert::<f32>()
                    .try_into_vec::<f32>()
                    .map_err(|e| QatError::invalid("dtype", format!("reading logits: {e:?}")))?,
            );
        }
        Ok(Self { values, classes })
    }

    pub fn samples(&self) -> usize {
        self.values.len() / self.classes.max(1)
    }

    /// The predicted class of each sample: the first largest logit, as burn's `argmax` picks it.
    pub fn argmax(&self) -> Vec<usize> {
        self.values
            .chunks(self.classes.max(1))
            .map(|row| row.iter().enumerate().fold(0, |best, (i, &v)| if v > row[best] { i } else { best }))
            .collect()
    }
}

/// A classifier's eval-mode logits on every sample of `data` (observers off, the model's own
/// eval arithmetic), in batches.
pub fn logits<M: Classifier>(model: &M, data: &Dataset, batch_size: usize, device: &Device) -> Result<Logits> {
    let mut model = model.valid();
    model.set_training(false);
    model.disable_observer();
    let indices: Vec<usize> = (0..data.len()).collect();
    Logits::collect(indices.chunks(batch_size.max(1)).map(|batch| model.logits(data.batch(batch, device).0)))
}

/// An int8 model's logits (dequantized) on every sample of `data`, in batches of 500.
pub fn int8_logits(model: &Int8Model, data: &Dataset) -> Result<Logits> {
    let device = Device::flex();
    let indices: Vec<usize> = (0..data.len()).collect();
    Logits::collect(indices.chunks(500).map(|batch| model.forward(data.batch(batch, &device).0)?.into_features(&device)))
}

/// How two sets of logits of the same samples agree.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Agreement {
    /// Fraction of samples with the same predicted class.
    pub argmax: f64,
    /// Fraction of logits that are equal (on the output grid: the same integer).
    pub logits_equal: f64,
    /// Fraction of logits at most one output step apart.
    pub logits_within_one_step: f64,
    /// The largest distance between two logits, in output steps.
    pub max_steps: f64,
}

/// Compares `a` with `b`, counting distances in steps of `step` (the output scale).
pub fn agreement(a: &Logits, b: &Logits, step: f32) -> Result<Agreement> {
    if a.classes != b.classes || a.values.len() != b.values.len() || a.values.is_empty() {
        return Err(QatError::shape(
            "comparing logits",
            format!("{} samples of {} classes", a.samples(), a.classes),
            format!("{} samples of {} classes", b.samples(), b.classes),
        ));
    }
    if !(step.is_finite() && step > 0.0) {
        return Err(QatError::invalid("step", format!("comparing logits: the output step {step} must be finite and positive")));
    }
    let steps: Vec<f64> = a.values.iter().zip(&b.values).map(|(x, y)| ((*x as f64 - *y as f64) / step as f64).abs()).collect();
    let fraction = |n: usize, of: usize| n as f64 / of as f64;
    let same_class = a.argmax().iter().zip(b.argmax()).filter(|(x, y)| **x == *y).count();
    Ok(Agreement {
        argmax: fraction(same_class, a.samples()),
        // Two values on one grid are equal or at least a step apart; half a step separates them.
        logits_equal: fraction(steps.iter().filter(|&&s| s < 0.5).count(), steps.len()),
        logits_within_one_step: fraction(steps.iter().filter(|&&s| s < 1.5).count(), steps.len()),
        max_steps: steps.iter().fold(0.0f64, |m, &s| if s.is_nan() { f64::INFINITY } else { m.max(s) }),
    })
}
