//! Reading back any model file `train` or `convert` writes, whichever stage it holds.

use std::path::Path;

use burn::tensor::Device;

use super::file::{FORMAT_KEY, RUN_KEY, Stage, file_error};
use super::spec::RunSpec;
use crate::data::{DataSource, Dataset};
use crate::error::{QatError, Result};
use crate::state_dict::{LoadStateDict, load_safetensors};
use crate::train::OPTIMIZER_KEY;
use crate::workflow::{FloatModel, INT8_FORMAT, Int8Model, QatModel};

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
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (mut state, metadata) = load_safetensors(path).map_err(|e| match e {
            QatError::File { path, reason } => QatError::File {
                path,
                reason: format!("{reason}; pass a model file written by burn-qat: int8.safetensors, qat.safetensors, float.safetensors or checkpoint.safetensors"),
            },
            other => other,
        })?;
        if metadata.get(FORMAT_KEY).map(String::as_str) == Some(INT8_FORMAT) {
            let spec = metadata.contains_key(RUN_KEY).then(|| RunSpec::from_metadata(&metadata, path)).transpose()?;
            return Ok(Self::Int8(Int8Model::load(path)?, spec));
        }
        let spec = RunSpec::from_metadata(&metadata, path)?;
        let stage = Stage::read(&metadata, path)?;
        state.remove(OPTIMIZER_KEY);
        let in_file = |e: QatError| file_error(path, e.to_string());
        let mut float = spec.float_model(device)?;
        match stage {
            Stage::Float => {
                float.load_state_dict(&state).map_err(in_file)?;
                Ok(Self::Float(float, spec))
            }
            Stage::Qat => {
                let mut qat = spec.prepare(float)?;
                qat.load_state_dict(&state).map_err(in_file)?;
                Ok(Self::Qat(qat, spec))
            }
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
    pub fn into_qat(self, path: &Path, what: &str) -> Result<(QatModel, RunSpec)> {
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

/// Refuses test data the model cannot take: images of another shape or channel count, or
/// labels beyond its classes. Says what the model was trained on and what the data holds.
pub fn check_data_fits(spec: &RunSpec, data: &Dataset, path: &Path, source: &DataSource) -> Result<()> {
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
