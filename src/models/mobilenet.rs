//! A tiny MobileNetV2 (Sandler et al., 2018) as a [`FloatModel`]: the depthwise-separable,
//! inverted-residual architecture that edge deployments quantize most, at a size that trains on
//! two CPU cores (about 33k parameters).
//!
//! Activations are ReLU, not MobileNetV2's ReLU6: the fused QAT family has ConvBnReLU2d but no
//! ConvBnReLU6 yet, and a separate clamp after a fused ConvBn would put an extra fake quant in
//! the graph. torchvision's quantizable MobileNetV2 makes the same swap before fusing
//! (`_replace_relu`), so this is the architecture PyTorch users quantize too.

use burn::tensor::Device;

use super::InputShape;
use crate::error::Result;
use crate::nn::Conv2dOptions;
use crate::workflow::{FloatModel, Layer};

/// Stem output channels.
const STEM: usize = 16;
/// The inverted residual blocks: (output channels, stride, expansion factor), in order.
const BLOCKS: [(usize, usize, usize); 5] = [(16, 1, 2), (24, 2, 4), (24, 1, 4), (32, 2, 4), (32, 1, 4)];
/// Channels of the last 1x1 convolution, the features the head classifies.
const LAST: usize = 128;

/// A bias-free conv (BN's shift makes a bias redundant) and the BatchNorm2d after it.
fn conv_bn(options: Conv2dOptions, device: &Device) -> Result<[Layer; 2]> {
    let channels = options.out_channels;
    Ok([Layer::conv2d(options, false, device)?, Layer::batch_norm2d(channels, device)?])
}

/// An inverted residual block's layers, named `<prefix>expand`, `<prefix>expand_bn`, ...:
/// 1x1 expand Conv-BN-ReLU, 3x3 depthwise Conv-BN-ReLU (the stride is here), 1x1 project
/// Conv-BN, linear (no ReLU: the bottleneck keeps negative values, the paper's point).
fn inverted_residual(prefix: &str, cin: usize, cout: usize, stride: usize, expand: usize, device: &Device) -> Result<Vec<(String, Layer)>> {
    let hidden = cin * expand;
    let [expand_conv, expand_bn] = conv_bn(Conv2dOptions::new(cin, hidden, 1), device)?;
    let depthwise = Conv2dOptions::new(hidden, hidden, 3).with_stride(stride).with_padding(1).with_groups(hidden);
    let [dw_conv, dw_bn] = conv_bn(depthwise, device)?;
    let [project_conv, project_bn] = conv_bn(Conv2dOptions::new(hidden, cout, 1), device)?;
    let relu = || Layer::Relu(Default::default());
    Ok([
        ("expand", expand_conv),
        ("expand_bn", expand_bn),
        ("expand_relu", relu()),
        ("dw", dw_conv),
        ("dw_bn", dw_bn),
        ("dw_relu", relu()),
        ("project", project_conv),
        ("project_bn", project_bn),
    ]
    .into_iter()
    .map(|(name, layer)| (format!("{prefix}{name}"), layer))
    .collect())
}

/// [`mobilenetv2_tiny_for`] MNIST digits.
pub fn mobilenetv2_tiny(device: &Device) -> Result<FloatModel> {
    mobilenetv2_tiny_for(InputShape::MNIST, device)
}

/// A tiny MobileNetV2: a 3x3 stride-2 Conv-BN-ReLU stem (16 channels), five inverted residual
/// blocks (16, 24, 24, 32, 32 channels; the 24 and 32 stages start with a stride-2 depthwise
/// conv), a 1x1 Conv-BN-ReLU to 128 channels, global average pooling, flatten, a Linear head.
/// Blocks with stride 1 and equal widths add their input back (`Layer::residual`, no ReLU after
/// the addition, as in the paper); the others are flat layers named `block<i>_<layer>`.
/// Any input size works (the pooling is global): 28x28 becomes 4x4 before it, 32x32 too.
pub fn mobilenetv2_tiny_for(shape: InputShape, device: &Device) -> Result<FloatModel> {
    shape.validate("mobilenetv2_tiny")?;
    let stem = Conv2dOptions::new(shape.channels, STEM, 3).with_stride(2).with_padding(1);
    let [stem_conv, stem_bn] = conv_bn(stem, device)?;
    let mut layers: Vec<(String, Layer)> = vec![
        ("quant".into(), Layer::QuantStub(Default::default())),
        ("stem".into(), stem_conv),
        ("stem_bn".into(), stem_bn),
        ("stem_relu".into(), Layer::Relu(Default::default())),
    ];
    let mut cin = STEM;
    for (i, &(cout, stride, expand)) in BLOCKS.iter().enumerate() {
        let name = format!("block{}", i + 1);
        if stride == 1 && cin == cout {
            let body = inverted_residual("", cin, cout, stride, expand, device)?;
            let (names, body): (Vec<String>, Vec<Layer>) = body.into_iter().unzip();
            layers.push((name, Layer::residual(borrow_names(&names, body), false)));
        } else {
            layers.extend(inverted_residual(&format!("{name}_"), cin, cout, stride, expand, device)?);
        }
        cin = cout;
    }
    let [last_conv, last_bn] = conv_bn(Conv2dOptions::new(cin, LAST, 1), device)?;
    layers.extend([
        ("last".into(), last_conv),
        ("last_bn".into(), last_bn),
        ("last_relu".into(), Layer::Relu(Default::default())),
        ("pool".into(), Layer::GlobalAvgPool2d(Default::default())),
        ("flatten".into(), Layer::Flatten(Default::default())),
        ("fc".into(), Layer::linear(LAST, shape.classes, true, device)?),
        ("dequant".into(), Layer::DeQuantStub(Default::default())),
    ]);
    let (names, layers): (Vec<String>, Vec<Layer>) = layers.into_iter().unzip();
    FloatModel::new(borrow_names(&names, layers))
}

/// `(name, layer)` pairs as `FloatModel::new` and `Layer::residual` take them (they copy the names).
fn borrow_names(names: &[String], layers: Vec<Layer>) -> Vec<(&str, Layer)> {
    names.iter().map(String::as_str).zip(layers).collect()
}
