//! Knowledge distillation for QAT (Hinton et al. 2015, as NVIDIA's and Apple's QAT recipes use
//! it): the quantized student learns from the float model's soft predictions as well as from
//! the labels. Loss = cross entropy + `T^2 * KL(softmax(teacher / T) || softmax(student / T))`.
//!
//! The teacher is fixed and the data is not augmented, so its logits are computed once for the
//! whole training set rather than on every batch: the same loss, for one float forward pass.

use std::sync::Arc;

use burn::tensor::activation::log_softmax;
use burn::tensor::{Int, Tensor, TensorData};

use super::{Classifier, cross_entropy, logits};
use crate::data::Dataset;
use crate::error::{QatError, Result};

/// The teacher's logits for every training example, and the temperature.
#[derive(Clone, Debug)]
pub struct Distillation {
    /// `[examples, classes]`, row-major, in the training set's order.
    teacher_logits: Arc<Vec<f32>>,
    classes: usize,
    temperature: f64,
}

impl Distillation {
    /// The teacher's (eval-mode) logits on every example of `train`.
    pub fn from_teacher<M: Classifier>(teacher: &M, train: &Dataset, temperature: f64, device: &burn::tensor::Device) -> Result<Self> {
        Self::check_temperature(temperature)?;
        let out = logits(teacher, train, 500, device)?;
        Self::from_logits(out.values, out.classes, temperature)
    }

    /// From a teacher's logits computed elsewhere: `[examples, classes]`, row-major, in the
    /// training set's order.
    pub fn from_logits(teacher_logits: Vec<f32>, classes: usize, temperature: f64) -> Result<Self> {
        Self::check_temperature(temperature)?;
        if classes == 0 || teacher_logits.is_empty() || teacher_logits.len() % classes != 0 {
            return Err(QatError::shape(
                "distillation teacher logits",
                format!("a non-empty multiple of {classes} values"),
                teacher_logits.len().to_string(),
            ));
        }
        if let Some(bad) = teacher_logits.iter().find(|v| !v.is_finite()) {
            return Err(QatError::NonFinite { context: "distillation teacher".into(), what: format!("a logit ({bad})") });
        }
        Ok(Self { teacher_logits: Arc::new(teacher_logits), classes, temperature })
    }

    fn check_temperature(temperature: f64) -> Result<()> {
        if temperature.is_finite() && temperature > 0.0 {
            Ok(())
        } else {
            Err(QatError::invalid("temperature", format!("the distillation temperature must be finite and positive, got {temperature}")))
        }
    }

    pub fn temperature(&self) -> f64 {
        self.temperature
    }

    /// The teacher's probabilities at temperature T and their logarithms, for the examples
    /// `batch`, computed in f64 on the host (they are constants of the loss).
    fn teacher_targets(&self, batch: &[usize]) -> Result<(Vec<f32>, Vec<f32>)> {
        let c = self.classes;
        let (mut probs, mut log_probs) = (Vec::with_capacity(batch.len() * c), Vec::with_capacity(batch.len() * c));
        for &i in batch {
            let row = self.teacher_logits.get(i * c..(i + 1) * c).ok_or_else(|| {
                QatError::shape(
                    "distillation",
                    format!("an example among the {} the teacher saw", self.teacher_logits.len() / c),
                    format!("example {i}"),
                )
            })?;
            let scaled: Vec<f64> = row.iter().map(|&v| v as f64 / self.temperature).collect();
            let max = scaled.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = scaled.iter().map(|v| (v - max).exp()).sum::<f64>().ln() + max;
            for v in scaled {
                log_probs.push((v - log_sum) as f32);
                probs.push((v - log_sum).exp() as f32);
            }
        }
        Ok((probs, log_probs))
    }

    /// Cross entropy plus the distillation term for the examples `batch` (whose student logits
    /// are `logits`), and the number of correct argmaxes.
    pub fn loss(&self, logits: Tensor<2>, labels: Tensor<1, Int>, batch: &[usize]) -> Result<(Tensor<1>, usize)> {
        let [n, classes] = logits.dims();
        if classes != self.classes || n != batch.len() {
            return Err(QatError::shape(
                "distillation",
                format!("logits [{}, {}]", batch.len(), self.classes),
                format!("[{n}, {classes}]"),
            ));
        }
        let device = logits.device();
        let (ce, right) = cross_entropy(logits.clone(), labels);
        let (probs, log_probs) = self.teacher_targets(batch)?;
        let probs = Tensor::<2>::from_data(TensorData::new(probs, [n, classes]), &device);
        let log_probs = Tensor::<2>::from_data(TensorData::new(log_probs, [n, classes]), &device);
        let t = self.temperature;
        let student = log_softmax(logits / t, 1);
        let kl = (probs * (log_probs - student)).sum_dim(1).mean() * (t * t);
        Ok((ce + kl.reshape([1]), right))
    }
}

/// The training loss: cross entropy, plus distillation when asked for.
pub(crate) fn training_loss(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    batch: &[usize],
    distillation: Option<&Distillation>,
) -> Result<(Tensor<1>, usize)> {
    match distillation {
        Some(d) => d.loss(logits, labels, batch),
        None => Ok(cross_entropy(logits, labels)),
    }
}
