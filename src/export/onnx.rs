//! [`export_onnx`]: walks an [`Int8Model`] layer by layer, each layer emitting its QDQ nodes
//! into a [`QdqGraph`] (its kind's `Int8Op::export`), and writes the file.

use std::io::Write;
use std::path::Path;

use prost::Message;

use crate::error::{QatError, Result};
use crate::qdq::proto::{
    GraphProto, ModelProto, OperatorSetIdProto, TensorShapeProto, TypeProto, ValueInfoProto, data_type, tensor_shape_proto, type_proto,
};
use crate::qdq::{INPUT_NAME, OUTPUT_NAME, QdqGraph, Wire};
use crate::workflow::{Int8Layer, Int8Model, Named, export_layers};

/// The ONNX operator set the exported graph uses by default.
pub const OPSET_VERSION: i64 = 13;
/// The IR version that goes with opset 13.
pub const IR_VERSION: i64 = 7;

/// The operator set to write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnnxOpset {
    /// Opset 13 (IR 7), the default: every runtime of the last years reads it; weights are int8
    /// initializers, sub-8-bit ones within their narrow range.
    #[default]
    V13,
    /// Opset 21 (IR 10): weights whose values fit 4 signed bits are INT4 initializers (two per
    /// byte) with INT4 zero points, so a runtime sees their true width; the rest as for V13.
    V21,
}

impl OnnxOpset {
    pub fn parse(text: &str) -> Result<Self> {
        match text {
            "13" => Ok(Self::V13),
            "21" => Ok(Self::V21),
            other => Err(QatError::invalid(
                "opset_version",
                format!("ONNX opset {other:?} is not written; choose 13 (int8 weights) or 21 (int4 weights where they fit)"),
            )),
        }
    }

    pub fn version(self) -> i64 {
        match self {
            Self::V13 => OPSET_VERSION,
            Self::V21 => 21,
        }
    }

    fn ir_version(self) -> i64 {
        match self {
            Self::V13 => IR_VERSION,
            Self::V21 => 10,
        }
    }
}
/// The name of the symbolic batch dimension of the input and output.
pub const BATCH_DIM: &str = "N";

/// Writes `model` as a QDQ ONNX file (opset 13) at `path`, atomically (a temporary file beside
/// it, then renamed over it).
///
/// `input_shape` is `[N, C, H, W]` of the images [`Int8Model::forward`] takes; `C`, `H` and `W`
/// are written into the graph input, while `N` is not: the batch dimension is always the
/// symbolic `"N"`, so `input_shape[0]` only has to be the batch size you checked the shapes
/// with (any value, 0 included, is accepted).
///
/// Errors name the layer that cannot be exported: float layers (qconfig `None`), convolutions
/// with circular padding, weight zero points outside int8, a model that does not
/// end with a quantized Linear followed by a DeQuantStub, and shapes that do not fit.
pub fn export_onnx<const R: usize>(model: &Int8Model, input_shape: [usize; R], path: &Path) -> Result<()> {
    export_onnx_with(model, input_shape, path, OnnxOpset::V13)
}

/// [`export_onnx`] at the given operator set.
pub fn export_onnx_with<const R: usize>(model: &Int8Model, input_shape: [usize; R], path: &Path, opset: OnnxOpset) -> Result<()> {
    let bytes = to_model_proto_with(model, input_shape, opset)?.encode_to_vec();
    write_atomically(path, &bytes)
}

/// The serialized ONNX model, as [`export_onnx`] writes it.
pub fn onnx_bytes<const R: usize>(model: &Int8Model, input_shape: [usize; R]) -> Result<Vec<u8>> {
    Ok(to_model_proto(model, input_shape)?.encode_to_vec())
}

/// The ONNX model as a protobuf message, before serialization.
pub fn to_model_proto<const R: usize>(model: &Int8Model, input_shape: [usize; R]) -> Result<ModelProto> {
    to_model_proto_with(model, input_shape, OnnxOpset::V13)
}

/// [`to_model_proto`] at the given operator set.
pub fn to_model_proto_with<const R: usize>(model: &Int8Model, input_shape: [usize; R], opset: OnnxOpset) -> Result<ModelProto> {
    if R < 3 || input_shape[1..].contains(&0) {
        return Err(QatError::invalid(
            "input_shape",
            format!("ONNX export: input shape {input_shape:?} must be [N, C, ...] with one to three spatial axes, all positive"),
        ));
    }
    let (body, head, classes) = split_head(&model.layers)?;
    let mut graph = QdqGraph::new(opset == OnnxOpset::V21);
    let input = Wire {
        name: INPUT_NAME.to_string(),
        // Shapes are checked with batch 1; the batch never enters the graph.
        shape: [&[1], &input_shape[1..]].concat(),
        qparams: None,
    };
    let last = export_layers(body, "", &mut graph, input)?;
    // The head: a quantized Linear (already emitted with `body`) and the final DeQuantStub,
    // whose output is the graph output.
    let q = last.quantized(head)?;
    graph.dequantize(OUTPUT_NAME, &last.name, q)?;

    let (nodes, initializers) = graph.finish();
    let graph = GraphProto {
        node: nodes,
        name: Some("burn_qat_int8".into()),
        initializer: initializers,
        doc_string: Some("QDQ int8 model: uint8 activations, int8 per-channel weights, int32 biases".into()),
        input: vec![value_info(INPUT_NAME, &[vec![Dim::Batch], input_shape[1..].iter().map(|&d| Dim::Fixed(d)).collect()].concat())],
        output: vec![value_info(OUTPUT_NAME, &[Dim::Batch, Dim::Fixed(classes)])],
        value_info: vec![],
    };
    Ok(ModelProto {
        ir_version: Some(opset.ir_version()),
        producer_name: Some("burn-qat".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        domain: None,
        model_version: Some(1),
        doc_string: None,
        graph: Some(graph),
        opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset.version()) }],
    })
}

/// Splits off the required `[..., Linear, DeQuantize]` tail: returns the layers up to and
/// including the Linear, the DeQuantize's name, and the number of classes.
fn split_head(layers: &[Named<Int8Layer>]) -> Result<(&[Named<Int8Layer>], &str, usize)> {
    let describe = |l: Option<&Named<Int8Layer>>| match l {
        Some(l) => format!("{} ({})", l.name, l.layer.kind()),
        None => "nothing".to_string(),
    };
    let n = layers.len();
    let last = layers.last();
    let before = n.checked_sub(2).and_then(|i| layers.get(i));
    match (before.map(|l| &l.layer), last.map(|l| &l.layer)) {
        (Some(Int8Layer::Linear(linear)), Some(Int8Layer::DeQuantize(_))) => {
            Ok((&layers[..n - 1], layers[n - 1].name.as_str(), linear.out_features))
        }
        _ => Err(QatError::structure(
            last.map_or("", |l| l.name.as_str()),
            format!(
                "ONNX export: the model must end with a quantized Linear followed by a DeQuantStub \
                 (the logits); it ends with {} then {}",
                describe(before),
                describe(last)
            ),
        )),
    }
}

#[derive(Clone)]
enum Dim {
    Batch,
    Fixed(usize),
}

fn value_info(name: &str, dims: &[Dim]) -> ValueInfoProto {
    use tensor_shape_proto::{Dimension, dimension::Value};
    let dim = dims
        .iter()
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Batch => Value::DimParam(BATCH_DIM.into()),
                Dim::Fixed(n) => Value::DimValue(*n as i64),
            }),
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(data_type::FLOAT),
                shape: Some(TensorShapeProto { dim }),
            })),
        }),
        doc_string: None,
    }
}

fn file_error(path: &Path, reason: impl ToString) -> QatError {
    QatError::File { path: path.display().to_string(), reason: reason.to_string() }
}

/// Writes to a temporary file beside `path`, syncs it, and renames it over `path`, so a crash
/// never leaves a half-written model under the real name.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let file_name = path.file_name().ok_or_else(|| file_error(path, "not a file path"))?;
    let mut tmp_name = file_name.to_os_string();
    tmp_name.push(format!(".{}.tmp", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(bytes)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(file_error(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, e)
    })
}
