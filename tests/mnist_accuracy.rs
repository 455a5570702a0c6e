//! Accuracy on real data: a small residual CNN float-trained briefly on the vendored MNIST
//! subset, fused, QAT-trained with PyTorch's schedule, converted and evaluated. The int8 model
//! must keep the fake-quant model's accuracy (within 0.5 points) and its argmax on at least
//! 99.9% of test digits, against both the deployment-arithmetic eval and PyTorch's float
//! fake-quant arithmetic.

use burn::tensor::Device;
use burn_qat::data::{default_mnist_dir, load_mnist};
use burn_qat::models::resnet_tiny;
use burn_qat::qconfig::QConfig;
use burn_qat::train::{TrainOptions, accuracy, predictions, train_classifier};
use burn_qat::workflow::{EvalArithmetic, convert, prepare_qat};

#[test]
fn int8_keeps_the_fake_quant_accuracy_on_mnist() {
    let (train, test) = load_mnist(&default_mnist_dir()).unwrap();
    let device = Device::flex().autodiff();
    device.seed(1);
    let float_options =
        TrainOptions { epochs: 1, lr: 0.05, freeze_bn_from_epoch: None, disable_observer_from_epoch: None, ..TrainOptions::default() };
    let (float_model, float_reports) =
        train_classifier(resnet_tiny(&device).unwrap(), &train, &test, &float_options, &device, |_| {}).unwrap();

    let qat = prepare_qat(float_model.fuse().unwrap(), QConfig::consistent("fbgemm").unwrap()).unwrap();
    let qat_options = TrainOptions {
        epochs: 2,
        lr: 0.01,
        freeze_bn_from_epoch: Some(1),
        disable_observer_from_epoch: Some(1),
        ..TrainOptions::default()
    };
    let (qat, _) = train_classifier(qat, &train, &test, &qat_options, &device, |_| {}).unwrap();
    let int8 = convert(&qat).unwrap();

    let eval_device = Device::flex();
    let fake_quant = predictions(&qat, &test, 500, &device).unwrap();
    let mut float_arith = qat.clone();
    float_arith.eval_arithmetic = EvalArithmetic::Float;
    let fake_quant_float = predictions(&float_arith, &test, 500, &device).unwrap();
    let indices: Vec<usize> = (0..test.len()).collect();
    let mut int8_pred = Vec::new();
    for batch in indices.chunks(500) {
        int8_pred.extend(int8.predict(test.batch(batch, &eval_device).0).unwrap());
    }

    let (acc_float, acc_fq, acc_fq_float, acc_int8) =
        (float_reports[0].test_accuracy, accuracy(&fake_quant, &test), accuracy(&fake_quant_float, &test), accuracy(&int8_pred, &test));
    let agree = |a: &[usize]| a.iter().zip(&int8_pred).filter(|(x, y)| x == y).count() as f64 / test.len() as f64;
    println!("float {acc_float:.4}, fake quant {acc_fq:.4} (float arithmetic {acc_fq_float:.4}), int8 {acc_int8:.4}");
    println!(
        "int8 argmax agreement: {:.4} with the QAT eval, {:.4} with the float fake-quant arithmetic",
        agree(&fake_quant),
        agree(&fake_quant_float)
    );
    assert!(acc_int8 > 0.95, "int8 accuracy {acc_int8}");
    assert!((acc_int8 - acc_fq).abs() <= 0.005);
    assert!((acc_int8 - acc_fq_float).abs() <= 0.005);
    assert_eq!(agree(&fake_quant), 1.0, "the QAT eval is the deployment arithmetic");
    assert!(agree(&fake_quant_float) >= 0.999);
}
