use super::conv_parts::{Requantizer, check_input_qparams, check_parts, current_packing, input_dims, pack_weights, quantize_biases};
use super::gemm::{GemmPath, PackedWeights};
use super::kernels::conv_forward;
use super::padding::pad_for_kernel;
use super::qtensor::{ActivationQParams, QTensor};
use crate::error::Result;
use crate::nn::Conv2dOptions;

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
    /// The weights packed for the GEMM (derived from the fields above).
    packed: PackedWeights,
}

const LAYER: &str = "quantized Conv2d";

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
        let bias = quantize_biases(LAYER, float_bias, &weight_scale, input)?;
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
        let expected = options.weight_shape().iter().product();
        let (input, output) =
            check_parts(LAYER, expected, options.out_channels, &weight, &weight_scale, &weight_zero_point, &bias, input, output)?;
        let packed = pack_weights(&weight, &weight_zero_point, options.groups, &input);
        Ok(Self { options, weight, weight_scale, weight_zero_point, bias, input, output, relu, packed })
    }

    /// `[N, C, H, W]` in, `[N, O, OH, OW]` out.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        self.forward_as(x, input_dims(x, LAYER, "[N, C, H, W]")?, LAYER)
    }

    /// The forward on `x` read as `dims`, errors naming `layer` (the 1-d module runs here).
    pub(crate) fn forward_as(&self, x: &QTensor, dims: [usize; 4], layer: &str) -> Result<QTensor> {
        self.options.check_input(dims, layer)?;
        check_input_qparams(x, &self.input, layer)?;
        let [n, c, h, w] = dims;
        let [ph, pw] = self.options.padding;
        let (values, dims, padding) = pad_for_kernel(&x.values, [n, c, 1, h, w], [0, ph, pw], self.options.padding_mode);
        let packed = current_packing(&self.packed, &self.weight, &self.weight_zero_point, self.options.groups, &self.input);
        let zx = self.input.zero_point as u8;
        let requantizer = Requantizer::new(&self.bias, &self.weight_scale, &self.input, &self.output, self.relu);
        let geometry = (&self.options).into();
        let (values, [n, o, _, oh, ow]) = conv_forward(&values, dims, zx, &packed, &geometry, padding, GemmPath::best(), &requantizer);
        Ok(QTensor { values, shape: vec![n, o, oh, ow], qparams: self.output })
    }
}
