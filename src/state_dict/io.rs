use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::{StateDict, TensorValue, Values};
use crate::error::{QatError, Result};

fn file_error(path: &Path, reason: impl Into<String>) -> QatError {
    QatError::File { path: path.display().to_string(), reason: reason.into() }
}

/// Reads a safetensors file written by PyTorch (`safetensors.torch.save_file`) or by us, with its
/// string metadata. Truncated or corrupt files and unsupported dtypes are errors naming the file
/// and the key.
pub fn load_safetensors(path: impl AsRef<Path>) -> Result<(StateDict, HashMap<String, String>)> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    let not_safetensors = |e: safetensors::SafeTensorError| {
        let reason = match looks_like(&bytes) {
            Some(what) => format!("not a safetensors file: it holds {what}"),
            None => format!("not a valid safetensors file ({e})"),
        };
        file_error(path, reason)
    };
    let (_, metadata) = SafeTensors::read_metadata(&bytes).map_err(not_safetensors)?;
    let tensors = SafeTensors::deserialize(&bytes).map_err(|e| file_error(path, format!("not a valid safetensors file ({e})")))?;
    let mut state = StateDict::new();
    for (name, view) in tensors.tensors() {
        let values = decode(&view).map_err(|reason| file_error(path, format!("tensor {name:?}: {reason}")))?;
        state.insert(name, TensorValue { shape: view.shape().to_vec(), values });
    }
    Ok((state, metadata.metadata().clone().unwrap_or_default()))
}

/// What a file that is not safetensors holds, told by its first bytes, for the error message.
fn looks_like(bytes: &[u8]) -> Option<&'static str> {
    let window = &bytes[..bytes.len().min(256)];
    let contains = |needle: &[u8]| window.windows(needle.len()).any(|w| w == needle);
    Some(match bytes {
        [] => "nothing (it is empty)",
        [0x89, b'P', b'N', b'G', ..] => "a PNG image",
        [0x1f, 0x8b, ..] => "gzip-compressed data",
        [b'P', b'K', 3, 4, ..] => "a zip archive (a PyTorch .pt / .pth file? save its state dict with safetensors.torch.save_file)",
        [0, 0, 8, 1..=4, ..] => "IDX data (images or labels), not a model",
        [b'{', ..] | [b'[', ..] => "JSON text",
        [0x08, ..] if contains(b"onnx") || contains(b"burn-qat") => "an ONNX model (export writes these; they are not read back)",
        _ => return None,
    })
}

fn decode(view: &TensorView<'_>) -> std::result::Result<Values, String> {
    let data = view.data();
    fn le<const N: usize, T>(data: &[u8], f: fn([u8; N]) -> T) -> Vec<T> {
        data.chunks_exact(N).map(|c| f(c.try_into().expect("chunk of N bytes"))).collect()
    }
    Ok(match view.dtype() {
        Dtype::F32 => Values::F32(le(data, f32::from_le_bytes)),
        Dtype::F64 => Values::F64(le(data, f64::from_le_bytes)),
        Dtype::I64 => Values::I64(le(data, i64::from_le_bytes)),
        Dtype::I32 => Values::I32(le(data, i32::from_le_bytes)),
        Dtype::U8 => Values::U8(data.to_vec()),
        Dtype::I8 => Values::I8(data.iter().map(|&b| b as i8).collect()),
        other => {
            return Err(format!("unsupported dtype {other:?} (expected F32, F64, I64, I32, U8 or I8)"));
        }
    })
}

fn encode(values: &Values) -> (Dtype, Vec<u8>) {
    match values {
        Values::F32(v) => (Dtype::F32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::F64(v) => (Dtype::F64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::I64(v) => (Dtype::I64, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::I32(v) => (Dtype::I32, v.iter().flat_map(|x| x.to_le_bytes()).collect()),
        Values::U8(v) => (Dtype::U8, v.clone()),
        Values::I8(v) => (Dtype::I8, v.iter().map(|&x| x as u8).collect()),
    }
}

/// Writes a state dict as safetensors, atomically: to a temporary file beside the target, then
/// renamed over it, so a crash never leaves a half-written file under the real name.
pub fn save_safetensors(path: impl AsRef<Path>, state: &StateDict, metadata: &HashMap<String, String>) -> Result<()> {
    let path = path.as_ref();
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = state
        .iter()
        .map(|(k, t)| {
            let (dtype, bytes) = encode(&t.values);
            (k.clone(), dtype, t.shape.clone(), bytes)
        })
        .collect();
    let views = encoded
        .iter()
        .map(|(k, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (k.clone(), v))
                .map_err(|e| file_error(path, format!("tensor {k:?}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let metadata = (!metadata.is_empty()).then(|| metadata.clone());
    let bytes = safetensors::serialize(views, &metadata).map_err(|e| file_error(path, e.to_string()))?;
    let bytes = with_sorted_header(bytes).map_err(|e| file_error(path, e))?;
    let tmp = path.with_extension("safetensors.tmp");
    // Whatever fails, the temporary goes and the error names the user's path.
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    written.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        file_error(path, format!("could not write the file ({e}); nothing was written under this name"))
    })
}

/// The same file with its JSON header's keys sorted: `safetensors` writes the metadata in
/// `HashMap` order, so the same contents would give different bytes from run to run. Tensor
/// offsets are relative to the data, so only the header and its length change.
fn with_sorted_header(bytes: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let length = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
    let (header, data) = bytes[8..].split_at(length);
    let header: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(header).map_err(|e| format!("re-reading the header just written: {e}"))?;
    let mut sorted = serde_json::Map::new();
    for (key, value) in header {
        let value = match value {
            serde_json::Value::Object(entries) => {
                serde_json::Value::Object(entries.into_iter().collect::<std::collections::BTreeMap<_, _>>().into_iter().collect())
            }
            other => other,
        };
        sorted.insert(key, value);
    }
    let mut header = serde_json::to_vec(&sorted).map_err(|e| e.to_string())?;
    // The format pads the header with spaces to a multiple of 8 bytes.
    header.resize(header.len().next_multiple_of(8), b' ');
    Ok([&(header.len() as u64).to_le_bytes()[..], &header, data].concat())
}
