//! The bias gradient of a 2-d convolution: per output channel, the sum of `dy` over the batch and
//! the plane. One thread per channel, samples added in order, so the sum never depends on how
//! many threads run.

use rayon::prelude::*;

use super::conv2d_simd::add_assign;

/// `db [c_out]` from `dy [n, c_out, plane]`.
pub(crate) fn grad_bias(n: usize, c_out: usize, plane: usize, dy: &[f32]) -> Vec<f32> {
    (0..c_out)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0f32; plane];
            for b in 0..n {
                add_assign(&mut acc, &dy[(b * c_out + c) * plane..][..plane]);
            }
            acc.iter().sum()
        })
        .collect()
}
