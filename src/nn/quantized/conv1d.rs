use super::Conv2d;
use super::conv_parts::input_dims;
use super::parts::{Int8Weight, LayerQParams};
use super::qtensor::QTensor;
use crate::error::{QatError, Result};
use crate::nn::Conv1dOptions;

/// `torch.ao.nn.quantized.Conv1d` (and, with `relu`, `nn.intrinsic.quantized.ConvReLU1d`) over
/// `[N, C, L]`. It runs as the 2-d module over `[N, C, 1, L]` with a `1 x K` kernel, as the QAT
/// 1-d family does: the same sums, so the same numerics, and one kernel to keep exact. The
/// weight `[O, C / groups, K]` is the 2-d `[O, C / groups, 1, K]` in the same order.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv1d {
    /// The 2-d module with a `1 x K` geometry (`kernel_size[0] = stride[0] = dilation[0] = 1`,
    /// `padding[0] = 0`).
    pub conv: Conv2d,
}

const LAYER: &str = "quantized Conv1d";

impl Conv1d {
    /// Builds the module from float-folded parts: integer weights (already quantized by the
    /// weight fake quant's qparams), a float bias, and the activation qparams around it.
    pub fn new(options: Conv1dOptions, weight: Int8Weight, float_bias: &[f32], qparams: LayerQParams) -> Result<Self> {
        Ok(Self { conv: Conv2d::new(options.as_2d(), weight, float_bias, qparams)? })
    }

    /// Builds the module from its stored parts (an int32 bias already at `s_in * s_w`).
    pub fn from_parts(options: Conv1dOptions, weight: Int8Weight, bias: Vec<i32>, qparams: LayerQParams) -> Result<Self> {
        Ok(Self { conv: Conv2d::from_parts(options.as_2d(), weight, bias, qparams)? })
    }

    /// Wraps a 2-d module whose geometry is a 1-d one over `[N, C, 1, L]` (what the QAT 1-d
    /// modules convert to).
    pub fn from_2d(conv: Conv2d) -> Result<Self> {
        let o = &conv.options;
        if o.kernel_size[0] != 1 || o.stride[0] != 1 || o.dilation[0] != 1 || o.padding[0] != 0 {
            return Err(QatError::structure(
                LAYER,
                format!(
                    "the 2-d geometry must be 1 x K over [N, C, 1, L] (kernel {:?}, stride {:?}, dilation {:?}, padding {:?})",
                    o.kernel_size, o.stride, o.dilation, o.padding
                ),
            ));
        }
        Ok(Self { conv })
    }

    /// The 1-d geometry.
    pub fn options(&self) -> Conv1dOptions {
        let o = &self.conv.options;
        Conv1dOptions::new(o.in_channels, o.out_channels, o.kernel_size[1])
            .with_stride(o.stride[1])
            .with_padding(o.padding[1])
            .with_dilation(o.dilation[1])
            .with_groups(o.groups)
            .with_padding_mode(o.padding_mode)
    }

    /// `[N, C, L]` in, `[N, O, L_out]` out.
    pub fn forward(&self, x: &QTensor) -> Result<QTensor> {
        let [n, c, l] = self.dims_2d(x)?;
        let mut y = self.conv.forward_as(x, [n, c, 1, l], LAYER)?;
        y.shape.remove(2);
        Ok(y)
    }

    /// The input's `[N, C, L]`, with the channel count checked in 1-d terms.
    pub(crate) fn dims_2d(&self, x: &QTensor) -> Result<[usize; 3]> {
        let dims: [usize; 3] = input_dims(x, LAYER, "[N, C, L]")?;
        let c = self.conv.options.in_channels;
        if dims[1] != c {
            return Err(QatError::shape(LAYER, format!("input with {c} channels [N, {c}, L]"), format!("{dims:?}")));
        }
        Ok(dims)
    }
}
