//! `#[derive(QatModule)]` on a hand-written model (issue 3 §3): one line gives the model-wide
//! switches and a PyTorch-layout state dict, and `#[qat(int8 = ...)]` a one-call conversion to
//! an int8 struct whose fields chain their qparams.

mod common;

use burn::module::Module;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Device, Distribution, Tensor};
use burn_qat::nn::intrinsic::qat::{ConvBn2d, ConvBn2dConfig, ConvBnReLU2d, ConvReLU2d};
use burn_qat::nn::qat::{ConvConfig, LinearConfig};
use burn_qat::nn::quantized::QTensor;
use burn_qat::nn::{Conv2dOptions, QatModule, qat};
use burn_qat::qconfig::QConfig;
use burn_qat::state_dict::{LoadStateDict, SaveStateDict};
use burn_qat::workflow::{FloatModel, Layer, QatQuantStub, convert, prepare_qat};
use common::*;

/// A stem, a residual pair with `add_relu` on the shortcut, and a linear head.
#[derive(Module, Debug, QatModule)]
#[qat(int8 = Int8Tiny)]
pub struct Tiny {
    #[qat(input)]
    quant: QatQuantStub,
    stem: ConvBnReLU2d,
    conv_a: ConvBnReLU2d,
    conv_b: ConvBn2d,
    add: qat::Add,
    fc: qat::Linear,
    /// Not a QAT part: left out of the switches, the state dict and the int8 struct.
    #[qat(skip)]
    #[module(skip)]
    width: usize,
}

impl Tiny {
    fn new(qconfig: &QConfig, device: &Device) -> Tiny {
        let conv = |cin, cout| ConvBn2dConfig::new(Conv2dOptions::new(cin, cout, 3).with_padding(1), qconfig.clone()).with_bias(false);
        Tiny {
            quant: QatQuantStub::new(qconfig.activation.init().unwrap()),
            stem: conv(1, 4).init_relu(device).unwrap().with_output_fake_quant().unwrap(),
            conv_a: conv(4, 4).init_relu(device).unwrap().with_output_fake_quant().unwrap(),
            conv_b: conv(4, 4).init(device).unwrap().with_output_fake_quant().unwrap(),
            add: qat::Add::new(qconfig.activation.init().unwrap(), true),
            fc: LinearConfig::new(4 * 6 * 6, 5, qconfig.clone()).init(device).unwrap().with_output_fake_quant().unwrap(),
            width: 6,
        }
    }

    fn forward(&mut self, x: Tensor<4>) -> Tensor<2> {
        let x = self.quant.forward(x).unwrap();
        let s = self.stem.forward(x).unwrap();
        let y = self.conv_b.forward(self.conv_a.forward(s.clone()).unwrap()).unwrap();
        let z = self.add.forward(y, s).unwrap();
        self.fc.forward(z.flatten(1, 3)).unwrap()
    }
}

impl Int8Tiny {
    /// The same graph on the int8 modules.
    fn forward(&self, x: &Tensor<4>) -> QTensor {
        let x = self.quant.forward(x).unwrap();
        let s = self.stem.forward(&x).unwrap();
        let y = self.conv_b.forward(&self.conv_a.forward(&s).unwrap()).unwrap();
        let mut z = self.add.forward(&y, &s).unwrap();
        z.shape = vec![z.shape[0], z.shape[1..].iter().product()];
        self.fc.forward(&z).unwrap()
    }
}

/// Two convs reading the same stub output: `after` picks the input.
#[derive(Module, Debug, QatModule)]
#[qat(int8 = Int8Branch)]
pub struct Branch {
    #[qat(input)]
    quant: QatQuantStub,
    a: ConvReLU2d,
    #[qat(after = quant)]
    b: ConvReLU2d,
}

fn trained(device: &Device) -> Tiny {
    let mut model = Tiny::new(&QConfig::consistent("fbgemm").unwrap(), device);
    let mut optim = SgdConfig::new().with_momentum(Some(MomentumConfig::new().with_dampening(0.0))).init();
    for step in 0..4 {
        if step == 3 {
            model.freeze_bn_stats();
            model.disable_observer();
        }
        let x = Tensor::<4>::random([8, 1, 6, 6], Distribution::Normal(0.0, 1.0), device);
        let grads = GradientsParams::from_grads(model.forward(x).powi_scalar(2).mean().backward(), &model);
        model = optim.step(0.01, model, grads);
    }
    model.set_training(false);
    model
}

#[test]
fn the_derive_gives_switches_a_pytorch_state_dict_and_one_call_convert() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    device.seed(31);
    let untrained = Tiny::new(&QConfig::consistent("fbgemm").unwrap(), &device);
    let err = untrained.convert().unwrap_err().to_string();
    assert!(err.contains("quant") && err.contains("never saw data"), "{err}");

    let mut model = trained(&device);
    // 1 stub + 3 convs x 2 + add + linear x 2.
    assert_eq!(model.fake_quants_mut().len(), 10);
    assert!(model.fake_quants_mut().iter().all(|fq| !fq.is_observer_enabled()), "the switch reaches every fake quant");
    assert!(model.stem.is_bn_frozen() && model.conv_b.is_bn_frozen());

    let state = model.state_dict();
    for key in [
        "quant.activation_post_process.scale",
        "stem.bn.running_mean",
        "conv_b.weight_fake_quant.scale",
        "add.activation_post_process.zero_point",
        "fc.weight",
    ] {
        assert!(state.contains_key(key), "{key} missing from {:?}", state.keys().collect::<Vec<_>>());
    }
    assert!(!state.keys().any(|k| k.starts_with("width")));
    let mut fresh = Tiny::new(&QConfig::consistent("fbgemm").unwrap(), &device);
    fresh.load_state_dict(&state).unwrap();
    fresh.set_training(false);
    let x = Tensor::<4>::random([16, 1, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let qat_out = to_vec(&model.forward(x.clone()));
    assert_bits_eq("reloaded derived model", &to_vec(&fresh.forward(x.clone())), &qat_out);

    // One call converts every field; the int8 graph tracks the fake-quant eval to within a step
    // of the output scale (the QAT eval here is PyTorch's float arithmetic, not the integer one).
    let int8 = model.convert().unwrap();
    assert_eq!(int8.stem.qparams.input, int8.quant.qparams);
    assert_eq!(int8.fc.qparams.input, int8.add.output, "fc takes the addition's output");
    let out = int8.forward(&x.inner());
    let scale = out.qparams.scale;
    let (lsb, exact) = out.dequantize().iter().zip(&qat_out).fold((0.0f32, 0), |(m, e), (a, b)| {
        let d = (a - b).abs() / scale;
        (m.max(d), e + usize::from(d < 1e-3))
    });
    println!("derived int8 vs fake-quant eval: max {lsb:.3} steps, {exact}/{} logits exact", qat_out.len());
    assert!(lsb <= 1.0 + 1e-3, "int8 vs fake quant: {lsb} steps");
    // Measured: all 80 exact; the float arithmetic may put a rare logit one step away.
    assert!(exact * 100 >= qat_out.len() * 97, "only {exact} of {} logits exact", qat_out.len());
}

#[test]
fn after_takes_the_input_from_the_named_field() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let qconfig = QConfig::consistent("qnnpack").unwrap();
    let conv =
        || ConvConfig::new(Conv2dOptions::new(1, 2, 3), qconfig.clone()).init_relu(&device).unwrap().with_output_fake_quant().unwrap();
    let mut model = Branch { quant: QatQuantStub::new(qconfig.activation.init().unwrap()), a: conv(), b: conv() };
    let x = model.quant.forward(Tensor::<4>::random([2, 1, 5, 5], Distribution::Normal(0.0, 1.0), &device)).unwrap();
    model.a.forward(x.clone()).unwrap();
    model.b.forward(x.clone() * 3.0).unwrap();
    let int8 = model.convert().unwrap();
    assert_eq!(int8.b.qparams.input, int8.quant.qparams, "b reads the stub, not a");
    assert_ne!(int8.b.qparams.input, int8.a.qparams.output);
}

/// A hand-written model whose first quantized field has no quant stub before it.
#[derive(Module, Debug, QatModule)]
#[qat(int8 = Int8NoStub)]
pub struct NoStub {
    fc: qat::Linear,
}

#[test]
fn a_derived_model_and_a_layer_table_convert_along_one_chain() {
    let _serial = serial();
    let device = Device::flex().autodiff();
    let qconfig = QConfig::consistent("qnnpack").unwrap();
    // The derived convert and `convert` walk the same chain: the same structure error, naming the
    // same layer, for the same mistake.
    let mut derived = NoStub { fc: LinearConfig::new(4, 2, qconfig.clone()).init(&device).unwrap().with_output_fake_quant().unwrap() };
    derived.fc.forward(Tensor::<2>::random([3, 4], Distribution::Default, &device)).unwrap();
    let derived_error = derived.convert().unwrap_err();
    let float = FloatModel::new(vec![("fc", Layer::linear(4, 2, true, &device).unwrap())]).unwrap();
    let mut table = prepare_qat(float, qconfig).unwrap();
    table.forward(Tensor::<2>::random([3, 4], Distribution::Default, &device)).unwrap();
    let table_error = convert(&table).unwrap_err();
    assert!(
        matches!(&derived_error, burn_qat::QatError::ModelStructure { layer, reason } if layer == "fc" && reason.contains("QuantStub"))
    );
    assert_eq!(derived_error, table_error);
}

/// A `#[derive(QatModule)]` model trains on a GPU backend as on the CPU: four steps on wgpu,
/// one-call convert (the int8 model on the CPU), within one output step of its fake-quant eval.
#[cfg(feature = "wgpu")]
#[test]
fn a_derived_model_trains_on_wgpu_and_converts() {
    let _serial = serial();
    let device = wgpu_device().autodiff();
    device.seed(31);
    let mut model = trained(&device);
    let x = Tensor::<4>::random([16, 1, 6, 6], Distribution::Normal(0.0, 1.0), &device);
    let qat_out = to_vec(&model.forward(x.clone()));
    let int8 = model.convert().unwrap();
    let out = int8.forward(&Tensor::<4>::from_data(x.to_data(), &Device::flex()));
    let scale = out.qparams.scale;
    let steps = out.dequantize().iter().zip(&qat_out).map(|(a, b)| (a - b).abs() / scale).fold(0.0f32, f32::max);
    assert!(steps <= 1.0 + 1e-3, "int8 vs the fake-quant eval of a model trained on wgpu: {steps} steps");
}
