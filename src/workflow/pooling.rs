//! Pooling on float and quantized images. Quantized pooling keeps the input's qparams, as
//! PyTorch's quantized pooling does: max pooling takes the integer max (the quantization map is
//! monotonic), average pooling averages `q - z` over the window and rounds once,
//! `z + rne(f32(sum(q - z)) * f32(1 / count))`; the QAT model's deployment arithmetic and the
//! int8 model both compute exactly that.

use burn::module::Module;
use burn::tensor::module::avg_pool2d;
use burn::tensor::ops::AvgPoolOptions;

use super::layers::{Value, map_float};
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
        let field = if kernel_size == 0 { "kernel_size" } else { "stride" };
        return Err(QatError::invalid(field, format!("{kind}: kernel_size ({kernel_size}) and stride ({stride}) must be positive")));
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

/// The fewest input elements a pooling task reads: pooling does a few operations per element,
/// so splitting less than this across threads costs more in handoffs than it saves.
const MIN_PARALLEL_ELEMENTS: usize = 1 << 16;

/// Runs `pool(out_plane, in_plane, [oh, ow], w)` on every plane of a quantized image with the
/// window `kernel_size` / `stride`, planes in parallel (each output on one thread, so the thread
/// count changes nothing). The qparams carry over.
fn pool_planes(
    q: QTensor,
    kernel_size: usize,
    stride: usize,
    layer: &str,
    pool: impl Fn(&mut [u8], &[u8], [usize; 2], usize) + Sync,
) -> Result<Value> {
    let [n, c, h, w] = image_dims(&q, layer)?;
    let (oh, ow) = (pooled_size(h, kernel_size, stride, layer)?, pooled_size(w, kernel_size, stride, layer)?);
    let mut values = vec![0u8; n * c * oh * ow];
    if !values.is_empty() {
        let min_planes = MIN_PARALLEL_ELEMENTS.div_ceil(h * w);
        values
            .par_chunks_mut(oh * ow)
            .zip(q.values.par_chunks(h * w))
            .with_min_len(min_planes)
            .for_each(|(out, plane)| pool(out, plane, [oh, ow], w));
    }
    Ok(Value::Quantized(QTensor { values, shape: vec![n, c, oh, ow], qparams: q.qparams }))
}

/// Applies `reduce(plane, top_left, width)` to every window of every plane of a quantized image.
fn pool_quantized(
    q: QTensor,
    kernel_size: usize,
    stride: usize,
    layer: &str,
    reduce: impl Fn(&[u8], usize, usize) -> u8 + Sync,
) -> Result<Value> {
    pool_planes(q, kernel_size, stride, layer, |out, plane, [oh, ow], w| {
        for oy in 0..oh {
            for ox in 0..ow {
                out[oy * ow + ox] = reduce(plane, oy * stride * w + ox * stride, w);
            }
        }
    })
}

/// The max over each window of every plane of a quantized image (the max commutes with the
/// monotone dequantization, so the qparams carry over). Taps outer, output columns inner: a
/// strided pass per tap over a whole output row, no per-window call (the per-window version
/// took 14% of LeNet's int8 forward at batch 1).
fn max_pool_quantized(q: QTensor, k: usize, stride: usize, layer: &str) -> Result<Value> {
    pool_planes(q, k, stride, layer, |out, plane, [_, ow], w| {
        for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
            if k == 2 && stride == 2 {
                // The usual 2x2 window, stride 2, with the window size known to the compiler:
                // the pairs deinterleave in vector registers.
                let (top, bottom) = (&plane[2 * oy * w..][..2 * ow], &plane[(2 * oy + 1) * w..][..2 * ow]);
                for ((o, a), b) in out_row.iter_mut().zip(top.chunks_exact(2)).zip(bottom.chunks_exact(2)) {
                    *o = a[0].max(a[1]).max(b[0].max(b[1]));
                }
                continue;
            }
            for ky in 0..k {
                let row = &plane[(oy * stride + ky) * w..][..w];
                if k == stride {
                    // Windows side by side: each output's columns are one chunk of the row.
                    out_row.iter_mut().zip(row.chunks_exact(k)).for_each(|(o, c)| *o = c.iter().fold(*o, |m, &v| m.max(v)));
                } else {
                    for kx in 0..k {
                        out_row.iter_mut().zip(row[kx..].iter().step_by(stride)).for_each(|(o, &v)| *o = (*o).max(v));
                    }
                }
            }
        }
    })
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
            Value::Quantized(q) => max_pool_quantized(q, k, s, layer),
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
    /// Each channel's mean over every spatial axis: `[N, C, ...]` to `[N, C, 1, ...]` (images,
    /// sequences and volumes alike).
    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        match x {
            Value::Quantized(q) => {
                let (n, c, plane) = spatial_planes(&q.shape, layer)?;
                let p = q.qparams;
                let values = q
                    .values
                    .chunks(plane)
                    .map(|plane_values| quantized_mean(plane_values.iter().map(|&v| v as i32 - p.zero_point).sum(), plane, &p))
                    .collect();
                let shape = [vec![n, c], vec![1; q.shape.len() - 2]].concat();
                Ok(Value::Quantized(QTensor { values, shape, qparams: q.qparams }))
            }
            float => Ok(map_float!(
                float,
                |x| {
                    let dims = x.dims();
                    spatial_planes(&dims, layer)?;
                    let mut pooled = dims;
                    pooled[2..].fill(1);
                    x.flatten::<3>(2, dims.len() - 1).mean_dim(2).reshape(pooled)
                },
                |_q| unreachable!("matched above")
            )),
        }
    }
}

/// `(N, C, elements per channel)` of a tensor with at least one spatial axis, all non-empty.
pub(crate) fn spatial_planes(shape: &[usize], layer: &str) -> Result<(usize, usize, usize)> {
    let plane: usize = shape.iter().skip(2).product();
    if shape.len() < 3 || plane == 0 {
        return Err(QatError::shape(layer, "[N, C, ...] with non-empty spatial axes", format!("{shape:?}")));
    }
    Ok((shape[0], shape[1], plane))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The max of each window, read window by window.
    fn windowed_max(values: &[u8], [n, c, h, w]: [usize; 4], k: usize, s: usize) -> Vec<u8> {
        let (oh, ow) = ((h - k) / s + 1, (w - k) / s + 1);
        let mut out = Vec::new();
        for plane in values.chunks_exact(h * w).take(n * c) {
            for oy in 0..oh {
                for ox in 0..ow {
                    let window = (0..k).flat_map(|ky| (0..k).map(move |kx| (oy * s + ky) * w + ox * s + kx));
                    out.push(window.map(|i| plane[i]).max().unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn quantized_max_pool_takes_each_windows_max() {
        let qparams = ActivationQParams { scale: 0.1, zero_point: 3, quant_min: 0, quant_max: 255 };
        let dims = [2, 3, 7, 9];
        // Pseudo-random bytes covering the whole range, ties included.
        let values: Vec<u8> = (0..dims.iter().product::<usize>()).map(|i| ((i * 7919 + 13) % 251) as u8).collect();
        for (k, s) in [(2, 2), (3, 2), (2, 1), (3, 3), (1, 1)] {
            let q = QTensor { values: values.clone(), shape: dims.to_vec(), qparams };
            let Value::Quantized(out) = MaxPool2d::new(k, s).unwrap().forward(Value::Quantized(q), "pool").unwrap() else {
                panic!("quantized in, quantized out")
            };
            assert_eq!(out.values, windowed_max(&values, dims, k, s), "kernel {k}, stride {s}");
            assert_eq!(out.shape, vec![2, 3, (7 - k) / s + 1, (9 - k) / s + 1]);
        }
    }
}
