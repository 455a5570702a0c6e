//! PyTorch's `HistogramObserver`: a running histogram of everything observed, and the L2 search
//! (caffe2's NormMinimization) that picks the range whose uniform quantization loses least.
//!
//! Written against PyTorch 2.15's `observer.py` and the ATen kernels under it, in f32 where
//! PyTorch computes in f32, so the histogram, its range and the searched range match PyTorch bit
//! for bit (`tests/histogram_observer_golden.rs`). The places where that takes care:
//! - `torch.histc` maps a value to its bin by `(x - min) * bins / (max - min)`, truncated, not by
//!   comparing with the bin edges, and widens a zero range to `[v - 1, v + 1]`;
//! - `torch.linspace` computes each point with one fused multiply-add, from the start in the first
//!   half and from the end in the second (`f32::mul_add` here);
//! - `cumsum` accumulates in f64 and stores f32; the search compares those f32 partial sums with
//!   f64 thresholds rounded to f32, as a 0-d f32 tensor compared with a Python float is;
//! - `torch.div(.., rounding_mode="floor")` is Python's floor division (`floor_div` below).
//!
//! The one approximation: PyTorch sums each candidate's 2048 per-bin errors in its own f32
//! reduction order; this sums them exactly (f64) and rounds once, which can only decide
//! differently when two candidates' errors are within an ulp or two of each other.

/// The number of sub-bins each old bin is split into when the range grows (PyTorch's
/// `upsample_rate`).
const UPSAMPLE_RATE: usize = 16;
/// The search's step in cumulative mass (PyTorch's `stepsize`).
const SEARCH_STEP: f64 = 1e-5;

/// The running histogram over `[min, max]`, both ±infinity before the first observation.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Histogram {
    counts: Vec<f32>,
    min: f32,
    max: f32,
}

impl Histogram {
    pub(crate) fn new(bins: usize) -> Self {
        Self { counts: vec![0.0; bins], min: f32::INFINITY, max: f32::NEG_INFINITY }
    }

    pub(crate) fn counts(&self) -> &[f32] {
        &self.counts
    }

    pub(crate) fn range(&self) -> (f32, f32) {
        (self.min, self.max)
    }

    fn is_empty(&self) -> bool {
        self.min == f32::INFINITY || self.max == f32::NEG_INFINITY
    }

    /// Restores a saved state (checked by the caller: finite counts >= 0, `min <= max` or the
    /// empty range).
    pub(crate) fn restore(&mut self, counts: Vec<f32>, min: f32, max: f32) {
        *self = Self { counts, min, max };
    }

    /// Takes in one observation (finite values, at least one; PyTorch `forward`).
    pub(crate) fn observe(&mut self, values: &[f32]) {
        let bins = self.counts.len();
        let (x_min, x_max) = min_max(values);
        if self.is_empty() {
            *self = Self { counts: histc(values, bins, x_min, x_max), min: x_min, max: x_max };
            return;
        }
        let (new_min, new_max) = (self.min.min(x_min), self.max.max(x_max));
        let update = histc(values, bins, new_min, new_max);
        let old = if new_min == self.min && new_max == self.max {
            std::mem::take(&mut self.counts)
        } else if self.min == self.max {
            // Everything seen so far was one value: its whole mass goes to that value's bin.
            let mass: f32 = self.counts.iter().sum();
            histc(&[self.min], bins, new_min, new_max).into_iter().map(|c| c * mass).collect()
        } else {
            upscale(&self.counts, self.min, self.max, new_min, new_max)
        };
        self.counts = update.iter().zip(&old).map(|(u, o)| u + o).collect();
        (self.min, self.max) = (new_min, new_max);
    }

    /// The range that minimizes the L2 quantization error onto `levels` uniform levels (PyTorch
    /// `_non_linear_param_search`): move whichever end has the larger mass gap inward, one
    /// `1e-5` of the total mass at a time, and stop when the error starts to grow.
    pub(crate) fn search(&self, levels: f64) -> (f32, f32) {
        let bins = self.counts.len();
        let bin_width = (self.max - self.min) / bins as f32;
        let total = self.counts.iter().map(|&c| c as f64).sum::<f64>() as f32 as f64;
        let cumulative: Vec<f32> = self
            .counts
            .iter()
            .scan(0.0f64, |sum, &c| {
                *sum += c as f64;
                Some(*sum as f32)
            })
            .collect();

        let (mut alpha, mut beta) = (0.0f64, 1.0f64);
        let (mut start, mut end) = (0usize, bins - 1);
        let mut best = f64::INFINITY;
        while alpha < beta {
            let (next_alpha, next_beta) = (alpha + SEARCH_STEP, beta - SEARCH_STEP);
            let (lower, upper) = ((next_alpha * total) as f32, (next_beta * total) as f32);
            let mut l = start;
            while l < end && cumulative[l] < lower {
                l += 1;
            }
            let mut r = end;
            while r > start && cumulative[r] > upper {
                r -= 1;
            }
            let (mut next_start, mut next_end) = (start, end);
            if l - start > end - r {
                next_start = l;
                alpha = next_alpha;
            } else {
                next_end = r;
                beta = next_beta;
            }
            if (next_start, next_end) == (start, end) {
                continue;
            }
            let error = self.quantization_error(next_start, next_end, levels);
            if error > best {
                break;
            }
            (best, start, end) = (error, next_start, next_end);
        }
        (self.min + bin_width * start as f32, self.min + bin_width * (end + 1) as f32)
    }

    /// The density-weighted integral of the squared rounding error when bins `start..=end` are
    /// mapped onto `levels` uniform levels (PyTorch `_compute_quantization_error`), each step in
    /// the precision PyTorch computes it: widths in f64, per-bin terms in f32.
    fn quantization_error(&self, start: usize, end: usize, levels: f64) -> f64 {
        let bins = self.counts.len();
        let bin_width = (self.max as f64 - self.min as f64) / bins as f64;
        let dst_bin_width = bin_width * (end - start + 1) as f64 / levels;
        if dst_bin_width == 0.0 {
            return 0.0;
        }
        let (width, dst_width) = (bin_width as f32, dst_bin_width as f32);
        let (half, neg_half) = ((dst_bin_width / 2.0) as f32, (-dst_bin_width / 2.0) as f32);
        let last_level = (levels - 1.0) as f32;
        let cube_difference = |from: f32, to: f32| (to * to * to - from * from * from) / 3.0;
        let whole_level = cube_difference(neg_half, half);
        let total: f64 = (0..bins)
            .map(|i| {
                let src_begin = (i as i64 - start as i64) as f32 * width;
                let src_end = src_begin + width;
                let level_of_begin = floor_div(src_begin, dst_width).clamp(0.0, last_level);
                let level_of_end = floor_div(src_end, dst_width).clamp(0.0, last_level);
                let density = self.counts[i] / width;
                let begin_center = (level_of_begin + 0.5) * dst_width;
                let end_center = level_of_end * dst_width + half;
                let mut norm = density * cube_difference(src_begin - begin_center, half);
                norm += (level_of_end - level_of_begin - 1.0) * (density * whole_level);
                norm += density * cube_difference(neg_half, src_end - end_center);
                norm as f64
            })
            .sum();
        total as f32 as f64
    }
}

fn min_max(values: &[f32]) -> (f32, f32) {
    values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)))
}

/// `torch.histc(values, bins, min=lo, max=hi)` on the CPU.
fn histc(values: &[f32], bins: usize, lo: f32, hi: f32) -> Vec<f32> {
    let (mut left, mut right) = (lo as f64, hi as f64);
    if left == right {
        let (data_lo, data_hi) = min_max(values);
        (left, right) = (data_lo as f64, data_hi as f64);
    }
    if left == right {
        (left, right) = (left - 1.0, right + 1.0);
    }
    // The outer bin edges are linspace's first and last points, which are its endpoints exactly.
    let (left, right) = (left as f32, right as f32);
    let mut counts = vec![0.0f32; bins];
    for &v in values {
        if !(v >= left && v <= right) {
            continue;
        }
        let bin = ((v - left) * bins as f32 / (right - left)) as usize;
        counts[bin.min(bins - 1)] += 1.0;
    }
    counts
}

/// `torch.linspace(start, end, steps)` in f32 on the CPU.
fn linspace(start: f32, end: f32, steps: usize) -> Vec<f32> {
    let step = (end - start) / (steps - 1) as f32;
    (0..steps).map(|i| if i < steps / 2 { step.mul_add(i as f32, start) } else { (-step).mul_add((steps - 1 - i) as f32, end) }).collect()
}

/// The old histogram re-binned into the wider range (PyTorch `_upscale_histogram`): each bin
/// split into 16 sub-bins of a 16th of its count, each placed by its midpoint.
fn upscale(counts: &[f32], old_min: f32, old_max: f32, new_min: f32, new_max: f32) -> Vec<f32> {
    let bins = counts.len();
    let sub_bins = bins * UPSAMPLE_RATE;
    let sub_width = (old_max - old_min) / sub_bins as f32;
    let edges = linspace(new_min, new_max, bins + 1);
    let mut out = vec![0.0f32; bins];
    for (k, left) in linspace(old_min, old_max, sub_bins + 1).into_iter().take(sub_bins).enumerate() {
        let midpoint = left + 0.5 * sub_width;
        // bucketize(right=True) - 1: the last edge at or below the midpoint.
        let bin = edges.partition_point(|&e| e <= midpoint).saturating_sub(1).min(bins - 1);
        out[bin] += counts[k / UPSAMPLE_RATE] / UPSAMPLE_RATE as f32;
    }
    out
}

/// Python's floor division on f32 (`c10::div_floor_floating`): the quotient of the exact
/// remainder, floored, rounded up when the float quotient sits more than a half above its floor.
fn floor_div(a: f32, b: f32) -> f32 {
    if b == 0.0 {
        return a / b;
    }
    let rem = a % b;
    let mut quotient = (a - rem) / b;
    if rem != 0.0 && (b < 0.0) != (rem < 0.0) {
        quotient -= 1.0;
    }
    if quotient == 0.0 {
        return 0.0f32.copysign(a / b);
    }
    let floor = quotient.floor();
    if quotient - floor > 0.5 { floor + 1.0 } else { floor }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_division_follows_python() {
        assert_eq!(floor_div(7.0, 2.0), 3.0);
        assert_eq!(floor_div(-7.0, 2.0), -4.0);
        assert_eq!(floor_div(7.0, -2.0), -4.0);
        assert_eq!(floor_div(-0.5, 2.0), -1.0);
        assert!(floor_div(0.0, -2.0).is_sign_negative());
    }

    #[test]
    fn a_constant_observation_lands_in_the_middle_bin() {
        let mut h = Histogram::new(8);
        h.observe(&[3.0, 3.0, 3.0]);
        assert_eq!(h.range(), (3.0, 3.0));
        assert_eq!(h.counts(), &[0.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn growing_the_range_keeps_the_mass() {
        let mut h = Histogram::new(64);
        h.observe(&(0..100).map(|i| i as f32 / 100.0).collect::<Vec<_>>());
        h.observe(&[-3.0, 5.0]);
        assert_eq!(h.range(), (-3.0, 5.0));
        assert_eq!(h.counts().iter().sum::<f32>(), 102.0);
    }

    #[test]
    fn the_search_stays_inside_the_observed_range() {
        // PyTorch's search is greedy: it stops at the first step that costs more, so it trims
        // thin tails but keeps a lone far outlier (its clipping error is large). Golden tests
        // pin its exact result; here, only that it never widens the range.
        let mut h = Histogram::new(2048);
        let mut values: Vec<f32> = (0..100_000).map(|i| (i % 1000) as f32 / 1000.0).collect();
        values.push(100.0);
        h.observe(&values);
        let (lo, hi) = h.search(256.0);
        assert!(0.0 <= lo && lo < hi && hi <= 100.0, "{lo} {hi}");
    }
}
