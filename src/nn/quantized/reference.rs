//! A second, independent implementation of the int8 modules' arithmetic on burn's f64
//! convolutions and matmul (exact for integer operands below 2^53), used to check the integer
//! kernels and to run the QAT model with deployment arithmetic. The convolutions are the QAT
//! modules' own ([`ConvGeometry::forward`]: padding modes, transposed and 3-d included), on
//! the centered integers. It shares only the requantization rule with the kernels.

use burn::tensor::{DType, Device, Tensor, TensorData};

use super::conv_parts::{check_input_qparams, input_dims};
use super::parts::{Int8Weight, LayerQParams};
use super::qtensor::QTensor;
use super::{Int8ConvGeometry, Linear, QuantizedConv};
use crate::error::Result;
use crate::nn::ConvGeometry;
use crate::quant::{requant_multiplier, requantize};

fn f64_tensor<const D: usize>(values: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F64))
}

fn centered_f64(x: &QTensor) -> Vec<f64> {
    x.centered().into_iter().map(f64::from).collect()
}

/// `w - z_w` as f64, `channel(i)` naming the output channel of weight element `i`.
fn weight_f64(weight: &Int8Weight, channel: impl Fn(usize) -> usize) -> Vec<f64> {
    weight.values.iter().enumerate().map(|(i, &w)| (w as i32 - weight.zero_point[channel(i)]) as f64).collect()
}

/// Requantizes f64 accumulators (exact integers) laid out `[N, O, plane]` with a layer's bias,
/// weight scales, qparams and ReLU flag.
fn requantize_all(acc: &[f64], plane: usize, bias: &[i32], weight: &Int8Weight, qparams: &LayerQParams) -> Vec<u8> {
    let LayerQParams { input, output: out, relu } = qparams;
    let lo = if *relu { out.zero_point.max(out.quant_min) } else { out.quant_min };
    let multipliers: Vec<f32> = weight.scale.iter().map(|&s| requant_multiplier(input.scale, s, out.scale)).collect();
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let o = (i / plane) % bias.len();
            let total = (a as i64 + bias[o] as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            requantize(total, multipliers[o], out.zero_point, lo, out.quant_max) as u8
        })
        .collect()
}

/// A geometry's float convolution (transposed ones included) on the centered integers in f64:
/// exact accumulators `[N, O, spatial...]` and their shape.
fn conv_accumulate_f64<const D: usize, O: ConvGeometry<D>>(
    options: &O,
    x: &QTensor,
    dims: [usize; D],
    weight: Vec<f64>,
    device: &Device,
) -> (Vec<f64>, Vec<usize>) {
    let input = f64_tensor(centered_f64(x), dims, device);
    let acc = options.forward(input, f64_tensor(weight, options.weight_shape(), device), None);
    let shape = acc.dims().to_vec();
    (acc.into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 data"), shape)
}

/// An int8 conv's output from its f64 accumulators `[N, O, spatial...]`.
fn requantized(acc: &[f64], shape: Vec<usize>, bias: &[i32], weight: &Int8Weight, qparams: &LayerQParams) -> QTensor {
    let values = requantize_all(acc, shape[2..].iter().product(), bias, weight, qparams);
    QTensor { values, shape, qparams: qparams.output }
}

impl<const D: usize, O: Int8ConvGeometry<D>> QuantizedConv<D, O> {
    /// The same result as [`forward`](Self::forward), computed with burn's f64 convolution.
    pub fn forward_reference(&self, x: &QTensor, device: &Device) -> Result<QTensor> {
        let layer = Self::layer_name();
        let dims = input_dims(x, &layer, O::LAYOUT)?;
        self.options.check_input(dims, &layer)?;
        check_input_qparams(x, &self.qparams.input, &layer)?;
        let weight = weight_f64(&self.weight, |i| self.weight_channel(i));
        let (acc, shape) = conv_accumulate_f64(&self.options, x, dims, weight, device);
        Ok(requantized(&acc, shape, &self.bias, &self.weight, &self.qparams))
    }
}

impl Linear {
    /// The same result as [`Linear::forward`], computed with burn's f64 matmul.
    pub fn forward_reference(&self, x: &QTensor, device: &Device) -> Result<QTensor> {
        if x.shape.last() != Some(&self.in_features) {
            return Err(crate::QatError::ShapeMismatch {
                context: "quantized Linear".into(),
                expected: format!("input [..., {}]", self.in_features),
                actual: format!("{:?}", x.shape),
            });
        }
        let rows = x.values.len() / self.in_features.max(1);
        let input = f64_tensor(centered_f64(x), [rows, self.in_features], device);
        let weight = weight_f64(&self.weight, |i| i / self.in_features);
        let weight = f64_tensor(weight, [self.out_features, self.in_features], device);
        let acc = input.matmul(weight.transpose()).into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 data");
        let values = requantize_all(&acc, 1, &self.bias, &self.weight, &self.qparams);
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty shape") = self.out_features;
        Ok(QTensor { values, shape, qparams: self.qparams.output })
    }
}
