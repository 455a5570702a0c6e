//! The parameterless layers every model stage shares, and the value that flows between layers.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;
use burn::tensor::module::max_pool2d;
use burn::tensor::ops::MaxPoolOptions;

use crate::error::{QatError, Result};
use crate::nn::quantized::QTensor;

/// ReLU.
#[derive(Module, Debug, Default)]
pub struct Relu;

/// Flattens `[N, C, H, W]` to `[N, C * H * W]`.
#[derive(Module, Debug, Default)]
pub struct Flatten;

/// Max pooling with a square window and no padding.
#[derive(Module, Debug)]
pub struct MaxPool2d {
    pub kernel_size: usize,
    pub stride: usize,
}

/// Averages each channel over its spatial positions: `[N, C, H, W]` to `[N, C, 1, 1]`
/// (PyTorch's `AdaptiveAvgPool2d(1)`). On integers the average keeps the input's qparams and
/// rounds once: `z + rne(f32(sum(q - z)) * f32(1 / (H * W)))`, as the QAT model's deployment
/// arithmetic and the int8 model both compute it.
#[derive(Module, Debug, Default)]
pub struct GlobalAvgPool2d;

impl GlobalAvgPool2d {
    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        match x {
            Value::Quantized(q) => {
                let [n, c, h, w]: [usize; 4] =
                    q.shape.clone().try_into().map_err(|_| QatError::shape(layer, "[N, C, H, W]", format!("{:?}", q.shape)))?;
                if h * w == 0 {
                    return Err(QatError::shape(layer, "a non-empty spatial size", format!("{:?}", q.shape)));
                }
                let p = q.qparams;
                let inv_count = 1.0 / (h * w) as f32;
                let values = q
                    .values
                    .chunks(h * w)
                    .map(|plane| {
                        let sum: i32 = plane.iter().map(|&v| v as i32 - p.zero_point).sum();
                        crate::quant::requantize(sum, inv_count, p.zero_point, p.quant_min, p.quant_max) as u8
                    })
                    .collect();
                Ok(Value::Quantized(QTensor { values, shape: vec![n, c, 1, 1], qparams: p }))
            }
            other => {
                let x = other.image(layer)?;
                let [n, c, _, _] = x.dims();
                Ok(Value::Image(x.flatten::<3>(2, 3).mean_dim(2).reshape([n, c, 1, 1])))
            }
        }
    }
}

/// Marks where float input becomes quantized (PyTorch's `QuantStub`).
#[derive(Module, Debug, Default)]
pub struct QuantStub;

/// Marks where quantized values become float again (PyTorch's `DeQuantStub`).
#[derive(Module, Debug, Default)]
pub struct DeQuantStub;

/// A layer with its name, used in state-dict keys and error messages.
#[derive(Module, Debug)]
pub struct Named<L: Module> {
    pub name: String,
    pub layer: L,
}

/// What flows between layers: images `[N, C, H, W]` or features `[N, F]`, float or quantized.
#[derive(Clone, Debug)]
pub enum Value {
    Image(Tensor<4>),
    Features(Tensor<2>),
    Quantized(QTensor),
}

impl Value {
    pub(crate) fn image(self, layer: &str) -> Result<Tensor<4>> {
        match self {
            Self::Image(x) => Ok(x),
            other => Err(QatError::shape(layer, "an image tensor [N, C, H, W]", other.describe())),
        }
    }

    pub(crate) fn features(self, layer: &str) -> Result<Tensor<2>> {
        match self {
            Self::Features(x) => Ok(x),
            other => Err(QatError::shape(layer, "a feature tensor [N, F] (add a Flatten before it)", other.describe())),
        }
    }

    pub(crate) fn quantized(self, layer: &str) -> Result<QTensor> {
        match self {
            Self::Quantized(x) => Ok(x),
            other => Err(QatError::shape(layer, "a quantized tensor (add a QuantStub before it)", other.describe())),
        }
    }

    fn describe(&self) -> String {
        match self {
            Self::Image(x) => format!("float {:?}", x.dims()),
            Self::Features(x) => format!("float {:?}", x.dims()),
            Self::Quantized(x) => format!("quantized {:?}", x.shape),
        }
    }

    /// Float logits `[N, F]` (dequantizing if needed).
    pub fn into_features(self, device: &burn::tensor::Device) -> Result<Tensor<2>> {
        match self {
            Self::Quantized(q) => q.to_tensor::<2>(device),
            other => other.features("model output"),
        }
    }

    pub(crate) fn float_add(self, other: Self, layer: &str) -> Result<Self> {
        match (self, other) {
            (Self::Image(a), Self::Image(b)) if a.dims() == b.dims() => Ok(Self::Image(a + b)),
            (Self::Features(a), Self::Features(b)) if a.dims() == b.dims() => Ok(Self::Features(a + b)),
            (a, b) => Err(QatError::shape(layer, format!("the residual shape {}", b.describe()), a.describe())),
        }
    }

    pub(crate) fn relu(self) -> Self {
        match self {
            Self::Image(x) => Self::Image(relu(x)),
            Self::Features(x) => Self::Features(relu(x)),
            // On integers, ReLU is a floor at the zero point (real 0).
            Self::Quantized(mut q) => {
                let z = q.qparams.zero_point.clamp(0, 255) as u8;
                q.values.iter_mut().for_each(|v| *v = (*v).max(z));
                Self::Quantized(q)
            }
        }
    }
}

impl MaxPool2d {
    pub fn new(kernel_size: usize, stride: usize) -> Result<Self> {
        if kernel_size == 0 || stride == 0 {
            return Err(QatError::config(format!("MaxPool2d: kernel_size ({kernel_size}) and stride ({stride}) must be positive")));
        }
        Ok(Self { kernel_size, stride })
    }

    fn out_size(&self, size: usize, layer: &str) -> Result<usize> {
        if size < self.kernel_size {
            return Err(QatError::shape(layer, format!("spatial size at least {}", self.kernel_size), format!("{size}")));
        }
        Ok((size - self.kernel_size) / self.stride + 1)
    }

    /// Max pooling of float or quantized images; on integers the max is taken directly (the
    /// quantization map is monotonic, so this equals pooling the real values).
    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        match x {
            Value::Quantized(q) => {
                let [n, c, h, w]: [usize; 4] =
                    q.shape.clone().try_into().map_err(|_| QatError::shape(layer, "[N, C, H, W]", format!("{:?}", q.shape)))?;
                let (oh, ow) = (self.out_size(h, layer)?, self.out_size(w, layer)?);
                let mut values = Vec::with_capacity(n * c * oh * ow);
                for plane in q.values.chunks(h * w) {
                    for oy in 0..oh {
                        for ox in 0..ow {
                            let mut m = 0u8;
                            for ky in 0..self.kernel_size {
                                let row = &plane[(oy * self.stride + ky) * w + ox * self.stride..][..self.kernel_size];
                                m = row.iter().fold(m, |a, &b| a.max(b));
                            }
                            values.push(m);
                        }
                    }
                }
                Ok(Value::Quantized(QTensor { values, shape: vec![n, c, oh, ow], qparams: q.qparams }))
            }
            other => {
                let x = other.image(layer)?;
                let [_, _, h, w] = x.dims();
                self.out_size(h, layer)?;
                self.out_size(w, layer)?;
                let options = MaxPoolOptions::new([self.kernel_size; 2]).with_stride([self.stride; 2]);
                Ok(Value::Image(max_pool2d(x, options)))
            }
        }
    }
}

impl Flatten {
    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        match x {
            Value::Image(x) => Ok(Value::Features(x.flatten(1, 3))),
            Value::Quantized(mut q) if q.shape.len() == 4 => {
                q.shape = vec![q.shape[0], q.shape[1..].iter().product()];
                Ok(Value::Quantized(q))
            }
            Value::Quantized(q) => Ok(Value::Quantized(q)),
            Value::Features(x) => Err(QatError::shape(layer, "an image tensor to flatten", format!("{:?}", x.dims()))),
        }
    }
}
