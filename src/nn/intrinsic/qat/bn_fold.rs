//! The two ways PyTorch folds batch norm into a weight while training (`_ConvBnNd` and
//! `LinearBn1d`), written once for any op that is linear in its weight: a convolution of any
//! geometry, or a matmul. `op(w)` computes the layer without bias for a weight `w`.

use burn::tensor::Tensor;
use burn::tensor::activation::relu;

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::BatchNorm;
use crate::nn::qat::in_layer;
use crate::nn::tensor_util::{channel_shape, host_tensor, host_values, weight_axis_shape};
use crate::ops::BnApplyParams;

/// How BN is folded into the conv while training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BnFolding {
    /// PyTorch's default (`_forward_approximate`): scale the weight by `gamma / running_std`,
    /// fake quantize, convolve, divide the scale back out, and run an ordinary BN. One conv.
    /// Divides by gamma, so a zero gamma switches to [`BnFolding::Exact`] automatically.
    #[default]
    Approximate,
    /// PyTorch's `_forward_slow` (Krishnamoorthi 2018): a float conv for the batch statistics,
    /// then the fake-quantized conv rescaled to them. Two convs; well defined for gamma = 0.
    Exact,
}

/// One folded layer's forward: its own weight (output channels along `axis`, the axis BN's
/// scale folds along) and bias, with its batch norm and weight fake quant.
pub(crate) struct BnFold<'a, const W: usize> {
    pub weight: Tensor<W>,
    pub axis: usize,
    pub bias: Option<Tensor<1>>,
    pub bn: &'a mut BatchNorm,
    pub fake_quant: &'a mut FakeQuantize,
    pub layer: &'a str,
}

/// The output's per-tensor `(min, max, all finite)`, when the fused apply computed it.
pub(crate) type OutputMinMax = Option<(f32, f32, bool)>;

/// `gamma / sqrt(running_var + eps)` per output channel, carrying gamma's gradient.
pub(crate) fn scale_factor(bn: &BatchNorm) -> Tensor<1> {
    let gamma = bn.weight.val();
    let running_std: Tensor<1> = host_tensor(bn.running_std(), [bn.num_features()], &gamma);
    gamma / running_std
}

impl<const W: usize> BnFold<'_, W> {
    /// The layer's output under `folding`, followed by a ReLU when `with_relu`, and its
    /// per-tensor `(min, max, all finite)` where the fused apply computed it. A zero gamma takes
    /// the exact fold whatever `folding` says: the approximate one divides by gamma.
    pub(crate) fn forward<const D: usize>(
        self,
        folding: BnFolding,
        op: impl Fn(Tensor<W>) -> Tensor<D>,
        with_relu: bool,
    ) -> Result<(Tensor<D>, OutputMinMax)> {
        let gamma_has_zero = host_values(&self.bn.weight.val()).contains(&0.0);
        match (folding, gamma_has_zero) {
            (BnFolding::Approximate, false) => self.approximate(op, with_relu),
            _ => {
                let y = self.exact(op)?;
                Ok((if with_relu { relu(y) } else { y }, None))
            }
        }
    }

    /// The weight scaled per output channel by `sf`, fake quantized.
    fn folded_weight(weight: Tensor<W>, sf: Tensor<1>, axis: usize, fq: &mut FakeQuantize, layer: &str) -> Result<Tensor<W>> {
        let c = sf.dims()[0];
        fq.forward(weight * sf.reshape(weight_axis_shape::<W>(c, axis))).map_err(|e| in_layer(e, layer, "folded weight"))
    }

    /// PyTorch's default (`_forward_approximate`): fake quantize `W * sf`, run the op with no
    /// bias, divide `sf` back out, add the bias, run an ordinary BN, then the ReLU when
    /// `with_relu`. In training with the fused BN ops on, the division, the bias, the BN and
    /// the ReLU run as one op (`BatchNorm::forward_train_fused`), which also gives the output's
    /// min and max for the output observer. Divides by gamma.
    fn approximate<const D: usize>(self, op: impl Fn(Tensor<W>) -> Tensor<D>, with_relu: bool) -> Result<(Tensor<D>, OutputMinMax)> {
        let BnFold { weight, axis: weight_axis, bias, bn, fake_quant: fq, layer } = self;
        let c = bn.num_features();
        let sf = scale_factor(bn);
        let y = op(Self::folded_weight(weight, sf.clone(), weight_axis, fq, layer)?);
        let extra: Vec<&Tensor<1>> = std::iter::once(&sf).chain(bias.as_ref()).collect();
        if bn.fused_train_applies(&y, &extra) {
            let (y, min_max) = BnApplyParams::observing_output(|| bn.forward_train_fused(y, Some(sf), bias, with_relu, layer));
            return Ok((y?, min_max));
        }
        let mut y = y / sf.reshape(channel_shape::<D>(c));
        if let Some(bias) = bias {
            y = y + bias.reshape(channel_shape::<D>(c));
        }
        let y = bn.forward(y, layer)?;
        Ok((if with_relu { relu(y) } else { y }, None))
    }

    /// PyTorch's `_forward_slow` (Krishnamoorthi 2018): in training, the float op gives the
    /// batch statistics (and updates the running ones first), and the fake-quantized op is
    /// rescaled from running to batch standard deviation; frozen or in eval, the running
    /// statistics fold in directly. Never divides by gamma.
    fn exact<const D: usize>(self, op: impl Fn(Tensor<W>) -> Tensor<D>) -> Result<Tensor<D>> {
        let BnFold { weight, axis: weight_axis, bias, bn, fake_quant: fq, layer } = self;
        let c = bn.num_features();
        let shape = channel_shape::<D>(c);
        let gamma = bn.weight.val();
        let beta = bn.bias.val();
        let (y, fused_mean, fused_std) = if bn.training {
            if crate::parallel::collective::current().is_some() {
                return Err(QatError::invalid(
                    "folding",
                    format!(
                        "{layer}: data-parallel training synchronizes batch norm in the approximate BN fold (PyTorch's default), not the exact one"
                    ),
                ));
            }
            let y0 = op(weight.clone());
            let dims = y0.dims();
            let per_channel = dims.iter().product::<usize>() / c;
            if per_channel <= 1 {
                return Err(QatError::SingleValuePerChannel { layer: layer.to_string(), shape: dims.to_vec() });
            }
            let y0_biased = match &bias {
                Some(b) => y0.clone() + b.clone().reshape(shape),
                None => y0.clone(),
            };
            bn.update_running_stats(&y0_biased.detach(), per_channel);
            let running_std: Tensor<1> = host_tensor(bn.running_std(), [c], &gamma);
            let y = op(Self::folded_weight(weight, scale_factor(bn), weight_axis, fq, layer)?);
            let flat = y0.swap_dims(0, 1).reshape([c, per_channel]);
            let mean = flat.clone().mean_dim(1).reshape([c]);
            let var = (flat - mean.clone().reshape([c, 1])).powi_scalar(2).mean_dim(1).reshape([c]);
            let batch_std = (var + bn.eps).sqrt();
            (y * (running_std / batch_std.clone()).reshape(shape), mean, batch_std)
        } else {
            let running_std: Tensor<1> = host_tensor(bn.running_std(), [c], &gamma);
            let y = op(Self::folded_weight(weight, scale_factor(bn), weight_axis, fq, layer)?);
            let mut mean: Tensor<1> = host_tensor(bn.running_mean().to_vec(), [c], &gamma);
            if let Some(b) = &bias {
                mean = mean - b.clone();
            }
            (y, mean, running_std)
        };
        let mut out = y + (beta - gamma * fused_mean / fused_std).reshape(shape);
        if let Some(b) = bias {
            // Zero, but keeps the bias in the graph as PyTorch does (its gradient is 0).
            out = out + (b.clone() - b).reshape(shape);
        }
        Ok(out)
    }
}
