//! How an observer measures one observation's range before its running statistics (min/max or
//! moving average) take it in. PyTorch's observers take the exact min and max; at low bit widths
//! one outlier then stretches the grid for every other value, so calibration tools also clip:
//! at a percentile, or where the quantization error is smallest (as TensorRT's and
//! OpenVINO's calibrators do).

use super::channel_min_max;
use crate::error::{QatError, Result};
use crate::quant::{QParamFormula, QParams, QuantSpec, quantize_value};

/// The range one observation contributes.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum RangeEstimator {
    /// The exact min and max (PyTorch's observers).
    #[default]
    MinMax,
    /// The `(100 - p)`-th and `p`-th percentiles, e.g. `p = 99.99`.
    Percentile { percentile: f32 },
    /// The min/max shrunk by the factor (of 50 from 1 down to 0.02) whose quantization has the
    /// smallest mean squared error on the observed values.
    Mse,
}

/// Values searched by [`RangeEstimator::Mse`] at most: a deterministic stride through larger
/// observations keeps calibration fast and its result a function of the data alone.
const MSE_SAMPLE: usize = 1 << 16;
const MSE_STEPS: usize = 50;

impl RangeEstimator {
    pub fn name(self) -> String {
        match self {
            Self::MinMax => "minmax".into(),
            Self::Percentile { percentile } => format!("percentile {percentile}"),
            Self::Mse => "mse".into(),
        }
    }

    pub(crate) fn check(self) -> Result<()> {
        match self {
            Self::Percentile { percentile } if !(percentile > 50.0 && percentile <= 100.0) => {
                Err(QatError::invalid("percentile", format!("a percentile range estimate needs 50 < p <= 100, got {percentile}")))
            }
            _ => Ok(()),
        }
    }

    /// The range of `values` (shape `shape`) per tensor or per index of `axis`.
    pub(crate) fn estimate(self, values: &[f32], shape: &[usize], axis: Option<usize>, spec: &QuantSpec) -> Result<(Vec<f32>, Vec<f32>)> {
        match self {
            Self::MinMax => channel_min_max(values, shape, axis),
            Self::Percentile { percentile } => per_channel(values, shape, axis, |v| percentiles(v, percentile)),
            Self::Mse => per_channel(values, shape, axis, |v| mse_range(v, spec)),
        }
    }
}

/// `range` of each channel's values; NaN or infinite values are an error, as for min/max.
fn per_channel(
    values: &[f32],
    shape: &[usize],
    axis: Option<usize>,
    range: impl Fn(&mut [f32]) -> (f32, f32),
) -> Result<(Vec<f32>, Vec<f32>)> {
    if values.iter().any(|v| !v.is_finite()) {
        return Err(QatError::NonFinite { context: "observer".into(), what: "an observed value (NaN or infinity)".into() });
    }
    Ok(channel_values(values, shape, axis).into_iter().map(|mut v| range(&mut v)).unzip())
}

/// The values of each channel along `axis` (one group for `None`).
fn channel_values(values: &[f32], shape: &[usize], axis: Option<usize>) -> Vec<Vec<f32>> {
    let Some(a) = axis else { return vec![values.to_vec()] };
    let (channels, inner) = (shape[a], shape[a + 1..].iter().product::<usize>().max(1));
    let mut out = vec![Vec::with_capacity(values.len() / channels.max(1)); channels];
    for (run_index, run) in values.chunks(inner).enumerate() {
        out[run_index % channels].extend_from_slice(run);
    }
    out
}

fn min_max(v: &[f32]) -> (f32, f32) {
    v.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &x| (lo.min(x), hi.max(x)))
}

/// The nearest-rank percentiles `100 - p` and `p`.
fn percentiles(v: &mut [f32], p: f32) -> (f32, f32) {
    if v.is_empty() {
        return (f32::INFINITY, f32::NEG_INFINITY);
    }
    let last = v.len() - 1;
    let rank = |q: f32| ((q as f64 / 100.0) * last as f64).round() as usize;
    let (lo_rank, hi_rank) = (rank(100.0 - p), rank(p));
    let lo = *v.select_nth_unstable_by(lo_rank, f32::total_cmp).1;
    let hi = *v.select_nth_unstable_by(hi_rank, f32::total_cmp).1;
    (lo, hi)
}

fn mse_range(v: &[f32], spec: &QuantSpec) -> (f32, f32) {
    let (lo, hi) = min_max(v);
    if v.is_empty() || lo == hi {
        return (lo, hi);
    }
    let stride = v.len().div_ceil(MSE_SAMPLE);
    let sample: Vec<f32> = v.iter().step_by(stride).copied().collect();
    let (qmin, qmax) = (spec.range.quant_min, spec.range.quant_max);
    let error = |factor: f32| {
        let q = QParams::from_min_max(&[lo * factor], &[hi * factor], spec, QParamFormula::Observer);
        let (s, z) = (q.scale[0], q.zero_point[0]);
        let inv = 1.0 / s;
        sample
            .iter()
            .map(|&x| {
                let d = (quantize_value(x, inv, z, qmin, qmax) - z) as f32 * s - x;
                (d * d) as f64
            })
            .sum::<f64>()
    };
    let best = (0..MSE_STEPS)
        .map(|i| 1.0 - i as f32 / MSE_STEPS as f32)
        .map(|factor| (factor, error(factor)))
        .fold((1.0, f64::INFINITY), |best, (f, e)| if e < best.1 { (f, e) } else { best });
    (lo * best.0, hi * best.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observer::ObserverConfig;
    use crate::quant::QuantDtype;

    fn spec(bits: i64) -> QuantSpec {
        ObserverConfig::min_max().with_dtype(QuantDtype::QUInt8).with_quant_range(0, (1 << bits) - 1).spec().unwrap()
    }

    #[test]
    fn percentiles_ignore_the_outliers_min_max_takes() {
        let mut values: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        values[17] = 100.0;
        values[500] = -50.0;
        let s = spec(8);
        assert_eq!(RangeEstimator::MinMax.estimate(&values, &[1000], None, &s).unwrap(), (vec![-50.0], vec![100.0]));
        let (lo, hi) = RangeEstimator::Percentile { percentile: 99.0 }.estimate(&values, &[1000], None, &s).unwrap();
        assert!((lo[0] - 0.01).abs() < 0.002 && (hi[0] - 0.989).abs() < 0.002, "{lo:?} {hi:?}");
    }

    #[test]
    fn per_channel_estimates_are_per_channel() {
        // [2 channels, 3 values] along axis 0.
        let values = [1.0, 2.0, 3.0, -4.0, 5.0, 6.0];
        let (lo, hi) = RangeEstimator::MinMax.estimate(&values, &[2, 3], Some(0), &spec(8)).unwrap();
        assert_eq!((lo, hi), (vec![1.0, -4.0], vec![3.0, 6.0]));
        // Along axis 1 of [2, 3]: channels are columns.
        let (lo, hi) = RangeEstimator::Percentile { percentile: 100.0 }.estimate(&values, &[2, 3], Some(1), &spec(8)).unwrap();
        assert_eq!((lo, hi), (vec![-4.0, 2.0, 3.0], vec![1.0, 5.0, 6.0]));
    }

    #[test]
    fn the_mse_range_clips_a_long_tail_at_low_bits() {
        // Mostly small values and one far outlier: at 2 bits the error is smallest well inside.
        let mut values: Vec<f32> = (0..4000).map(|i| (i % 100) as f32 / 100.0).collect();
        values[0] = 20.0;
        let (lo, hi) = RangeEstimator::Mse.estimate(&values, &[4000], None, &spec(2)).unwrap();
        assert!(lo[0] == 0.0 && hi[0] < 5.0, "{lo:?} {hi:?}");
        // Uniform values: the full range is best.
        let uniform: Vec<f32> = (0..1000).map(|i| i as f32 / 1000.0).collect();
        let (_, hi) = RangeEstimator::Mse.estimate(&uniform, &[1000], None, &spec(8)).unwrap();
        assert!(hi[0] > 0.95, "{hi:?}");
    }

    #[test]
    fn bad_values_and_percentiles_are_errors() {
        assert!(RangeEstimator::Mse.estimate(&[1.0, f32::NAN], &[2], None, &spec(8)).is_err());
        assert!(RangeEstimator::Percentile { percentile: 40.0 }.check().is_err());
        assert!(RangeEstimator::Percentile { percentile: 99.9 }.check().is_ok());
    }
}
