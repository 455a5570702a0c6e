//! `models::mobilenetv2_tiny` through the whole road: its architecture (depthwise convs,
//! residual additions without ReLU), fuse -> prepare_qat -> train -> convert with the int8 model
//! equal to the QAT eval bit for bit, int8 save/load, ONNX export run by tract; and the
//! reference models built for other input shapes (CIFAR-10) or refusing impossible ones.

mod common;

use std::time::Instant;

use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Distribution, Int, Tensor};
use burn_qat::QatError;
use burn_qat::data::{Dataset, default_mnist_dir, load_mnist, shuffled_indices};
use burn_qat::export::{export_onnx, onnx_bytes};
use burn_qat::models::{InputShape, lenet_for, mobilenetv2_tiny, mobilenetv2_tiny_for, resnet_tiny_for};
use burn_qat::nn::QatModule;
use burn_qat::qconfig::QConfig;
use burn_qat::train::{TrainOptions, accuracy, train_classifier};
use burn_qat::workflow::{FloatModel, Int8Layer, Int8Model, Layer, QatModel, convert, prepare_qat};
use common::*;
use tract_onnx::prelude::*;

fn features(value: burn_qat::workflow::Value, device: &Device) -> Vec<f32> {
    to_vec(&value.into_features(device).unwrap())
}

/// Mean cross entropy of logits against labels.
fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [n, _] = logits.dims();
    log_softmax(logits, 1).gather(1, labels.reshape([n, 1])).mean().neg().reshape([1])
}

/// Forty SGD steps on real digits (so that the logits depend on the input, which random
/// images through an untrained global-pooling network barely do), with PyTorch's schedule
/// compressed: BN frozen from step 30, observers off from step 35, so convert sees settled
/// qparams. Returns the model in eval and the vendored test digits.
fn trained() -> (QatModel, Dataset) {
    let (train, test) = load_mnist(&default_mnist_dir()).unwrap();
    let device = Device::flex().autodiff();
    device.seed(7);
    let mut model = prepare_qat(mobilenetv2_tiny(&device).unwrap().fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    let order = shuffled_indices(train.len(), 7);
    for (step, batch) in order.chunks(32).take(40).enumerate() {
        if step == 30 {
            model.freeze_bn_stats();
        }
        if step == 35 {
            model.disable_observer();
        }
        let (x, labels) = train.batch(batch, &device);
        let logits = model.forward(x).unwrap().into_features(&device).unwrap();
        let grads = GradientsParams::from_grads(cross_entropy(logits, labels).backward(), &model);
        model = optim.step(0.1, model, grads);
    }
    model.set_training(false);
    (model, test)
}

#[test]
fn the_architecture_is_a_tiny_mobilenetv2() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let model = mobilenetv2_tiny(&device).unwrap();
    let params = model.num_params();
    println!("mobilenetv2_tiny: {params} parameters");
    assert!((20_000..=60_000).contains(&params), "{params} parameters");

    let fused = model.fuse().unwrap();
    let kind = |name: &str| fused.layers.iter().find(|l| l.name == name).unwrap_or_else(|| panic!("no layer {name}")).layer.kind();
    assert_eq!(kind("stem"), "ConvBnReLU2d");
    assert_eq!(kind("last"), "ConvBnReLU2d");
    // The downsampling blocks are flat: expand, a stride-2 depthwise conv, a linear projection.
    let Layer::ConvBnReLU2d(dw) = &fused.layers.iter().find(|l| l.name == "block2_dw").unwrap().layer else { panic!("block2_dw") };
    assert_eq!((dw.conv.options.groups, dw.conv.options.in_channels, dw.conv.options.stride), (64, 64, [2, 2]));
    assert_eq!(kind("block2_project"), "ConvBn2d");
    // The others add their input back, with no ReLU after the addition.
    for name in ["block1", "block3", "block5"] {
        let Layer::Residual(r) = &fused.layers.iter().find(|l| l.name == name).unwrap().layer else { panic!("{name} is residual") };
        assert!(!r.relu, "{name}: a linear bottleneck");
        let kinds: Vec<&str> = r.body.iter().map(|l| l.layer.kind()).collect();
        assert_eq!(kinds, ["ConvBnReLU2d", "ConvBnReLU2d", "ConvBn2d"], "{name}");
    }
    assert_eq!(kind("pool"), "GlobalAvgPool2d");
}

#[test]
fn int8_equals_the_qat_eval_and_saves_loads_and_exports() {
    let _serial = serial();
    let (mut model, test) = trained();
    let int8 = convert(&model).unwrap();
    assert!(int8.layers.iter().any(|l| matches!(&l.layer, Int8Layer::Residual { add, .. } if !add.relu)), "residual adds without ReLU");
    let device = Device::flex().autodiff();
    let eval_device = device.clone().inner();

    // Bit for bit against the QAT eval (deployment arithmetic).
    for batch in [0..64, 64..128, 128..192] {
        let (x, _) = test.batch(&batch.collect::<Vec<_>>(), &device);
        let qat_eval = features(model.forward(x.clone()).unwrap(), &device);
        let int8_out = features(int8.forward(x.inner()).unwrap(), &eval_device);
        assert_bits_eq("mobilenetv2_tiny: int8 vs QAT eval", &int8_out, &qat_eval);
        // Not a degenerate model: the logits take dozens of values (steps of the output scale;
        // after 40 steps they span about 45 of them).
        let mut distinct: Vec<u32> = int8_out.iter().map(|v| v.to_bits()).collect();
        distinct.sort_unstable();
        distinct.dedup();
        assert!(distinct.len() >= 25, "only {} distinct logits of {}", distinct.len(), int8_out.len());
    }

    // A large batch runs as one slice per thread (uneven with 3 threads: 21, 21, 22 samples);
    // the bits must not depend on it.
    let (x, _) = test.batch(&(0..64).collect::<Vec<_>>(), &eval_device);
    let on_threads = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        features(pool.install(|| int8.forward(x.clone())).unwrap(), &eval_device)
    };
    let whole = on_threads(1);
    assert_bits_eq("int8 mobilenetv2_tiny: 3 slices vs 1 pass", &on_threads(3), &whole);
    assert_bits_eq("int8 mobilenetv2_tiny: 16 slices vs 1 pass", &on_threads(16), &whole);

    // Save and load without the float model.
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("mobilenet");
    std::fs::create_dir_all(&dir).unwrap();
    int8.save(dir.join("int8.safetensors")).unwrap();
    let loaded = Int8Model::load(dir.join("int8.safetensors")).unwrap();
    let (x, _) = test.batch(&(500..508).collect::<Vec<_>>(), &eval_device);
    let ours = features(int8.forward(x.clone()).unwrap(), &eval_device);
    assert_bits_eq("reloaded int8 mobilenetv2_tiny", &features(loaded.forward(x.clone()).unwrap(), &eval_device), &ours);

    // ONNX: tract runs the export within one output step of ours.
    let path = dir.join("mobilenetv2_tiny.onnx");
    export_onnx(&int8, [1, 1, 28, 28], &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes, onnx_bytes(&int8, [8, 1, 28, 28]).unwrap(), "the batch size is symbolic");
    let plan = tract_onnx::onnx()
        .model_for_read(&mut &bytes[..])
        .unwrap()
        .with_input_fact(0, f32::fact([8, 1, 28, 28]).into())
        .unwrap()
        .into_optimized()
        .unwrap()
        .into_runnable()
        .unwrap();
    let input = tract_onnx::prelude::Tensor::from_shape(&[8, 1, 28, 28], &to_vec(&x)).unwrap();
    let out = plan.run(tvec![input.into_tvalue()]).unwrap();
    let theirs: Vec<f32> = out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect();
    let Some(Int8Layer::Linear(head)) = int8.layers.iter().rev().nth(1).map(|l| &l.layer) else { panic!("fc before dequant") };
    let max_lsb = ours.iter().zip(&theirs).map(|(a, b)| (a - b).abs() / head.qparams.output.scale).fold(0.0f32, f32::max);
    let exact = ours.iter().zip(&theirs).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    println!("mobilenetv2_tiny ONNX in tract: max {max_lsb:.3} LSB from ours, {exact}/{} exact", ours.len());
    assert_eq!(theirs.len(), ours.len());
    assert!(max_lsb <= 1.0 + 1e-3, "max difference {max_lsb} LSB");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A reference model's constructor for a given input shape.
type Builder = fn(InputShape, &Device) -> burn_qat::Result<FloatModel>;

#[test]
fn the_models_build_for_cifar10_and_other_shapes() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let builders: [(&str, Builder); 3] =
        [("lenet", lenet_for), ("resnet_tiny", resnet_tiny_for), ("mobilenetv2_tiny", mobilenetv2_tiny_for)];
    let odd = InputShape { channels: 2, height: 13, width: 20, classes: 5 };
    for (name, build) in builders {
        for shape in [InputShape::MNIST, InputShape::CIFAR10, odd] {
            let mut model = build(shape, &device).unwrap();
            let x = Tensor::<4>::random([2, shape.channels, shape.height, shape.width], Distribution::Default, &device);
            let dims = model.forward(x).unwrap().into_features(&device).unwrap().dims();
            assert_eq!(dims, [2, shape.classes], "{name} on {shape:?}");
        }
        let empty = InputShape { channels: 0, ..InputShape::CIFAR10 };
        assert!(
            matches!(build(empty, &device), Err(QatError::InvalidConfig { field, reason }) if field == "channels" && reason.contains(name)),
            "{name}"
        );
    }
    // Two 2x2 poolings need at least 4 pixels a side; the global pooling does not.
    let tiny = InputShape { height: 3, ..InputShape::MNIST };
    for build in [lenet_for, resnet_tiny_for] {
        let err = build(tiny, &device).unwrap_err();
        assert!(matches!(&err, QatError::InvalidConfig { field, reason } if field == "height" && reason.contains("at least 4")), "{err}");
    }
    assert!(mobilenetv2_tiny_for(tiny, &device).is_ok());
}

/// The speed check behind the model's size: float then QAT epochs on the vendored 10k MNIST
/// digits. Slow (a few minutes), so opt-in: `cargo test --release --test mobilenet -- --ignored
/// --nocapture`, with RAYON_NUM_THREADS=2 for the two-core figure.
#[test]
#[ignore]
fn mnist_epochs_take_well_under_a_minute() {
    let _serial = serial();
    let (train, test) = load_mnist(&default_mnist_dir()).unwrap();
    let device = Device::flex().autodiff();
    device.seed(1);
    let options = |epochs, lr, freeze| TrainOptions {
        epochs,
        lr,
        freeze_bn_from_epoch: freeze,
        disable_observer_from_epoch: freeze,
        ..TrainOptions::default()
    };
    let report = |what: &str| {
        let what = what.to_string();
        let mut started = Instant::now();
        move |r: &burn_qat::train::EpochReport| {
            println!(
                "{what} epoch {}: {:.1} s, loss {:.3}, test accuracy {:.4}",
                r.epoch,
                started.elapsed().as_secs_f64(),
                r.loss,
                r.test_accuracy
            );
            started = Instant::now();
        }
    };
    let (float, _) =
        train_classifier(mobilenetv2_tiny(&device).unwrap(), &train, &test, &options(2, 0.05, None), &device, report("float")).unwrap();
    let qat = prepare_qat(float.fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let (qat, reports) = train_classifier(qat, &train, &test, &options(2, 0.01, Some(1)), &device, report("QAT")).unwrap();
    let int8 = convert(&qat).unwrap();
    let eval_device = Device::flex();
    let indices: Vec<usize> = (0..test.len()).collect();
    let mut predicted = Vec::new();
    for batch in indices.chunks(500) {
        predicted.extend(int8.predict(test.batch(batch, &eval_device).0).unwrap());
    }
    let acc = accuracy(&predicted, &test);
    println!("int8 test accuracy {acc:.4} (QAT {:.4}), {} threads", reports[1].test_accuracy, rayon::current_num_threads());
    assert!(acc > 0.9, "int8 accuracy {acc}");
}
