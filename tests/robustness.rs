//! The rows of docs/robustness.md that no other test pins: atomic saves, a refused optimizer
//! state, a non-finite loss named by its epoch, NaN at the QuantStub, a last batch of one, and
//! an observer whose range survives a refused input.

#[macro_use]
mod common;

use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::QatError;
use burn_qat::data::Dataset;
use burn_qat::models::lenet;
use burn_qat::nn::QatModule;
use burn_qat::nn::qat::LinearConfig;
use burn_qat::qconfig::{QConfig, get_default_qat_qconfig};
use burn_qat::state_dict::{SaveStateDict, TensorValue, load_safetensors, save_safetensors};
use burn_qat::train::{EpochReport, ResumePoint, TrainHooks, TrainOptions, TrainRun, train_classifier};
use burn_qat::workflow::{FloatModel, Layer, prepare_qat};
use common::*;

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("robustness-{name}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `n` 28x28 grey images of pseudo-random bytes with labels 0..9.
fn tiny_dataset(n: usize) -> Dataset {
    let mut rng = Rng(n as u64);
    let images = (0..n * 28 * 28).map(|_| rng.int(0, 255) as u8).collect();
    let labels = (0..n).map(|i| (i % 10) as u8).collect();
    Dataset { images, labels, channels: 1, rows: 28, cols: 28, classes: 10 }
}

fn options(epochs: usize, lr: f64) -> TrainOptions {
    TrainOptions { epochs, lr, batch_size: 8, ..TrainOptions::default() }
}

#[test]
fn a_save_replaces_the_file_whole_and_a_failed_one_leaves_the_old_file() {
    let dir = scratch("atomic");
    let path = dir.join("model.safetensors");
    let state = |v: f32| [("w".to_string(), TensorValue::f32_vec(vec![v; 4]))].into_iter().collect();
    let metadata = Default::default();
    save_safetensors(&path, &state(1.0), &metadata).unwrap();
    save_safetensors(&path, &state(2.0), &metadata).unwrap();
    assert_eq!(load_safetensors(&path).unwrap().0, state(2.0));
    let names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["model.safetensors"], "no temporary file is left behind");

    // The temporary file cannot be written (a folder stands in its place): the save fails
    // and the file under the real name is still the old one, whole.
    std::fs::create_dir(dir.join("model.safetensors.tmp")).unwrap();
    assert_error!(save_safetensors(&path, &state(3.0), &metadata), QatError::File { .. });
    assert_eq!(load_safetensors(&path).unwrap().0, state(2.0));
}

#[test]
fn a_failed_save_leaves_no_temporary_file_and_names_the_users_path() {
    let dir = scratch("failed-save");
    // A folder stands where the file should go: the temporary is written, the rename fails.
    let path = dir.join("model.safetensors");
    std::fs::create_dir(&path).unwrap();
    let state = [("w".to_string(), TensorValue::f32_vec(vec![1.0; 4]))].into_iter().collect();
    assert_error!(save_safetensors(&path, &state, &Default::default()), QatError::File { path: p, .. } if p.ends_with("model.safetensors"));
    assert!(!dir.join("model.safetensors.tmp").exists(), "the temporary file was left behind");
}

/// Keeps the resume point of each epoch.
struct Points(Vec<ResumePoint>);

impl<M> TrainHooks<M> for Points {
    fn checkpoint(&mut self, point: &ResumePoint, _model: &M) -> burn_qat::Result<()> {
        self.0.push(point.clone());
        Ok(())
    }
}

#[test]
fn optimizer_state_of_another_model_is_refused() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(1);
    let data = tiny_dataset(16);
    let mut points = Points(Vec::new());
    TrainRun::new(&data, &data, &options(1, 0.01), &device).fit(lenet(&device).unwrap(), &mut points).unwrap();
    let point = points.0.pop().expect("a resume point after the epoch");
    assert!(!point.optimizer.is_empty());
    // A smaller model: its parameters cannot take LeNet's momentum buffers.
    let other =
        FloatModel::new(vec![("flatten", Layer::Flatten(Default::default())), ("fc", Layer::linear(28 * 28, 10, true, &device).unwrap())])
            .unwrap();
    let resumed = TrainRun::new(&data, &data, &options(2, 0.01), &device).resumed_from(point).fit(other, &mut Points(Vec::new()));
    assert_error!(resumed, QatError::StateDict { problems } if problems.iter().any(|p| p.contains("different model")));
}

#[test]
fn a_non_finite_loss_names_the_epoch() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(2);
    let data = tiny_dataset(32);
    let result = train_classifier(lenet(&device).unwrap(), &data, &data, &options(2, 1e12), &device, |_: &EpochReport| {});
    assert_error!(result, QatError::NonFinite { context, what } if context.starts_with("training, epoch 1 of 2") && what.starts_with("the loss"));
}

#[test]
fn a_last_batch_of_one_is_dropped_not_an_error() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(3);
    // 17 images in batches of 8: the last batch has one image, which training BN cannot use.
    let data = tiny_dataset(17);
    let (_, reports) = train_classifier(lenet(&device).unwrap(), &data, &data, &options(1, 0.01), &device, |_: &EpochReport| {}).unwrap();
    assert_eq!(reports.len(), 1);
    assert!(reports[0].loss.is_finite());
}

#[test]
fn nan_at_the_quant_stub_is_refused_in_training_and_in_the_deployment_eval() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(4);
    let mut model =
        prepare_qat(small_cnn(&device, burn_qat::nn::PaddingMode::Zeros).fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let good = Tensor::<4>::random([4, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device);
    model.forward(good.clone()).unwrap();
    let mut values = to_vec(&good);
    values[7] = f32::NAN;
    let nan = Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [4, 1, 12, 12]), &device);
    assert_error!(model.forward(nan.clone()), QatError::NonFinite { context, .. } if context.contains("quant"));
    model.set_training(false);
    assert_error!(model.forward_deployment(nan), QatError::NonFinite { context, .. } if context.contains("quant"));
}

#[test]
fn an_observer_keeps_its_range_when_it_refuses_an_input() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(5);
    let mut m =
        LinearConfig::new(20, 30, get_default_qat_qconfig("x86", 0).unwrap()).init_relu(&device).unwrap().with_output_fake_quant().unwrap();
    m.forward(Tensor::<2>::random([8, 20], Distribution::Normal(0.0, 1.0), &device)).unwrap();
    let before = m.state_dict();
    let infinite = Tensor::<2>::from_floats([[f32::INFINITY; 20]], &device);
    assert_error!(m.forward(infinite), QatError::NonFinite { .. });
    let after = m.state_dict();
    for (key, value) in &before {
        assert_eq!(Some(value), after.get(key), "{key} changed although the input was refused");
    }
}

/// Images of another size reach the first Linear with the wrong width: every forward says so
/// with a typed error (the int8 reference path panicked inside burn's reshape).
#[test]
fn images_of_the_wrong_size_are_shape_errors_in_every_forward() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(6);
    let mut model =
        prepare_qat(small_cnn(&device, burn_qat::nn::PaddingMode::Zeros).fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    model.forward(Tensor::<4>::random([4, 1, 12, 12], Distribution::Normal(0.0, 1.0), &device)).unwrap();
    model.set_training(false);
    let int8 = burn_qat::workflow::convert(&model).unwrap();
    let small = Tensor::<4>::random([2, 1, 8, 8], Distribution::Normal(0.0, 1.0), &device);
    assert_error!(model.forward(small.clone()), QatError::ShapeMismatch { context, .. } if context == "fc1");
    assert_error!(model.forward_float(small.clone()), QatError::ShapeMismatch { .. });
    assert_error!(int8.forward(small.clone().inner()), QatError::ShapeMismatch { .. });
    assert_error!(int8.forward_reference(small.clone().inner(), &Device::flex()), QatError::ShapeMismatch { .. });
}
