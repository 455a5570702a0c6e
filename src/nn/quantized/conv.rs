use std::marker::PhantomData;

use super::conv_parts::{GemmRows, check_input_qparams, check_parts, input_dims, quantize_biases};
use super::parts::{Int8Weight, LayerQParams};
use super::qtensor::QTensor;
use crate::error::Result;
use crate::kernels::int8::conv::{Geometry3, conv_forward};
use crate::kernels::int8::conv_transpose::conv_transpose_forward;
use crate::kernels::int8::gemm::{GemmPath, PackedWeights};
use crate::kernels::int8::requantize::Requantizer;
use crate::kernels::pad_for_kernel;
use crate::nn::{Conv1dOptions, Conv2dOptions, Conv3dOptions, ConvGeometry, ConvTranspose2dOptions, ConvWindow, PaddingMode};

/// Which way an int8 conv runs, and what only that way has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Int8ConvKind {
    /// A convolution: weights `[O, C / groups, K...]`, the input padded by the window's padding
    /// before each axis and `padding_after` after it (one more for an asymmetric `"same"`), in
    /// `padding_mode`.
    Forward { padding_after: [usize; 3], padding_mode: PaddingMode },
    /// A transposed convolution: weights `[C, O / groups, K...]`, the window's (zeros) padding
    /// taken off both ends of each output axis and `output_padding` added after it.
    Transposed { output_padding: [usize; 3] },
}

/// An int8 conv's window over three spatial axes `[D, H, W]`, as its integer kernel reads it:
/// a 2-d conv's with depth 1, a 1-d one's with depth and height 1 (a kernel, stride and
/// dilation of 1 and no padding on the missing axes).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Int8Window {
    pub kernel: [usize; 3],
    pub stride: [usize; 3],
    pub dilation: [usize; 3],
    /// The padding before each axis.
    pub padding: [usize; 3],
    pub groups: usize,
    pub kind: Int8ConvKind,
}

/// `v` (one entry per spatial axis) over `[D, H, W]`, the missing leading axes `missing`.
fn lift(v: &[usize], missing: usize) -> [usize; 3] {
    let mut out = [missing; 3];
    out[3 - v.len()..].copy_from_slice(v);
    out
}

impl Int8Window {
    /// A forward conv geometry's window.
    pub fn forward(o: &impl ConvWindow) -> Self {
        Self {
            kernel: lift(o.kernel(), 1),
            stride: lift(o.stride(), 1),
            dilation: lift(o.dilation(), 1),
            padding: lift(o.padding(), 0),
            groups: o.groups(),
            kind: Int8ConvKind::Forward { padding_after: lift(&o.padding_after(), 0), padding_mode: o.padding_mode() },
        }
    }

    /// The output's size along axis `axis` of `[D, H, W]` for an input of `size` there.
    pub fn output_size(&self, axis: usize, size: usize) -> usize {
        let (kernel, stride, dilation, padding) = (self.kernel[axis], self.stride[axis], self.dilation[axis], self.padding[axis]);
        match self.kind {
            Int8ConvKind::Forward { padding_after, .. } => {
                (size + padding + padding_after[axis] - dilation * (kernel - 1) - 1) / stride + 1
            }
            Int8ConvKind::Transposed { output_padding } => {
                (size - 1) * stride + dilation * (kernel - 1) + output_padding[axis] + 1 - 2 * padding
            }
        }
    }
}

/// A conv geometry the integer kernels run: forward over 1-3 spatial axes, or transposed.
pub trait Int8ConvGeometry<const D: usize>: ConvGeometry<D> + Clone {
    /// The input's layout, for errors (`[N, C, H, W]`).
    const LAYOUT: &'static str;

    /// The window over `[D, H, W]` and the way the kernel runs.
    fn window_3d(&self) -> Int8Window;

    /// Input dims `[N, C, spatial...]` as `[N, C, D, H, W]`, the missing leading axes of size 1.
    fn dims_3d(dims: [usize; D]) -> [usize; 5] {
        let mut out = [1; 5];
        out[..2].copy_from_slice(&dims[..2]);
        out[7 - D..].copy_from_slice(&dims[2..]);
        out
    }
}

macro_rules! forward_int8_geometry {
    ($($options:ty, $rank:literal, $layout:literal;)*) => {$(
        impl Int8ConvGeometry<$rank> for $options {
            const LAYOUT: &'static str = $layout;
            fn window_3d(&self) -> Int8Window {
                Int8Window::forward(self)
            }
        }
    )*};
}

forward_int8_geometry! {
    Conv1dOptions, 3, "[N, C, L]";
    Conv2dOptions, 4, "[N, C, H, W]";
    Conv3dOptions, 5, "[N, C, D, H, W]";
}

impl Int8ConvGeometry<4> for ConvTranspose2dOptions {
    const LAYOUT: &'static str = "[N, C, H, W]";
    fn window_3d(&self) -> Int8Window {
        Int8Window {
            kernel: lift(&self.kernel_size, 1),
            stride: lift(&self.stride, 1),
            dilation: lift(&self.dilation, 1),
            padding: lift(&self.padding, 0),
            groups: self.groups,
            kind: Int8ConvKind::Transposed { output_padding: lift(&self.output_padding, 0) },
        }
    }
}

/// `torch.ao.nn.quantized.Conv1d` / `Conv2d` / `Conv3d` / `ConvTranspose2d` (and, with `relu`,
/// `nn.intrinsic.quantized.ConvReLU2d` / `ConvReLU3d`, and a fused ReLU on the transposed conv,
/// beyond PyTorch): i8 weights with per-output-channel scales, an int32 bias at `s_in * s_w`,
/// u8 in and out; every padding mode, as the QAT modules. One module for every geometry, so the
/// families cannot drift apart, and one GEMM under all of them (a transposed conv's product is a
/// 1x1 conv, scattered afterwards).
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedConv<const D: usize, O> {
    pub options: O,
    /// PyTorch's weight layout, row-major: `[O, C / groups, K...]`, or a transposed conv's
    /// `[C, O / groups, K...]`. One scale and zero point per output channel `o` (length `O`): a
    /// transposed conv's weight element `[c, j, ..]` belongs to output channel
    /// `(c / (C / groups)) * (O / groups) + j`, so its per-channel qparams along weight axis 1
    /// repeat once per group.
    pub weight: Int8Weight,
    /// int32 at `input.scale * weight.scale[o]`.
    pub bias: Vec<i32>,
    pub qparams: LayerQParams,
    /// The weights packed for the GEMM (derived from the fields above).
    packed: PackedWeights,
    rank: PhantomData<[(); D]>,
}

per_geometry!(QuantizedConv: Conv1d, Conv2d, Conv3d, ConvTranspose2d);

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
        let packed = gemm_rows(&options, &weight).pack(&qparams.input);
        Ok(Self { options, weight, bias, qparams, packed, rank: PhantomData })
    }

    /// The output channel of weight element `i`.
    pub(crate) fn weight_channel(&self, i: usize) -> usize {
        let shape = self.options.weight_shape();
        let taps: usize = shape[2..].iter().product();
        let window = self.options.window_3d();
        match window.kind {
            Int8ConvKind::Forward { .. } => i / (shape[1] * taps),
            Int8ConvKind::Transposed { .. } => {
                let (c, j) = (i / (shape[1] * taps), (i / taps) % shape[1]);
                (c / (shape[0] / window.groups)) * shape[1] + j
            }
        }
    }

    /// `[N, C, spatial...]` in, `[N, O, spatial out...]` out.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        let layer = Self::layer_name();
        let dims = input_dims(x, &layer, O::LAYOUT)?;
        self.options.check_input(dims, &layer)?;
        let LayerQParams { input, output, relu } = self.qparams;
        check_input_qparams(x, &input, &layer)?;
        let Int8Window { kernel, stride, dilation, padding, groups, kind } = self.options.window_3d();
        let packed = gemm_rows(&self.options, &self.weight).current(&self.packed, &input);
        let requantizer = Requantizer::new(&self.bias, &self.weight.scale, &input, &output, relu);
        let geometry = |padding| Geometry3 { out_channels: self.options.out_channels(), groups, kernel, stride, dilation, padding };
        let (values, [n, o, od, oh, ow]) = match kind {
            Int8ConvKind::Forward { padding_after, padding_mode } => {
                let zx = input.zero_point as u8;
                let (values, dims, padding) = pad_for_kernel(&x.values, O::dims_3d(dims), padding, padding_after, padding_mode, zx);
                conv_forward(&values, dims, zx, &packed, &geometry(padding), GemmPath::best(), &requantizer)
            }
            Int8ConvKind::Transposed { output_padding } => conv_transpose_forward(
                &x.values,
                O::dims_3d(dims),
                &packed,
                &geometry(padding),
                output_padding,
                GemmPath::best(),
                &requantizer,
            ),
        };
        // The lifted axes of a 2-d (depth) or 1-d (depth and height) module drop again.
        let shape = [vec![n, o], [od, oh, ow][5 - D..].to_vec()].concat();
        Ok(QTensor { values, shape, qparams: output })
    }
}

/// The weights as the GEMM's rows: a conv's as they are, a transposed conv's reordered to one
/// row per (output channel, tap) over the group's input channels.
fn gemm_rows<'a, const D: usize, O: Int8ConvGeometry<D>>(options: &O, weight: &'a Int8Weight) -> GemmRows<'a> {
    let window = options.window_3d();
    let shape = options.weight_shape();
    let transposed = matches!(window.kind, Int8ConvKind::Transposed { .. }).then(|| [shape[0], shape[1], shape[2..].iter().product()]);
    GemmRows { weight, groups: window.groups, transposed }
}
