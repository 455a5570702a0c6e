//! Pooling on float and quantized images. Quantized pooling keeps the input's qparams, as
//! PyTorch's quantized pooling does: max pooling takes the integer max (the quantization map is
//! monotonic), average pooling averages `q - z` over the window and rounds once,
//! `z + rne(f32(sum(q - z)) * f32(1 / count))`; the QAT model's deployment arithmetic and the
//! int8 model both compute exactly that.

use burn::module::Module;
use burn::tensor::module::{avg_pool2d, max_pool2d};
use burn::tensor::ops::{AvgPoolOptions, MaxPoolOptions};

use super::layers::Value;
use crate::error::{QatError, Result};
use crate::nn::quantized::QTensor;

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

/// Applies `reduce` to every window of every plane of a quantized image.
fn pool_quantized(q: QTensor, kernel_size: usize, stride: usize, layer: &str, reduce: impl Fn(&mut dyn Iterator<Item = u8>) -> u8) -> Result<Value> {
    let [n, c, h, w] = image_dims(&q, layer)?;
    let (oh, ow) = (pooled_size(h, kernel_size, stride, layer)?, pooled_size(w, kernel_size, stride, layer)?);
    let mut values = Vec::with_capacity(n * c * oh * ow);
    for plane in q.values.chunks(h * w) {
        for oy in 0..oh {
            for ox in 0..ow {
                let mut window =
                    (0..kernel_size).flat_map(|ky| plane[(oy * stride + ky) * w + ox * stride..][..kernel_size].iter().copied());
                values.push(reduce(&mut window));
            }
        }
    }
    Ok(Value::Quantized(QTensor { values, shape: vec![n, c, oh, ow], qparams: q.qparams }))
}

/// The rounded average of `count` quantized values, in the input's qparams.
fn quantized_mean(window: &mut dyn Iterator<Item = u8>, count: usize, q: &QTensor) -> u8 {
    let p = q.qparams;
    let sum: i32 = window.map(|v| v as i32 - p.zero_point).sum();
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
            Value::Quantized(q) => pool_quantized(q, k, s, layer, |window| window.fold(0, u8::max)),
            other => {
                let x = other.image(layer)?;
                let [_, _, h, w] = x.dims();
                pooled_size(h, k, s, layer)?;
                pooled_size(w, k, s, layer)?;
                Ok(Value::Image(max_pool2d(x, MaxPoolOptions::new([k; 2]).with_stride([s; 2]))))
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
                let template = QTensor { values: Vec::new(), shape: q.shape.clone(), qparams: q.qparams };
                pool_quantized(q, k, s, layer, |window| quantized_mean(window, k * k, &template))
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
                let values = q.values.chunks(h * w).map(|plane| quantized_mean(&mut plane.iter().copied(), h * w, &q)).collect();
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
