//! What every QAT module shares: the optional output fake quant that `prepare_qat` attaches
//! (PyTorch's `activation_post_process` child), and parameter (de)serialization.

use burn::module::Param;
use burn::tensor::{DType, Tensor, TensorData};

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::tensor_util::{host_values, replace_param};
use crate::state_dict::{StateDict, StateReader, TensorValue, Values};

/// The output activation fake quant, if attached.
pub(crate) trait OutputFakeQuant {
    fn apply<const D: usize>(&mut self, y: Tensor<D>, layer: &str) -> Result<Tensor<D>> {
        self.apply_observed(y, None, layer)
    }

    /// [`apply`](Self::apply) given `y`'s per-tensor `(min, max, all finite)` if already known
    /// (as `ops::min_max` computes it), which a per-tensor observer then uses instead of a pass.
    fn apply_observed<const D: usize>(&mut self, y: Tensor<D>, min_max: Option<(f32, f32, bool)>, layer: &str) -> Result<Tensor<D>>;
}

impl OutputFakeQuant for Option<FakeQuantize> {
    fn apply_observed<const D: usize>(&mut self, y: Tensor<D>, min_max: Option<(f32, f32, bool)>, layer: &str) -> Result<Tensor<D>> {
        match self {
            Some(fq) => fq.forward_observed(y, min_max).map_err(|e| in_layer(e, layer, "output")),
            None => Ok(y),
        }
    }
}

/// Names the layer (and which of its tensors) in an error raised by one of its fake quants.
pub(crate) fn in_layer(error: QatError, layer: &str, tensor: &str) -> QatError {
    match error {
        QatError::NonFinite { what, .. } => QatError::NonFinite { context: format!("{layer} ({tensor})"), what },
        other => other,
    }
}

/// Writes a parameter under `key`, as f64 if it is f64, else f32.
pub(crate) fn write_param<const D: usize>(param: &Param<Tensor<D>>, key: String, out: &mut StateDict) {
    let t = param.val();
    let shape = t.dims().to_vec();
    let values = host_values(&t);
    let value = if t.dtype() == DType::F64 {
        TensorValue { shape, values: Values::F64(values) }
    } else {
        TensorValue::f32(shape, values.into_iter().map(|v| v as f32).collect())
    };
    out.insert(key, value);
}

/// Reads a parameter of the same shape from `key`, keeping its id. The stored dtype (f32 or
/// f64) becomes the parameter's dtype, as a PyTorch `load_state_dict` of a `.double()` module.
pub(crate) fn read_param<const D: usize>(param: &mut Param<Tensor<D>>, key: &str, reader: &mut StateReader<'_>) {
    let current = param.val();
    let dims = current.dims();
    if let Some((_, values, is_f64)) = reader.float(key, Some(&dims)) {
        let dtype = if is_f64 { DType::F64 } else { DType::F32 };
        let value = Tensor::from_data(TensorData::new(values, dims), (&current.device(), dtype));
        *param = replace_param(param, value);
    }
}
