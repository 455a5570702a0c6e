use std::collections::{BTreeSet, HashMap};

use super::{StateDict, TensorValue, Values};
use crate::error::{QatError, Result};

/// Reads typed values out of a state dict for one module tree, remembering which keys were used
/// and every problem met, so that a load can be checked whole before it is applied.
pub struct StateReader<'a> {
    state: &'a StateDict,
    used: BTreeSet<String>,
    problems: Vec<String>,
    /// Keys stored with a different (same-size) shape than the module reads them with.
    stored_shapes: HashMap<String, Vec<usize>>,
}

impl<'a> StateReader<'a> {
    pub fn new(state: &'a StateDict) -> Self {
        Self { state, used: BTreeSet::new(), problems: Vec::new(), stored_shapes: HashMap::new() }
    }

    /// Declares that `key` is stored as `stored` while the module reads it with another shape
    /// of the same size (a Conv1d weight `[O, I, K]` read by a 2-d kernel as `[O, I, 1, K]`).
    pub fn expect_stored_shape(&mut self, key: String, stored: Vec<usize>) {
        self.stored_shapes.insert(key, stored);
    }

    /// Records a problem found by the caller (a value out of range, ...).
    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// The problems found so far.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    /// Whether `key` is present (and marks it used).
    pub fn has(&mut self, key: &str) -> bool {
        let present = self.state.contains_key(key);
        if present {
            self.used.insert(key.to_string());
        }
        present
    }

    fn take(&mut self, key: &str) -> Option<&'a TensorValue> {
        match self.state.get(key) {
            Some(t) => {
                self.used.insert(key.to_string());
                Some(t)
            }
            None => {
                self.problems.push(format!("missing key {key:?}"));
                None
            }
        }
    }

    fn check_shape(&mut self, key: &str, t: &TensorValue, shape: Option<&[usize]>) -> bool {
        if t.numel() != t.values.len() {
            self.problems.push(format!("key {key:?}: shape {:?} does not match its {} values", t.shape, t.values.len()));
            return false;
        }
        match shape {
            Some(_) if self.stored_shapes.get(key) == Some(&t.shape) => true,
            Some(shape) if t.shape != shape => {
                let expected = self.stored_shapes.get(key).map_or(shape, Vec::as_slice);
                self.problems.push(format!("key {key:?}: expected shape {expected:?}, found {:?}", t.shape));
                false
            }
            _ => true,
        }
    }

    /// f32 values with an exact shape (or any shape when `None`). f64 is accepted too (a
    /// PyTorch module after `.double()` stores its buffers so) and rounded to f32.
    pub fn f32(&mut self, key: &str, shape: Option<&[usize]>) -> Option<(Vec<usize>, Vec<f32>)> {
        let t = self.take(key)?;
        if !self.check_shape(key, t, shape) {
            return None;
        }
        match &t.values {
            Values::F32(v) => Some((t.shape.clone(), v.clone())),
            Values::F64(v) => Some((t.shape.clone(), v.iter().map(|&x| x as f32).collect())),
            other => {
                self.problems.push(format!("key {key:?}: expected dtype F32, found {}", other.dtype_name()));
                None
            }
        }
    }

    /// Float values stored as f32 or f64, widened to f64, with whether they were f64.
    pub fn float(&mut self, key: &str, shape: Option<&[usize]>) -> Option<(Vec<usize>, Vec<f64>, bool)> {
        let t = self.take(key)?;
        if !self.check_shape(key, t, shape) {
            return None;
        }
        match &t.values {
            Values::F32(v) => Some((t.shape.clone(), v.iter().map(|&x| x as f64).collect(), false)),
            Values::F64(v) => Some((t.shape.clone(), v.clone(), true)),
            other => {
                self.problems.push(format!("key {key:?}: expected dtype F32 or F64, found {}", other.dtype_name()));
                None
            }
        }
    }

    /// Integer values of any integer dtype (PyTorch stores flags as uint8 in FakeQuantize and as
    /// int64 in the fused variant; zero points as int32 or int64), widened to i64.
    pub fn int(&mut self, key: &str, shape: Option<&[usize]>) -> Option<(Vec<usize>, Vec<i64>)> {
        let t = self.take(key)?;
        if !self.check_shape(key, t, shape) {
            return None;
        }
        let values = match &t.values {
            Values::I64(v) => v.clone(),
            Values::I32(v) => v.iter().map(|&x| x as i64).collect(),
            Values::U8(v) => v.iter().map(|&x| x as i64).collect(),
            Values::I8(v) => v.iter().map(|&x| x as i64).collect(),
            other => {
                self.problems.push(format!("key {key:?}: expected an integer dtype, found {}", other.dtype_name()));
                return None;
            }
        };
        Some((t.shape.clone(), values))
    }

    /// Finishes the read: an error listing every problem and every key nobody asked for.
    pub fn finish(mut self) -> Result<()> {
        for key in self.state.keys() {
            if !self.used.contains(key) {
                self.problems.push(format!("unexpected key {key:?}"));
            }
        }
        if self.problems.is_empty() { Ok(()) } else { Err(QatError::StateDict { problems: self.problems }) }
    }
}

/// A module that can load a PyTorch-layout state dict, all or nothing.
pub trait LoadStateDict: Clone {
    /// Reads this module's keys under `prefix` into `self`, reporting problems to `reader`.
    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>);

    /// Loads `state` (strict: every key must be used, none missing). On any problem the module is
    /// left untouched and the error lists all of them.
    fn load_state_dict(&mut self, state: &StateDict) -> Result<()> {
        let mut staged = self.clone();
        let mut reader = StateReader::new(state);
        staged.read_state("", &mut reader);
        reader.finish()?;
        *self = staged;
        Ok(())
    }
}
