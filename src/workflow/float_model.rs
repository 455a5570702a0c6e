//! A float model as a list of named layers (with residual blocks): what a user builds, and
//! what [`fuse`](FloatModel::fuse) and [`prepare_qat`](super::prepare_qat) transform.

use burn::module::Module;
use burn::tensor::{Device, Tensor};

pub use super::float_layer::{Concat, Layer, Residual};
use super::layers::{BatchNorm1d, BatchNorm3d, Named, Value};
use super::pooling::{AvgPool2d, MaxPool2d};
use crate::error::{QatError, Result};
use crate::nn::{BatchNorm, Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvGeometry, ConvTranspose2dOptions, float, intrinsic};

/// A float model: named layers applied in order.
#[derive(Module, Debug)]
pub struct FloatModel {
    pub layers: Vec<Named<Layer>>,
}

impl Layer {
    pub fn conv2d(options: Conv2dOptions, bias: bool, device: &Device) -> Result<Self> {
        Ok(Self::Conv2d(float::Conv2d::new(options, bias, device)?))
    }

    pub fn batch_norm2d(num_features: usize, device: &Device) -> Result<Self> {
        Ok(Self::BatchNorm2d(BatchNorm::new(num_features, 1e-5, Some(0.1), device)?))
    }

    pub fn conv1d(options: Conv1dOptions, bias: bool, device: &Device) -> Result<Self> {
        Ok(Self::Conv1d(float::Conv1d::new(options, bias, device)?))
    }

    pub fn conv_transpose2d(options: ConvTranspose2dOptions, bias: bool, device: &Device) -> Result<Self> {
        Ok(Self::ConvTranspose2d(float::ConvTranspose2d::new(options, bias, device)?))
    }

    pub fn conv3d(options: Conv3dOptions, bias: bool, device: &Device) -> Result<Self> {
        Ok(Self::Conv3d(float::Conv3d::new(options, bias, device)?))
    }

    pub fn batch_norm3d(num_features: usize, device: &Device) -> Result<Self> {
        Ok(Self::BatchNorm3d(BatchNorm3d { bn: BatchNorm::new(num_features, 1e-5, Some(0.1), device)? }))
    }

    pub fn batch_norm1d(num_features: usize, device: &Device) -> Result<Self> {
        Ok(Self::BatchNorm1d(BatchNorm1d { bn: BatchNorm::new(num_features, 1e-5, Some(0.1), device)? }))
    }

    pub fn linear(in_features: usize, out_features: usize, bias: bool, device: &Device) -> Result<Self> {
        Ok(Self::Linear(float::Linear::new(in_features, out_features, bias, device)?))
    }

    pub fn max_pool2d(kernel_size: usize, stride: usize) -> Result<Self> {
        Ok(Self::MaxPool2d(MaxPool2d::new(kernel_size, stride)?))
    }

    pub fn avg_pool2d(kernel_size: usize, stride: usize) -> Result<Self> {
        Ok(Self::AvgPool2d(AvgPool2d::new(kernel_size, stride)?))
    }

    pub fn residual(body: Vec<(&str, Layer)>, relu: bool) -> Self {
        Self::Residual(Residual { body: named(body), relu })
    }

    /// `cat([x, body(x)], channels)`: a skip connection joined along the channel axis.
    pub fn concat(body: Vec<(&str, Layer)>) -> Self {
        Self::Concat(Concat { body: named(body) })
    }

    /// The layers inside a block (a residual or concatenation body).
    pub fn body(&self) -> Option<&[Named<Layer>]> {
        match self {
            Self::Residual(r) => Some(&r.body),
            Self::Concat(c) => Some(&c.body),
            _ => None,
        }
    }
}

pub(crate) fn named(layers: Vec<(&str, Layer)>) -> Vec<Named<Layer>> {
    layers.into_iter().map(|(name, layer)| Named { name: name.to_string(), layer }).collect()
}

impl FloatModel {
    /// A model from `(name, layer)` pairs; names must be unique among siblings.
    pub fn new(layers: Vec<(&str, Layer)>) -> Result<Self> {
        let layers = named(layers);
        check_unique_names(&layers, "")?;
        Ok(Self { layers })
    }

    /// A float batch of rank 2 to 5 (images `[N, C, H, W]`, sequences `[N, C, L]`, ...) in,
    /// whatever the last layer produces out.
    pub fn forward<const D: usize>(&mut self, x: Tensor<D>) -> Result<Value> {
        let mut value = Value::from_tensor(x)?;
        for l in &mut self.layers {
            value = l.layer.op_mut().forward(value, &l.name)?;
        }
        Ok(value)
    }

    /// Batch norms use batch statistics (`true`) or running ones (`false`).
    pub fn set_training(&mut self, training: bool) {
        self.layers.iter_mut().for_each(|l| l.layer.op_mut().set_training(training));
    }

    /// Fuses every known pattern for QAT, keeping BN (PyTorch `fuse_modules_qat`):
    /// Conv2d + BatchNorm2d (+ ReLU), Conv2d + ReLU, Linear + BatchNorm1d, Linear + ReLU, also
    /// inside residual bodies.
    /// The fused layer takes the first layer's name. A BatchNorm2d whose features differ from the
    /// conv's output channels is an error naming both layers.
    pub fn fuse(self) -> Result<Self> {
        Ok(Self { layers: fuse_layers(self.layers, "")? })
    }

    /// The path of every layer (as qconfig maps name them: `block`, `block.body.conv_a`), in
    /// forward order, each with whether it has a weight.
    pub fn layer_paths(&self) -> Vec<(String, bool)> {
        fn walk(layers: &[Named<Layer>], prefix: &str, out: &mut Vec<(String, bool)>) {
            for Named { name, layer } in layers {
                let path = format!("{prefix}{name}");
                out.push((path.clone(), layer.op().has_weight()));
                if let Some(body) = layer.body() {
                    walk(body, &format!("{path}.body."), out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.layers, "", &mut out);
        out
    }

    /// The paths of the layers with a weight (convolutions and linear layers), in forward order.
    pub fn weight_layer_paths(&self) -> Vec<String> {
        self.layer_paths().into_iter().filter(|(_, w)| *w).map(|(p, _)| p).collect()
    }
}

fn check_unique_names(layers: &[Named<Layer>], prefix: &str) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for l in layers {
        if l.name.is_empty() || l.name.contains('.') {
            return Err(QatError::structure(
                format!("{prefix}{}", l.name),
                format!("layer name {:?} under {prefix:?} must be non-empty and contain no '.'", l.name),
            ));
        }
        if !seen.insert(&l.name) {
            return Err(QatError::structure(format!("{prefix}{}", l.name), format!("two layers are named {prefix}{}", l.name)));
        }
        if let Some(body) = l.layer.body() {
            check_unique_names(body, &format!("{prefix}{}.", l.name))?;
        }
    }
    Ok(())
}

/// Fuses the conv `$conv` (the layer `name` under `prefix`) with what follows in `rest`: its
/// batch norm (`$probe` recognises it, `$take` binds `bn`, a `$bn_kind`) and a ReLU, or a ReLU
/// alone, into the fused layer kinds `[conv alone, conv + BN, conv + BN + ReLU, conv + ReLU]`.
macro_rules! fuse_conv {
    (
        $rest:ident, $prefix:ident, $name:ident, $conv:ident, $probe:pat, $take:pat => $bn:ident, $bn_kind:literal,
        [$plain:ident, $bn_only:ident, $bn_relu:ident, $relu_only:ident]
    ) => {
        match $rest.peek().map(|l| &l.layer) {
            Some($probe) => {
                let bn_layer = $rest.next().expect("peeked");
                let $take = bn_layer.layer else { unreachable!() };
                let (channels, kind) = ($conv.options.out_channels(), conv_kind(&$conv));
                if $bn.num_features() != channels {
                    return Err(QatError::structure(
                        format!("{}{}", $prefix, bn_layer.name),
                        format!(
                            "cannot fuse {}{} ({kind}, {channels} output channels) with {}{} ({}, {} features)",
                            $prefix,
                            $name,
                            $prefix,
                            bn_layer.name,
                            $bn_kind,
                            $bn.num_features()
                        ),
                    ));
                }
                if matches!($rest.peek().map(|l| &l.layer), Some(Layer::Relu(_))) {
                    $rest.next();
                    Layer::$bn_relu(intrinsic::ConvBnReLUNd { conv: $conv, bn: $bn })
                } else {
                    Layer::$bn_only(intrinsic::ConvBnNd { conv: $conv, bn: $bn })
                }
            }
            Some(Layer::Relu(_)) => {
                $rest.next();
                Layer::$relu_only(intrinsic::ConvReLUNd { conv: $conv })
            }
            _ => Layer::$plain($conv),
        }
    };
}

/// `Conv2d`, `Conv3d`, ...: a conv's kind in messages.
fn conv_kind<const D: usize, O: ConvGeometry<D>>(_: &float::ConvNd<D, O>) -> String {
    format!("{}{}", O::PREFIX, O::DIMS)
}

fn fuse_layers(layers: Vec<Named<Layer>>, prefix: &str) -> Result<Vec<Named<Layer>>> {
    let mut out: Vec<Named<Layer>> = Vec::with_capacity(layers.len());
    let mut rest = layers.into_iter().peekable();
    while let Some(Named { name, layer }) = rest.next() {
        let layer = match layer {
            Layer::Conv2d(conv) => fuse_conv!(rest, prefix, name, conv, Layer::BatchNorm2d(_), Layer::BatchNorm2d(bn) => bn, "BatchNorm2d",
                [Conv2d, ConvBn2d, ConvBnReLU2d, ConvReLU2d]),
            Layer::Conv1d(conv) => {
                fuse_conv!(rest, prefix, name, conv, Layer::BatchNorm1d(_), Layer::BatchNorm1d(BatchNorm1d { bn }) => bn,
                "BatchNorm1d", [Conv1d, ConvBn1d, ConvBnReLU1d, ConvReLU1d])
            }
            Layer::ConvTranspose2d(conv) => fuse_conv!(rest, prefix, name, conv, Layer::BatchNorm2d(_), Layer::BatchNorm2d(bn) => bn,
                "BatchNorm2d", [ConvTranspose2d, ConvTransposeBn2d, ConvTransposeBnReLU2d, ConvTransposeReLU2d]),
            Layer::Conv3d(conv) => {
                fuse_conv!(rest, prefix, name, conv, Layer::BatchNorm3d(_), Layer::BatchNorm3d(BatchNorm3d { bn }) => bn,
                "BatchNorm3d", [Conv3d, ConvBn3d, ConvBnReLU3d, ConvReLU3d])
            }
            Layer::Linear(linear) if matches!(rest.peek().map(|l| &l.layer), Some(Layer::BatchNorm1d(_))) => {
                let bn_layer = rest.next().expect("peeked");
                let Layer::BatchNorm1d(BatchNorm1d { bn }) = bn_layer.layer else { unreachable!() };
                let out = linear.weight.dims()[0];
                if bn.num_features() != out {
                    return Err(QatError::structure(
                        format!("{prefix}{}", bn_layer.name),
                        format!(
                            "cannot fuse {prefix}{name} (Linear, {out} outputs) with {prefix}{} (BatchNorm1d, {} features)",
                            bn_layer.name,
                            bn.num_features()
                        ),
                    ));
                }
                Layer::LinearBn1d(intrinsic::LinearBn1d { linear, bn })
            }
            Layer::Linear(linear) if matches!(rest.peek().map(|l| &l.layer), Some(Layer::Relu(_))) => {
                rest.next();
                Layer::LinearReLU(intrinsic::LinearReLU { linear })
            }
            // A batch norm no conv precedes, then a ReLU: PyTorch's BNReLU2d.
            Layer::BatchNorm2d(bn) if matches!(rest.peek().map(|l| &l.layer), Some(Layer::Relu(_))) => {
                rest.next();
                Layer::BNReLU2d(intrinsic::BNReLU2d { bn })
            }
            Layer::Residual(r) => Layer::Residual(Residual { body: fuse_layers(r.body, &format!("{prefix}{name}."))?, relu: r.relu }),
            Layer::Concat(c) => Layer::Concat(Concat { body: fuse_layers(c.body, &format!("{prefix}{name}."))? }),
            other => other,
        };
        out.push(Named { name, layer });
    }
    Ok(out)
}

/// A float model has no fake quants; its switch is batch-norm training.
impl crate::nn::QatModule for FloatModel {
    fn fake_quants_mut(&mut self) -> Vec<&mut crate::fake_quantize::FakeQuantize> {
        Vec::new()
    }

    fn set_training(&mut self, mode: bool) {
        FloatModel::set_training(self, mode);
    }
}
