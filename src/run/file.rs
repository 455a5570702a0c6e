//! The metadata schema of a run's safetensors files, in one place: what `burn-qat train` writes
//! into `float.safetensors`, `qat.safetensors`, `checkpoint.safetensors` and the int8 files, and
//! what `eval`, `convert`, `inspect`, `export` and `train --resume` read back.
//!
//! Every file of a run records the run ([`RUN_KEY`]: a [`RunSpec`]) and the training flags
//! ([`TRAINING_KEY`], the data among them). A float or QAT file adds its [`Stage`]; a
//! checkpoint adds where training stands ([`Checkpoint`]) and the optimizer state as the
//! tensor [`OPTIMIZER_KEY`](crate::train::OPTIMIZER_KEY).

use std::collections::HashMap;
use std::path::Path;

use super::spec::RunSpec;
use crate::data::DataSource;
use crate::error::{QatError, Result};
use crate::state_dict::{StateDict, load_safetensors, save_safetensors};
use crate::train::{EpochReport, ResumePoint, reports_from_json, reports_to_json};

/// The key holding the [`RunSpec`] as JSON.
pub const RUN_KEY: &str = "burn_qat_run";
/// The key holding the training flags as JSON (`data`, `epochs`, `lr`, `seed`, ...).
pub const TRAINING_KEY: &str = "training";
/// The key holding the qconfig in words, for the reader.
pub const QCONFIG_KEY: &str = "qconfig";
/// The key naming what kind of file it is; an int8 model's says
/// [`INT8_FORMAT`](crate::workflow::INT8_FORMAT).
pub const FORMAT_KEY: &str = "format";
/// [`FORMAT_KEY`] of float, QAT and checkpoint files.
pub const CHECKPOINT_FORMAT: &str = "burn-qat checkpoint";
/// The key naming the [`Stage`] a float or QAT file holds.
pub const STAGE_KEY: &str = "stage";
/// Checkpoint keys: epochs of its phase done, the phase's epochs in all, the epoch reports so
/// far (JSON), how many tensors the optimizer state holds, and in the QAT phase the float
/// phase's reports.
pub const EPOCH_KEY: &str = "epoch";
pub const EPOCHS_KEY: &str = "epochs";
pub const REPORTS_KEY: &str = "reports";
pub const OPTIMIZER_TENSORS_KEY: &str = "optimizer_tensors";
pub const FLOAT_REPORTS_KEY: &str = "float_reports";

/// Which model a float or QAT file (or checkpoint) holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The float model, before fusion.
    Float,
    /// The QAT model (fused and prepared with the run's qconfig).
    Qat,
}

impl Stage {
    /// The value stored under [`STAGE_KEY`].
    pub fn name(self) -> &'static str {
        match self {
            Self::Float => "float",
            Self::Qat => "qat",
        }
    }

    pub(super) fn read(metadata: &HashMap<String, String>, path: &Path) -> Result<Self> {
        match metadata.get(STAGE_KEY).map(String::as_str) {
            Some("float") => Ok(Self::Float),
            Some("qat") => Ok(Self::Qat),
            other => Err(file_error(path, format!("metadata {STAGE_KEY} is {other:?}, expected \"float\" or \"qat\""))),
        }
    }
}

impl RunSpec {
    /// Reads the spec from a file's metadata ([`RUN_KEY`]); the error says which file and what
    /// is missing.
    pub fn from_metadata(metadata: &HashMap<String, String>, path: &Path) -> Result<Self> {
        let json = metadata.get(RUN_KEY).ok_or_else(|| {
            file_error(
                path,
                format!(
                    "no {RUN_KEY} metadata saying which model it holds; pass a qat.safetensors, float.safetensors or checkpoint.safetensors written by `burn-qat train`"
                ),
            )
        })?;
        RunSpec::from_json(json, RUN_KEY, path)
    }
}

/// What every float, QAT and checkpoint file of a run records about the run.
#[derive(Clone, Debug, PartialEq)]
pub struct RunRecord {
    pub spec: RunSpec,
    /// The training flags (JSON object); `data` names the data the run trained on.
    pub training: serde_json::Value,
    /// The qconfig in words.
    pub qconfig: String,
}

impl RunRecord {
    /// The metadata of the run's float, QAT and checkpoint files, before their stage.
    pub fn metadata(&self) -> HashMap<String, String> {
        HashMap::from([
            (FORMAT_KEY.to_string(), CHECKPOINT_FORMAT.to_string()),
            (RUN_KEY.to_string(), self.spec.to_json()),
            (TRAINING_KEY.to_string(), self.training.to_string()),
            (QCONFIG_KEY.to_string(), self.qconfig.clone()),
        ])
    }

    /// Writes a model's state dict as the run's file of `stage` (`float.safetensors`,
    /// `qat.safetensors`).
    pub fn save_model(&self, path: &Path, state: &StateDict, stage: Stage) -> Result<()> {
        let mut metadata = self.metadata();
        metadata.insert(STAGE_KEY.to_string(), stage.name().to_string());
        save_safetensors(path, state, &metadata)
    }
}

/// The metadata that says what a model file is for, copied from the file a command read into
/// the file it writes (an int8 model's, say): the run and the training flags.
pub fn provenance(path: &Path) -> Result<HashMap<String, String>> {
    let (_, metadata) = load_safetensors(path)?;
    Ok(provenance_of(&metadata))
}

/// [`provenance`] of metadata already read.
pub fn provenance_of(metadata: &HashMap<String, String>) -> HashMap<String, String> {
    metadata.iter().filter(|(k, _)| *k == RUN_KEY || *k == TRAINING_KEY).map(|(k, v)| (k.clone(), v.clone())).collect()
}

/// The data a run trained on, as its files record it (`None` for files that do not say, such
/// as int8 models of other origin): the default for `eval` and `inspect`.
pub fn trained_data(path: &Path) -> Option<DataSource> {
    let (_, metadata) = load_safetensors(path).ok()?;
    let training: serde_json::Value = serde_json::from_str(metadata.get(TRAINING_KEY)?).ok()?;
    DataSource::parse(training["data"].as_str()?).ok()
}

/// A training checkpoint: the model of one phase after some epochs, and what the training loop
/// needs to continue it bit for bit. Written after every epoch, atomically.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    pub stage: Stage,
    /// The phase's epochs in all.
    pub epochs: usize,
    /// Epochs done, optimizer state and the reports of the epochs done.
    pub point: ResumePoint,
    /// In the QAT phase, the float phase's reports (empty in the float phase).
    pub float_reports: Vec<EpochReport>,
    /// The model's state dict (without the optimizer state).
    pub state: StateDict,
    /// The file's metadata as read, the run's among it (see [`RunRecord::metadata`]).
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// Writes `state` with the optimizer state and position of `point` into `path`, with the
    /// run's `metadata` ([`RunRecord::metadata`]).
    pub fn save(
        path: &Path,
        mut state: StateDict,
        point: &ResumePoint,
        position: CheckpointPosition<'_>,
        metadata: &HashMap<String, String>,
    ) -> Result<()> {
        point.write_optimizer(&mut state);
        let mut metadata = metadata.clone();
        metadata.insert(STAGE_KEY.into(), position.stage.name().into());
        metadata.insert(EPOCH_KEY.into(), point.epochs_done.to_string());
        metadata.insert(EPOCHS_KEY.into(), position.epochs.to_string());
        metadata.insert(REPORTS_KEY.into(), reports_to_json(&point.reports));
        metadata.insert(OPTIMIZER_TENSORS_KEY.into(), point.optimizer_tensors.to_string());
        if position.stage == Stage::Qat {
            metadata.insert(FLOAT_REPORTS_KEY.into(), reports_to_json(position.float_reports));
        }
        save_safetensors(path, &state, &metadata)
    }

    /// Reads a checkpoint; the error names the file and what it lacks.
    pub fn load(path: &Path) -> Result<Self> {
        let (mut state, metadata) = load_safetensors(path)?;
        let bad = |why: String| file_error(path, why);
        let get = |key: &str| metadata.get(key).ok_or_else(|| bad(format!("no {key} metadata; not a training checkpoint")));
        let number = |key: &str| get(key)?.parse::<usize>().map_err(|e| bad(format!("metadata {key}: {e}")));
        let reports = |key: &str| reports_from_json(get(key)?).map_err(|e| bad(e.to_string()));
        let stage = Stage::read(&metadata, path)?;
        let epochs_done = number(EPOCH_KEY)?;
        let epochs = number(EPOCHS_KEY)?;
        let optimizer_tensors = number(OPTIMIZER_TENSORS_KEY)?;
        let point_reports = reports(REPORTS_KEY)?;
        let float_reports = if stage == Stage::Qat { reports(FLOAT_REPORTS_KEY)? } else { Vec::new() };
        let optimizer = ResumePoint::take_optimizer(&mut state, &path.display().to_string())?;
        let point = ResumePoint { epochs_done, optimizer, optimizer_tensors, reports: point_reports };
        Ok(Self { stage, epochs, point, float_reports, state, metadata })
    }

    /// The run the checkpoint belongs to.
    pub fn spec(&self, path: &Path) -> Result<RunSpec> {
        RunSpec::from_metadata(&self.metadata, path)
    }
}

/// Where a checkpoint stands besides its [`ResumePoint`]: the phase, its epochs in all, and in
/// the QAT phase the float phase's reports.
#[derive(Clone, Copy, Debug)]
pub struct CheckpointPosition<'a> {
    pub stage: Stage,
    pub epochs: usize,
    pub float_reports: &'a [EpochReport],
}

/// A file error on `path`.
pub(super) fn file_error(path: &Path, reason: String) -> QatError {
    QatError::File { path: path.display().to_string(), reason }
}
