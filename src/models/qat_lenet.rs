use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::intrinsic::qat::{ConvBn2dConfig, ConvBnReLU2d, LinearReLU};
use crate::nn::qat::LinearConfig;
use crate::nn::{Conv2dOptions, QatModule, qat};
use crate::qconfig::QConfig;
use crate::state_dict::{LoadStateDict, SaveStateDict, StateDict, StateReader, join};

/// MNIST's mean and standard deviation: inputs in [0, 1] are normalized inside the model.
const MNIST_MEAN: f64 = 0.1307;
const MNIST_STD: f64 = 0.3081;

/// A LeNet-style classifier for 28x28 single-channel images, quantization-aware throughout:
/// quantized input, two ConvBnReLU blocks with max pooling, a LinearReLU, and a linear head.
#[derive(Module, Debug)]
pub struct QatLeNet {
    pub conv1: ConvBnReLU2d,
    pub conv2: ConvBnReLU2d,
    pub fc1: LinearReLU,
    pub fc2: qat::Linear,
    /// PyTorch's `QuantStub`: fake quantizes the normalized input.
    pub quant: FakeQuantize,
}

impl QatLeNet {
    pub fn new(qconfig: &QConfig, device: &burn::tensor::Device) -> Result<Self> {
        let block = |cin, cout| ConvBn2dConfig::new(Conv2dOptions::new(cin, cout, 3).with_padding(1), qconfig.clone()).with_bias(false);
        let mut conv1 = block(1, 16).init_relu(device)?.with_output_fake_quant()?;
        let mut conv2 = block(16, 32).init_relu(device)?.with_output_fake_quant()?;
        // PyTorch's ConvBn starts gamma at U[0, 1); a model trained from scratch wants 1.
        for m in [&mut conv1, &mut conv2] {
            let c = m.options.out_channels;
            m.bn.weight = burn::module::Param::from_tensor(Tensor::ones([c], device));
        }
        Ok(Self {
            conv1,
            conv2,
            fc1: LinearConfig::new(32 * 7 * 7, 128, qconfig.clone()).init_relu(device)?.with_output_fake_quant()?,
            fc2: LinearConfig::new(128, 10, qconfig.clone()).init(device)?.with_output_fake_quant()?,
            quant: qconfig.activation.init()?,
        })
    }

    /// Logits `[N, 10]` for images `[N, 1, 28, 28]` with pixels in [0, 1].
    pub fn forward(&mut self, images: Tensor<4>) -> Result<Tensor<2>> {
        let pool = MaxPoolOptions::new([2, 2]).with_stride([2, 2]);
        let x = self.quant.forward((images - MNIST_MEAN) / MNIST_STD)?;
        let x = max_pool2d(self.conv1.forward(x)?, pool.clone());
        let x = max_pool2d(self.conv2.forward(x)?, pool);
        let x: Tensor<2> = x.flatten(1, 3);
        let x = self.fc1.forward(x)?;
        self.fc2.forward(x)
    }
}

impl QatModule for QatLeNet {
    fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
        let mut out = vec![&mut self.quant];
        out.extend(self.conv1.fake_quants_mut());
        out.extend(self.conv2.fake_quants_mut());
        out.extend(self.fc1.fake_quants_mut());
        out.extend(self.fc2.fake_quants_mut());
        out
    }

    fn set_training(&mut self, mode: bool) {
        self.conv1.set_training(mode);
        self.conv2.set_training(mode);
    }

    fn freeze_bn_stats(&mut self) {
        QatModule::freeze_bn_stats(&mut self.conv1);
        QatModule::freeze_bn_stats(&mut self.conv2);
    }

    fn update_bn_stats(&mut self) {
        QatModule::update_bn_stats(&mut self.conv1);
        QatModule::update_bn_stats(&mut self.conv2);
    }
}

impl SaveStateDict for QatLeNet {
    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        self.quant.write_state(&join(prefix, "quant.activation_post_process."), out);
        self.conv1.write_state(&join(prefix, "conv1."), out);
        self.conv2.write_state(&join(prefix, "conv2."), out);
        self.fc1.write_state(&join(prefix, "fc1."), out);
        self.fc2.write_state(&join(prefix, "fc2."), out);
    }
}

impl LoadStateDict for QatLeNet {
    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        self.quant.read_state(&join(prefix, "quant.activation_post_process."), reader);
        self.conv1.read_state(&join(prefix, "conv1."), reader);
        self.conv2.read_state(&join(prefix, "conv2."), reader);
        self.fc1.read_state(&join(prefix, "fc1."), reader);
        self.fc2.read_state(&join(prefix, "fc2."), reader);
    }
}
