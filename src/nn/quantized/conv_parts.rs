//! What every int8 conv (and Linear) shares whatever its geometry: checking its integer
//! parameters, the int32 bias at `s_in * s_w`, weights centered by their zero points, and the
//! requantization of the accumulators per output channel. One copy, so the layer families
//! cannot drift apart in the arithmetic that makes them bit exact.

use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::quant::{quantize_bias, requant_multiplier, requantize};

/// Checks that `weight_count` weights and `channels` scales, zero points and biases were given,
/// that the scales are usable, and that both activations are u8 ranges.
#[allow(clippy::too_many_arguments)]
pub(crate) fn check_parts(
    layer: &str,
    weight_count: usize,
    channels: usize,
    weight: &[i8],
    weight_scale: &[f32],
    weight_zero_point: &[i32],
    bias: &[i32],
    input: ActivationQParams,
    output: ActivationQParams,
) -> Result<(ActivationQParams, ActivationQParams)> {
    if weight.len() != weight_count || weight_scale.len() != channels || weight_zero_point.len() != channels || bias.len() != channels {
        return Err(QatError::shape(
            layer,
            format!("{weight_count} weights and {channels} scales, zero points and biases"),
            format!("{}, {}, {}, {}", weight.len(), weight_scale.len(), weight_zero_point.len(), bias.len()),
        ));
    }
    if weight_scale.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
        return Err(QatError::config(format!("{layer}: weight scales must be finite and positive")));
    }
    Ok((input.validated(&format!("{layer} input"))?, output.validated(&format!("{layer} output"))?))
}

/// A float bias per output channel as int32 at `input.scale * weight_scale[o]`.
pub(crate) fn quantize_biases(layer: &str, float_bias: &[f32], weight_scale: &[f32], input: ActivationQParams) -> Result<Vec<i32>> {
    let input = input.validated(&format!("{layer} input"))?;
    if float_bias.len() != weight_scale.len() {
        return Err(QatError::shape(layer, format!("{} biases", weight_scale.len()), format!("{}", float_bias.len())));
    }
    Ok(float_bias.iter().zip(weight_scale).map(|(&b, &s)| quantize_bias(b, input.scale, s)).collect())
}

/// `w - z_w` for every weight, `channel(i)` naming the output channel of weight element `i`.
pub(crate) fn centered_weight(weight: &[i8], zero_point: &[i32], channel: impl Fn(usize) -> usize) -> Vec<i32> {
    weight.iter().enumerate().map(|(i, &w)| w as i32 - zero_point[channel(i)]).collect()
}

/// The int8 outputs of accumulators laid out `[N, O, plane]`: the channel's int32 bias added
/// (saturating), then [`requantize`] with the f32 multiplier `s_in * s_w[o] / s_out`; a fused
/// ReLU floors at the output zero point (real 0).
pub(crate) fn requantize_planes(
    acc: &[i32],
    plane: usize,
    bias: &[i32],
    weight_scale: &[f32],
    input: &ActivationQParams,
    output: &ActivationQParams,
    relu: bool,
) -> Vec<u8> {
    let channels = bias.len();
    let lo = if relu { output.zero_point.max(output.quant_min) } else { output.quant_min };
    let multipliers: Vec<f32> = weight_scale.iter().map(|&s| requant_multiplier(input.scale, s, output.scale)).collect();
    acc.iter()
        .enumerate()
        .map(|(i, &a)| {
            let o = (i / plane) % channels;
            requantize(a.saturating_add(bias[o]), multipliers[o], output.zero_point, lo, output.quant_max) as u8
        })
        .collect()
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
        return Err(QatError::config(format!(
            "{layer}: input qparams {:?} differ from the ones it was converted for {:?}",
            x.qparams, expected
        )));
    }
    Ok(())
}
