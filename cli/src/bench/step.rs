//! One full training step of a whole model at batch 64 on [64, 1, 28, 28]: forward, cross
//! entropy, backward, SGD with momentum 0.9 (no dampening, PyTorch's) updating every parameter.
//! `qat-step-*` runs the model fused and prepared with `QConfig::consistent("fbgemm")` (fused
//! moving-average fake quant, observers on, BN not frozen: the first QAT epoch); `float-step-*`
//! the float model as built (separate Conv2d, BatchNorm2d and ReLU layers, batch statistics).
//! Both report `peak_mb`, the heap a step allocates at its busiest (see [`super::memory`]).

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Distribution, Int, Tensor, TensorData};

use super::{BenchOptions, BenchResult, measure_peak, train_device};
use burn_qat::error::Result;
use burn_qat::models;
use burn_qat::qconfig::QConfig;
use burn_qat::train::Classifier;
use burn_qat::workflow::{FloatModel, prepare_qat};

/// The reference models the step and inference cases run, all built for MNIST-shaped input.
#[derive(Clone, Copy, Debug)]
pub enum Model {
    Lenet,
    ResnetTiny,
    MobileNetV2Tiny,
}

impl Model {
    pub(crate) fn build(self, device: &burn::tensor::Device) -> Result<FloatModel> {
        match self {
            Model::Lenet => models::lenet(device),
            Model::ResnetTiny => models::resnet_tiny(device),
            Model::MobileNetV2Tiny => models::mobilenetv2_tiny(device),
        }
    }
}

const BATCH: usize = 64;
const LR: f64 = 0.01;

/// Mean cross entropy of logits against labels (log-softmax, then the picked log-probability).
fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    let picked: Tensor<2> = log_softmax(logits, 1).gather(1, labels.reshape([n, 1]));
    picked.mean().neg().reshape([1])
}

fn time_steps<M: Classifier>(case: &str, model: M, options: BenchOptions) -> Result<BenchResult> {
    let device = train_device(&options)?;
    let images = Tensor::<4>::random([BATCH, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    let labels = Tensor::<1, Int>::from_data(TensorData::new((0..BATCH as i64).map(|i| i % 10).collect::<Vec<_>>(), [BATCH]), &device);
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_momentum(0.9).with_dampening(0.0))).init();
    let mut model = Some(model);
    measure_peak(case, options, || {
        let mut m = model.take().expect("the model is put back after every step");
        let loss = cross_entropy(m.logits(images.clone())?, labels.clone());
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        model = Some(optim.step(LR, m, grads));
        Ok(())
    })
}

/// `qat-step-<model>` (`qat` true) or `float-step-<model>`.
pub fn train_step(case: &str, model: Model, qat: bool, options: BenchOptions) -> Result<BenchResult> {
    let device = train_device(&options)?;
    let mut float = model.build(&device)?;
    float.set_training(true);
    if qat {
        let prepared = prepare_qat(float.fuse()?, QConfig::consistent("fbgemm")?)?;
        time_steps(case, prepared, options)
    } else {
        time_steps(case, float, options)
    }
}
