//! What every int8 conv (and Linear) shares whatever its geometry: checking its integer
//! parameters and inputs, the int32 bias at `s_in * s_w`, and its packed weights. One copy, so
//! the layer families cannot drift apart; the arithmetic itself is in `crate::kernels::int8`.

use std::borrow::Cow;

use super::parts::{Int8Weight, LayerQParams};
use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::kernels::int8::conv_transpose::transposed_gemm_rows;
use crate::kernels::int8::gemm::PackedWeights;
use crate::quant::quantize_bias;

/// Checks that `weight_count` weights and `channels` scales, zero points and biases were given,
/// that the scales are usable, and that both activations are u8 ranges; the qparams come back
/// validated.
pub(crate) fn check_parts(
    layer: &str,
    [weight_count, channels]: [usize; 2],
    weight: &Int8Weight,
    bias: &[i32],
    qparams: LayerQParams,
) -> Result<LayerQParams> {
    let Int8Weight { values, scale, zero_point } = weight;
    if values.len() != weight_count || scale.len() != channels || zero_point.len() != channels || bias.len() != channels {
        return Err(QatError::shape(
            layer,
            format!("{weight_count} weights and {channels} scales, zero points and biases"),
            format!("{}, {}, {}, {}", values.len(), scale.len(), zero_point.len(), bias.len()),
        ));
    }
    if scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(QatError::invalid("scale", format!("{layer}: weight scales must be finite and positive")));
    }
    Ok(LayerQParams {
        input: qparams.input.validated(&format!("{layer} input"))?,
        output: qparams.output.validated(&format!("{layer} output"))?,
        relu: qparams.relu,
    })
}

/// A float bias per output channel as int32 at `input.scale * weight_scale[o]`.
pub(crate) fn quantize_biases(layer: &str, float_bias: &[f32], weight_scale: &[f32], input: ActivationQParams) -> Result<Vec<i32>> {
    let input = input.validated(&format!("{layer} input"))?;
    if float_bias.len() != weight_scale.len() {
        return Err(QatError::shape(layer, format!("{} biases", weight_scale.len()), format!("{}", float_bias.len())));
    }
    Ok(float_bias.iter().zip(weight_scale).map(|(&b, &s)| quantize_bias(b, input.scale, s)).collect())
}

/// A module's weights as the GEMM multiplies them: rows `[groups * rows, K]` (row-major) with
/// one zero point per row. A conv's or Linear's weights are these rows as they are (one per
/// output channel); a transposed conv's are reordered, one row per (output channel, tap).
pub(crate) struct GemmRows<'a> {
    pub weight: &'a Int8Weight,
    pub groups: usize,
    /// A transposed conv's weight shape `[C, O / groups, taps]`.
    pub transposed: Option<[usize; 3]>,
}

impl<'a> GemmRows<'a> {
    /// The weights `[O, K]` (`K` per output channel, `O` split into `groups`) as they are.
    pub(crate) fn of(weight: &'a Int8Weight, groups: usize) -> Self {
        Self { weight, groups, transposed: None }
    }

    /// The length `K` of a row.
    fn k(&self) -> usize {
        match self.transposed {
            None => self.weight.values.len() / self.weight.zero_point.len(),
            Some([c, ..]) => c / self.groups,
        }
    }

    /// The rows packed for the GEMM, for inputs with `input`'s zero point: done once, when a
    /// module is built.
    pub(crate) fn pack(&self, input: &ActivationQParams) -> PackedWeights {
        let Int8Weight { values, zero_point, .. } = self.weight;
        let Some(shape) = self.transposed else {
            return PackedWeights::new(values, zero_point, self.groups, self.k(), input.zero_point);
        };
        let (rows, row_zero_points) = transposed_gemm_rows(values, zero_point, shape, self.groups);
        PackedWeights::new(&rows, &row_zero_points, self.groups, self.k(), input.zero_point).packed_from(values, zero_point)
    }

    /// `packed` if it still packs these weights as these rows (a module's fields are public, so
    /// editable: a transposed conv's options with three times the input channels and a third
    /// of the taps keep the weights, but not the rows), else a fresh packing.
    pub(crate) fn current<'p>(&self, packed: &'p PackedWeights, input: &ActivationQParams) -> Cow<'p, PackedWeights> {
        if packed.packs(&self.weight.values, &self.weight.zero_point, [self.groups, self.k()], input.zero_point) {
            Cow::Borrowed(packed)
        } else {
            Cow::Owned(self.pack(input))
        }
    }
}

/// The input's shape as rank `R` (`pattern` names the axes in the error), checked to hold as
/// many values as it claims and to have no empty spatial axis (which no geometry can convolve
/// and whose padding has no source).
pub(crate) fn input_dims<const R: usize>(x: &QTensor, layer: &str, pattern: &str) -> Result<[usize; R]> {
    let dims: [usize; R] = x.shape.clone().try_into().map_err(|_| QatError::shape(layer, pattern, format!("{:?}", x.shape)))?;
    if dims[2..].contains(&0) || dims.iter().product::<usize>() != x.values.len() {
        return Err(QatError::shape(
            layer,
            format!("{pattern} with non-empty spatial axes and one value per element"),
            format!("{:?} with {} values", x.shape, x.values.len()),
        ));
    }
    Ok(dims)
}

/// An input quantized with other qparams than the module was converted for is an error: its
/// integers mean other real values.
pub(crate) fn check_input_qparams(x: &QTensor, expected: &ActivationQParams, layer: &str) -> Result<()> {
    if x.qparams != *expected {
        return Err(QatError::structure(
            layer,
            format!("input qparams {:?} differ from the ones it was converted for {:?}", x.qparams, expected),
        ));
    }
    Ok(())
}
