//! Inference of a reference model (`models::lenet`, `models::mobilenetv2_tiny`) on
//! [batch, 1, 28, 28] pixels in [0, 1), on the plain (non-autodiff) CPU device:
//! `int8-infer-<model>-b<batch>` runs the converted int8 model's `forward` (quantize, integer
//! conv / linear / add kernels, dequantize at the end); `f32-infer-<model>-b<batch>` the float
//! model in eval mode (unfused, running BN statistics). Both start from the same float weights.

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};

use super::step::Model;
use super::{BenchOptions, BenchResult, measure, train_device};
use burn_qat::error::Result;
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::{convert, prepare_qat};

/// Training-mode forwards run through the prepared model before convert, so that its observers
/// have seen data (a calibration; no weights change).
const CALIBRATION_BATCHES: usize = 4;

/// `int8` true: the converted model; false: the float model in eval.
pub fn inference(case: &str, model: Model, int8: bool, batch: usize, options: BenchOptions) -> Result<BenchResult> {
    if options.device != burn_qat::device::Accelerator::Cpu {
        return Err(burn_qat::error::QatError::invalid(
            "--device",
            format!("{case}: the int8 engine and its f32 twin run on the CPU; --device {} applies to the training cases", options.device),
        ));
    }
    let train = train_device(&options)?;
    let float = model.build(&train)?;
    let device = train.clone().inner();
    let x = Tensor::<4>::random([batch, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &device);
    if int8 {
        let mut qat = prepare_qat(float.fuse()?, QConfig::consistent("fbgemm")?)?;
        for _ in 0..CALIBRATION_BATCHES {
            qat.forward(Tensor::<4>::random([32, 1, 28, 28], Distribution::Uniform(0.0, 1.0), &train))?;
        }
        let model = convert(&qat)?;
        measure(case, options, || {
            model.forward(x.clone())?;
            Ok(())
        })
    } else {
        let mut model = float.valid();
        model.set_training(false);
        measure(case, options, || {
            model.forward(x.clone())?;
            Ok(())
        })
    }
}
