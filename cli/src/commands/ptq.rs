//! The PTQ comparison: the float model calibrated with each observer (no training), converted;
//! the one most accurate on the last 1,000 training images (never the test set) is kept.

use burn::tensor::Device;
use burn_qat::data::Dataset;
use burn_qat::observer::RangeEstimator;
use burn_qat::train::{accuracy, calibrate, int8_logits};
use burn_qat::workflow::{FloatModel, Int8Model, convert};

use burn_qat::run::{ObserverChoice, RunSpec};

/// Observers the PTQ comparison tries, in order (a tie keeps the earlier).
const OBSERVERS: [ObserverChoice; 4] = [
    ObserverChoice::MIN_MAX,
    ObserverChoice::Histogram,
    ObserverChoice::Range(RangeEstimator::Percentile { percentile: 99.99 }),
    ObserverChoice::Range(RangeEstimator::Mse),
];

/// Training images the choice is made on (the last ones of the training set).
const SELECTION_IMAGES: usize = 1000;

pub struct Ptq {
    pub model: Int8Model,
    pub observer: ObserverChoice,
    /// Each observer's accuracy on the selection images, in [`OBSERVERS`] order.
    pub scores: Vec<(&'static str, f64)>,
    pub calibration_samples: usize,
}

impl Ptq {
    /// Each observer's score, as `name 97.50%, ...`.
    pub fn scores_text(&self) -> String {
        self.scores.iter().map(|(n, a)| format!("{n} {:.2}%", 100.0 * a)).collect::<Vec<_>>().join(", ")
    }
}

pub fn best_ptq(
    spec: &RunSpec,
    float: &FloatModel,
    train: &Dataset,
    batches: usize,
    batch_size: usize,
    device: &Device,
) -> burn_qat::Result<Ptq> {
    let selection = train.slice(train.len().saturating_sub(SELECTION_IMAGES)..train.len());
    let (mut scores, mut best, mut calibration_samples) = (Vec::new(), None::<(f64, ObserverChoice, Int8Model)>, 0);
    for observer in OBSERVERS {
        let mut observed = spec.clone();
        observed.qconfig.observer = observer;
        let mut model = observed.prepare(float.clone())?;
        calibration_samples = calibrate(&mut model, train, batches, batch_size, device)?;
        let int8 = convert(&model)?;
        let score = accuracy(&int8_logits(&int8, &selection)?.argmax(), &selection);
        scores.push((observer.name(), score));
        if best.as_ref().is_none_or(|(a, _, _)| score > *a) {
            best = Some((score, observer, int8));
        }
    }
    let (_, observer, model) = best.expect("several observers tried");
    Ok(Ptq { model, observer, scores, calibration_samples })
}
