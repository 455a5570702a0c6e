//! The int8 stage of the layer table: each layer kind of a converted model implements
//! [`Int8Op`] (in `kinds/`, beside its other stages), and [`Int8Layer`] is generated from one
//! list of those kinds, so a new kind is one line here and one impl there: the model's forward,
//! its output grid, the full-range option and the int8 file all dispatch through the trait.

use burn::tensor::Device;
use serde_json::{Value as Json, json};

use super::float_layer::Layer;
use super::int8_fields::{bool_of, field, missing, read_act, write_act};
use super::layer_enum::with_unweighted_kinds;
use super::layers::{DeQuantStub, Named, Value};
use crate::error::{QatError, Result};
use crate::nn::quantized::{self, ActivationQParams, QTensor};
use crate::qdq::{QdqGraph, Wire};
use crate::state_dict::{StateDict, StateReader};

/// Which implementation computes the integer layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Engine {
    /// The int8 kernels.
    Kernels,
    /// burn's f64 ops (the reference the kernels are tested against).
    Reference,
}

/// What a layer's forward needs besides its input.
pub(crate) struct Int8Run<'a> {
    pub engine: Engine,
    pub device: &'a Device,
}

/// One layer kind of a converted model.
pub(crate) trait Int8Op: Sized {
    /// The kind's name in the int8 file's architecture (never change it: files name it).
    const KIND: &'static str;

    fn forward(&self, x: Value, path: &str, run: &Int8Run<'_>) -> Result<Value>;

    /// The grid of the layer's output when the layer sets one (a layer that keeps its input's
    /// grid returns `None`).
    fn output_qparams(&self) -> Option<ActivationQParams> {
        None
    }

    /// Saturates at the full u8 range instead of the trained one ([`super::ConvertOptions`]).
    fn saturate_at_full_range(&mut self) {}

    /// Whether each sample's output depends on that sample alone (a batch may then run in
    /// slices on several threads).
    fn per_sample(&self) -> bool {
        true
    }

    /// Writes the layer's tensors under `path` and returns its architecture entry (without
    /// `kind` and `name`, which the model file adds); nothing by default.
    fn save(&self, _path: &str, _out: &mut StateDict) -> Result<Json> {
        Ok(json!({}))
    }

    /// The layer from its architecture entry and tensors; every inconsistency is an error.
    fn load(entry: &Json, path: &str, reader: &mut StateReader<'_>) -> Result<Self>;

    /// Emits the layer's ONNX QDQ nodes onto `cur`, the tensor reaching it, and returns the
    /// tensor it produces.
    fn export(&self, graph: &mut QdqGraph, path: &str, cur: Wire) -> Result<Wire>;
}

/// Declares [`Int8Layer`] with one variant per kind, and its dispatch.
macro_rules! int8_layers {
    ($($(#[doc = $doc:literal])* $variant:ident($ty:ty)),* $(,)?) => {
        /// A layer of a converted model.
        #[derive(Clone, Debug)]
        pub enum Int8Layer {
            $($(#[doc = $doc])* $variant($ty),)*
            /// `relu?(body(x) + x)` on integers: the shortcut and the body's output added onto
            /// the addition's grid.
            Residual { body: Vec<Named<Int8Layer>>, add: quantized::Add },
            /// `cat([x, body(x)], channels)` on integers: both parts requantized onto the
            /// concatenation's grid.
            Concat { body: Vec<Named<Int8Layer>>, cat: quantized::Concat },
        }

        impl Int8Layer {
            /// The kind's name, as the int8 file writes it.
            pub fn kind(&self) -> &'static str {
                match self {
                    $(Self::$variant(_) => <$ty as Int8Op>::KIND,)*
                    Self::Residual { .. } => RESIDUAL,
                    Self::Concat { .. } => CONCAT,
                }
            }

            pub(crate) fn forward(&self, x: Value, path: &str, run: &Int8Run<'_>) -> Result<Value> {
                match self {
                    $(Self::$variant(m) => <$ty as Int8Op>::forward(m, x, path, run),)*
                    Self::Residual { body, add } => residual_forward(body, add, x, path, run),
                    Self::Concat { body, cat } => concat_forward(body, cat, x, path, run),
                }
            }

            /// The grid of this layer's output, when it sets one.
            pub fn output_qparams(&self) -> Option<ActivationQParams> {
                match self {
                    $(Self::$variant(m) => <$ty as Int8Op>::output_qparams(m),)*
                    Self::Residual { add, .. } => Some(add.output),
                    Self::Concat { cat, .. } => Some(cat.output),
                }
            }

            pub(crate) fn saturate_at_full_range(&mut self) {
                match self {
                    $(Self::$variant(m) => <$ty as Int8Op>::saturate_at_full_range(m),)*
                    Self::Residual { body, add } => {
                        body.iter_mut().for_each(|l| l.layer.saturate_at_full_range());
                        add.output = add.output.full_range();
                    }
                    Self::Concat { body, cat } => {
                        body.iter_mut().for_each(|l| l.layer.saturate_at_full_range());
                        cat.output = cat.output.full_range();
                    }
                }
            }

            pub(crate) fn per_sample(&self) -> bool {
                match self {
                    $(Self::$variant(m) => <$ty as Int8Op>::per_sample(m),)*
                    Self::Residual { body, .. } | Self::Concat { body, .. } => body.iter().all(|l| l.layer.per_sample()),
                }
            }

            pub(crate) fn save(&self, path: &str, out: &mut StateDict) -> Result<Json> {
                match self {
                    $(Self::$variant(m) => <$ty as Int8Op>::save(m, path, out),)*
                    Self::Residual { body, add } => save_residual(body, add, path, out),
                    Self::Concat { body, cat } => save_concat(body, cat, path, out),
                }
            }

            pub(crate) fn export(&self, graph: &mut QdqGraph, path: &str, cur: Wire) -> Result<Wire> {
                match self {
                    $(Self::$variant(m) => <$ty as Int8Op>::export(m, graph, path, cur),)*
                    Self::Residual { body, add } => {
                        graph.residual(|g, cur| export_layers(body, &format!("{path}.body."), g, cur), add, path, cur)
                    }
                    Self::Concat { body, cat } => {
                        graph.concat(|g, cur| export_layers(body, &format!("{path}.body."), g, cur), cat, path, cur)
                    }
                }
            }

            pub(crate) fn load(kind: &str, entry: &Json, path: &str, reader: &mut StateReader<'_>) -> Result<Self> {
                $(if kind == <$ty as Int8Op>::KIND {
                    return Ok(Self::$variant(<$ty as Int8Op>::load(entry, path, reader)?));
                })*
                if kind == RESIDUAL {
                    let (body, add) = load_residual(entry, path, reader)?;
                    return Ok(Self::Residual { body, add });
                }
                if kind == CONCAT {
                    let (body, cat) = load_concat(entry, path, reader)?;
                    return Ok(Self::Concat { body, cat });
                }
                Err(QatError::invalid("kind", format!("{path}: unknown layer kind {kind:?}")))
            }
        }
    };
}

/// Emits `layers` (named under `prefix`) onto `cur`, one after the other.
pub(crate) fn export_layers(layers: &[Named<Int8Layer>], prefix: &str, graph: &mut QdqGraph, mut cur: Wire) -> Result<Wire> {
    for l in layers {
        cur = l.layer.export(graph, &format!("{prefix}{}", l.name), cur)?;
    }
    Ok(cur)
}

const RESIDUAL: &str = "Residual";
const CONCAT: &str = "Concat";

with_unweighted_kinds! { int8_layers! {
    Quantize(quantized::Quantize),
    DeQuantize(DeQuantStub),
    Conv2d(quantized::Conv2d),
    Linear(quantized::Linear),
    BatchNorm2d(quantized::BatchNorm2d),
    /// Left in float (qconfig `None`), between a DeQuantStub and a QuantStub.
    Float(Layer),
    Conv3d(quantized::Conv3d),
    Conv1d(quantized::QuantizedConv<3, crate::nn::Conv1dOptions>),
    ConvTranspose2d(quantized::ConvTranspose2d),
    Hardswish(quantized::Hardswish),
} }

pub(super) fn run_layers(layers: &[Named<Int8Layer>], mut value: Value, prefix: &str, engine: Engine, device: &Device) -> Result<Value> {
    let run = Int8Run { engine, device };
    for l in layers {
        value = l.layer.forward(value, &format!("{prefix}{}", l.name), &run)?;
    }
    Ok(value)
}

/// A residual block: the body from the block's input, then the integer addition of the two.
fn residual_forward(body: &[Named<Int8Layer>], add: &quantized::Add, x: Value, path: &str, run: &Int8Run<'_>) -> Result<Value> {
    let shortcut: QTensor = x.clone().quantized(path)?;
    let y = run_layers(body, x, &format!("{path}.body."), run.engine, run.device)?.quantized(path)?;
    Ok(Value::Quantized(add.forward(&y, &shortcut)?))
}

/// A concatenation block: the body from the block's input, then both parts onto one grid.
fn concat_forward(body: &[Named<Int8Layer>], cat: &quantized::Concat, x: Value, path: &str, run: &Int8Run<'_>) -> Result<Value> {
    let shortcut: QTensor = x.clone().quantized(path)?;
    let y = run_layers(body, x, &format!("{path}.body."), run.engine, run.device)?.quantized(path)?;
    Ok(Value::Quantized(cat.forward(&shortcut, &y)?))
}

pub(super) fn save_layers(layers: &[Named<Int8Layer>], prefix: &str, out: &mut StateDict) -> Result<Json> {
    let mut items = Vec::new();
    for l in layers {
        let mut item = l.layer.save(&format!("{prefix}{}", l.name), out)?;
        item["kind"] = json!(l.layer.kind());
        item["name"] = json!(l.name);
        items.push(item);
    }
    Ok(Json::Array(items))
}

/// A residual block's entry: its body, and the addition's grid under `<path>.add`.
fn save_residual(body: &[Named<Int8Layer>], add: &quantized::Add, p: &str, out: &mut StateDict) -> Result<Json> {
    write_act(&format!("{p}.add"), &add.output, out);
    Ok(json!({"relu": add.relu, "body": save_layers(body, &format!("{p}.body."), out)?}))
}

fn load_residual(entry: &Json, p: &str, reader: &mut StateReader<'_>) -> Result<(Vec<Named<Int8Layer>>, quantized::Add)> {
    let body = load_layers(field(entry, "body", p)?, &format!("{p}.body."), reader)?;
    let add = quantized::Add::new(read_act(&format!("{p}.add"), reader).ok_or_else(|| missing(reader))?, bool_of(entry, "relu", p)?)?;
    Ok((body, add))
}

/// A concatenation block's entry: its body, and the concatenation's grid under `<path>.cat`.
fn save_concat(body: &[Named<Int8Layer>], cat: &quantized::Concat, p: &str, out: &mut StateDict) -> Result<Json> {
    write_act(&format!("{p}.cat"), &cat.output, out);
    Ok(json!({"body": save_layers(body, &format!("{p}.body."), out)?}))
}

fn load_concat(entry: &Json, p: &str, reader: &mut StateReader<'_>) -> Result<(Vec<Named<Int8Layer>>, quantized::Concat)> {
    let body = load_layers(field(entry, "body", p)?, &format!("{p}.body."), reader)?;
    let cat = quantized::Concat::new(read_act(&format!("{p}.cat"), reader).ok_or_else(|| missing(reader))?)?;
    Ok((body, cat))
}

pub(super) fn load_layers(architecture: &Json, prefix: &str, reader: &mut StateReader<'_>) -> Result<Vec<Named<Int8Layer>>> {
    let items = architecture.as_array().ok_or_else(|| QatError::invalid("architecture", "the architecture must be a list of layers"))?;
    let mut layers = Vec::with_capacity(items.len());
    for item in items {
        let name = field(item, "name", prefix)?
            .as_str()
            .ok_or_else(|| QatError::invalid("name", format!("{prefix}: a layer name must be a string")))?
            .to_string();
        let p = format!("{prefix}{name}");
        let layer = Int8Layer::load(field(item, "kind", &p)?.as_str().unwrap_or(""), item, &p, reader)?;
        layers.push(Named { name, layer });
    }
    Ok(layers)
}
