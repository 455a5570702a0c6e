use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use crate::error::{QatError, Result};
use crate::ops::tensor_values;
use crate::parallel::collective::all_reduce_min_max;

/// [`channel_min_max`] of a tensor, computed on its own buffer (no host copy) for f32 and f64.
pub fn tensor_min_max<const D: usize>(x: &Tensor<D>, axis: Option<usize>) -> Result<(Vec<f32>, Vec<f32>)> {
    if !matches!(x.dtype(), DType::F32 | DType::F64) {
        return channel_min_max(&tensor_values(x), &x.dims(), axis);
    }
    let (min, max, finite) = crate::ops::min_max(x, axis);
    if !finite {
        return Err(non_finite());
    }
    Ok((min, max))
}

/// What an observer takes from a batch: [`tensor_min_max`], from `known` (`x`'s per-tensor
/// `(min, max, all finite)` as `ops::min_max` gives it) when that is given and `axis` is
/// `None`; in data-parallel training, over every replica's share of the batch.
pub(crate) fn known_or_tensor_min_max<const D: usize>(
    x: &Tensor<D>,
    axis: Option<usize>,
    known: Option<(f32, f32, bool)>,
) -> Result<(Vec<f32>, Vec<f32>)> {
    all_reduce_min_max(local_min_max(x, axis, known))
}

fn local_min_max<const D: usize>(x: &Tensor<D>, axis: Option<usize>, known: Option<(f32, f32, bool)>) -> Result<(Vec<f32>, Vec<f32>)> {
    match (axis, known) {
        (None, Some((min, max, finite))) if matches!(x.dtype(), DType::F32 | DType::F64) => {
            if !finite {
                return Err(non_finite());
            }
            Ok((vec![min], vec![max]))
        }
        _ => tensor_min_max(x, axis),
    }
}

pub(super) fn non_finite() -> QatError {
    QatError::NonFinite { context: "observer".into(), what: "an observed value (NaN or infinity)".into() }
}

/// Min and max over the whole tensor (`axis: None`) or per index of `axis`, in one pass.
/// NaN or infinite values are an error: a poisoned range would silently produce NaN scales.
pub fn channel_min_max(values: &[f32], shape: &[usize], axis: Option<usize>) -> Result<(Vec<f32>, Vec<f32>)> {
    let (channels, inner) = match axis {
        None => (1, values.len()),
        Some(a) => (shape[a], shape[a + 1..].iter().product::<usize>()),
    };
    let mut min = vec![f32::INFINITY; channels];
    let mut max = vec![f32::NEG_INFINITY; channels];
    if inner == 0 {
        return Ok((min, max));
    }
    // Per-channel statistics run by channel runs; per-tensor in parallel chunks.
    let chunk_minmax = |run: &[f32]| {
        run.iter().fold((f32::INFINITY, f32::NEG_INFINITY, true), |(lo, hi, ok), &v| (lo.min(v), hi.max(v), ok && v.is_finite()))
    };
    let mut all_finite = true;
    if channels == 1 {
        let (lo, hi, ok) = values
            .par_chunks(64 * 1024)
            .map(chunk_minmax)
            .reduce(|| (f32::INFINITY, f32::NEG_INFINITY, true), |a, b| (a.0.min(b.0), a.1.max(b.1), a.2 && b.2));
        min[0] = lo;
        max[0] = hi;
        all_finite = ok;
    } else {
        for (run_index, run) in values.chunks(inner).enumerate() {
            let c = run_index % channels;
            let (lo, hi, ok) = chunk_minmax(run);
            min[c] = min[c].min(lo);
            max[c] = max[c].max(hi);
            all_finite &= ok;
        }
    }
    if !all_finite {
        return Err(non_finite());
    }
    Ok((min, max))
}
