use rayon::prelude::*;

use super::qtensor::{ActivationQParams, QTensor};
use crate::error::{QatError, Result};
use crate::quant::round_half_even;
use crate::simd::multiversion;

/// `torch.ao.nn.quantized.FloatFunctional.add` (and `add_relu`): two u8 tensors with their own
/// qparams into a third: `q = clamp(z + rne(f32(qa - za) * ma + f32(qb - zb) * mb), lo, qmax)`
/// with `ma = f32(sa / s)`, `mb = f32(sb / s)` computed in f64.
#[derive(Clone, Debug, PartialEq)]
pub struct Add {
    pub output: ActivationQParams,
    pub relu: bool,
}

impl Add {
    pub fn new(output: ActivationQParams, relu: bool) -> Result<Self> {
        Ok(Self { output: output.validated("quantized Add")?, relu })
    }

    pub fn forward(&self, a: &QTensor, b: &QTensor) -> Result<QTensor> {
        if a.shape != b.shape {
            return Err(QatError::shape("quantized Add", format!("{:?} (the first operand's shape)", a.shape), format!("{:?}", b.shape)));
        }
        let out = self.output;
        let lo = if self.relu { out.zero_point.max(out.quant_min) } else { out.quant_min };
        let params = AddParams {
            za: a.qparams.zero_point,
            zb: b.qparams.zero_point,
            ma: (a.qparams.scale as f64 / out.scale as f64) as f32,
            mb: (b.qparams.scale as f64 / out.scale as f64) as f32,
            zero_point: out.zero_point,
            lo,
            hi: out.quant_max,
        };
        let mut values = vec![0u8; a.values.len()];
        values
            .par_chunks_mut(CHUNK)
            .zip(a.values.par_chunks(CHUNK))
            .zip(b.values.par_chunks(CHUNK))
            .for_each(|((dst, qa), qb)| add_rows(dst, qa, qb, &params));
        Ok(QTensor { values, shape: a.shape.clone(), qparams: out })
    }
}

/// Elements per parallel task: enough that splitting costs little, few enough that a
/// 100k-element residual add still uses both cores.
const CHUNK: usize = 16 * 1024;

/// What one output element needs: both inputs' zero points and multipliers, the output's zero
/// point and clamp (`lo` is the zero point under a fused ReLU).
struct AddParams {
    za: i32,
    zb: i32,
    ma: f32,
    mb: f32,
    zero_point: i32,
    lo: i32,
    hi: i32,
}

multiversion! {
    /// The formula of [`Add`], written so that it vectorizes: the clamped result is an integer in
    /// `[lo, hi]` (inside `[0, 255]`), read from the mantissa of `v + 2^23` rather than through a
    /// saturating float-to-int cast. The same bits.
    fn add_rows(dst: &mut [u8], qa: &[u8], qb: &[u8], p: &AddParams) {
        debug_assert!(0 <= p.lo && p.hi <= 255);
        for ((q, &a), &b) in dst.iter_mut().zip(qa).zip(qb) {
            let y = (a as i32 - p.za) as f32 * p.ma + (b as i32 - p.zb) as f32 * p.mb;
            let v = (p.zero_point as f32 + round_half_even(y)).max(p.lo as f32).min(p.hi as f32);
            *q = (v + 8_388_608.0).to_bits() as u8;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The row kernels against the formula written out with a saturating cast, on every pair
    /// of u8 values, for multipliers that produce exact ties.
    #[test]
    fn add_rows_match_the_formula_on_every_pair() {
        let a: Vec<u8> = (0..=255u8).flat_map(|x| std::iter::repeat_n(x, 256)).collect();
        let b: Vec<u8> = (0..256 * 256).map(|i| (i % 256) as u8).collect();
        for (za, zb, ma, mb, zero_point, lo, hi) in
            [(0, 0, 0.5f32, 0.5f32, 0, 0, 255), (128, 3, 1.5, 0.25, 100, 100, 255), (7, 250, 3.0, 0.125, 255, 0, 255)]
        {
            let params = AddParams { za, zb, ma, mb, zero_point, lo, hi };
            let mut got = vec![0u8; a.len()];
            add_rows(&mut got, &a, &b, &params);
            for i in 0..a.len() {
                let y = (a[i] as i32 - za) as f32 * ma + (b[i] as i32 - zb) as f32 * mb;
                let expected = (zero_point as f32 + round_half_even(y)).max(lo as f32).min(hi as f32) as u8;
                assert_eq!(got[i], expected, "a {} b {} params {za} {zb} {ma} {mb} {zero_point}", a[i], b[i]);
            }
        }
    }
}
