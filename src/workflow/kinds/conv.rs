//! Convolutions (with their fused batch norms and ReLUs): one int8 conv per converted layer.

use serde_json::{Value as Json, json};

use super::f32_values;
use crate::error::Result;
use crate::fake_quantize::FakeQuantize;
use crate::nn::batch_norm::bn_keys;
use crate::nn::intrinsic::qat::{ConvBnNd, ConvBnReLUNd, ConvReLUNd};
use crate::nn::quantized::{ActivationQParams, Conv2d, Conv3d, ConvTranspose2d, Int8ConvGeometry, QTensor, QuantizedConv};
use crate::nn::{Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvGeometry, ConvTranspose2dOptions, Padding, PaddingMode, qat};
use crate::nn::{float, intrinsic};
use crate::qconfig::QConfig;
use crate::state_dict::join;
use crate::state_dict::{StateDict, StateReader};
use crate::workflow::ToQuantized;
use crate::workflow::convert_chain::need_input;
use crate::workflow::deployment_arith::{Flow, Grid, need_grid};
use crate::workflow::deployment_weighted::{conv, conv_bn};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::float_state::FloatWeights;
use crate::workflow::int8_fields::{array_of, at_layer, bool_of, field, read_weighted, usize_of, write_weighted};
use crate::workflow::int8_layer::{Engine, Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::Value;
use crate::workflow::qat_layer::{DeployedWeight, Prepare, PrepareQat, QatLayer, QatOp};

int8_requantizing_op!(Conv2d, "Conv2d", grids: [qparams], forward: |m, x, run| run_conv(m, &x, run), save: save_conv, load: load_conv, export: conv);
int8_requantizing_op!(Conv3d, "Conv3d", grids: [qparams], forward: |m, x, run| run_conv(m, &x, run), save: save_conv, load: load_conv, export: conv);
int8_requantizing_op!(QuantizedConv<3, Conv1dOptions>, "Conv1d", grids: [qparams], forward: |m, x, run| run_conv(m, &x, run), save: save_conv, load: load_conv, export: conv);
int8_requantizing_op!(ConvTranspose2d, "ConvTranspose2d", grids: [qparams], forward: |m, x, run| run_conv(m, &x, run), save: save_conv, load: load_conv, export: conv);

fn run_conv<const D: usize, O: Int8ConvGeometry<D>>(m: &QuantizedConv<D, O>, x: &QTensor, run: &Int8Run<'_>) -> Result<QTensor> {
    match run.engine {
        Engine::Kernels => m.forward(x),
        Engine::Reference => m.forward_reference(x, run.device),
    }
}

/// A conv geometry's fields in the int8 file, kernel size, stride, padding and dilation as lists
/// of one entry per spatial axis.
trait GeometryEntry: Sized {
    fn entry(&self) -> Json;
    fn from_entry(entry: &Json, p: &str) -> Result<Self>;
}

macro_rules! geometry_entry {
    ($options:ty, $axes:literal) => {
        impl GeometryEntry for $options {
            fn entry(&self) -> Json {
                json!({"in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": self.kernel_size,
                       "stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups,
                       "padding_mode": self.padding_mode.to_string(), "padding_same": self.padding_same})
            }

            fn from_entry(entry: &Json, p: &str) -> Result<Self> {
                let kernel_size = array_of::<$axes>(entry, "kernel_size", p)?;
                let options = <$options>::new(usize_of(entry, "in_channels", p)?, usize_of(entry, "out_channels", p)?, kernel_size)
                    .with_stride(array_of::<$axes>(entry, "stride", p)?)
                    .with_dilation(array_of::<$axes>(entry, "dilation", p)?)
                    .with_padding(padding_of(entry, array_of::<$axes>(entry, "padding", p)?, p)?)
                    .with_groups(usize_of(entry, "groups", p)?)
                    .with_padding_mode(PaddingMode::parse(field(entry, "padding_mode", p)?.as_str().unwrap_or(""))?);
                options.validate().map_err(|e| at_layer(p, e))?;
                Ok(options)
            }
        }
    };
}

/// An entry's padding: `"same"` where the file says so (its asymmetric extra element follows
/// from the kernel and dilation), else the numbers; files written before `padding_same` was
/// recorded give numbers.
fn padding_of<const N: usize>(entry: &Json, explicit: [usize; N], p: &str) -> Result<Padding<N>> {
    Ok(if entry.get("padding_same").is_some() && bool_of(entry, "padding_same", p)? { Padding::Same } else { Padding::Explicit(explicit) })
}

geometry_entry!(Conv2dOptions, 2);
geometry_entry!(Conv3dOptions, 3);

fn save_conv<const D: usize, O: Int8ConvGeometry<D> + GeometryEntry>(
    m: &QuantizedConv<D, O>,
    path: &str,
    out: &mut StateDict,
) -> Result<Json> {
    write_weighted(path, &m.weight, m.options.weight_shape().to_vec(), &m.bias, &m.qparams, out);
    let mut entry = m.options.entry();
    entry["relu"] = json!(m.qparams.relu);
    Ok(entry)
}

fn load_conv<const D: usize, O: Int8ConvGeometry<D> + GeometryEntry>(
    entry: &Json,
    p: &str,
    reader: &mut StateReader<'_>,
) -> Result<QuantizedConv<D, O>> {
    let options = O::from_entry(entry, p)?;
    let (weight, bias, qparams) = read_weighted(p, &options.weight_shape(), options.out_channels(), bool_of(entry, "relu", p)?, reader)?;
    QuantizedConv::from_parts(options, weight, bias, qparams)
}

fn conv_weight<const D: usize, O: ConvGeometry<D>>(m: &qat::ConvNd<D, O>) -> DeployedWeight<'_> {
    DeployedWeight { values: f32_values(&m.weight.val()), channels: m.options.out_channels(), fake_quant: &m.weight_fake_quant }
}

/// The weight folded with the running statistics, as convert quantizes it.
fn conv_bn_weight<const D: usize, O: ConvGeometry<D>>(m: &ConvBnNd<D, O>) -> DeployedWeight<'_> {
    DeployedWeight { values: m.folded_weight_and_bias().0, channels: m.options.out_channels(), fake_quant: &m.weight_fake_quant }
}

/// One conv geometry's eight layer kinds: the QAT conv, conv + ReLU, conv + BN and
/// conv + BN + ReLU, and the float modules `prepare` turns into them, each converting into the
/// int8 conv `$int8`. The kind names are the layer-table variants named here.
macro_rules! conv_family {
    (rank: $rank:tt, $options:ty => $int8:ident, kinds: $plain:ident, $relu:ident, $bn:ident, $bn_relu:ident) => {
        weighted_qat_op!(qat::ConvNd<$rank, $options>, stringify!($plain), rank: $rank => $int8, inner: [],
            exact: |m, x, g, p| conv(m, false, x, g, p), weight: conv_weight);
        weighted_qat_op!(ConvReLUNd<$rank, $options>, stringify!($relu), rank: $rank => $int8, inner: [conv],
            exact: |m, x, g, p| conv(&m.conv, true, x, g, p), weight: conv_weight);
        weighted_qat_op!(ConvBnNd<$rank, $options>, stringify!($bn), rank: $rank => $int8, inner: [],
            exact: |m, x, g, p| conv_bn(m, false, x, g, p), weight: conv_bn_weight, bn_frozen: |m| ConvBnNd::is_bn_frozen(m));
        weighted_qat_op!(ConvBnReLUNd<$rank, $options>, stringify!($bn_relu), rank: $rank => $int8, inner: [inner],
            exact: |m, x, g, p| conv_bn(&m.inner, true, x, g, p), weight: conv_bn_weight, bn_frozen: |m| m.inner.is_bn_frozen());

        float_weighted_op!(float::ConvNd<$rank, $options>, stringify!($plain), rank: $rank, weight: [] at "", bn: [], absorbs_bn: true,
            prepare: |m, q| QatLayer::$plain(qat::ConvNd::from_float(&m, q)?.with_output_fake_quant()?));
        float_weighted_op!(intrinsic::ConvReLUNd<$rank, $options>, stringify!($relu), rank: $rank, weight: [conv] at "0.", bn: [], absorbs_bn: false,
            prepare: |m, q| QatLayer::$relu(ConvReLUNd::from_float(&m.conv, q)?.with_output_fake_quant()?));
        float_weighted_op!(intrinsic::ConvBnNd<$rank, $options>, stringify!($bn), rank: $rank, weight: [conv] at "0.", bn: [bn at "1."], absorbs_bn: false,
            prepare: |m, q| QatLayer::$bn(ConvBnNd::from_float(&m.conv, &m.bn, q)?.with_output_fake_quant()?));
        float_weighted_op!(intrinsic::ConvBnReLUNd<$rank, $options>, stringify!($bn_relu), rank: $rank, weight: [conv] at "0.", bn: [bn at "1."], absorbs_bn: false,
            prepare: |m, q| QatLayer::$bn_relu(ConvBnReLUNd::from_float(&m.conv, &m.bn, q)?.with_output_fake_quant()?));
    };
}

conv_family!(rank: 3, Conv1dOptions => Conv1d, kinds: Conv1d, ConvReLU1d, ConvBn1d, ConvBnReLU1d);
conv_family!(rank: 4, Conv2dOptions => Conv2d, kinds: Conv2d, ConvReLU2d, ConvBn2d, ConvBnReLU2d);
conv_family!(rank: 5, Conv3dOptions => Conv3d, kinds: Conv3d, ConvReLU3d, ConvBn3d, ConvBnReLU3d);
conv_family!(rank: 4, ConvTranspose2dOptions => ConvTranspose2d, kinds: ConvTranspose2d, ConvTransposeReLU2d, ConvTransposeBn2d, ConvTransposeBnReLU2d);

/// The 1-d geometry's fields, each a single number as PyTorch's `Conv1d` takes them.
impl GeometryEntry for Conv1dOptions {
    fn entry(&self) -> Json {
        json!({"in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": self.kernel_size,
               "stride": self.stride, "padding": self.padding, "dilation": self.dilation, "groups": self.groups,
               "padding_mode": self.padding_mode.to_string(), "padding_same": self.padding_same})
    }

    fn from_entry(entry: &Json, p: &str) -> Result<Self> {
        let options =
            Conv1dOptions::new(usize_of(entry, "in_channels", p)?, usize_of(entry, "out_channels", p)?, usize_of(entry, "kernel_size", p)?)
                .with_stride(usize_of(entry, "stride", p)?)
                .with_dilation(usize_of(entry, "dilation", p)?)
                .with_padding(padding_of(entry, [usize_of(entry, "padding", p)?], p)?)
                .with_groups(usize_of(entry, "groups", p)?)
                .with_padding_mode(PaddingMode::parse(field(entry, "padding_mode", p)?.as_str().unwrap_or(""))?);
        ConvGeometry::validate(&options).map_err(|e| at_layer(p, e))?;
        Ok(options)
    }
}

/// The transposed geometry's fields, with its output padding and no padding mode (PyTorch's
/// transposed convs pad with zeros only).
impl GeometryEntry for ConvTranspose2dOptions {
    fn entry(&self) -> Json {
        json!({"in_channels": self.in_channels, "out_channels": self.out_channels, "kernel_size": self.kernel_size,
               "stride": self.stride, "padding": self.padding, "output_padding": self.output_padding,
               "dilation": self.dilation, "groups": self.groups})
    }

    fn from_entry(entry: &Json, p: &str) -> Result<Self> {
        let options = ConvTranspose2dOptions::new(
            usize_of(entry, "in_channels", p)?,
            usize_of(entry, "out_channels", p)?,
            array_of::<2>(entry, "kernel_size", p)?,
        )
        .with_stride(array_of::<2>(entry, "stride", p)?)
        .with_padding(array_of::<2>(entry, "padding", p)?)
        .with_output_padding(array_of::<2>(entry, "output_padding", p)?)
        .with_dilation(array_of::<2>(entry, "dilation", p)?)
        .with_groups(usize_of(entry, "groups", p)?);
        ConvGeometry::validate(&options).map_err(|e| at_layer(p, e))?;
        Ok(options)
    }
}
