//! A plain training loop for classifiers built from QAT modules, with PyTorch's QAT schedule:
//! freeze BN statistics from one epoch, disable observers from a later one.

mod agreement;
mod data_parallel;
mod distill;
mod resume;

use std::time::Instant;

use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Int, Tensor};

use crate::data::{Dataset, shuffled_indices};
use crate::error::{QatError, Result};
use crate::nn::QatModule;
pub use crate::nn::tensor_util::argmax_classes;
pub use agreement::{Agreement, Logits, agreement, int8_logits, logits};
pub use data_parallel::DataParallel;
pub use distill::Distillation;
pub(crate) use distill::training_loss;
pub use resume::{OPTIMIZER_KEY, ResumePoint, reports_from_json, reports_to_json, stable_param_ids};

/// A model the loop can train: logits from images, and the QAT switches.
pub trait Classifier: Module + QatModule {
    fn logits(&mut self, images: Tensor<4>) -> Result<Tensor<2>>;
}

impl Classifier for crate::models::QatLeNet {
    fn logits(&mut self, images: Tensor<4>) -> Result<Tensor<2>> {
        self.forward(images)
    }
}

impl Classifier for crate::workflow::FloatModel {
    fn logits(&mut self, images: Tensor<4>) -> Result<Tensor<2>> {
        let device = images.device();
        self.forward(images)?.into_features(&device)
    }
}

impl Classifier for crate::workflow::QatModel {
    fn logits(&mut self, images: Tensor<4>) -> Result<Tensor<2>> {
        let device = images.device();
        self.forward(images)?.into_features(&device)
    }
}

/// Predicted classes of a classifier in eval mode (observers off, as in [`evaluate`]).
pub fn predictions<M: Classifier>(model: &M, data: &Dataset, batch_size: usize, device: &Device) -> Result<Vec<usize>> {
    let mut model = model.valid();
    model.set_training(false);
    model.disable_observer();
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut out = Vec::with_capacity(data.len());
    for batch in indices.chunks(batch_size) {
        let (images, _) = data.batch(batch, device);
        out.extend(argmax_classes(model.logits(images)?)?);
    }
    Ok(out)
}

/// The fraction of `predictions` equal to the labels of `data`.
pub fn accuracy(predictions: &[usize], data: &Dataset) -> f64 {
    let right = predictions.iter().zip(&data.labels).filter(|(p, l)| **p == **l as usize).count();
    right as f64 / data.len().max(1) as f64
}

/// Training settings. SGD with momentum (PyTorch's: no dampening).
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub momentum: f64,
    pub seed: u64,
    /// `freeze_bn_stats` from this epoch on (0-based); `None`: never.
    pub freeze_bn_from_epoch: Option<usize>,
    /// `disable_observer` from this epoch on (0-based); `None`: never.
    pub disable_observer_from_epoch: Option<usize>,
    /// Anneal the learning rate to 0 along a half cosine over the whole run.
    pub cosine_lr: bool,
    /// Learn from a teacher's soft predictions too (QAT from the float model).
    pub distillation: Option<Distillation>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            epochs: 3,
            batch_size: 64,
            lr: 0.05,
            momentum: 0.9,
            seed: 0,
            freeze_bn_from_epoch: Some(2),
            disable_observer_from_epoch: Some(2),
            cosine_lr: true,
            distillation: None,
        }
    }
}

/// What one epoch measured.
#[derive(Clone, Debug, PartialEq)]
pub struct EpochReport {
    pub epoch: usize,
    pub loss: f64,
    pub train_accuracy: f64,
    pub test_accuracy: f64,
    pub samples_per_second: f64,
}

/// Mean cross entropy of logits against labels, and the number of correct argmaxes.
pub(crate) fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> (Tensor<1>, usize) {
    let [n, _] = logits.dims();
    let correct = logits.clone().argmax(1).reshape([n]).equal(labels.clone()).int().sum().into_scalar::<i64>() as usize;
    let log_probs = log_softmax(logits, 1);
    let picked: Tensor<2> = log_probs.gather(1, labels.reshape([n, 1]));
    (picked.mean().neg().reshape([1]), correct)
}

/// Where an epoch stands after one optimizer step, for progress displays.
#[derive(Clone, Debug)]
pub struct BatchProgress {
    pub epoch: usize,
    /// Batches done in this epoch, 1-based: `batch == batches` after the last.
    pub batch: usize,
    /// Batches in this epoch (a last batch of one is dropped, see [`train_classifier`]).
    pub batches: usize,
    /// Samples trained on so far in this epoch.
    pub seen: usize,
    /// Mean loss over this epoch's batches so far (per sample).
    pub loss: f64,
    /// Training accuracy over this epoch's batches so far.
    pub accuracy: f64,
    /// Samples per second since the epoch started.
    pub samples_per_second: f64,
    /// The learning rate of the step just taken.
    pub lr: f64,
}

/// Callbacks of [`TrainRun::fit`]; every method has a default that does nothing.
pub trait TrainHooks<M> {
    /// Before the first batch of `epoch`, which will have `batches` batches.
    fn epoch_started(&mut self, _epoch: usize, _batches: usize) {}

    /// After each optimizer step.
    fn batch_done(&mut self, _progress: &BatchProgress) {}

    /// After the last batch of `epoch`, before the test set is evaluated.
    fn evaluating(&mut self, _epoch: usize) {}

    /// After each epoch, with the model as trained so far (to save a checkpoint, say). An error
    /// stops training and is returned.
    fn epoch_done(&mut self, _report: &EpochReport, _model: &M) -> Result<()> {
        Ok(())
    }

    /// After [`epoch_done`](Self::epoch_done), with what continuing this phase exactly needs
    /// besides the model: save both (atomically, in one file) to be able to resume. An error
    /// stops training and is returned.
    fn checkpoint(&mut self, _point: &ResumePoint, _model: &M) -> Result<()> {
        Ok(())
    }
}

/// [`TrainHooks`] from a per-epoch closure: what [`train_classifier`] takes.
pub struct OnEpoch<F>(pub F);

impl<M, F: FnMut(&EpochReport)> TrainHooks<M> for OnEpoch<F> {
    fn epoch_done(&mut self, report: &EpochReport, _model: &M) -> Result<()> {
        (self.0)(report);
        Ok(())
    }
}

/// Trains `model` on one device from the start, calling `on_epoch` after each epoch; the
/// short form of [`TrainRun::fit`].
pub fn train_classifier<M: Classifier>(
    model: M,
    train: &Dataset,
    test: &Dataset,
    options: &TrainOptions,
    device: &Device,
    on_epoch: impl FnMut(&EpochReport),
) -> Result<(M, Vec<EpochReport>)> {
    TrainRun::new(train, test, options, device).fit(model, &mut OnEpoch(on_epoch))
}

/// One training run: the data, the settings, the devices and where it starts. Built on one
/// device from epoch 0 ([`TrainRun::new`]); [`on_devices`](TrainRun::on_devices) for
/// data-parallel training, [`resumed_from`](TrainRun::resumed_from) to continue a checkpoint.
#[derive(Clone, Debug)]
pub struct TrainRun<'a> {
    pub train: &'a Dataset,
    pub test: &'a Dataset,
    pub options: &'a TrainOptions,
    pub devices: Vec<Device>,
    pub resume: ResumePoint,
}

impl<'a> TrainRun<'a> {
    pub fn new(train: &'a Dataset, test: &'a Dataset, options: &'a TrainOptions, device: &Device) -> Self {
        Self { train, test, options, devices: vec![device.clone()], resume: ResumePoint::default() }
    }

    /// Trains on every device in `devices` at once (data parallel, [`crate::parallel`]): one
    /// replica of the model per device, each batch split among them in order, every observer's
    /// min/max and every batch norm's statistics taken over the whole batch, gradients summed.
    /// With the same options the result equals one device's to float summation order. Needs the
    /// approximate BN fold (PyTorch's default) and every replica's share of a batch not empty.
    pub fn on_devices(mut self, devices: &[Device]) -> Self {
        self.devices = devices.to_vec();
        self
    }

    /// Continues from a checkpoint: the model given to [`fit`](Self::fit) holds the weights
    /// (and BN and quantization state) saved after epoch `point.epochs_done`, `point` the rest
    /// of what [`TrainHooks::checkpoint`] was given then. With the same options, data and
    /// thread count, the final model is bit for bit the one an uninterrupted run gives: the
    /// data order and learning rate depend only on the seed and the step, and the momentum
    /// buffers come back exactly.
    pub fn resumed_from(mut self, point: ResumePoint) -> Self {
        self.resume = point;
        self
    }

    /// Trains `model` with the QAT schedule of the options, calling `hooks` as it goes; the
    /// trained model and one report per epoch (the resumed run's earlier ones first).
    pub fn fit<M: Classifier>(self, model: M, hooks: &mut impl TrainHooks<M>) -> Result<(M, Vec<EpochReport>)> {
        self.check()?;
        let model = stable_param_ids(model);
        let optim = resume::load_optimizer(sgd(self.options), &self.resume, &model)?;
        let distillation = self.options.distillation.clone();
        match self.devices.as_slice() {
            [device] => {
                let stepper = OneDevice { model: Some(model), optim, device: device.clone(), distillation };
                run_epochs(stepper, self, hooks)
            }
            devices => {
                let stepper = DataParallel::new(model, devices, optim)?.with_distillation(distillation);
                run_epochs(stepper, self, hooks)
            }
        }
    }

    /// What every training run checks before its first step.
    fn check(&self) -> Result<()> {
        let (options, resume) = (self.options, &self.resume);
        if options.batch_size < 2 {
            return Err(QatError::invalid(
                "batch_size",
                "batch_size must be at least 2 (training batch norm needs more than one value per channel)",
            ));
        }
        if self.train.is_empty() || self.test.is_empty() {
            let field = if self.train.is_empty() { "train" } else { "test" };
            return Err(QatError::invalid(field, "the training and test sets must not be empty"));
        }
        if resume.epochs_done > options.epochs || resume.reports.len() != resume.epochs_done {
            let field = if resume.epochs_done > options.epochs { "epochs" } else { "resume" };
            return Err(QatError::invalid(
                field,
                format!(
                    "cannot resume after epoch {} of {} with {} epoch reports",
                    resume.epochs_done,
                    options.epochs,
                    resume.reports.len()
                ),
            ));
        }
        if self.devices.len() > 1 && options.batch_size < self.devices.len() {
            return Err(QatError::invalid(
                "batch_size",
                format!(
                    "batch_size {} is below the {} devices: every device needs a share of each batch",
                    options.batch_size,
                    self.devices.len()
                ),
            ));
        }
        Ok(())
    }
}

/// SGD with `options.momentum` and PyTorch's dampening 0.
pub(crate) fn sgd(options: &TrainOptions) -> ModuleOptimizer {
    SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_momentum(options.momentum).with_dampening(0.0))).init()
}

/// What one optimizer step on one batch means: on one device ([`OneDevice`]) or on several
/// replicas ([`DataParallel`]).
pub(crate) trait Stepper<M> {
    /// The model (the first replica's copy).
    fn model(&self) -> &M;
    /// Applies a switch (train mode, freeze BN, disable observers) to every copy at once.
    fn each_model(&mut self, f: &mut dyn FnMut(&mut M));
    /// The mean loss over `batch` (of `train`), checked finite, and the number of right
    /// answers; then one SGD step at `lr`.
    fn step(&mut self, train: &Dataset, batch: &[usize], lr: f64, context: &dyn Fn() -> String) -> Result<(f64, usize)>;
    fn optimizer(&self) -> &ModuleOptimizer;
    /// Where test batches are made.
    fn device(&self) -> &Device;
    fn into_model(self) -> M;
}

/// Training on one device.
struct OneDevice<M> {
    /// Always `Some` between steps (the optimizer takes the model by value).
    model: Option<M>,
    optim: ModuleOptimizer,
    device: Device,
    distillation: Option<Distillation>,
}

impl<M: Classifier> Stepper<M> for OneDevice<M> {
    fn model(&self) -> &M {
        self.model.as_ref().expect("a model between steps")
    }

    fn each_model(&mut self, f: &mut dyn FnMut(&mut M)) {
        f(self.model.as_mut().expect("a model between steps"))
    }

    fn step(&mut self, train: &Dataset, batch: &[usize], lr: f64, context: &dyn Fn() -> String) -> Result<(f64, usize)> {
        let (images, labels) = train.batch(batch, &self.device);
        let model = self.model.as_mut().expect("a model between steps");
        let (loss, right) = training_loss(model.logits(images)?, labels, batch, self.distillation.as_ref())?;
        let loss_value = checked_loss(&loss, context)?;
        let grads = GradientsParams::from_grads(loss.backward(), model);
        let model = self.model.take().expect("a model between steps");
        self.model = Some(self.optim.step(lr, model, grads));
        Ok((loss_value, right))
    }

    fn optimizer(&self) -> &ModuleOptimizer {
        &self.optim
    }

    fn device(&self) -> &Device {
        &self.device
    }

    fn into_model(self) -> M {
        self.model.expect("a model between steps")
    }
}

/// The loss value, or a typed error if it overflowed.
pub(crate) fn checked_loss(loss: &Tensor<1>, context: &dyn Fn() -> String) -> Result<f64> {
    let value = loss.clone().into_scalar::<f32>() as f64;
    if !value.is_finite() {
        return Err(QatError::NonFinite {
            context: context(),
            what: "the loss (a learning rate too high for the model makes it overflow; try a lower one)".into(),
        });
    }
    Ok(value)
}

/// The epochs of a [`TrainRun`], on any [`Stepper`].
fn run_epochs<M: Classifier>(
    mut stepper: impl Stepper<M>,
    run: TrainRun<'_>,
    hooks: &mut impl TrainHooks<M>,
) -> Result<(M, Vec<EpochReport>)> {
    let TrainRun { train, test, options, resume, .. } = run;
    let mut reports = resume.reports;
    let steps_per_epoch = train.len().div_ceil(options.batch_size);
    let total_steps = (steps_per_epoch * options.epochs).max(1) as f64;
    // The step counter drives the cosine schedule; count the batches the done epochs took.
    let batches_per_epoch = (train.len() / options.batch_size) + usize::from(train.len() % options.batch_size > 1);
    let mut step = batches_per_epoch * resume.epochs_done;
    for epoch in resume.epochs_done..options.epochs {
        let freeze = options.freeze_bn_from_epoch.is_some_and(|e| epoch >= e);
        let disable = options.disable_observer_from_epoch.is_some_and(|e| epoch >= e);
        stepper.each_model(&mut |model| {
            model.set_training(true);
            if freeze {
                model.freeze_bn_stats();
            }
            if disable {
                model.disable_observer();
            }
        });
        let started = Instant::now();
        let order = shuffled_indices(train.len(), options.seed.wrapping_add(epoch as u64));
        let (mut loss_sum, mut correct, mut seen) = (0.0, 0, 0);
        // Drop a last batch of one: training BN cannot normalize a single value per channel.
        let batches = order.chunks(options.batch_size).filter(|b| b.len() > 1).count();
        hooks.epoch_started(epoch, batches);
        let context = || format!("training, epoch {} of {} (counting from 1)", epoch + 1, options.epochs);
        for (index, batch) in order.chunks(options.batch_size).filter(|b| b.len() > 1).enumerate() {
            let lr = if options.cosine_lr {
                options.lr * 0.5 * (1.0 + (std::f64::consts::PI * step as f64 / total_steps).cos())
            } else {
                options.lr
            };
            let (loss_value, right) = stepper.step(train, batch, lr, &context)?;
            step += 1;
            if step == 1 {
                // Learned quantizers start from the first batch's observer estimate (PyTorch's
                // static estimate), then learn.
                stepper.each_model(&mut |model| model.enable_param_learning());
            }
            loss_sum += loss_value * batch.len() as f64;
            correct += right;
            seen += batch.len();
            hooks.batch_done(&BatchProgress {
                epoch,
                batch: index + 1,
                batches,
                seen,
                loss: loss_sum / seen as f64,
                accuracy: correct as f64 / seen as f64,
                samples_per_second: seen as f64 / started.elapsed().as_secs_f64().max(1e-9),
                lr,
            });
        }
        let seconds = started.elapsed().as_secs_f64();
        hooks.evaluating(epoch);
        let model = stepper.model();
        let report = EpochReport {
            epoch,
            loss: loss_sum / seen as f64,
            train_accuracy: correct as f64 / seen as f64,
            test_accuracy: evaluate(model, test, options.batch_size.max(256), stepper.device())?,
            samples_per_second: seen as f64 / seconds,
        };
        hooks.epoch_done(&report, model)?;
        reports.push(report);
        let (optimizer, optimizer_tensors) = resume::save_optimizer(stepper.optimizer())?;
        let point = ResumePoint { epochs_done: epoch + 1, optimizer, optimizer_tensors, reports: reports.clone() };
        hooks.checkpoint(&point, stepper.model())?;
    }
    Ok((stepper.into_model(), reports))
}

/// Test accuracy of the fake-quantized model in eval mode, on a copy with observers off so that
/// evaluating does not move the quantization ranges.
pub fn evaluate<M: Classifier>(model: &M, data: &Dataset, batch_size: usize, device: &Device) -> Result<f64> {
    // `valid()`: the same module off the autodiff graph, so evaluation records no backward.
    let mut model = model.valid();
    model.set_training(false);
    model.disable_observer();
    let indices: Vec<usize> = (0..data.len()).collect();
    let mut correct = 0;
    for batch in indices.chunks(batch_size) {
        let (images, labels) = data.batch(batch, device);
        let (_, right) = cross_entropy(model.logits(images.detach())?.detach(), labels);
        correct += right;
    }
    Ok(correct as f64 / data.len() as f64)
}

/// Post-training calibration of a prepared model (PTQ): runs `batches` batches of `data`, drawn
/// in a fixed shuffled order (seed 0), through the model in training mode with BN statistics
/// frozen (`freeze_bn_stats`: running statistics, not updated) and observers and fake quant on,
/// so that the observers record activation and weight ranges; no gradient is taken and no
/// weight changes. Then observers are disabled and the model is put in eval mode, ready for
/// [`convert`](crate::workflow::convert).
///
/// The model is replaced by its `valid()` copy (off the autodiff graph), and the batches are
/// made on `device` without autodiff, so calibration records no backward graph. Returns the
/// number of samples seen.
pub fn calibrate<M: Classifier>(model: &mut M, data: &Dataset, batches: usize, batch_size: usize, device: &Device) -> Result<usize> {
    if batch_size < 2 {
        return Err(QatError::invalid("batch_size", "calibration batch_size must be at least 2"));
    }
    if data.is_empty() {
        return Err(QatError::invalid("data", "the calibration set must not be empty"));
    }
    let device = device.clone().inner();
    let mut m = model.valid();
    m.set_training(true);
    m.freeze_bn_stats();
    m.enable_observer(true);
    m.enable_fake_quant(true);
    let order = shuffled_indices(data.len(), 0);
    let mut seen = 0;
    for batch in order.chunks(batch_size).filter(|b| b.len() > 1).take(batches) {
        let (images, _) = data.batch(batch, &device);
        m.logits(images)?;
        seen += batch.len();
    }
    m.disable_observer();
    m.set_training(false);
    *model = m;
    Ok(seen)
}
