//! What every int8 conv (and Linear) shares whatever its geometry: checking its integer
//! parameters, the int32 bias at `s_in * s_w`, weights centered by their zero points, and the
//! requantization of the accumulators per output channel. One copy, so the layer families
//! cannot drift apart in the arithmetic that makes them bit exact.

use std::borrow::Cow;

use super::gemm::PackedWeights;
use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::quant::{quantize_bias, requant_multiplier, round_half_even};

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

/// The weights `[O, K]` (`K` per output channel, `O` split into `groups`) packed for the GEMM,
/// for inputs with `input`'s zero point: done once, when a module is built.
pub(crate) fn pack_weights(weight: &[i8], zero_point: &[i32], groups: usize, input: &ActivationQParams) -> PackedWeights {
    PackedWeights::new(weight, zero_point, groups, weight.len() / zero_point.len(), input.zero_point)
}

/// `packed` if it still packs these (public, so editable) fields, else a fresh packing.
pub(crate) fn current_packing<'a>(
    packed: &'a PackedWeights,
    weight: &[i8],
    zero_point: &[i32],
    groups: usize,
    input: &ActivationQParams,
) -> Cow<'a, PackedWeights> {
    if packed.packs(weight, zero_point, groups, input.zero_point) {
        Cow::Borrowed(packed)
    } else {
        Cow::Owned(pack_weights(weight, zero_point, groups, input))
    }
}

/// `w - z_w` for every weight, `channel(i)` naming the output channel of weight element `i`.
pub(crate) fn centered_weight(weight: &[i8], zero_point: &[i32], channel: impl Fn(usize) -> usize) -> Vec<i32> {
    weight.iter().enumerate().map(|(i, &w)| w as i32 - zero_point[channel(i)]).collect()
}

/// The requantization of accumulators per output channel: the channel's int32 bias added
/// (saturating), then [`requantize`](crate::quant::requantize) with the f32 multiplier `s_in * s_w[o] / s_out`; a fused
/// ReLU floors at the output zero point (real 0).
pub(crate) struct Requantizer {
    bias: Vec<i32>,
    multipliers: Vec<f32>,
    zero_point: i32,
    lo: i32,
    hi: i32,
}

impl Requantizer {
    pub(crate) fn new(bias: &[i32], weight_scale: &[f32], input: &ActivationQParams, output: &ActivationQParams, relu: bool) -> Self {
        Self {
            bias: bias.to_vec(),
            multipliers: weight_scale.iter().map(|&s| requant_multiplier(input.scale, s, output.scale)).collect(),
            zero_point: output.zero_point,
            lo: if relu { output.zero_point.max(output.quant_min) } else { output.quant_min },
            hi: output.quant_max,
        }
    }

    /// `dst[j] = requantize(acc[j] + bias[channel])` as u8.
    pub(crate) fn row(&self, channel: usize, acc: &[i32], dst: &mut [u8]) {
        let args = (self.bias[channel], self.multipliers[channel], self.zero_point, self.lo, self.hi);
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
                // SAFETY: AVX-512 F and BW are present, checked on the line above.
                return unsafe { requantize_row_avx512(acc, dst, args) };
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: AVX2 is present, checked on the line above.
                return unsafe { requantize_row_avx2(acc, dst, args) };
            }
        }
        requantize_row_portable(acc, dst, args)
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
fn requantize_row_avx512(acc: &[i32], dst: &mut [u8], args: (i32, f32, i32, i32, i32)) {
    requantize_row_portable(acc, dst, args)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn requantize_row_avx2(acc: &[i32], dst: &mut [u8], args: (i32, f32, i32, i32, i32)) {
    requantize_row_portable(acc, dst, args)
}

/// [`requantize`](crate::quant::requantize) of `acc + bias`, written so that it vectorizes: the same f32 operations in the
/// same order, and the clamped result (an integer in `[lo, hi]`, inside `[0, 255]`) read from
/// the mantissa of `v + 2^23` instead of a saturating float-to-int cast. The same bits.
#[inline(always)]
fn requantize_row_portable(acc: &[i32], dst: &mut [u8], (bias, m, zero_point, lo, hi): (i32, f32, i32, i32, i32)) {
    debug_assert!(0 <= lo && hi <= 255);
    for (q, &a) in dst.iter_mut().zip(acc) {
        let v = zero_point as f32 + round_half_even(a.saturating_add(bias) as f32 * m);
        let v = v.max(lo as f32).min(hi as f32);
        *q = (v + 8_388_608.0).to_bits() as u8;
    }
}

/// The int8 outputs of accumulators laid out `[N, O, plane]`, requantized per channel as
/// [`Requantizer`] does.
pub(crate) fn requantize_planes(
    acc: &[i32],
    plane: usize,
    bias: &[i32],
    weight_scale: &[f32],
    input: &ActivationQParams,
    output: &ActivationQParams,
    relu: bool,
) -> Vec<u8> {
    let requantizer = Requantizer::new(bias, weight_scale, input, output, relu);
    let mut out = vec![0u8; acc.len()];
    for (i, (dst, src)) in out.chunks_mut(plane).zip(acc.chunks(plane)).enumerate() {
        requantizer.row(i % bias.len(), src, dst);
    }
    out
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
