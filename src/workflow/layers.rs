//! The parameterless layers every model stage shares, and the value that flows between layers.

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::error::{QatError, Result};
use crate::nn::quantized::QTensor;

/// ReLU.
#[derive(Module, Debug, Default)]
pub struct Relu;

/// `min(max(x, 0), 6)`: PyTorch's `ReLU6`. Like PyTorch's quantized ReLU6 it keeps the input's
/// qparams; on integers it clamps to `[z, quantize(6)]`, where `quantize(6)` rounds 6 to the
/// input's grid (so a quantized 6 may be a grid step away from 6.0).
#[derive(Module, Debug, Default)]
pub struct Relu6;

/// Flattens `[N, C, H, W]` to `[N, C * H * W]`.
#[derive(Module, Debug, Default)]
pub struct Flatten;

/// Marks where float input becomes quantized (PyTorch's `QuantStub`).
#[derive(Module, Debug, Default)]
pub struct QuantStub;

/// `QuantStub` after prepare: fake quantizes the float input.
#[derive(Module, Debug)]
pub struct QatQuantStub {
    pub activation_post_process: crate::fake_quantize::FakeQuantize,
}

/// Marks where quantized values become float again (PyTorch's `DeQuantStub`).
#[derive(Module, Debug, Default)]
pub struct DeQuantStub;

/// A batch norm over features `[N, F]` (PyTorch's `BatchNorm1d` on 2-d input).
#[derive(Module, Debug)]
pub struct BatchNorm1d {
    pub bn: crate::nn::BatchNorm,
}

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

    /// The same value on `device` (a quantized value lives on the host and stays).
    pub fn to_device(self, device: &burn::tensor::Device) -> Self {
        match self {
            Self::Image(x) => Self::Image(x.to_device(device)),
            Self::Features(x) => Self::Features(x.to_device(device)),
            q => q,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Image(x) => format!("float {:?}", x.dims()),
            Self::Features(x) => format!("float {:?}", x.dims()),
            Self::Quantized(x) => format!("quantized {:?}", x.shape),
        }
    }

    /// The outputs of consecutive slices of one batch, joined along the batch axis (every part
    /// the same kind, the quantized ones with the same qparams: they came out of the same layer).
    pub(crate) fn concat_batches(parts: Vec<Self>) -> Result<Self> {
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or_else(|| QatError::config("joining a batch's slices: no slices"))?;
        match first {
            Self::Image(x) => {
                let rest = parts.map(|p| p.image("a batch slice")).collect::<Result<Vec<_>>>()?;
                Ok(Self::Image(Tensor::cat([vec![x], rest].concat(), 0)))
            }
            Self::Features(x) => {
                let rest = parts.map(|p| p.features("a batch slice")).collect::<Result<Vec<_>>>()?;
                Ok(Self::Features(Tensor::cat([vec![x], rest].concat(), 0)))
            }
            Self::Quantized(mut joined) => {
                for part in parts {
                    let part = part.quantized("a batch slice")?;
                    if part.qparams != joined.qparams || part.shape[1..] != joined.shape[1..] {
                        let (a, b) = (Self::Quantized(joined).describe(), Self::Quantized(part).describe());
                        return Err(QatError::config(format!("joining a batch's slices: {a} and {b} differ")));
                    }
                    joined.shape[0] += part.shape[0];
                    joined.values.extend_from_slice(&part.values);
                }
                Ok(Self::Quantized(joined))
            }
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

    pub(crate) fn relu6(self) -> Self {
        match self {
            Self::Image(x) => Self::Image(x.clamp(0.0, 6.0)),
            Self::Features(x) => Self::Features(x.clamp(0.0, 6.0)),
            Self::Quantized(mut q) => {
                let p = q.qparams;
                let six = crate::quant::quantize_value(6.0, 1.0 / p.scale, p.zero_point, p.quant_min, p.quant_max);
                let (lo, hi) = (p.zero_point.clamp(0, 255) as u8, six.clamp(0, 255) as u8);
                q.values.iter_mut().for_each(|v| *v = (*v).max(lo).min(hi.max(lo)));
                Self::Quantized(q)
            }
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
