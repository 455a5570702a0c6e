//! State-dict keys of float layers (layers left in float inside a prepared model), in
//! PyTorch's naming: `weight`, `bias`, and for fused containers `0.` / `1.` as
//! `torch.ao.nn.intrinsic` Sequentials name their children.

use super::float_model::{FloatModel, Layer};
use crate::nn::batch_norm::bn_keys;
use crate::nn::qat::{read_param, write_param};
use crate::state_dict::{StateDict, StateReader, join};

pub(crate) fn write_float_layer(layer: &Layer, prefix: &str, out: &mut StateDict) {
    let conv = |c: &crate::nn::float::Conv2d, p: &str, out: &mut StateDict| {
        write_param(&c.weight, join(p, "weight"), out);
        if let Some(b) = &c.bias {
            write_param(b, join(p, "bias"), out);
        }
    };
    let linear = |l: &crate::nn::float::Linear, p: &str, out: &mut StateDict| {
        write_param(&l.weight, join(p, "weight"), out);
        if let Some(b) = &l.bias {
            write_param(b, join(p, "bias"), out);
        }
    };
    match layer {
        Layer::Conv2d(c) => conv(c, prefix, out),
        Layer::Linear(l) => linear(l, prefix, out),
        Layer::BatchNorm2d(bn) | Layer::BatchNorm1d(bn) => bn.write_state(prefix, out),
        Layer::LinearBn1d(m) => {
            linear(&m.linear, &join(prefix, "0."), out);
            m.bn.write_state(&join(prefix, "1."), out);
        }
        Layer::ConvBn2d(m) => {
            conv(&m.conv, &join(prefix, "0."), out);
            m.bn.write_state(&join(prefix, "1."), out);
        }
        Layer::ConvBnReLU2d(m) => {
            conv(&m.conv, &join(prefix, "0."), out);
            m.bn.write_state(&join(prefix, "1."), out);
        }
        Layer::ConvReLU2d(m) => conv(&m.conv, &join(prefix, "0."), out),
        Layer::BNReLU2d(m) => m.bn.write_state(&join(prefix, "0."), out),
        Layer::LinearReLU(m) => linear(&m.linear, &join(prefix, "0."), out),
        Layer::Residual(r) => r.body.iter().for_each(|l| write_float_layer(&l.layer, &join(prefix, &format!("body.{}.", l.name)), out)),
        Layer::QuantStub(_)
        | Layer::DeQuantStub(_)
        | Layer::Relu(_)
        | Layer::Relu6(_)
        | Layer::AvgPool2d(_)
        | Layer::MaxPool2d(_)
        | Layer::GlobalAvgPool2d(_)
        | Layer::Flatten(_) => {}
    }
}

pub(crate) fn read_float_layer(layer: &mut Layer, prefix: &str, reader: &mut StateReader<'_>) {
    let conv = |c: &mut crate::nn::float::Conv2d, p: &str, reader: &mut StateReader<'_>| {
        read_param(&mut c.weight, &join(p, "weight"), reader);
        if let Some(b) = &mut c.bias {
            read_param(b, &join(p, "bias"), reader);
        }
    };
    let linear = |l: &mut crate::nn::float::Linear, p: &str, reader: &mut StateReader<'_>| {
        read_param(&mut l.weight, &join(p, "weight"), reader);
        if let Some(b) = &mut l.bias {
            read_param(b, &join(p, "bias"), reader);
        }
    };
    match layer {
        Layer::Conv2d(c) => conv(c, prefix, reader),
        Layer::Linear(l) => linear(l, prefix, reader),
        Layer::BatchNorm2d(bn) | Layer::BatchNorm1d(bn) => bn.read_state(bn_keys(prefix), reader),
        Layer::LinearBn1d(m) => {
            linear(&mut m.linear, &join(prefix, "0."), reader);
            m.bn.read_state(bn_keys(&join(prefix, "1.")), reader);
        }
        Layer::ConvBn2d(m) => {
            conv(&mut m.conv, &join(prefix, "0."), reader);
            m.bn.read_state(bn_keys(&join(prefix, "1.")), reader);
        }
        Layer::ConvBnReLU2d(m) => {
            conv(&mut m.conv, &join(prefix, "0."), reader);
            m.bn.read_state(bn_keys(&join(prefix, "1.")), reader);
        }
        Layer::ConvReLU2d(m) => conv(&mut m.conv, &join(prefix, "0."), reader),
        Layer::BNReLU2d(m) => m.bn.read_state(bn_keys(&join(prefix, "0.")), reader),
        Layer::LinearReLU(m) => linear(&mut m.linear, &join(prefix, "0."), reader),
        Layer::Residual(r) => {
            r.body.iter_mut().for_each(|l| read_float_layer(&mut l.layer, &join(prefix, &format!("body.{}.", l.name)), reader))
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
}

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
