use super::kernels::conv2d_accumulate;
use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::nn::{Conv2dOptions, PaddingMode};
use crate::quant::{quantize_bias, requant_multiplier, requantize};

/// `torch.ao.nn.quantized.Conv2d` (and, with `relu`, `nn.intrinsic.quantized.ConvReLU2d`):
/// i8 weights with per-output-channel scales, an int32 bias at `s_in * s_w`, u8 in and out.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    pub options: Conv2dOptions,
    /// `[O, C / groups, KH, KW]`, row-major.
    pub weight: Vec<i8>,
    /// One per output channel (a per-tensor scale is repeated).
    pub weight_scale: Vec<f32>,
    pub weight_zero_point: Vec<i32>,
    /// int32 at `input.scale * weight_scale[o]`.
    pub bias: Vec<i32>,
    pub input: ActivationQParams,
    pub output: ActivationQParams,
    pub relu: bool,
}

impl Conv2d {
    /// Builds the module from float-folded parts: integer weights (already quantized by the
    /// weight fake quant's qparams), a float bias, and the activation qparams around it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        options: Conv2dOptions,
        weight: Vec<i8>,
        weight_scale: Vec<f32>,
        weight_zero_point: Vec<i32>,
        float_bias: &[f32],
        input: ActivationQParams,
        output: ActivationQParams,
        relu: bool,
    ) -> Result<Self> {
        let input = input.validated("quantized Conv2d input")?;
        if float_bias.len() != weight_scale.len() {
            return Err(QatError::shape("quantized Conv2d", format!("{} biases", weight_scale.len()), format!("{}", float_bias.len())));
        }
        let bias = float_bias.iter().zip(&weight_scale).map(|(&b, &s)| quantize_bias(b, input.scale, s)).collect();
        Self::from_parts(options, weight, weight_scale, weight_zero_point, bias, input, output, relu)
    }

    /// Builds the module from its stored parts (an int32 bias already at `s_in * s_w`),
    /// checking that they fit together.
    #[allow(clippy::too_many_arguments)]
    pub fn from_parts(
        options: Conv2dOptions,
        weight: Vec<i8>,
        weight_scale: Vec<f32>,
        weight_zero_point: Vec<i32>,
        bias: Vec<i32>,
        input: ActivationQParams,
        output: ActivationQParams,
        relu: bool,
    ) -> Result<Self> {
        options.validate()?;
        let o = options.out_channels;
        let expected: usize = options.weight_shape().iter().product();
        if weight.len() != expected || weight_scale.len() != o || weight_zero_point.len() != o || bias.len() != o {
            return Err(QatError::shape(
                "quantized Conv2d",
                format!("{expected} weights and {o} scales, zero points and biases"),
                format!("{}, {}, {}, {}", weight.len(), weight_scale.len(), weight_zero_point.len(), bias.len()),
            ));
        }
        if weight_scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            return Err(QatError::config("quantized Conv2d: weight scales must be finite and positive"));
        }
        let input = input.validated("quantized Conv2d input")?;
        let output = output.validated("quantized Conv2d output")?;
        Ok(Self { options, weight, weight_scale, weight_zero_point, bias, input, output, relu })
    }

    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        let dims: [usize; 4] =
            x.shape.clone().try_into().map_err(|_| QatError::shape("quantized Conv2d", "[N, C, H, W]", format!("{:?}", x.shape)))?;
        self.options.check_input(dims, "quantized Conv2d")?;
        if x.qparams != self.input {
            return Err(QatError::config(format!(
                "quantized Conv2d: input qparams {:?} differ from the ones it was converted for {:?}",
                x.qparams, self.input
            )));
        }
        let (centered, dims, padding) = self.padded_input(x, dims);
        let weight = self.centered_weight();
        let (acc, out_shape) = conv2d_accumulate(&centered, dims, &weight, &self.options, padding);
        let p = out_shape[2] * out_shape[3];
        let lo = if self.relu { self.output.zero_point.max(self.output.quant_min) } else { self.output.quant_min };
        let multipliers: Vec<f32> = self.weight_scale.iter().map(|&s| requant_multiplier(self.input.scale, s, self.output.scale)).collect();
        let values = acc
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                let o = (i / p) % self.options.out_channels;
                requantize(a.saturating_add(self.bias[o]), multipliers[o], self.output.zero_point, lo, self.output.quant_max) as u8
            })
            .collect();
        Ok(QTensor { values, shape: out_shape.to_vec(), qparams: self.output })
    }

    fn centered_weight(&self) -> Vec<i32> {
        let k = self.weight.len() / self.options.out_channels;
        self.weight.iter().enumerate().map(|(i, &w)| w as i32 - self.weight_zero_point[i / k]).collect()
    }

    /// Centered input; non-zero padding modes are applied to the integers here, so the kernel
    /// sees padding 0 (the same order as the float path: pad, then convolve).
    fn padded_input(&self, x: &QTensor, dims: [usize; 4]) -> (Vec<i32>, [usize; 4], [usize; 2]) {
        let centered = x.centered();
        if self.options.padding_mode == PaddingMode::Zeros {
            return (centered, dims, self.options.padding);
        }
        let [n, c, h, w] = dims;
        let [ph, pw] = self.options.padding;
        let (hp, wp) = (h + 2 * ph, w + 2 * pw);
        let source = |i: isize, size: usize| -> usize {
            let size = size as isize;
            let j = match self.options.padding_mode {
                PaddingMode::Reflect => {
                    if i < 0 {
                        -i
                    } else if i >= size {
                        2 * (size - 1) - i
                    } else {
                        i
                    }
                }
                PaddingMode::Replicate => i.clamp(0, size - 1),
                PaddingMode::Circular => i.rem_euclid(size),
                PaddingMode::Zeros => unreachable!(),
            };
            j as usize
        };
        let mut out = vec![0i32; n * c * hp * wp];
        for plane in 0..n * c {
            for y in 0..hp {
                let sy = source(y as isize - ph as isize, h);
                for xx in 0..wp {
                    let sx = source(xx as isize - pw as isize, w);
                    out[(plane * hp + y) * wp + xx] = centered[(plane * h + sy) * w + sx];
                }
            }
        }
        (out, [n, c, hp, wp], [0, 0])
    }
}
