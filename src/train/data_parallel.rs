//! The data-parallel step: one thread per replica for the forward (so that replicas can meet
//! at every observer and batch norm), one backward over the sum of their losses, the
//! gradients summed over replicas in rank order, the same SGD step on every replica.

use std::sync::Arc;

use burn::module::{ModuleVisitor, Param, ParamId};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use super::{Classifier, Distillation, Stepper, checked_loss, training_loss};
use crate::data::Dataset;
use crate::error::{QatError, Result};
use crate::parallel::collective::{Group, Replica};

/// One model on several devices: a replica and an optimizer per device.
pub struct DataParallel<M> {
    /// Always `Some` between steps (the optimizers take the replicas by value).
    replicas: Vec<Option<M>>,
    optims: Vec<ModuleOptimizer>,
    devices: Vec<Device>,
    group: Arc<Group>,
    distillation: Option<Distillation>,
}

impl<M: Classifier + Send> DataParallel<M> {
    /// Copies `model` to each of `devices` (autodiff devices: training needs gradients), each
    /// with a copy of `optim`.
    pub fn new(model: M, devices: &[Device], optim: ModuleOptimizer) -> Result<Self> {
        if devices.is_empty() {
            return Err(QatError::invalid("devices", "data-parallel training needs at least one device"));
        }
        let devices: Vec<Device> = devices.iter().map(|d| if d.is_autodiff() { d.clone() } else { d.clone().autodiff() }).collect();
        // `fork`: each replica's parameters are leaves of its own, not a view of `model`'s.
        let replicas = devices.iter().map(|d| Some(model.clone().fork(d))).collect();
        let optims = devices.iter().map(|_| optim.clone()).collect();
        Ok(Self { replicas, optims, group: Group::new(devices.len()), devices, distillation: None })
    }

    setters! {
        /// Adds distillation from a teacher's logits to every replica's loss.
        with_distillation => distillation: Option<Distillation>,
    }

    /// One SGD step at `lr` on `batch` (indices into `train`), shared among the replicas:
    /// the mean loss over the batch and the number of right answers.
    pub fn train_step(&mut self, train: &Dataset, batch: &[usize], lr: f64) -> Result<(f64, usize)> {
        self.step(train, batch, lr, &|| "data-parallel training".to_string())
    }

    /// Applies a switch (train mode, `freeze_bn_stats`, `disable_observer`, ...) to every
    /// replica, as a QAT schedule must.
    pub fn for_each_replica(&mut self, mut f: impl FnMut(&mut M)) {
        self.each_model(&mut f)
    }

    /// Every replica, in device order.
    pub fn replicas(&self) -> Vec<&M> {
        self.replicas.iter().map(|r| r.as_ref().expect("replicas between steps")).collect()
    }

    /// The first replica's share of a batch of `n` is the first `n / N` (rounded up) samples,
    /// and so on: contiguous, in order, none empty.
    fn shares(&self, batch: &[usize]) -> Result<Vec<Vec<usize>>> {
        let n = self.devices.len();
        if batch.len() < n {
            return Err(QatError::invalid("batch_size", format!("a batch of {} cannot be shared among {n} devices", batch.len())));
        }
        let (base, extra) = (batch.len() / n, batch.len() % n);
        let mut start = 0;
        Ok((0..n)
            .map(|r| {
                let len = base + usize::from(r < extra);
                let share = batch[start..start + len].to_vec();
                start += len;
                share
            })
            .collect())
    }
}

impl<M: Classifier + Send> Stepper<M> for DataParallel<M> {
    fn model(&self) -> &M {
        self.replicas[0].as_ref().expect("replicas between steps")
    }

    fn each_model(&mut self, f: &mut dyn FnMut(&mut M)) {
        self.replicas.iter_mut().for_each(|r| f(r.as_mut().expect("replicas between steps")));
    }

    fn step(&mut self, train: &Dataset, batch: &[usize], lr: f64, context: &dyn Fn() -> String) -> Result<(f64, usize)> {
        let shares = self.shares(batch)?;
        let total = batch.len() as f64;
        // Forward, one thread per replica: each replica's mean loss weighted by its share, so
        // that their sum is the mean over the whole batch.
        let group = &self.group;
        let distillation = self.distillation.as_ref();
        let outcomes: Vec<Result<(Tensor<1>, usize)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .replicas
                .iter_mut()
                .zip(&shares)
                .zip(&self.devices)
                .enumerate()
                .map(|(rank, ((slot, share), device))| {
                    let replica = Replica { group: group.clone(), rank };
                    let model = slot.as_mut().expect("replicas between steps");
                    scope.spawn(move || {
                        replica.run(|| {
                            let (images, labels) = train.batch(share, device);
                            let (loss, right) = training_loss(model.logits(images)?, labels, share, distillation)?;
                            Ok((loss * (share.len() as f64 / total), right))
                        })
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(QatError::lifecycle("data-parallel training", "a replica panicked"))))
                .collect()
        });
        // The first error that is not another replica's echo of it.
        if outcomes.iter().any(|o| o.is_err()) {
            let mut errors = outcomes.into_iter().filter_map(|o| o.err());
            let first = errors.next().expect("an error");
            return Err(errors.find(|e| !e.to_string().contains("another replica failed")).map_or(first, |e| e));
        }
        let (losses, rights): (Vec<Tensor<1>>, Vec<usize>) = outcomes.into_iter().map(|o| o.expect("checked")).unzip();
        let first = &self.devices[0];
        let loss = losses.into_iter().map(|l| l.to_device(first)).reduce(|a, b| a + b).expect("one replica at least");
        let loss_value = checked_loss(&loss, context)?;

        // One backward through every replica (SyncBN joined their graphs), then each
        // parameter's gradient summed over replicas in rank order, and given to every one.
        let mut grads = loss.backward();
        let replicas: Vec<&M> = self.replicas.iter().map(|r| r.as_ref().expect("replicas between steps")).collect();
        let mut per_replica: Vec<GradientsParams> = replicas.iter().map(|m| GradientsParams::from_module(&mut grads, *m)).collect();
        let mut summed: Vec<GradientsParams> = self.devices.iter().map(|_| GradientsParams::new()).collect();
        replicas[0].visit(&mut SumGradients { per_replica: &mut per_replica, summed: &mut summed, devices: &self.devices });
        for ((slot, optim), grads) in self.replicas.iter_mut().zip(&mut self.optims).zip(summed) {
            let model = slot.take().expect("replicas between steps");
            *slot = Some(optim.step(lr, model, grads));
        }
        Ok((loss_value, rights.iter().sum()))
    }

    fn optimizer(&self) -> &ModuleOptimizer {
        &self.optims[0]
    }

    fn device(&self) -> &Device {
        &self.devices[0]
    }

    fn into_model(mut self) -> M {
        self.replicas.swap_remove(0).expect("replicas between steps")
    }
}

/// For each parameter: the sum of its gradients over the replicas (on the first device, in
/// rank order), copied to every device.
struct SumGradients<'a> {
    per_replica: &'a mut [GradientsParams],
    summed: &'a mut [GradientsParams],
    devices: &'a [Device],
}

impl ModuleVisitor for SumGradients<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let id: ParamId = param.id;
        let first = &self.devices[0];
        let parts: Vec<Tensor<D>> = self.per_replica.iter_mut().filter_map(|g| g.remove::<D>(id)).collect();
        if parts.len() != self.devices.len() {
            // A parameter without a gradient on some replica (frozen, unused) gets none anywhere.
            return;
        }
        let sum = parts.into_iter().map(|g| g.to_device(first)).reduce(|a, b| a + b).expect("one replica at least");
        for (out, device) in self.summed.iter_mut().zip(self.devices) {
            out.register(id, sum.clone().to_device(device));
        }
    }
}
