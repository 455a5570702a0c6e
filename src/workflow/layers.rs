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

/// `x * relu6(x + 3) / 6`: PyTorch's `Hardswish` (MobileNetV3). Prepared, it gets its own output
/// fake quant, as PyTorch's quantized hardswish has its own output qparams.
#[derive(Module, Debug, Default)]
pub struct Hardswish;

/// `Hardswish` after prepare: the float hardswish, then its output fake quant.
#[derive(Module, Debug)]
pub struct QatHardswish {
    pub activation_post_process: crate::fake_quantize::FakeQuantize,
}

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

/// A batch norm over features `[N, F]` or sequences `[N, C, L]` (PyTorch's `BatchNorm1d`).
#[derive(Module, Debug)]
pub struct BatchNorm1d {
    pub bn: crate::nn::BatchNorm,
}

/// A batch norm over volumes `[N, C, D, H, W]` (PyTorch's `BatchNorm3d`), fused into the
/// Conv3d before it.
#[derive(Module, Debug)]
pub struct BatchNorm3d {
    pub bn: crate::nn::BatchNorm,
}

/// A layer with its name, used in state-dict keys and error messages.
#[derive(Module, Debug)]
pub struct Named<L: Module> {
    pub name: String,
    pub layer: L,
}

/// What flows between layers: a float tensor of rank 2 to 5 (features `[N, F]`, sequences
/// `[N, C, L]`, images `[N, C, H, W]`, volumes `[N, C, D, H, W]`) or a quantized one.
#[derive(Clone, Debug)]
pub enum Value {
    Image(Tensor<4>),
    Features(Tensor<2>),
    /// A 1-d signal `[N, C, L]`.
    Sequence(Tensor<3>),
    /// A 3-d volume `[N, C, D, H, W]`.
    Volume(Tensor<5>),
    Quantized(QTensor),
}

/// `$body` (generic in the tensor's rank) on a float value's tensor `$t`; a quantized value
/// `$q` gives `$quantized`.
macro_rules! match_float {
    ($value:expr, |$t:ident| $body:expr, |$q:ident| $quantized:expr) => {
        match $value {
            Value::Features($t) => $body,
            Value::Sequence($t) => $body,
            Value::Image($t) => $body,
            Value::Volume($t) => $body,
            Value::Quantized($q) => $quantized,
        }
    };
}

/// [`match_float`] keeping the float value's kind: `$body` gives the new tensor.
macro_rules! map_float {
    ($value:expr, |$t:ident| $body:expr, |$q:ident| $quantized:expr) => {
        match $value {
            Value::Features($t) => Value::Features($body),
            Value::Sequence($t) => Value::Sequence($body),
            Value::Image($t) => Value::Image($body),
            Value::Volume($t) => Value::Volume($body),
            Value::Quantized($q) => $quantized,
        }
    };
}

/// `$body` applied to two float values' tensors `$x`, `$y` of the same kind and shape; any
/// other pair `($a, $b)` gives `$otherwise`.
macro_rules! zip_float {
    ($left:expr, $right:expr, |$x:ident, $y:ident| $body:expr, |$a:ident, $b:ident| $otherwise:expr) => {
        match ($left, $right) {
            (Value::Features($x), Value::Features($y)) if $x.dims() == $y.dims() => Value::Features($body),
            (Value::Sequence($x), Value::Sequence($y)) if $x.dims() == $y.dims() => Value::Sequence($body),
            (Value::Image($x), Value::Image($y)) if $x.dims() == $y.dims() => Value::Image($body),
            (Value::Volume($x), Value::Volume($y)) if $x.dims() == $y.dims() => Value::Volume($body),
            ($a, $b) => $otherwise,
        }
    };
}

pub(crate) use {map_float, match_float, zip_float};

impl Value {
    /// A float tensor as the value of its rank (2 to 5).
    pub fn from_tensor<const D: usize>(x: Tensor<D>) -> Result<Self> {
        let dims = x.dims();
        Ok(match D {
            2 => Self::Features(x.reshape(rank::<2>(&dims))),
            3 => Self::Sequence(x.reshape(rank::<3>(&dims))),
            4 => Self::Image(x.reshape(rank::<4>(&dims))),
            5 => Self::Volume(x.reshape(rank::<5>(&dims))),
            _ => return Err(QatError::shape("model input", "a float tensor of rank 2 to 5", format!("{dims:?}"))),
        })
    }

    /// The float tensor of rank `D` this value holds; `layer` names the layer in the error.
    pub(crate) fn tensor<const D: usize>(self, layer: &str) -> Result<Tensor<D>> {
        let dims = match_float!(&self, |x| x.dims().to_vec(), |_q| vec![]);
        if dims.len() != D {
            let expected = match D {
                2 => "a feature tensor [N, F] (add a Flatten before it)",
                3 => "a sequence tensor [N, C, L]",
                4 => "an image tensor [N, C, H, W]",
                _ => "a volume tensor [N, C, D, H, W]",
            };
            return Err(QatError::shape(layer, expected, self.describe()));
        }
        let shape = rank::<D>(&dims);
        Ok(match_float!(self, |x| x.reshape(shape), |_q| unreachable!("a quantized value has no float dims")))
    }

    pub(crate) fn image(self, layer: &str) -> Result<Tensor<4>> {
        self.tensor(layer)
    }

    pub(crate) fn features(self, layer: &str) -> Result<Tensor<2>> {
        self.tensor(layer)
    }

    pub(crate) fn quantized(self, layer: &str) -> Result<QTensor> {
        match self {
            Self::Quantized(x) => Ok(x),
            other => Err(QatError::shape(layer, "a quantized tensor (add a QuantStub before it)", other.describe())),
        }
    }

    /// The same value on `device` (a quantized value lives on the host and stays).
    pub fn to_device(self, device: &burn::tensor::Device) -> Self {
        map_float!(self, |x| x.to_device(device), |q| Self::Quantized(q))
    }

    pub(crate) fn describe(&self) -> String {
        match_float!(self, |x| format!("float {:?}", x.dims()), |q| format!("quantized {:?}", q.shape))
    }

    /// The outputs of consecutive slices of one batch, joined along the batch axis (every part
    /// the same kind, the quantized ones with the same qparams: they came out of the same layer).
    pub(crate) fn concat_batches(parts: Vec<Self>) -> Result<Self> {
        let mut parts = parts.into_iter();
        let first = parts.next().ok_or_else(|| QatError::shape("joining a batch's slices", "at least one slice", "no slices"))?;
        let rest: Vec<Self> = parts.collect();
        Ok(map_float!(
            first,
            |x| {
                let rest = rest.into_iter().map(|p| p.tensor("a batch slice")).collect::<Result<Vec<_>>>()?;
                Tensor::cat([vec![x], rest].concat(), 0)
            },
            |joined| {
                let mut joined = joined;
                for part in rest {
                    let part = part.quantized("a batch slice")?;
                    if part.qparams != joined.qparams || part.shape[1..] != joined.shape[1..] {
                        let describe = |q: &QTensor| format!("quantized {:?} with {:?}", q.shape, q.qparams);
                        return Err(QatError::shape("joining a batch's slices", describe(&joined), describe(&part)));
                    }
                    joined.shape[0] += part.shape[0];
                    joined.values.extend_from_slice(&part.values);
                }
                Self::Quantized(joined)
            }
        ))
    }

    /// Float logits `[N, F]` (dequantizing if needed).
    pub fn into_features(self, device: &burn::tensor::Device) -> Result<Tensor<2>> {
        match self {
            Self::Quantized(q) => q.to_tensor::<2>(device),
            other => other.features("model output"),
        }
    }

    pub(crate) fn float_add(self, other: Self, layer: &str) -> Result<Self> {
        Ok(zip_float!(self, other, |a, b| a + b, |a, b| {
            return Err(QatError::shape(layer, format!("the residual shape {}", b.describe()), a.describe()));
        }))
    }

    /// `[N, C_a, ...]` and `[N, C_b, ...]` joined along the channel axis (float values of one
    /// rank whose other axes agree).
    pub(crate) fn concat_channels(self, other: Self, layer: &str) -> Result<Self> {
        let agree = |a: &[usize], b: &[usize]| a[0] == b[0] && a[2..] == b[2..];
        Ok(match (self, other) {
            (Self::Features(a), Self::Features(b)) if agree(&a.dims(), &b.dims()) => Self::Features(Tensor::cat(vec![a, b], 1)),
            (Self::Sequence(a), Self::Sequence(b)) if agree(&a.dims(), &b.dims()) => Self::Sequence(Tensor::cat(vec![a, b], 1)),
            (Self::Image(a), Self::Image(b)) if agree(&a.dims(), &b.dims()) => Self::Image(Tensor::cat(vec![a, b], 1)),
            (Self::Volume(a), Self::Volume(b)) if agree(&a.dims(), &b.dims()) => Self::Volume(Tensor::cat(vec![a, b], 1)),
            (a, b) => {
                let expected = format!("the block input's shape but for channels ({})", a.describe());
                return Err(QatError::shape(layer, expected, b.describe()));
            }
        })
    }

    /// PyTorch's float hardswish, `x * min(max(x + 3, 0), 6) / 6`, in that order of f32 operations
    /// (the int8 table computes the same, [`crate::nn::quantized::hardswish_f32`]).
    pub(crate) fn hardswish(self, layer: &str) -> Result<Self> {
        Ok(map_float!(self, |x| x.clone() * (x + 3.0).clamp(0.0, 6.0) / 6.0, |q| {
            return Err(QatError::shape(layer, "a float tensor", Self::Quantized(q).describe()));
        }))
    }

    pub(crate) fn relu6(self) -> Self {
        map_float!(self, |x| x.clamp(0.0, 6.0), |q| {
            let mut q = q;
            let p = q.qparams;
            let six = crate::quant::quantize_value(6.0, 1.0 / p.scale, p.zero_point, p.quant_min, p.quant_max);
            let (lo, hi) = (p.zero_point.clamp(0, 255) as u8, six.clamp(0, 255) as u8);
            q.values.iter_mut().for_each(|v| *v = (*v).max(lo).min(hi.max(lo)));
            Self::Quantized(q)
        })
    }

    pub(crate) fn relu(self) -> Self {
        // On integers, ReLU is a floor at the zero point (real 0).
        map_float!(self, |x| relu(x), |q| {
            let mut q = q;
            let z = q.qparams.zero_point.clamp(0, 255) as u8;
            q.values.iter_mut().for_each(|v| *v = (*v).max(z));
            Self::Quantized(q)
        })
    }
}

/// `dims` as an array of `D` (the caller knows the length).
fn rank<const D: usize>(dims: &[usize]) -> [usize; D] {
    dims.try_into().expect("the tensor's rank")
}

impl Flatten {
    /// Every axis after the batch axis into one: `[N, C, ...]` to `[N, C * ...]` (features pass
    /// as they are when quantized: the int8 model keeps their layout).
    pub fn forward(&self, x: Value, layer: &str) -> Result<Value> {
        match_float!(
            x,
            |x| {
                let rank = x.dims().len();
                if rank < 3 {
                    return Err(QatError::shape(layer, "a tensor of rank 3 to 5 to flatten", format!("{:?}", x.dims())));
                }
                Ok(Value::Features(x.flatten(1, rank - 1)))
            },
            |q| {
                let mut q = q;
                if q.shape.len() > 2 {
                    q.shape = vec![q.shape[0], q.shape[1..].iter().product()];
                }
                Ok(Value::Quantized(q))
            }
        )
    }
}
