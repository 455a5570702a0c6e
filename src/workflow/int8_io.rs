//! The int8 model as one safetensors file that runs without the float model: i8 weights, f32
//! scales, i32 zero points and biases as tensors, and the layer structure (geometry, fused
//! ReLUs, pooling) as JSON in the metadata under `"architecture"`. Loading checks every part
//! against the architecture and names the layer at fault.
//!
//! Weights whose values fit fewer than 8 signed bits (a 4-bit layer) are stored packed at that
//! width (`weight_packed`, u8, with `weight_bits`; [`crate::quant::packing`]) instead of one
//! per byte (`weight`, i8); files written before packing load as they are.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Value as Json, json};

use super::int8_model::{Int8Layer, Int8Model};
use super::layers::Named;
use super::pooling::{AvgPool2d, MaxPool2d};
use crate::error::{QatError, Result};
use crate::nn::quantized::{self, ActivationQParams, Int8Weight, LayerQParams};
use crate::nn::{Conv2dOptions, PaddingMode};
use crate::quant::packing;
use crate::state_dict::{StateDict, StateReader, TensorValue, Values, load_safetensors, save_safetensors};

/// The `format` metadata of an int8 model file.
pub const FORMAT: &str = "burn-qat-int8/1";

fn write_act(prefix: &str, q: &ActivationQParams, out: &mut StateDict) {
    out.insert(format!("{prefix}.scale"), TensorValue::f32_vec(vec![q.scale]));
    out.insert(format!("{prefix}.zero_point_range"), TensorValue::i32_vec(vec![q.zero_point, q.quant_min, q.quant_max]));
}

fn read_act(prefix: &str, reader: &mut StateReader<'_>) -> Option<ActivationQParams> {
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

fn write_weights(p: &str, weight: &[i8], shape: Vec<usize>, scale: &[f32], zp: &[i32], bias: &[i32], out: &mut StateDict) {
    let bits = packing::bits_needed(weight);
    if bits < 8 {
        let packed = packing::pack(weight, bits).expect("bits_needed holds every value");
        out.insert(format!("{p}.weight_packed"), TensorValue { shape: vec![packed.len()], values: Values::U8(packed) });
        out.insert(format!("{p}.weight_bits"), TensorValue::i32_vec(vec![bits as i32]));
    } else {
        out.insert(format!("{p}.weight"), TensorValue { shape, values: Values::I8(weight.to_vec()) });
    }
    out.insert(format!("{p}.weight_scale"), TensorValue::f32_vec(scale.to_vec()));
    out.insert(format!("{p}.weight_zero_point"), TensorValue::i32_vec(zp.to_vec()));
    out.insert(format!("{p}.bias"), TensorValue::i32_vec(bias.to_vec()));
}

fn describe(layers: &[Named<Int8Layer>], prefix: &str, out: &mut StateDict) -> Result<Json> {
    let mut items = Vec::new();
    for l in layers {
        let p = format!("{prefix}{}", l.name);
        let item = match &l.layer {
            Int8Layer::Quantize(q) => {
                write_act(&p, &q.qparams, out);
                json!({"kind": "Quantize"})
            }
            Int8Layer::DeQuantize => json!({"kind": "DeQuantize"}),
            Int8Layer::Relu => json!({"kind": "Relu"}),
            Int8Layer::Relu6 => json!({"kind": "Relu6"}),
            Int8Layer::AvgPool2d(m) => json!({"kind": "AvgPool2d", "kernel_size": m.kernel_size, "stride": m.stride}),
            Int8Layer::Flatten => json!({"kind": "Flatten"}),
            Int8Layer::GlobalAvgPool2d => json!({"kind": "GlobalAvgPool2d"}),
            Int8Layer::MaxPool2d(m) => json!({"kind": "MaxPool2d", "kernel_size": m.kernel_size, "stride": m.stride}),
            Int8Layer::Conv2d(m) => {
                let o = &m.options;
                write_weights(&p, &m.weight, o.weight_shape().to_vec(), &m.weight_scale, &m.weight_zero_point, &m.bias, out);
                write_act(&format!("{p}.input"), &m.input, out);
                write_act(&format!("{p}.output"), &m.output, out);
                json!({"kind": "Conv2d", "in_channels": o.in_channels, "out_channels": o.out_channels, "kernel_size": o.kernel_size,
                       "stride": o.stride, "padding": o.padding, "dilation": o.dilation, "groups": o.groups,
                       "padding_mode": o.padding_mode.to_string(), "relu": m.relu})
            }
            Int8Layer::Linear(m) => {
                write_weights(&p, &m.weight, vec![m.out_features, m.in_features], &m.weight_scale, &m.weight_zero_point, &m.bias, out);
                write_act(&format!("{p}.input"), &m.input, out);
                write_act(&format!("{p}.output"), &m.output, out);
                json!({"kind": "Linear", "in_features": m.in_features, "out_features": m.out_features, "relu": m.relu})
            }
            Int8Layer::BatchNorm2d(m) => {
                out.insert(format!("{p}.multiplier"), TensorValue::f32_vec(m.multiplier.clone()));
                out.insert(format!("{p}.offset"), TensorValue::f32_vec(m.offset.clone()));
                write_act(&format!("{p}.input"), &m.input, out);
                write_act(&format!("{p}.output"), &m.output, out);
                json!({"kind": "BatchNorm2d", "channels": m.channels(), "relu": m.relu})
            }
            Int8Layer::Residual { body, add } => {
                write_act(&format!("{p}.add"), &add.output, out);
                json!({"kind": "Residual", "relu": add.relu, "body": describe(body, &format!("{p}.body."), out)?})
            }
            Int8Layer::Float(_) => return Err(QatError::config(format!("{p}: float layers inside an int8 model cannot be saved yet"))),
        };
        let mut item = item;
        item["name"] = json!(l.name);
        items.push(item);
    }
    Ok(Json::Array(items))
}

impl Int8Model {
    /// Saves the model (atomically: temp file, then rename).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        self.save_with_metadata(path, &HashMap::new())
    }

    /// [`save`](Self::save) with more string metadata (what the model is for: its input, the
    /// data it was trained on), which [`load_safetensors`] reads back. The keys `format` and
    /// `architecture` are the file's own.
    pub fn save_with_metadata(&self, path: impl AsRef<Path>, extra: &HashMap<String, String>) -> Result<()> {
        let mut state = StateDict::new();
        let architecture = describe(&self.layers, "", &mut state)?;
        let mut metadata = extra.clone();
        metadata.insert("format".to_string(), FORMAT.to_string());
        metadata.insert("architecture".to_string(), architecture.to_string());
        save_safetensors(path, &state, &metadata)
    }

    /// Loads a model saved by [`save`](Self::save). Every inconsistency (a missing or extra
    /// tensor, a weight that does not fit its geometry, an invalid scale) is an error.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (state, metadata) = load_safetensors(path)?;
        let bad = |reason: String| QatError::File { path: path.display().to_string(), reason };
        if metadata.get("format").map(String::as_str) != Some(FORMAT) {
            return Err(bad(format!("not an int8 model file (metadata format is {:?}, expected {FORMAT:?})", metadata.get("format"))));
        }
        let architecture: Json = serde_json::from_str(metadata.get("architecture").map(String::as_str).unwrap_or(""))
            .map_err(|e| bad(format!("unreadable architecture: {e}")))?;
        let mut reader = StateReader::new(&state);
        let layers = build(&architecture, "", &mut reader).map_err(|e| bad(e.to_string()))?;
        reader.finish().map_err(|e| bad(e.to_string()))?;
        Ok(Self { layers })
    }
}

fn field<'a>(item: &'a Json, key: &str, p: &str) -> Result<&'a Json> {
    item.get(key).ok_or_else(|| QatError::config(format!("{p}: architecture entry lacks {key:?}")))
}

fn usize_of(item: &Json, key: &str, p: &str) -> Result<usize> {
    field(item, key, p)?
        .as_u64()
        .map(|v| v as usize)
        .ok_or_else(|| QatError::config(format!("{p}: {key:?} must be a non-negative integer")))
}

fn pair_of(item: &Json, key: &str, p: &str) -> Result<[usize; 2]> {
    let v = field(item, key, p)?;
    match (v.get(0).and_then(Json::as_u64), v.get(1).and_then(Json::as_u64), v.as_array().map(Vec::len)) {
        (Some(a), Some(b), Some(2)) => Ok([a as usize, b as usize]),
        _ => Err(QatError::config(format!("{p}: {key:?} must be a pair of integers"))),
    }
}

fn bool_of(item: &Json, key: &str, p: &str) -> Result<bool> {
    field(item, key, p)?.as_bool().ok_or_else(|| QatError::config(format!("{p}: {key:?} must be a boolean")))
}

struct Weights {
    weight: Vec<i8>,
    scale: Vec<f32>,
    zero_point: Vec<i32>,
    bias: Vec<i32>,
}

/// The packed form of a weight of `shape`, unpacked (as [`read_weights`] reads `weight`).
fn read_packed(p: &str, shape: &[usize], reader: &mut StateReader<'_>) -> Option<(Vec<usize>, Vec<i64>)> {
    let (_, bits) = reader.int(&format!("{p}.weight_bits"), Some(&[1]))?;
    let (_, bytes) = reader.int(&format!("{p}.weight_packed"), None)?;
    let n = shape.iter().product();
    let bytes: Vec<u8> = bytes.iter().map(|&b| b as u8).collect();
    match u32::try_from(bits[0])
        .map_err(|_| QatError::config(format!("weight_bits {} is negative", bits[0])))
        .and_then(|b| packing::unpack(&bytes, b, n))
    {
        Ok(values) => Some((shape.to_vec(), values.into_iter().map(i64::from).collect())),
        Err(e) => {
            reader.problem(format!("{p}.weight_packed: {e}"));
            None
        }
    }
}

fn read_weights(p: &str, shape: &[usize], reader: &mut StateReader<'_>) -> Option<Weights> {
    let o = shape[0];
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

fn build(architecture: &Json, prefix: &str, reader: &mut StateReader<'_>) -> Result<Vec<Named<Int8Layer>>> {
    let items = architecture.as_array().ok_or_else(|| QatError::config("the architecture must be a list of layers"))?;
    let mut layers = Vec::with_capacity(items.len());
    for item in items {
        let name = field(item, "name", prefix)?
            .as_str()
            .ok_or_else(|| QatError::config(format!("{prefix}: a layer name must be a string")))?
            .to_string();
        let p = format!("{prefix}{name}");
        let missing = |reader: &StateReader<'_>| QatError::config(format!("{p}: {}", reader.problems().join("; ")));
        let layer = match field(item, "kind", &p)?.as_str().unwrap_or("") {
            "Quantize" => Int8Layer::Quantize(quantized::Quantize::new(read_act(&p, reader).ok_or_else(|| missing(reader))?)?),
            "DeQuantize" => Int8Layer::DeQuantize,
            "Relu" => Int8Layer::Relu,
            "Relu6" => Int8Layer::Relu6,
            "AvgPool2d" => Int8Layer::AvgPool2d(AvgPool2d::new(usize_of(item, "kernel_size", &p)?, usize_of(item, "stride", &p)?)?),
            "Flatten" => Int8Layer::Flatten,
            "GlobalAvgPool2d" => Int8Layer::GlobalAvgPool2d,
            "MaxPool2d" => Int8Layer::MaxPool2d(MaxPool2d::new(usize_of(item, "kernel_size", &p)?, usize_of(item, "stride", &p)?)?),
            "Conv2d" => {
                let options = Conv2dOptions::new(
                    usize_of(item, "in_channels", &p)?,
                    usize_of(item, "out_channels", &p)?,
                    pair_of(item, "kernel_size", &p)?,
                )
                .with_stride(pair_of(item, "stride", &p)?)
                .with_padding(pair_of(item, "padding", &p)?)
                .with_dilation(pair_of(item, "dilation", &p)?)
                .with_groups(usize_of(item, "groups", &p)?)
                .with_padding_mode(PaddingMode::parse(field(item, "padding_mode", &p)?.as_str().unwrap_or(""))?);
                options.validate().map_err(|e| QatError::config(format!("{p}: {e}")))?;
                let w = read_weights(&p, &options.weight_shape(), reader);
                let (input, output) = (read_act(&format!("{p}.input"), reader), read_act(&format!("{p}.output"), reader));
                match (w, input, output) {
                    (Some(w), Some(i), Some(o)) => {
                        let qparams = LayerQParams::new(i, o, bool_of(item, "relu", &p)?);
                        Int8Layer::Conv2d(quantized::Conv2d::from_parts(
                            options,
                            Int8Weight::new(w.weight, w.scale, w.zero_point),
                            w.bias,
                            qparams,
                        )?)
                    }
                    _ => return Err(missing(reader)),
                }
            }
            "Linear" => {
                let (i, o) = (usize_of(item, "in_features", &p)?, usize_of(item, "out_features", &p)?);
                let w = read_weights(&p, &[o, i], reader);
                let (input, output) = (read_act(&format!("{p}.input"), reader), read_act(&format!("{p}.output"), reader));
                match (w, input, output) {
                    (Some(w), Some(inq), Some(outq)) => {
                        let qparams = LayerQParams::new(inq, outq, bool_of(item, "relu", &p)?);
                        Int8Layer::Linear(quantized::Linear::from_parts(
                            i,
                            o,
                            Int8Weight::new(w.weight, w.scale, w.zero_point),
                            w.bias,
                            qparams,
                        )?)
                    }
                    _ => return Err(missing(reader)),
                }
            }
            "BatchNorm2d" => {
                let c = usize_of(item, "channels", &p)?;
                let multiplier = reader.f32(&format!("{p}.multiplier"), Some(&[c]));
                let offset = reader.f32(&format!("{p}.offset"), Some(&[c]));
                let (input, output) = (read_act(&format!("{p}.input"), reader), read_act(&format!("{p}.output"), reader));
                match (multiplier, offset, input, output) {
                    (Some((_, m)), Some((_, b)), Some(i), Some(o)) => {
                        Int8Layer::BatchNorm2d(quantized::BatchNorm2d::from_parts(m, b, i, o, bool_of(item, "relu", &p)?)?)
                    }
                    _ => return Err(missing(reader)),
                }
            }
            "Residual" => {
                let body = build(field(item, "body", &p)?, &format!("{p}.body."), reader)?;
                let add =
                    quantized::Add::new(read_act(&format!("{p}.add"), reader).ok_or_else(|| missing(reader))?, bool_of(item, "relu", &p)?)?;
                Int8Layer::Residual { body, add }
            }
            other => return Err(QatError::config(format!("{p}: unknown layer kind {other:?}"))),
        };
        layers.push(Named { name, layer });
    }
    Ok(layers)
}
