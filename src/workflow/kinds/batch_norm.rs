//! A batch norm no conv precedes (with its ReLU when fused): per-channel affine on integers.

use serde_json::{Value as Json, json};

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::BatchNorm;
use crate::nn::batch_norm::bn_keys;
use crate::nn::intrinsic::BNReLU2d;
use crate::nn::quantized::{ActivationQParams, BatchNorm2d};
use crate::qconfig::QConfig;
use crate::state_dict::join;
use crate::state_dict::{StateDict, StateReader, TensorValue};
use crate::workflow::convert_chain::need_input;
use crate::workflow::deployment_arith::{Flow, Grid, batch_norm, need_grid};
use crate::workflow::float_layer::FloatOp;
use crate::workflow::int8_fields::{bool_of, missing, read_act, usize_of, write_act};
use crate::workflow::int8_layer::{Int8Layer, Int8Op, Int8Run};
use crate::workflow::layers::Value;
use crate::workflow::layers::{BatchNorm1d, BatchNorm3d};
use crate::workflow::qat_batch_norm::QatBatchNorm2d;
use crate::workflow::qat_layer::{Prepare, PrepareQat, QatLayer, QatOp, own_module_ops};

// Elementwise in f32 on either engine: the kernel is its own reference.
int8_requantizing_op!(BatchNorm2d, "BatchNorm2d", grids: [], forward: |m, x, _run| BatchNorm2d::forward(m, &x), save: save_batch_norm, load: load_batch_norm,
    export: batch_norm);

fn save_batch_norm(m: &BatchNorm2d, path: &str, out: &mut StateDict) -> Result<Json> {
    out.insert(format!("{path}.multiplier"), TensorValue::f32_vec(m.multiplier.clone()));
    out.insert(format!("{path}.offset"), TensorValue::f32_vec(m.offset.clone()));
    write_act(&format!("{path}.input"), &m.input, out);
    write_act(&format!("{path}.output"), &m.output, out);
    Ok(json!({"channels": m.channels(), "relu": m.relu}))
}

fn load_batch_norm(entry: &Json, p: &str, reader: &mut StateReader<'_>) -> Result<BatchNorm2d> {
    let c = usize_of(entry, "channels", p)?;
    let multiplier = reader.f32(&format!("{p}.multiplier"), Some(&[c]));
    let offset = reader.f32(&format!("{p}.offset"), Some(&[c]));
    let (input, output) = (read_act(&format!("{p}.input"), reader), read_act(&format!("{p}.output"), reader));
    let (Some((_, m)), Some((_, b)), Some(i), Some(o)) = (multiplier, offset, input, output) else { return Err(missing(reader)) };
    BatchNorm2d::from_parts(m, b, i, o, bool_of(entry, "relu", p)?)
}

impl QatOp for QatBatchNorm2d {
    fn kind(&self) -> &'static str {
        if self.relu { "BNReLU2d" } else { "BatchNorm2d" }
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        Ok(Value::Image(QatBatchNorm2d::forward(self, x.image(path)?, path)?))
    }

    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        let input = need_grid(grid, path)?;
        let output = Grid::of_output(&self.activation_post_process, path)?;
        Ok((Value::Image(batch_norm(x.image(path)?, &self.bn, input, output, self.relu)), Some(output)))
    }

    own_module_ops!();

    fn is_bn_frozen(&self) -> bool {
        self.bn.is_frozen()
    }

    fn convert(&self, input: Option<ActivationQParams>, path: &str) -> Result<Int8Layer> {
        Ok(Int8Layer::BatchNorm2d(self.to_quantized(need_input(input, path)?, path)?))
    }

    fn take_output_fake_quant(&mut self) -> Option<FakeQuantize> {
        self.activation_post_process.take()
    }
}

/// A batch norm right after a conv or linear folds into it: `fuse()` was forgotten.
fn unfused(path: &str) -> QatError {
    QatError::structure(path, "an unfused batch norm after a Conv2d or Linear; call fuse() first to fold it, or give it qconfig None")
}

/// A batch norm over images that no conv precedes: kept as BN with an output fake quant.
impl FloatOp for BatchNorm {
    fn kind(&self) -> &'static str {
        "BatchNorm2d"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        Ok(Value::Image(BatchNorm::forward(self, x.image(path)?, path)?))
    }

    fn set_training(&mut self, training: bool) {
        self.training = training;
    }

    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        BatchNorm::write_state(self, prefix, out);
    }

    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        BatchNorm::read_state(self, bn_keys(prefix), reader);
    }
}

impl PrepareQat for BatchNorm {
    fn prepare(self, qconfig: QConfig, path: &str, after_unfused: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
        if after_unfused {
            return Err(unfused(path));
        }
        Ok(QatLayer::BatchNorm2d(QatBatchNorm2d { bn: self, relu: false, activation_post_process: Some(qconfig.activation.init()?) }))
    }
}

/// A batch norm that quantizes only folded into the conv or linear before it (`$folds_into`):
/// its float forward `$forward` (of the batch norm `bn`, the input `x` and the path `p`), its BN
/// switch and state, and `prepare` refusing it with the fix.
macro_rules! foldable_batch_norm {
    ($ty:ty, $kind:literal, $folds_into:literal, |$bn:ident, $x:ident, $p:ident| $forward:expr) => {
        impl FloatOp for $ty {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn forward(&mut self, $x: Value, $p: &str) -> Result<Value> {
                let $bn = &mut self.bn;
                $forward
            }

            fn set_training(&mut self, training: bool) {
                self.bn.training = training;
            }

            fn write_state(&self, prefix: &str, out: &mut StateDict) {
                self.bn.write_state(prefix, out);
            }

            fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
                self.bn.read_state(bn_keys(prefix), reader);
            }
        }

        impl PrepareQat for $ty {
            fn prepare(self, _: QConfig, path: &str, after_unfused: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
                if after_unfused {
                    return Err(unfused(path));
                }
                Err(QatError::structure(
                    path,
                    format!(
                        "a {} quantizes only folded into the {} before it (fuse()); give it qconfig None to keep it in float",
                        $kind, $folds_into
                    ),
                ))
            }
        }
    };
}

// PyTorch's BatchNorm1d: features `[N, F]` or sequences `[N, C, L]`.
foldable_batch_norm!(BatchNorm1d, "BatchNorm1d", "Linear or Conv1d", |bn, x, p| Ok(match x {
    Value::Sequence(x) => Value::Sequence(bn.forward(x, p)?),
    x => Value::Features(bn.forward(x.features(p)?, p)?),
}));
foldable_batch_norm!(BatchNorm3d, "BatchNorm3d", "Conv3d", |bn, x, p| Ok(Value::Volume(bn.forward(x.tensor::<5>(p)?, p)?)));

impl FloatOp for BNReLU2d {
    fn kind(&self) -> &'static str {
        "BNReLU2d"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        Ok(Value::Image(BNReLU2d::forward(self, x.image(path)?)?))
    }

    fn set_training(&mut self, training: bool) {
        self.bn.training = training;
    }

    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        self.bn.write_state(&join(prefix, "0."), out);
    }

    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        self.bn.read_state(bn_keys(&join(prefix, "0.")), reader);
    }
}

impl PrepareQat for BNReLU2d {
    fn prepare(self, qconfig: QConfig, _: &str, _: bool, _: &mut Prepare<'_>) -> Result<QatLayer> {
        Ok(QatLayer::BatchNorm2d(QatBatchNorm2d { bn: self.bn, relu: true, activation_post_process: Some(qconfig.activation.init()?) }))
    }
}
