//! State-dict keys of float layers (layers left in float inside a prepared model), in
//! PyTorch's naming: `weight`, `bias`, and for fused containers `0.` / `1.` as
//! `torch.ao.nn.intrinsic` Sequentials name their children.

use super::float_model::{FloatModel, Layer};
use crate::nn::BatchNorm;
use crate::nn::batch_norm::bn_keys;
use crate::nn::qat::{read_param, write_param};
use crate::state_dict::{StateDict, StateReader, join};

/// Walks a float layer's state: every layer kind and the keys of its parts, written once for
/// both directions. `[mut]` borrows the parts mutably (reading a state dict into them); the
/// three functions handle a conv, a linear layer and a batch norm under a prefix.
macro_rules! walk_float_layer {
    ($layer:expr, $prefix:expr, $sink:expr, [$($mut:tt)?], $conv:path, $linear:path, $bn:path, $recurse:path) => {{
        let (prefix, sink) = ($prefix, $sink);
        match $layer {
            Layer::Conv2d(c) => $conv(c, prefix, sink),
            Layer::Linear(l) => $linear(l, prefix, sink),
            Layer::BatchNorm2d(bn) | Layer::BatchNorm1d(bn) => $bn(bn, prefix, sink),
            Layer::LinearBn1d(m) => {
                $linear(& $($mut)? m.linear, &join(prefix, "0."), sink);
                $bn(& $($mut)? m.bn, &join(prefix, "1."), sink);
            }
            Layer::ConvBn2d(m) => {
                $conv(& $($mut)? m.conv, &join(prefix, "0."), sink);
                $bn(& $($mut)? m.bn, &join(prefix, "1."), sink);
            }
            Layer::ConvBnReLU2d(m) => {
                $conv(& $($mut)? m.conv, &join(prefix, "0."), sink);
                $bn(& $($mut)? m.bn, &join(prefix, "1."), sink);
            }
            Layer::ConvReLU2d(m) => $conv(& $($mut)? m.conv, &join(prefix, "0."), sink),
            Layer::BNReLU2d(m) => $bn(& $($mut)? m.bn, &join(prefix, "0."), sink),
            Layer::LinearReLU(m) => $linear(& $($mut)? m.linear, &join(prefix, "0."), sink),
            Layer::Residual(r) => {
                for l in & $($mut)? r.body {
                    $recurse(& $($mut)? l.layer, &join(prefix, &format!("body.{}.", l.name)), sink);
                }
            }
            Layer::QuantStub(_)
            | Layer::DeQuantStub(_)
            | Layer::Relu(_)
            | Layer::Relu6(_)
            | Layer::AvgPool2d(_)
            | Layer::MaxPool2d(_)
            | Layer::GlobalAvgPool2d(_)
            | Layer::Flatten(_) => {}
        }
    }};
}

pub(crate) fn write_float_layer(layer: &Layer, prefix: &str, out: &mut StateDict) {
    walk_float_layer!(layer, prefix, out, [], write_weighted, write_weighted, write_bn, write_float_layer)
}

pub(crate) fn read_float_layer(layer: &mut Layer, prefix: &str, reader: &mut StateReader<'_>) {
    walk_float_layer!(layer, prefix, reader, [mut], read_weighted, read_weighted, read_bn, read_float_layer)
}

fn write_weighted<W: FloatWeights>(layer: &W, prefix: &str, out: &mut StateDict) {
    layer.write_weights(prefix, out);
}

fn read_weighted<W: FloatWeights>(layer: &mut W, prefix: &str, reader: &mut StateReader<'_>) {
    layer.read_weights(prefix, reader);
}

fn write_bn(bn: &BatchNorm, prefix: &str, out: &mut StateDict) {
    bn.write_state(prefix, out);
}

fn read_bn(bn: &mut BatchNorm, prefix: &str, reader: &mut StateReader<'_>) {
    bn.read_state(bn_keys(prefix), reader);
}

/// `weight` and `bias` of a float conv or linear layer.
trait FloatWeights {
    fn write_weights(&self, prefix: &str, out: &mut StateDict);
    fn read_weights(&mut self, prefix: &str, reader: &mut StateReader<'_>);
}

macro_rules! float_weights {
    ($($ty:ty),*) => {$(
        impl FloatWeights for $ty {
            fn write_weights(&self, prefix: &str, out: &mut StateDict) {
                write_param(&self.weight, join(prefix, "weight"), out);
                if let Some(b) = &self.bias {
                    write_param(b, join(prefix, "bias"), out);
                }
            }
            fn read_weights(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
                read_param(&mut self.weight, &join(prefix, "weight"), reader);
                if let Some(b) = &mut self.bias {
                    read_param(b, &join(prefix, "bias"), reader);
                }
            }
        }
    )*};
}

float_weights!(crate::nn::float::Conv2d, crate::nn::float::Linear);

/// A float model's state dict in PyTorch's layout: `<layer>.weight`, fused containers' children
/// as `<layer>.0.` / `<layer>.1.` (as `torch.ao.nn.intrinsic` Sequentials name them).
impl crate::state_dict::SaveStateDict for FloatModel {
    fn write_state(&self, prefix: &str, out: &mut crate::state_dict::StateDict) {
        for l in &self.layers {
            write_float_layer(&l.layer, &format!("{prefix}{}.", l.name), out);
        }
    }
}

impl crate::state_dict::LoadStateDict for FloatModel {
    fn read_state(&mut self, prefix: &str, reader: &mut crate::state_dict::StateReader<'_>) {
        for l in &mut self.layers {
            read_float_layer(&mut l.layer, &format!("{prefix}{}.", l.name), reader);
        }
    }
}
