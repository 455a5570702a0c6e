//! The end-to-end checks every model of the whole-model road goes through, whatever the rank of
//! its input: training with observers and BN statistics moving, int8 == QAT eval bit for bit,
//! the int8 file, and the ONNX export in tract.

use std::path::PathBuf;

use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Tensor};
use burn_qat::export::onnx_bytes;
use burn_qat::nn::QatModule;
use burn_qat::qconfig::QConfig;
use burn_qat::workflow::{FloatModel, Int8Model, QatModel, prepare_qat};
use tract_onnx::prelude::*;

use super::{assert_bits_eq, to_vec};

/// Prepares the fused `float` with `qconfig` and trains it six SGD steps on `batch(device)`: BN
/// frozen at step 4, observers off at step 5; returns it in eval.
pub fn trained<const D: usize>(float: FloatModel, qconfig: QConfig, device: &Device, batch: impl Fn(&Device) -> Tensor<D>) -> QatModel {
    let mut model = prepare_qat(float, qconfig).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..6 {
        if step == 4 {
            model.freeze_bn_stats();
        }
        if step == 5 {
            model.disable_observer();
        }
        let out = model.forward(batch(device)).unwrap().into_features(device).unwrap();
        let grads = GradientsParams::from_grads(out.powi_scalar(2).mean().backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    model.set_training(false);
    model
}

pub fn int8_logits<const D: usize>(int8: &Int8Model, x: Tensor<D>) -> Vec<f32> {
    let device = x.device();
    to_vec(&int8.forward(x).unwrap().into_features(&device).unwrap())
}

/// The int8 model against the QAT model's eval (the deployment arithmetic) and against its own
/// f64 reference, bit for bit, on batches up to deep saturation.
pub fn assert_int8_equals_the_qat_eval<const D: usize>(model: &mut QatModel, int8: &Int8Model, batch: impl Fn(f64, &Device) -> Tensor<D>) {
    let device = Device::flex();
    for (seed, std) in [(1, 1.0), (2, 3.0), (3, 10.0)] {
        device.seed(seed);
        let x = batch(std, &device);
        let qat = to_vec(&model.forward(x.clone().to_device(&Device::flex().autodiff())).unwrap().into_features(&device).unwrap());
        let ours = int8_logits(int8, x.clone());
        assert_bits_eq(&format!("int8 vs QAT eval, std {std}"), &ours, &qat);
        let reference = to_vec(&int8.forward_reference(x, &device).unwrap().into_features(&device).unwrap());
        assert_bits_eq(&format!("int8 kernels vs the f64 reference, std {std}"), &ours, &reference);
    }
}

/// The int8 file round trip: the loaded model gives the same bits on `x`.
pub fn assert_file_round_trip<const D: usize>(int8: &Int8Model, name: &str, x: Tensor<D>) {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.int8.safetensors"));
    int8.save(&path).unwrap();
    let loaded = Int8Model::load(&path).unwrap();
    assert_bits_eq("loaded int8 file", &int8_logits(&loaded, x.clone()), &int8_logits(int8, x));
}

/// The ONNX export run by tract on `x` (its first axis the batch): within one output step of
/// the int8 model on every one of the `classes` logits.
pub fn assert_onnx_within_one_step<const D: usize>(int8: &Int8Model, x: Tensor<D>, classes: usize, name: &str) {
    let dims = x.dims();
    let mut shape = dims;
    shape[0] = 1;
    let bytes = onnx_bytes(int8, shape).unwrap();
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .with_input_fact(0, f32::fact(dims).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_onnx::prelude::Tensor::from_shape(&dims, &to_vec(&x)).unwrap();
    let out = plan.run(tvec![input.into_tvalue()]).unwrap();
    let theirs: Vec<f32> = out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
    let ours = int8_logits(int8, x);
    assert_eq!(theirs.len(), dims[0] * classes);
    let scale = int8.output_qparams().unwrap().scale;
    let max_steps = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / scale).fold(0.0f32, f32::max);
    println!("{name}: tract vs Int8Model::forward over {} logits: max difference {max_steps:.3} output steps", ours.len());
    assert!(max_steps <= 1.0 + 1e-3, "max difference {max_steps} output steps");
}
