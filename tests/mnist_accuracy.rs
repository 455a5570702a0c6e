//! Accuracy on real data: a small residual CNN float-trained briefly on the vendored MNIST
//! subset, fused, QAT-trained with PyTorch's schedule, converted and evaluated. The int8 model
//! must equal the integer-exact QAT eval on every logit of the 2,000 test digits, and keep the
//! float fake-quant arithmetic's accuracy (within 0.5 points) and argmax (99.9% of digits).

use burn::tensor::Device;
use burn_qat::data::{default_mnist_dir, load_mnist};
use burn_qat::models::resnet_tiny;
use burn_qat::qconfig::QConfig;
use burn_qat::train::{TrainOptions, accuracy, agreement, int8_logits, logits, train_classifier};
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

    // Three computations of the trained model: the integer-exact QAT eval (computed from the
    // QAT modules), PyTorch's float fake-quant arithmetic, and the int8 engine (from convert).
    let integer = logits(&qat, &test, 500, &device).unwrap();
    let fake_quant = logits(&qat.with_eval_arithmetic(EvalArithmetic::Float), &test, 500, &device).unwrap();
    let int8_out = int8_logits(&int8, &test).unwrap();
    let step = int8.output_qparams().unwrap().scale;
    let (with_integer, with_fake_quant) = (agreement(&int8_out, &integer, step).unwrap(), agreement(&int8_out, &fake_quant, step).unwrap());

    let accuracy_of = |l: &burn_qat::train::Logits| accuracy(&l.argmax(), &test);
    let (acc_float, acc_integer, acc_fq, acc_int8) =
        (float_reports[0].test_accuracy, accuracy_of(&integer), accuracy_of(&fake_quant), accuracy_of(&int8_out));
    println!("float {acc_float:.4}, integer-exact QAT eval {acc_integer:.4}, float fake quant {acc_fq:.4}, int8 {acc_int8:.4}");
    println!("int8 vs the integer-exact eval: {with_integer:?}");
    println!("int8 vs the float fake quant: {with_fake_quant:?}");
    assert!(acc_int8 > 0.95, "int8 accuracy {acc_int8}");
    assert_eq!(
        (with_integer.argmax, with_integer.logits_equal, with_integer.max_steps),
        (1.0, 1.0, 0.0),
        "every int8 logit equals the integer-exact eval's"
    );
    assert!((acc_int8 - acc_fq).abs() <= 0.005);
    assert!(with_fake_quant.argmax >= 0.999 && with_fake_quant.logits_within_one_step >= 0.99, "{with_fake_quant:?}");
}
