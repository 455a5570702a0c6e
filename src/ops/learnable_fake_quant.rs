//! Fake quantization whose scale and zero point learn by gradient descent: PyTorch's
//! `_fake_quantize_learnable_per_tensor_affine` / `_per_channel_affine`, the op under
//! `_LearnableFakeQuantize` (the LSQ gradients of Esser et al. 2020).
//!
//! Composed rather than a kernel of its own, so that it runs and differentiates on every burn
//! backend: the forward is the exact fake-quant op, and the scale and zero-point gradients enter
//! through terms whose value is exactly zero, `(s - detach(s)) * G_s + (z - detach(z)) * G_z`,
//! where `G_s` and `G_z` are PyTorch's per-element factors computed without a graph. The
//! backend's autodiff then sums `dY * G` over the broadcast dimensions, as PyTorch's kernel does.

use burn::tensor::{Bool, Tensor, TensorData};

use super::fake_quant::{FakeQuantParams, fake_quantize};
use super::tensor_values;
use crate::error::{QatError, Result};

/// Everything but the learned values: the channel axis (`None`: per tensor), the integer range,
/// the factor both parameter gradients are multiplied by (LSQ's `1/sqrt(N * Q_p)`, or 1), and
/// which elements the scale learns from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LearnableFakeQuantParams {
    pub axis: Option<usize>,
    pub quant_min: i32,
    pub quant_max: i32,
    pub grad_factor: f32,
    /// Which elements the scale learns from: every one (LSQ) or the clipped ones (PACT).
    pub scale_gradient: ScaleGradient,
}

/// The zero point the forward uses: rounded half to even, then clamped to the range.
pub fn forward_zero_point(z: f32, quant_min: i32, quant_max: i32) -> i32 {
    z.round_ties_even().clamp(quant_min as f32, quant_max as f32) as i32
}

/// The zero point PyTorch's per-tensor backward uses: `trunc(clamp(z + 0.5))`. It differs from
/// the forward's at .5 ties (2.5: forward 2, backward 3) and for nearly every negative zero
/// point (-2.0: forward -2, backward -1), so the gradients are those of a neighbouring zero
/// point. Reproduced for parity with PyTorch (spec section 3.6); the per-channel op rounds the
/// same way in both directions.
fn per_tensor_backward_zero_point(z: f32, quant_min: i32, quant_max: i32) -> i32 {
    (z + 0.5).clamp(quant_min as f32, quant_max as f32).trunc() as i32
}

/// Which elements the scale learns from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ScaleGradient {
    /// Every element: the rounding error inside the range, the range's end outside (LSQ,
    /// PyTorch's `_fake_quantize_learnable_*` ops).
    #[default]
    Every,
    /// Only the clipped elements, as PACT's clip level learns (Choi et al. 2018): with
    /// `α = s * (quant_max - z)` the upper clip level,
    /// `dL/ds = (quant_max - z) * grad_factor * sum(dL/dy over x above α)` (and the same below
    /// the lower end with `quant_min - z`). The rounding error inside the range is left out; the
    /// forward, the input's gradient and the zero point's are LSQ's.
    Clipped,
}

/// Fake quantizes `x` with a learnable `scale` and `zero_point` (one value, or one per index of
/// `params.axis`; the zero point is a float, rounded as PyTorch rounds it). `x` gets the
/// straight-through gradient; scale and zero point get LSQ's gradients (or PACT's for the
/// scale, [`ScaleGradient::Clipped`]) times `grad_factor`, when they require gradients.
/// Elements whose value is NaN give the parameters no gradient (PyTorch's would become NaN).
pub fn fake_quantize_learnable<const D: usize>(
    x: Tensor<D>,
    scale: Tensor<1>,
    zero_point: Tensor<1>,
    params: &LearnableFakeQuantParams,
) -> Result<Tensor<D>> {
    let dims = x.dims();
    let channels = match params.axis {
        None => 1,
        Some(axis) if axis < D => dims[axis],
        Some(axis) => {
            return Err(QatError::shape("learnable fake_quantize", format!("a channel axis below the rank {D}"), format!("axis {axis}")));
        }
    };
    let (s, z) = (tensor_values(&scale), tensor_values(&zero_point));
    if s.len() != channels || z.len() != channels {
        return Err(QatError::shape(
            "learnable fake_quantize",
            format!("{channels} scales and zero points (input shape {dims:?}, axis {:?})", params.axis),
            format!("{} scales and {} zero points", s.len(), z.len()),
        ));
    }
    if let Some(bad) = z.iter().find(|z| !z.is_finite()) {
        return Err(QatError::NonFinite { context: "learnable fake_quantize".into(), what: format!("zero point {bad}") });
    }
    let (qmin, qmax) = (params.quant_min, params.quant_max);
    let z_fwd: Vec<i32> = z.iter().map(|&z| forward_zero_point(z, qmin, qmax)).collect();
    let z_bwd: Vec<i32> = match params.axis {
        None => vec![per_tensor_backward_zero_point(z[0], qmin, qmax)],
        Some(_) => z_fwd.clone(),
    };
    let fq = |zero_point: Vec<i32>| FakeQuantParams { scale: s.clone(), zero_point, axis: params.axis, quant_min: qmin, quant_max: qmax };
    // The straight-through mask is the backward's (its zero point), the value the forward's.
    let masked = fake_quantize(x.clone(), &fq(z_bwd.clone()))?;
    let y = if z_bwd == z_fwd { masked } else { fake_quantize(x.clone().detach(), &fq(z_fwd))? + (masked.clone() - masked.detach()) };
    let learns_scale = scale.is_require_grad();
    let learns_zero_point = zero_point.is_require_grad();
    if !learns_scale && !learns_zero_point {
        return Ok(y);
    }

    if x.dtype() != burn::tensor::DType::F32 {
        return Err(QatError::invalid(
            "dtype",
            format!("learnable fake_quantize: learned scales and zero points train on f32 tensors, got {:?}", x.dtype()),
        ));
    }
    let mut bshape = [1usize; D];
    if let Some(axis) = params.axis {
        bshape[axis] = channels;
    }
    let (grad_scale, grad_zero_point) = match params.axis {
        None => per_tensor_factors(x.detach(), s[0], z_bwd[0], params),
        Some(_) => per_channel_factors(x.detach(), &s, &z_bwd, bshape, params),
    };
    let mut y = y;
    if learns_scale {
        let s = scale.reshape(bshape);
        y = y + (s.clone() - s.detach()) * grad_scale;
    }
    if learns_zero_point {
        let z = zero_point.reshape(bshape);
        y = y + (z.clone() - z.detach()) * grad_zero_point;
    }
    Ok(y)
}

/// PyTorch's per-element gradient factors of the scale and the zero point, per tensor: with
/// `q = rne(z + x/s)`, below the range `(qmin - z) g` and `-s g`, above it `(qmax - z) g` and
/// `-s g`, inside `(fq(x) - x) / s * g` (0 for [`ScaleGradient::Clipped`]) and 0. Scalar ops:
/// most fake quants are per tensor, and this is their whole extra cost.
fn per_tensor_factors<const D: usize>(x: Tensor<D>, s: f32, z: i32, params: &LearnableFakeQuantParams) -> (Tensor<D>, Tensor<D>) {
    let (qmin, qmax, g) = (params.quant_min as f32, params.quant_max as f32, params.grad_factor);
    let (inv, z) = (1.0 / s, z as f32);
    let q = (x.clone() * inv + z).round();
    let below: Tensor<D, Bool> = q.clone().lower_elem(qmin);
    let above: Tensor<D, Bool> = q.clone().greater_elem(qmax);
    let inside = match params.scale_gradient {
        ScaleGradient::Every => (((q.clamp(qmin, qmax) - z) * s - x) * inv) * g,
        ScaleGradient::Clipped => q.zeros_like(),
    };
    let grad_scale = inside.mask_fill(below.clone(), (qmin - z) * g).mask_fill(above.clone(), (qmax - z) * g);
    let grad_scale = grad_scale.clone().mask_fill(grad_scale.is_nan(), 0.0);
    let grad_zero_point = grad_scale.zeros_like().mask_fill(below.bool_or(above), -s * g);
    (grad_scale, grad_zero_point)
}

/// [`per_tensor_factors`] per channel (PyTorch's per-channel kernel adds the zero point after
/// rounding).
fn per_channel_factors<const D: usize>(
    x: Tensor<D>,
    s: &[f32],
    z: &[i32],
    bshape: [usize; D],
    params: &LearnableFakeQuantParams,
) -> (Tensor<D>, Tensor<D>) {
    let (qmin, qmax, g) = (params.quant_min as f32, params.quant_max as f32, params.grad_factor);
    let (device, dims) = (x.device(), x.dims());
    // One value per channel, broadcast to x's shape (burn's mask_where wants equal shapes).
    let per_channel = |values: Vec<f32>| Tensor::<D>::from_data(TensorData::new(values, bshape), &device).expand(dims);
    let s_t = per_channel(s.to_vec());
    let inv_t = per_channel(s.iter().map(|s| 1.0 / s).collect());
    let z_t = per_channel(z.iter().map(|&z| z as f32).collect());
    let q = (x.clone() * inv_t.clone()).round() + z_t.clone();
    let below: Tensor<D, Bool> = q.clone().lower_elem(qmin);
    let above: Tensor<D, Bool> = q.clone().greater_elem(qmax);
    let outside = below.clone().bool_or(above.clone());
    let inside = match params.scale_gradient {
        ScaleGradient::Every => (((q.clamp(qmin, qmax) - z_t.clone()) * s_t.clone() - x) * inv_t) * g,
        ScaleGradient::Clipped => q.zeros_like(),
    };
    let grad_scale = inside.mask_where(below, (z_t.clone().neg() + qmin) * g).mask_where(above, (z_t.neg() + qmax) * g);
    let grad_scale = grad_scale.clone().mask_fill(grad_scale.is_nan(), 0.0);
    let grad_zero_point = s_t.zeros_like().mask_where(outside, s_t.neg() * g);
    (grad_scale, grad_zero_point)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_backward_zero_point_is_pytorchs_not_the_forwards() {
        // Spec section 3.6, verified against PyTorch 2.15.
        for (z, fwd, bwd) in
            [(3.0, 3, 3), (2.5, 2, 3), (3.4, 3, 3), (-2.0, -2, -1), (-2.3, -2, -1), (-2.5, -2, -2), (-2.7, -3, -2), (-127.9, -128, -127)]
        {
            assert_eq!(forward_zero_point(z, -128, 127), fwd, "forward {z}");
            assert_eq!(per_tensor_backward_zero_point(z, -128, 127), bwd, "backward {z}");
        }
        assert_eq!(forward_zero_point(19.0, 0, 15), 15);
        assert_eq!(per_tensor_backward_zero_point(-6.2, -4, 3), -4);
    }
}
