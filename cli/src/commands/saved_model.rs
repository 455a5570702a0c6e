//! Reading back any model file `train` or `convert` writes, whichever stage it holds.

use std::collections::HashMap;
use std::path::Path;

use burn::tensor::Device;
use burn_qat::QatError;
use burn_qat::state_dict::{LoadStateDict, load_safetensors};
use burn_qat::train::OPTIMIZER_KEY;
use burn_qat::workflow::{FloatModel, INT8_FORMAT, Int8Model, QatModel};

use super::run_spec::RunSpec;

/// The metadata key naming the stage a file holds: [`FLOAT_STAGE`] or [`QAT_STAGE`].
pub const STAGE_KEY: &str = "stage";
pub const FLOAT_STAGE: &str = "float";
pub const QAT_STAGE: &str = "qat";
/// The metadata key holding the training flags (JSON), the data among them.
pub const TRAINING_KEY: &str = "training";

/// A model file's content.
pub enum SavedModel {
    /// With the run that made it, where the file records one (files of `train` and `convert`
    /// since they record their input).
    Int8(Int8Model, Option<RunSpec>),
    Qat(QatModel, RunSpec),
    Float(FloatModel, RunSpec),
}

impl SavedModel {
    /// Loads `path`: an int8 model, or a float or QAT state dict (a checkpoint's optimizer state
    /// is ignored) into the architecture its metadata names.
    pub fn load(path: &Path, device: &Device) -> burn_qat::Result<Self> {
        let (mut state, metadata) = load_safetensors(path).map_err(|e| match e {
            QatError::File { path, reason } => QatError::File {
                path,
                reason: format!("{reason}; pass a model file written by burn-qat: int8.safetensors, qat.safetensors, float.safetensors or checkpoint.safetensors"),
            },
            other => other,
        })?;
        if metadata.get("format").map(String::as_str) == Some(INT8_FORMAT) {
            let spec = metadata.contains_key(super::run_spec::RUN_KEY).then(|| RunSpec::from_metadata(&metadata, path)).transpose()?;
            return Ok(Self::Int8(Int8Model::load(path)?, spec));
        }
        let spec = RunSpec::from_metadata(&metadata, path)?;
        state.remove(OPTIMIZER_KEY);
        let in_file = |e: QatError| QatError::File { path: path.display().to_string(), reason: e.to_string() };
        let mut float = spec.float_model(device)?;
        match metadata.get(STAGE_KEY).map(String::as_str) {
            Some(FLOAT_STAGE) => {
                float.load_state_dict(&state).map_err(in_file)?;
                Ok(Self::Float(float, spec))
            }
            Some(QAT_STAGE) => {
                let mut qat = spec.prepare(float)?;
                qat.load_state_dict(&state).map_err(in_file)?;
                Ok(Self::Qat(qat, spec))
            }
            other => Err(QatError::File {
                path: path.display().to_string(),
                reason: format!("metadata {STAGE_KEY} is {other:?}, expected \"{FLOAT_STAGE}\" or \"{QAT_STAGE}\""),
            }),
        }
    }

    /// The run the file records (`None` for an int8 file that does not say).
    pub fn spec(&self) -> Option<&RunSpec> {
        match self {
            Self::Int8(_, spec) => spec.as_ref(),
            Self::Qat(_, spec) | Self::Float(_, spec) => Some(spec),
        }
    }

    /// The QAT model, or an error saying what the file holds instead.
    pub fn into_qat(self, path: &Path, what: &str) -> burn_qat::Result<(QatModel, RunSpec)> {
        let holds = match self {
            Self::Qat(model, spec) => return Ok((model, spec)),
            Self::Int8(..) => "an int8 model",
            Self::Float(..) => "a float model (from the float phase)",
        };
        Err(QatError::File {
            path: path.display().to_string(),
            reason: format!(
                "{what} needs a QAT model, but the file holds {holds}; pass qat.safetensors or a checkpoint from the QAT phase"
            ),
        })
    }
}

/// The data a run trained on, as its files record it (`None` for files that do not say, such
/// as int8 models): the default for `eval` and `inspect`.
pub fn trained_data(path: &Path) -> Option<burn_qat::data::DataSource> {
    let (_, metadata) = load_safetensors(path).ok()?;
    let training: serde_json::Value = serde_json::from_str(metadata.get(TRAINING_KEY)?).ok()?;
    burn_qat::data::DataSource::parse(training["data"].as_str()?).ok()
}

/// The metadata that says what a model file is for, copied from the file a command read into
/// the file it writes: the run (model, input shape, normalization, qconfig) and the training
/// flags (the data among them).
pub fn provenance(path: &Path) -> burn_qat::Result<HashMap<String, String>> {
    let (_, metadata) = load_safetensors(path)?;
    Ok(metadata.into_iter().filter(|(k, _)| k == super::run_spec::RUN_KEY || k == TRAINING_KEY).collect())
}

/// Refuses test data the model cannot take: images of another shape or channel count, or
/// labels beyond its classes. Says what the model was trained on and what the data holds.
pub fn check_data_fits(
    spec: &RunSpec,
    data: &burn_qat::data::Dataset,
    path: &Path,
    source: &burn_qat::data::DataSource,
) -> burn_qat::Result<()> {
    let input = spec.input;
    let model = [input.channels, input.height, input.width];
    let holds = [data.channels, data.rows, data.cols];
    if model != holds || data.classes > input.classes {
        let shape = |[c, h, w]: [usize; 3]| format!("{c}x{h}x{w}");
        return Err(QatError::ShapeMismatch {
            context: path.display().to_string(),
            expected: format!("data like the model was trained on ({} images, {} classes, pixels / 255)", shape(model), input.classes),
            actual: format!(
                "{source} holds {} images with {} classes; pass --data with data of the model's shape",
                shape(holds),
                data.classes
            ),
        });
    }
    Ok(())
}
