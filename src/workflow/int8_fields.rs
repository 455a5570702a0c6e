//! The pieces of the int8 model file every layer kind reads and writes: activation grids,
//! integer weights (packed below 8 bits), and the typed fields of an architecture entry.

use serde_json::Value as Json;

use crate::error::{QatError, Result};
use crate::nn::quantized::{ActivationQParams, Int8Weight, LayerQParams};
use crate::quant::packing;
use crate::state_dict::{StateDict, StateReader, TensorValue, Values};

pub(crate) fn write_act(prefix: &str, q: &ActivationQParams, out: &mut StateDict) {
    out.insert(format!("{prefix}.scale"), TensorValue::f32_vec(vec![q.scale]));
    out.insert(format!("{prefix}.zero_point_range"), TensorValue::i32_vec(vec![q.zero_point, q.quant_min, q.quant_max]));
}

pub(crate) fn read_act(prefix: &str, reader: &mut StateReader<'_>) -> Option<ActivationQParams> {
    let scale = reader.f32(&format!("{prefix}.scale"), Some(&[1]));
    let zr = reader.int(&format!("{prefix}.zero_point_range"), Some(&[3]));
    let (Some((_, s)), Some((_, z))) = (scale, zr) else { return None };
    let q = ActivationQParams { scale: s[0], zero_point: z[0] as i32, quant_min: z[1] as i32, quant_max: z[2] as i32 };
    match q.validated(prefix) {
        Ok(q) => Some(q),
        Err(e) => {
            reader.problem(e.to_string());
            None
        }
    }
}

/// A weighted int8 layer's tensors under `p`: its weight of `shape` (packed below 8 bits) with
/// per-channel scales and zero points, its int32 bias, and its activations (`p.input`,
/// `p.output`).
pub(crate) fn write_weighted(p: &str, weight: &Int8Weight, shape: Vec<usize>, bias: &[i32], qparams: &LayerQParams, out: &mut StateDict) {
    let bits = packing::bits_needed(&weight.values);
    if bits < 8 {
        let packed = packing::pack(&weight.values, bits).expect("bits_needed holds every value");
        out.insert(format!("{p}.weight_packed"), TensorValue { shape: vec![packed.len()], values: Values::U8(packed) });
        out.insert(format!("{p}.weight_bits"), TensorValue::i32_vec(vec![bits as i32]));
    } else {
        out.insert(format!("{p}.weight"), TensorValue { shape, values: Values::I8(weight.values.clone()) });
    }
    out.insert(format!("{p}.weight_scale"), TensorValue::f32_vec(weight.scale.clone()));
    out.insert(format!("{p}.weight_zero_point"), TensorValue::i32_vec(weight.zero_point.clone()));
    out.insert(format!("{p}.bias"), TensorValue::i32_vec(bias.to_vec()));
    write_act(&format!("{p}.input"), &qparams.input, out);
    write_act(&format!("{p}.output"), &qparams.output, out);
}

/// What [`write_weighted`] wrote for a weight of `shape` with `o` output channels (`relu` from
/// the architecture entry); every missing or malformed tensor is an error.
pub(crate) fn read_weighted(
    p: &str,
    shape: &[usize],
    o: usize,
    relu: bool,
    reader: &mut StateReader<'_>,
) -> Result<(Int8Weight, Vec<i32>, LayerQParams)> {
    let w = read_weights(p, shape, o, reader);
    let (input, output) = (read_act(&format!("{p}.input"), reader), read_act(&format!("{p}.output"), reader));
    let (Some(w), Some(input), Some(output)) = (w, input, output) else { return Err(missing(reader)) };
    Ok((Int8Weight::new(w.weight, w.scale, w.zero_point), w.bias, LayerQParams::new(input, output, relu)))
}

pub(crate) fn field<'a>(item: &'a Json, key: &str, p: &str) -> Result<&'a Json> {
    item.get(key).ok_or_else(|| QatError::invalid(key, format!("{p}: architecture entry lacks {key:?}")))
}

pub(crate) fn usize_of(item: &Json, key: &str, p: &str) -> Result<usize> {
    field(item, key, p)?
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| QatError::invalid(key, format!("{p}: {key:?} must be a non-negative integer")))
}

/// `N` non-negative integers (a kernel size, a stride) under `key`.
pub(crate) fn array_of<const N: usize>(item: &Json, key: &str, p: &str) -> Result<[usize; N]> {
    let bad = || QatError::invalid(key, format!("{p}: {key:?} must be a list of {N} non-negative integers"));
    let values = field(item, key, p)?.as_array().ok_or_else(bad)?;
    let values: Vec<usize> = values.iter().map(|v| v.as_u64().map(|v| v as usize).ok_or_else(bad)).collect::<Result<_>>()?;
    values.try_into().map_err(|_| bad())
}

pub(crate) fn bool_of(item: &Json, key: &str, p: &str) -> Result<bool> {
    field(item, key, p)?.as_bool().ok_or_else(|| QatError::invalid(key, format!("{p}: {key:?} must be a boolean")))
}

struct Weights {
    weight: Vec<i8>,
    scale: Vec<f32>,
    zero_point: Vec<i32>,
    bias: Vec<i32>,
}

/// The error for a layer whose tensors are missing or wrong: every problem the reader met (each
/// names its full key, so the layer too).
pub(crate) fn missing(reader: &StateReader<'_>) -> QatError {
    QatError::StateDict { problems: reader.problems().to_vec() }
}

/// An options check's error for the layer at `p` read from an architecture entry: an invalid
/// option keeps its field, with `p` leading the reason.
pub(crate) fn at_layer(p: &str, e: QatError) -> QatError {
    match e {
        QatError::InvalidConfig { field, reason } => QatError::invalid(field, format!("{p}: {reason}")),
        other => QatError::structure(p, other.to_string()),
    }
}

/// The packed form of a weight of `shape`, unpacked (as [`read_weights`] reads `weight`).
fn read_packed(p: &str, shape: &[usize], reader: &mut StateReader<'_>) -> Option<(Vec<usize>, Vec<i64>)> {
    let (_, bits) = reader.int(&format!("{p}.weight_bits"), Some(&[1]))?;
    let (_, bytes) = reader.int(&format!("{p}.weight_packed"), None)?;
    let n = shape.iter().product();
    let bytes: Vec<u8> = bytes.iter().map(|&b| b as u8).collect();
    match u32::try_from(bits[0])
        .map_err(|_| QatError::invalid("bits", format!("weight_bits {} is negative", bits[0])))
        .and_then(|b| packing::unpack(&bytes, b, n))
    {
        Ok(values) => Some((shape.to_vec(), values.into_iter().map(i64::from).collect())),
        Err(e) => {
            reader.problem(format!("{p}.weight_packed: {e}"));
            None
        }
    }
}

/// A weight of `shape` with its scales, zero points and biases, one per output channel (`o`).
fn read_weights(p: &str, shape: &[usize], o: usize, reader: &mut StateReader<'_>) -> Option<Weights> {
    let weight = if reader.has(&format!("{p}.weight_packed")) {
        read_packed(p, shape, reader)
    } else {
        reader.int(&format!("{p}.weight"), Some(shape))
    };
    let scale = reader.f32(&format!("{p}.weight_scale"), Some(&[o]));
    let zero_point = reader.int(&format!("{p}.weight_zero_point"), Some(&[o]));
    let bias = reader.int(&format!("{p}.bias"), Some(&[o]));
    let (Some((_, w)), Some((_, scale)), Some((_, zp)), Some((_, bias))) = (weight, scale, zero_point, bias) else { return None };
    if w.iter().any(|&v| !(-128..=127).contains(&v)) {
        reader.problem(format!("{p}.weight: values outside i8"));
        return None;
    }
    Some(Weights {
        weight: w.into_iter().map(|v| v as i8).collect(),
        scale,
        zero_point: zp.into_iter().map(|v| v as i32).collect(),
        bias: bias.into_iter().map(|v| v as i32).collect(),
    })
}
