//! A second, independent implementation of the int8 modules' arithmetic on burn's f64
//! convolution and matmul (exact for integer operands below 2^53), used to check the integer
//! kernels and to run the QAT model with deployment arithmetic. It shares only the
//! requantization rule with the kernels.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor, TensorData};

use super::qtensor::QTensor;
use super::{Conv2d, Linear};
use crate::error::Result;
use crate::nn::PaddingMode;
use crate::quant::{requant_multiplier, requantize};

fn f64_tensor<const D: usize>(values: Vec<f64>, shape: [usize; D], device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(values, shape), (device, DType::F64))
}

fn centered_f64(x: &QTensor) -> Vec<f64> {
    x.centered().into_iter().map(f64::from).collect()
}

/// Requantizes f64 accumulators (exact integers) channel by channel, `channel(i)` naming the
/// output channel of element `i`.
fn requantize_all(
    acc: &[f64],
    bias: &[i32],
    multipliers: &[f32],
    out: &super::ActivationQParams,
    relu: bool,
    channel: impl Fn(usize) -> usize,
) -> Vec<u8> {
    let lo = if relu { out.zero_point.max(out.quant_min) } else { out.quant_min };
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let o = channel(i);
            let total = (a as i64 + bias[o] as i64).clamp(i32::MIN as i64, i32::MAX as i64) as i32;
            requantize(total, multipliers[o], out.zero_point, lo, out.quant_max) as u8
        })
        .collect()
}

impl Conv2d {
    /// The same result as [`Conv2d::forward`], computed with burn's f64 `conv2d`.
    pub fn forward_reference(&self, x: &QTensor, device: &Device) -> Result<QTensor> {
        let dims: [usize; 4] =
            x.shape.clone().try_into().map_err(|_| crate::QatError::shape("quantized Conv2d", "[N, C, H, W]", format!("{:?}", x.shape)))?;
        self.options.check_input(dims, "quantized Conv2d")?;
        let input = f64_tensor(centered_f64(x), dims, device);
        let k = self.weight.len() / self.options.out_channels;
        let weight: Vec<f64> = self.weight.iter().enumerate().map(|(i, &w)| (w as i32 - self.weight_zero_point[i / k]) as f64).collect();
        let weight = f64_tensor(weight, self.options.weight_shape(), device);
        let [ph, pw] = self.options.padding;
        let (input, padding) = match self.options.padding_mode {
            PaddingMode::Zeros => (input, self.options.padding),
            PaddingMode::Reflect => (input.pad([(ph, ph), (pw, pw)], burn::tensor::ops::PadMode::Reflect), [0, 0]),
            PaddingMode::Replicate => (input.pad([(ph, ph), (pw, pw)], burn::tensor::ops::PadMode::Edge), [0, 0]),
            PaddingMode::Circular => {
                let wrap = |t: Tensor<4>, dim: usize, p: usize| {
                    if p == 0 {
                        return t;
                    }
                    let size = t.dims()[dim];
                    Tensor::cat(vec![t.clone().narrow(dim, size - p, p), t.clone(), t.narrow(dim, 0, p)], dim)
                };
                (wrap(wrap(input, 2, ph), 3, pw), [0, 0])
            }
        };
        let o = &self.options;
        let acc = conv2d(input, weight, None, ConvOptions::new(o.stride, padding, o.dilation, o.groups));
        let out_shape = acc.dims();
        let acc = acc.into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 data");
        let multipliers: Vec<f32> = self.weight_scale.iter().map(|&s| requant_multiplier(self.input.scale, s, self.output.scale)).collect();
        let p = out_shape[2] * out_shape[3];
        let values = requantize_all(&acc, &self.bias, &multipliers, &self.output, self.relu, |i| (i / p) % o.out_channels);
        Ok(QTensor { values, shape: out_shape.to_vec(), qparams: self.output })
    }
}

impl Linear {
    /// The same result as [`Linear::forward`], computed with burn's f64 matmul.
    pub fn forward_reference(&self, x: &QTensor, device: &Device) -> Result<QTensor> {
        let rows = x.values.len() / self.in_features.max(1);
        let input = f64_tensor(centered_f64(x), [rows, self.in_features], device);
        let weight: Vec<f64> =
            self.weight.iter().enumerate().map(|(i, &w)| (w as i32 - self.weight_zero_point[i / self.in_features]) as f64).collect();
        let weight = f64_tensor(weight, [self.out_features, self.in_features], device);
        let acc = input.matmul(weight.transpose()).into_data().convert::<f64>().try_into_vec::<f64>().expect("f64 data");
        let multipliers: Vec<f32> = self.weight_scale.iter().map(|&s| requant_multiplier(self.input.scale, s, self.output.scale)).collect();
        let values = requantize_all(&acc, &self.bias, &multipliers, &self.output, self.relu, |i| i % self.out_features);
        let mut shape = x.shape.clone();
        *shape.last_mut().expect("non-empty shape") = self.out_features;
        Ok(QTensor { values, shape, qparams: self.output })
    }
}
