//! What a checkpoint needs beyond the model's state dict to continue a run exactly: the epoch
//! reached, the optimizer's momentum buffers, and the reports of the epochs already done.
//!
//! burn keys optimizer state by [`ParamId`], and a freshly built module gets fresh random ids,
//! so a saved optimizer state would not find its parameters in a rebuilt model. The training
//! loop therefore numbers the parameters itself ([`stable_param_ids`]: 1, 2, 3, ... in visit
//! order), which is the same for the same architecture in every process.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::optim::ModuleOptimizer;
use burn::tensor::{Bytes, Tensor};

use super::EpochReport;
use crate::error::{QatError, Result};
use crate::state_dict::{StateDict, TensorValue, Values};

/// The state-dict key under which a checkpoint stores the optimizer state (burn's burnpack
/// bytes of its `OptimizerRecord`, as a U8 tensor): one file, written atomically, holds both.
pub const OPTIMIZER_KEY: &str = "__optimizer__";

/// Where a training phase stands after an epoch; hand it back to
/// [`TrainRun::resumed_from`](super::TrainRun::resumed_from) to continue.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ResumePoint {
    /// Epochs of this phase done: training continues with epoch `epochs_done` (0-based).
    pub epochs_done: usize,
    /// The optimizer state after the last of them (burnpack bytes); empty before the first step.
    pub optimizer: Vec<u8>,
    /// How many per-parameter tensors `optimizer` holds, to check that loading restored them all.
    pub optimizer_tensors: usize,
    /// The reports of the epochs done, so that a resumed run returns the whole history.
    pub reports: Vec<EpochReport>,
}

impl ResumePoint {
    /// Adds the optimizer state to `state` (a model's state dict) under [`OPTIMIZER_KEY`].
    pub fn write_optimizer(&self, state: &mut StateDict) {
        let values = Values::U8(self.optimizer.clone());
        state.insert(OPTIMIZER_KEY.to_string(), TensorValue { shape: vec![self.optimizer.len()], values });
    }

    /// Takes the optimizer state out of a checkpoint's state dict (leaving the model's keys).
    pub fn take_optimizer(state: &mut StateDict, context: &str) -> Result<Vec<u8>> {
        match state.remove(OPTIMIZER_KEY) {
            None => Err(QatError::File {
                path: context.into(),
                reason: format!("no optimizer state ({OPTIMIZER_KEY}); it is not a training checkpoint"),
            }),
            Some(TensorValue { values: Values::U8(bytes), .. }) => Ok(bytes),
            Some(other) => Err(QatError::File {
                path: context.into(),
                reason: format!("{OPTIMIZER_KEY} must be a U8 tensor, found {}", other.values.dtype_name()),
            }),
        }
    }
}

/// Numbers the float parameters of `model` 1, 2, 3, ... in visit order, so that optimizer state
/// saved in one process finds the same parameters in a model rebuilt in another.
pub fn stable_param_ids<M: Module>(model: M) -> M {
    struct Renumber(u64);
    impl ModuleMapper for Renumber {
        fn map_float<const D: usize>(&mut self, mut param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.0 += 1;
            param.id = ParamId::from(self.0);
            param
        }
    }
    model.map(&mut Renumber(0))
}

/// The optimizer's state as bytes, and how many tensors it holds.
pub(crate) fn save_optimizer(optim: &ModuleOptimizer) -> Result<(Vec<u8>, usize)> {
    let record = optim.to_record();
    let tensors = record.len();
    let bytes = record
        .into_bytes()
        .map_err(|e| QatError::File { path: OPTIMIZER_KEY.into(), reason: format!("serializing the optimizer state: {e}") })?;
    let sorted = sorted_by_name(bytes)
        .map_err(|e| QatError::File { path: OPTIMIZER_KEY.into(), reason: format!("serializing the optimizer state: {e}") })?;
    Ok((sorted, tensors))
}

/// burn writes optimizer state tensors in hash-map order; the same state with its tensors sorted
/// by name, so that a checkpoint's bytes depend on its contents only.
fn sorted_by_name(bytes: Bytes) -> std::result::Result<Vec<u8>, burn_pack::Error> {
    let reader = burn_pack::Reader::from_bytes(bytes)?;
    let (scalars, metadata) = (reader.scalars().clone(), reader.metadata().clone());
    let mut tensors = reader.into_tensors()?;
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    let mut writer = burn_pack::Writer::new(tensors);
    for (key, value) in &scalars {
        writer = writer.with_scalar(key, *value);
    }
    for (key, value) in &metadata {
        writer = writer.with_metadata(key, value);
    }
    Ok(writer.into_bytes()?.to_vec())
}

/// Restores the optimizer state of `point` into `optim` for `model`. burn matches state to
/// parameters by id alone: it skips, without a word, state it cannot match, and panics at the
/// next step on state whose rank does not fit its parameter. So every state tensor is checked
/// against the parameter it names first, and what came back is counted.
pub(crate) fn load_optimizer<M: Module>(optim: ModuleOptimizer, point: &ResumePoint, model: &M) -> Result<ModuleOptimizer> {
    if point.optimizer.is_empty() {
        return Ok(optim);
    }
    check_optimizer_fits(&point.optimizer, model)?;
    let optim = optim
        .from_bytes(Bytes::from_bytes_vec(point.optimizer.clone()))
        .map_err(|e| QatError::File { path: OPTIMIZER_KEY.into(), reason: format!("the checkpoint's optimizer state is corrupt: {e}") })?;
    let restored = optim.to_record().len();
    if restored != point.optimizer_tensors {
        return Err(QatError::StateDict {
            problems: vec![format!(
                "the checkpoint's optimizer state restored {restored} of {} tensors; it was written for a different model",
                point.optimizer_tensors
            )],
        });
    }
    Ok(optim)
}

/// Every tensor of serialized optimizer state names a parameter of `model` with its shape.
fn check_optimizer_fits<M: Module>(bytes: &[u8], model: &M) -> Result<()> {
    struct Shapes(HashMap<u64, Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id.val(), param.val().dims().to_vec());
        }
    }
    let corrupt = |e: burn_pack::Error| QatError::File {
        path: OPTIMIZER_KEY.into(),
        reason: format!("the checkpoint's optimizer state is corrupt: {e}"),
    };
    let mut shapes = Shapes(HashMap::new());
    model.visit(&mut shapes);
    let tensors = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec())).and_then(|r| r.into_tensors()).map_err(corrupt)?;
    for tensor in tensors {
        let (name, _, shape, param_id, _) = tensor.into_parts().map_err(corrupt)?;
        let parameter = param_id.and_then(|id| shapes.0.get(&id));
        if parameter.map(Vec::as_slice) != Some(shape.as_slice()) {
            let found = parameter.map_or("no such parameter".to_string(), |p| format!("a parameter of shape {p:?}"));
            return Err(QatError::StateDict {
                problems: vec![format!(
                    "the checkpoint's optimizer state {name} (shape {:?}) finds {found} in this model; it was written for a different model",
                    shape.as_slice()
                )],
            });
        }
    }
    Ok(())
}

/// The reports as JSON, for a checkpoint's metadata: without the throughput, so that a
/// checkpoint's bytes depend on what was trained, not on how fast.
pub fn reports_to_json(reports: &[EpochReport]) -> String {
    let rows: Vec<_> = reports
        .iter()
        .map(|r| {
            serde_json::json!({
                "epoch": r.epoch,
                "loss": r.loss,
                "train_accuracy": r.train_accuracy,
                "test_accuracy": r.test_accuracy,
            })
        })
        .collect();
    serde_json::Value::Array(rows).to_string()
}

/// Reads back what [`reports_to_json`] wrote.
pub fn reports_from_json(json: &str) -> Result<Vec<EpochReport>> {
    let bad = |why: &str| QatError::File {
        path: "checkpoint metadata".into(),
        reason: format!("a checkpoint's epoch reports are unreadable ({why}): {json:.80}"),
    };
    let rows: Vec<serde_json::Value> = serde_json::from_str(json).map_err(|e| bad(&e.to_string()))?;
    rows.iter()
        .map(|row| {
            let number = |key: &str| row.get(key).and_then(serde_json::Value::as_f64).ok_or_else(|| bad(&format!("no number {key}")));
            Ok(EpochReport {
                epoch: number("epoch")? as usize,
                loss: number("loss")?,
                train_accuracy: number("train_accuracy")?,
                test_accuracy: number("test_accuracy")?,
                // Not stored since the checkpoints became reproducible byte for byte.
                samples_per_second: row.get("samples_per_second").and_then(serde_json::Value::as_f64).unwrap_or(0.0),
            })
        })
        .collect()
}
