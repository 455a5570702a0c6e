//! Pooling on float and quantized images. Quantized pooling keeps the input's qparams, as
//! PyTorch's quantized pooling does: max pooling takes the integer max (the quantization map is
//! monotonic), average pooling averages `q - z` over the window and rounds once,
//! `z + rne(f32(sum(q - z)) * f32(1 / count))`; the QAT model's deployment arithmetic and the
//! int8 model both compute exactly that.

use burn::module::Module;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;

use super::layers::Value;
use crate::error::{QatError, Result};
use crate::ops::{MaxPoolWindow, max_pool2d};
use rayon::prelude::*;

use crate::nn::quantized::{ActivationQParams, QTensor};

/// Max pooling with a square window and no padding.
#[derive(Module, Debug)]
pub struct MaxPool2d {
    pub kernel_size: usize,
    pub stride: usize,
}

/// Average pooling with a square window and no padding (PyTorch's `AvgPool2d(k, s)`).
#[derive(Module, Debug)]
pub struct AvgPool2d {
    pub kernel_size: usize,
    pub stride: usize,
}

/// Averages each channel over its spatial positions: `[N, C, H, W]` to `[N, C, 1, 1]`
/// (PyTorch's `AdaptiveAvgPool2d(1)`).
#[derive(Module, Debug, Default)]
pub struct GlobalAvgPool2d;

/// A square window sliding without padding: the output size, with an error naming the layer when
/// the input is smaller than the window.
fn check_window(kernel_size: usize, stride: usize, kind: &str) -> Result<()> {
    if kernel_size == 0 || stride == 0 {
        return Err(QatError::config(format!("{kind}: kernel_size ({kernel_size}) and stride ({stride}) must be positive")));
    }
    Ok(())
}

fn pooled_size(size: usize, kernel_size: usize, stride: usize, layer: &str) -> Result<usize> {
    if size < kernel_size {
        return Err(QatError::shape(layer, format!("spatial size at least {kernel_size}"), format!("{size}")));
    }
    Ok((size - kernel_size) / stride + 1)
}

fn image_dims(q: &QTensor, layer: &str) -> Result<[usize; 4]> {
    q.shape.clone().try_into().map_err(|_| QatError::shape(layer, "[N, C, H, W]", format!("{:?}", q.shape)))
}

/// Applies `reduce(plane, top_left, width)` to every window of every plane of a quantized
/// image, planes in parallel (each output on one thread, so the thread count changes nothing).
fn pool_quantized(
    q: QTensor,
    kernel_size: usize,
    stride: usize,
    layer: &str,
    reduce: impl Fn(&[u8], usize, usize) -> u8 + Sync,
) -> Result<Value> {
    let [n, c, h, w] = image_dims(&q, layer)?;
    let (oh, ow) = (pooled_size(h, kernel_size, stride, layer)?, pooled_size(w, kernel_size, stride, layer)?);
    let mut values = vec![0u8; n * c * oh * ow];
    if !values.is_empty() {
        values.par_chunks_mut(oh * ow).zip(q.values.par_chunks(h * w)).for_each(|(out, plane)| {
            for oy in 0..oh {
                for ox in 0..ow {
                    out[oy * ow + ox] = reduce(plane, oy * stride * w + ox * stride, w);
                }
            }
        });
    }
    Ok(Value::Quantized(QTensor { values, shape: vec![n, c, oh, ow], qparams: q.qparams }))
}

/// The rounded average of `count` quantized values whose offsets from the zero point sum to
/// `sum`, in the input's qparams.
fn quantized_mean(sum: i32, count: usize, p: &ActivationQParams) -> u8 {
    crate::quant::requantize(sum, 1.0 / count as f32, p.zero_point, p.quant_min, p.quant_max) as u8
}

impl MaxPool2d {
    pub fn new(kernel_size: usize, stride: usize) -> Result<Self> {
        check_window(kernel_size, stride, "MaxPool2d")?;
        Ok(Self { kernel_size, stride })
    }

    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        let (k, s) = (self.kernel_size, self.stride);
        match x {
            Value::Quantized(q) => pool_quantized(q, k, s, layer, |plane, at, w| {
                (0..k).map(|ky| plane[at + ky * w..][..k].iter().copied().max().unwrap_or(0)).max().unwrap_or(0)
            }),
            other => {
                let x = other.image(layer)?;
                let [_, _, h, w] = x.dims();
                pooled_size(h, k, s, layer)?;
                pooled_size(w, k, s, layer)?;
                Ok(Value::Image(max_pool2d(x, MaxPoolWindow { kernel: k, stride: s })?))
            }
        }
    }
}

impl AvgPool2d {
    pub fn new(kernel_size: usize, stride: usize) -> Result<Self> {
        check_window(kernel_size, stride, "AvgPool2d")?;
        Ok(Self { kernel_size, stride })
    }

    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        let (k, s) = (self.kernel_size, self.stride);
        match x {
            Value::Quantized(q) => {
                let p = q.qparams;
                pool_quantized(q, k, s, layer, |plane, at, w| {
                    let sum: i32 = (0..k).flat_map(|ky| &plane[at + ky * w..][..k]).map(|&v| v as i32 - p.zero_point).sum();
                    quantized_mean(sum, k * k, &p)
                })
            }
            other => {
                let x = other.image(layer)?;
                let [_, _, h, w] = x.dims();
                pooled_size(h, k, s, layer)?;
                pooled_size(w, k, s, layer)?;
                Ok(Value::Image(avg_pool2d(x, AvgPoolOptions::new([k; 2]).with_stride([s; 2]))))
            }
        }
    }
}

impl GlobalAvgPool2d {
    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        match x {
            Value::Quantized(q) => {
                let [n, c, h, w] = image_dims(&q, layer)?;
                if h * w == 0 {
                    return Err(QatError::shape(layer, "a non-empty spatial size", format!("{:?}", q.shape)));
                }
                let p = q.qparams;
                let values = q
                    .values
                    .chunks(h * w)
                    .map(|plane| quantized_mean(plane.iter().map(|&v| v as i32 - p.zero_point).sum(), h * w, &p))
                    .collect();
                Ok(Value::Quantized(QTensor { values, shape: vec![n, c, 1, 1], qparams: q.qparams }))
            }
            other => {
                let x = other.image(layer)?;
                let [n, c, _, _] = x.dims();
                Ok(Value::Image(x.flatten::<3>(2, 3).mean_dim(2).reshape([n, c, 1, 1])))
            }
        }
    }
}
