use super::conv_parts::{check_input_qparams, check_parts, input_dims, quantize_biases};
use super::parts::{Int8Weight, LayerQParams};
use super::qtensor::QTensor;
use crate::error::Result;
use crate::kernels::int8::conv_transpose::{TransposeGeometry, conv_transpose2d_accumulate};
use crate::kernels::int8::requantize::{centered_weight, requantize_planes};
use crate::nn::{ConvGeometry, ConvTranspose2dOptions};

/// An int8 2-d transposed convolution, `torch.ao.nn.quantized.ConvTranspose2d` with scales per
/// output channel (and, with `relu`, a fused ReLU, beyond PyTorch). The weight keeps PyTorch's
/// `[C_in, O / groups, KH, KW]` layout, so its output channel is weight axis 1, the axis the
/// QAT module's per-channel fake quant runs along.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose2d {
    pub options: ConvTranspose2dOptions,
    /// `[C_in, O / groups, KH, KW]`, row-major. Its scales and zero points are one per output
    /// channel `o` (length `O`, not `O / groups`): weight element `[c, j, ..]` belongs to output
    /// channel `(c / (C_in / groups)) * (O / groups) + j`. A per-tensor scale is repeated; a
    /// per-channel one along weight axis 1 repeats per group.
    pub weight: Int8Weight,
    /// int32 at `input.scale * weight.scale[o]`.
    pub bias: Vec<i32>,
    pub qparams: LayerQParams,
}

const LAYER: &str = "quantized ConvTranspose2d";

impl ConvTranspose2d {
    /// Builds the module from float-folded parts: integer weights (already quantized by the
    /// weight fake quant's qparams), a float bias, and the activation qparams around it.
    pub fn new(options: ConvTranspose2dOptions, weight: Int8Weight, float_bias: &[f32], qparams: LayerQParams) -> Result<Self> {
        let bias = quantize_biases(LAYER, float_bias, &weight.scale, qparams.input)?;
        Self::from_parts(options, weight, bias, qparams)
    }

    /// Builds the module from its stored parts (an int32 bias already at `s_in * s_w`),
    /// checking that they fit together.
    pub fn from_parts(options: ConvTranspose2dOptions, weight: Int8Weight, bias: Vec<i32>, qparams: LayerQParams) -> Result<Self> {
        options.validate()?;
        let counts = [options.weight_shape().iter().product(), options.out_channels];
        let qparams = check_parts(LAYER, counts, &weight, &bias, qparams)?;
        Ok(Self { options, weight, bias, qparams })
    }

    /// The output channel of weight element `i`.
    pub(crate) fn weight_channel(&self, i: usize) -> usize {
        let [c_in, og, kh, kw] = self.options.weight_shape();
        let (c, j) = (i / (og * kh * kw), (i / (kh * kw)) % og);
        (c / (c_in / self.options.groups)) * og + j
    }

    /// `[N, C_in, H, W]` in, `[N, O, OH, OW]` out.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        let dims = self.check(x)?;
        let weight = centered_weight(&self.weight.values, &self.weight.zero_point, |i| self.weight_channel(i));
        let o = &self.options;
        let axes = [o.stride, o.padding, o.dilation, o.output_padding];
        let geometry = TransposeGeometry { weight_shape: o.weight_shape(), groups: o.groups, axes };
        let (acc, shape) = conv_transpose2d_accumulate(&x.centered(), dims, &weight, &geometry);
        let LayerQParams { input, output, relu } = self.qparams;
        let values = requantize_planes(&acc, shape[2] * shape[3], &self.bias, &self.weight.scale, &input, &output, relu);
        Ok(QTensor { values, shape: shape.to_vec(), qparams: output })
    }

    /// The input's shape, checked against the geometry, and its qparams against the module's.
    pub(crate) fn check(&self, x: &QTensor) -> Result<[usize; 4]> {
        let dims = input_dims(x, LAYER, "[N, C, H, W]")?;
        self.options.check_input(dims, LAYER)?;
        check_input_qparams(x, &self.qparams.input, LAYER)?;
        Ok(dims)
    }
}
