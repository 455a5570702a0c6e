use std::marker::PhantomData;

use super::conv_parts::{check_input_qparams, check_parts, current_packing, input_dims, pack_weights, quantize_biases};
use super::parts::{Int8Weight, LayerQParams};
use super::qtensor::QTensor;
use crate::error::Result;
use crate::kernels::int8::conv::{Geometry3, conv_forward};
use crate::kernels::int8::gemm::{GemmPath, PackedWeights};
use crate::kernels::int8::requantize::Requantizer;
use crate::kernels::pad_for_kernel;
use crate::nn::{Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvGeometry, ConvWindow};

/// A conv geometry the integer kernel runs: its view over three spatial axes `[D, H, W]` (2-d
/// convs with depth 1, 1-d ones with depth and height 1).
pub trait Int8ConvGeometry<const D: usize>: ConvGeometry<D> + ConvWindow + Clone {
    /// The input's layout, for errors (`[N, C, H, W]`).
    const LAYOUT: &'static str;

    /// Input dims `[N, C, spatial...]` as `[N, C, D, H, W]`, the missing leading axes of size 1.
    fn dims_3d(dims: [usize; D]) -> [usize; 5] {
        let mut out = [1; 5];
        out[..2].copy_from_slice(&dims[..2]);
        out[7 - D..].copy_from_slice(&dims[2..]);
        out
    }

    /// Kernel, stride, dilation, padding before and padding after over `[D, H, W]`: the
    /// missing leading axes a kernel, stride and dilation of 1 and no padding.
    fn spatial_3d(&self) -> [[usize; 3]; 5] {
        let lift = |v: &[usize], missing: usize| {
            let mut out = [missing; 3];
            out[3 - v.len()..].copy_from_slice(v);
            out
        };
        [lift(self.kernel(), 1), lift(self.stride(), 1), lift(self.dilation(), 1), lift(self.padding(), 0), lift(&self.padding_after(), 0)]
    }
}

impl Int8ConvGeometry<3> for Conv1dOptions {
    const LAYOUT: &'static str = "[N, C, L]";
}

impl Int8ConvGeometry<4> for Conv2dOptions {
    const LAYOUT: &'static str = "[N, C, H, W]";
}

impl Int8ConvGeometry<5> for Conv3dOptions {
    const LAYOUT: &'static str = "[N, C, D, H, W]";
}

/// `torch.ao.nn.quantized.Conv2d` / `Conv3d` (and, with `relu`, `nn.intrinsic.quantized.ConvReLU2d`
/// / `ConvReLU3d`): i8 weights with per-output-channel scales, an int32 bias at `s_in * s_w`,
/// u8 in and out; every padding mode, as the QAT modules. One module for every geometry, so the
/// families cannot drift apart.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedConv<const D: usize, O> {
    pub options: O,
    /// `[O, C / groups, K...]`, row-major, with one scale and zero point per output channel.
    pub weight: Int8Weight,
    /// int32 at `input.scale * weight.scale[o]`.
    pub bias: Vec<i32>,
    pub qparams: LayerQParams,
    /// The weights packed for the GEMM (derived from the fields above).
    packed: PackedWeights,
    rank: PhantomData<[(); D]>,
}

per_geometry!(QuantizedConv: Conv1d, Conv2d, Conv3d, _);

impl<const D: usize, O: Int8ConvGeometry<D>> QuantizedConv<D, O> {
    /// `quantized Conv2d`, for errors.
    pub(crate) fn layer_name() -> String {
        format!("quantized {}{}", O::PREFIX, O::DIMS)
    }

    /// Builds the module from float-folded parts: integer weights (already quantized by the
    /// weight fake quant's qparams), a float bias, and the activation qparams around it.
    pub fn new(options: O, weight: Int8Weight, float_bias: &[f32], qparams: LayerQParams) -> Result<Self> {
        let bias = quantize_biases(&Self::layer_name(), float_bias, &weight.scale, qparams.input)?;
        Self::from_parts(options, weight, bias, qparams)
    }

    /// Builds the module from its stored parts (an int32 bias already at `s_in * s_w`),
    /// checking that they fit together.
    pub fn from_parts(options: O, weight: Int8Weight, bias: Vec<i32>, qparams: LayerQParams) -> Result<Self> {
        options.validate()?;
        let counts = [options.weight_shape().iter().product(), options.out_channels()];
        let qparams = check_parts(&Self::layer_name(), counts, &weight, &bias, qparams)?;
        let packed = pack_weights(&weight, options.groups(), &qparams.input);
        Ok(Self { options, weight, bias, qparams, packed, rank: PhantomData })
    }

    /// `[N, C, spatial...]` in, `[N, O, spatial out...]` out.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        let layer = Self::layer_name();
        let dims = input_dims(x, &layer, O::LAYOUT)?;
        self.options.check_input(dims, &layer)?;
        let LayerQParams { input, output, .. } = self.qparams;
        check_input_qparams(x, &input, &layer)?;
        let [kernel, stride, dilation, before, after] = self.options.spatial_3d();
        let zx = input.zero_point as u8;
        let (values, dims, padding) = pad_for_kernel(&x.values, O::dims_3d(dims), before, after, self.options.padding_mode(), zx);
        let groups = self.options.groups();
        let packed = current_packing(&self.packed, &self.weight, groups, &input);
        let requantizer = Requantizer::new(&self.bias, &self.weight.scale, &input, &output, self.qparams.relu);
        let geometry = Geometry3 { out_channels: self.options.out_channels(), groups, kernel, stride, dilation, padding };
        let (values, [n, o, od, oh, ow]) = conv_forward(&values, dims, zx, &packed, &geometry, GemmPath::best(), &requantizer);
        // The lifted axes of a 2-d (depth) or 1-d (depth and height) module drop again.
        let shape = [vec![n, o], [od, oh, ow][5 - D..].to_vec()].concat();
        Ok(QTensor { values, shape, qparams: output })
    }
}
