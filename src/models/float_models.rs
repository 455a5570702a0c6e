//! Float reference models, as [`FloatModel`]s ready for fuse -> prepare_qat -> convert, sized
//! by an [`InputShape`]. Inputs are pixels in [0, 1]; the first layer quantizes them.

use burn::tensor::Device;

use super::InputShape;
use crate::error::Result;
use crate::nn::Conv2dOptions;
use crate::workflow::{FloatModel, Layer};

fn conv(cin: usize, cout: usize, device: &Device) -> Result<Layer> {
    Layer::conv2d(Conv2dOptions::new(cin, cout, 3).with_padding(1), false, device)
}

/// [`lenet_for`] MNIST digits.
pub fn lenet(device: &Device) -> Result<FloatModel> {
    lenet_for(InputShape::MNIST, device)
}

/// LeNet-style: two Conv-BN-ReLU blocks with max pooling, Linear-ReLU, a linear head.
/// The input must be at least 4x4 (two poolings); the flatten width follows from its size.
pub fn lenet_for(shape: InputShape, device: &Device) -> Result<FloatModel> {
    let (h, w) = shape.pooled(2, "lenet")?;
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("conv1", conv(shape.channels, 16, device)?),
        ("bn1", Layer::batch_norm2d(16, device)?),
        ("relu1", Layer::Relu(Default::default())),
        ("pool1", Layer::max_pool2d(2, 2)?),
        ("conv2", conv(16, 32, device)?),
        ("bn2", Layer::batch_norm2d(32, device)?),
        ("relu2", Layer::Relu(Default::default())),
        ("pool2", Layer::max_pool2d(2, 2)?),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc1", Layer::linear(32 * h * w, 128, true, device)?),
        ("relu3", Layer::Relu(Default::default())),
        ("fc2", Layer::linear(128, shape.classes, true, device)?),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
}

/// [`resnet_tiny_for`] MNIST digits.
pub fn resnet_tiny(device: &Device) -> Result<FloatModel> {
    resnet_tiny_for(InputShape::MNIST, device)
}

/// A small residual network: a Conv-BN-ReLU stem, one basic block (two convs and an identity
/// shortcut, ReLU after the addition) at each of two resolutions, Linear-ReLU, a linear head.
/// The input must be at least 4x4 (two poolings).
pub fn resnet_tiny_for(shape: InputShape, device: &Device) -> Result<FloatModel> {
    let (h, w) = shape.pooled(2, "resnet_tiny")?;
    let block = |c: usize| -> Result<Layer> {
        Ok(Layer::residual(
            vec![
                ("conv_a", conv(c, c, device)?),
                ("bn_a", Layer::batch_norm2d(c, device)?),
                ("relu_a", Layer::Relu(Default::default())),
                ("conv_b", conv(c, c, device)?),
                ("bn_b", Layer::batch_norm2d(c, device)?),
            ],
            true,
        ))
    };
    FloatModel::new(vec![
        ("quant", Layer::QuantStub(Default::default())),
        ("stem", conv(shape.channels, 8, device)?),
        ("stem_bn", Layer::batch_norm2d(8, device)?),
        ("stem_relu", Layer::Relu(Default::default())),
        ("pool1", Layer::max_pool2d(2, 2)?),
        ("block1", block(8)?),
        ("widen", conv(8, 16, device)?),
        ("widen_bn", Layer::batch_norm2d(16, device)?),
        ("widen_relu", Layer::Relu(Default::default())),
        ("pool2", Layer::max_pool2d(2, 2)?),
        ("block2", block(16)?),
        ("flatten", Layer::Flatten(Default::default())),
        ("fc1", Layer::linear(16 * h * w, 64, true, device)?),
        ("relu", Layer::Relu(Default::default())),
        ("fc2", Layer::linear(64, shape.classes, true, device)?),
        ("dequant", Layer::DeQuantStub(Default::default())),
    ])
}
