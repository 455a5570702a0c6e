//! The deployment arithmetic of the layers with weights (convs and linears, BN folded with
//! the running statistics), computed from the QAT modules' own parameters and fake quants.

use burn::tensor::{DType, Tensor};

use super::deployment_arith::{Grid, requantize_accumulator, weight_codes};
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::intrinsic::qat::{ConvBnNd, LinearBn1d, scale_factor};
use crate::nn::qat::{self, ConvNd};
use crate::nn::tensor_util::weight_axis_shape;
use crate::nn::{BatchNorm, ConvGeometry};

/// A layer with weights as the deployment arithmetic sees it: the float (or BN-folded) weight
/// and bias, the fake quants giving the weight's and the output's grids, and the fused ReLU.
struct Weighted<'a, const W: usize> {
    weight: Tensor<W>,
    bias: Option<Tensor<1>>,
    weight_fq: &'a FakeQuantize,
    output_fq: &'a Option<FakeQuantize>,
    relu: bool,
}

/// A conv of any geometry from its float (or folded) weight and bias.
fn conv_from<const D: usize, O: ConvGeometry<D>>(
    options: &O,
    layer: Weighted<'_, D>,
    x: Tensor<D>,
    input: Grid,
    path: &str,
) -> Result<(Tensor<D>, Grid)> {
    let Weighted { weight, bias, weight_fq, output_fq, relu } = layer;
    options.check_input(x.dims(), path)?;
    let w = weight_codes(weight, weight_fq, O::WEIGHT_CHANNEL_AXIS, path)?;
    let output = Grid::of_output(output_fq, path)?;
    let acc = options.forward(input.codes(x).cast(DType::F64), w.codes, None);
    // A transposed conv with groups has out / groups scales on its channel axis, repeating.
    let scale: Vec<f32> = (0..options.out_channels()).map(|i| w.scale[i % w.scale.len()]).collect();
    Ok((requantize_accumulator(acc, bias, input, &scale, output, relu), output))
}

pub(crate) fn conv<const D: usize, O: ConvGeometry<D>>(
    m: &ConvNd<D, O>,
    relu: bool,
    x: Tensor<D>,
    input: Grid,
    path: &str,
) -> Result<(Tensor<D>, Grid)> {
    let bias = m.bias.as_ref().map(|b| b.val());
    let layer = Weighted { weight: m.weight.val(), bias, weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu };
    conv_from(&m.options, layer, x, input, path)
}

/// The BN fold with the running statistics, written here from the batch norm itself:
/// `sf = gamma / sqrt(rv + eps)`, `W * sf` along `axis`, bias `(b - rm) * sf + beta` in f32.
fn fold<const W: usize>(weight: Tensor<W>, bias: Option<Tensor<1>>, bn: &BatchNorm, axis: usize) -> (Tensor<W>, Tensor<1>) {
    let c = bn.num_features();
    let sf = scale_factor(bn).detach();
    let device = sf.device();
    let mean: Vec<f32> = bn.running_mean().iter().map(|&m| m as f32).collect();
    let mean = Tensor::<1>::from_data(burn::tensor::TensorData::new(mean, [c]), (&device, DType::F32));
    let bias = bias.map(|b| b.detach()).unwrap_or_else(|| Tensor::zeros([c], &device));
    let folded_bias = (bias - mean) * sf.clone() + bn.bias.val().detach();
    (weight.detach() * sf.reshape(weight_axis_shape::<W>(c, axis)), folded_bias)
}

pub(crate) fn conv_bn<const D: usize, O: ConvGeometry<D>>(
    m: &ConvBnNd<D, O>,
    relu: bool,
    x: Tensor<D>,
    input: Grid,
    path: &str,
) -> Result<(Tensor<D>, Grid)> {
    if m.options.weight_shape()[O::WEIGHT_CHANNEL_AXIS] != m.options.out_channels() {
        return Err(QatError::invalid(
            "groups",
            format!(
                "{path}: batch norm folds only into a conv whose weight has one entry per output channel on its channel axis; \
                 use groups = 1"
            ),
        ));
    }
    let (weight, bias) = fold(m.weight.val(), m.bias.as_ref().map(|b| b.val()), &m.bn, O::WEIGHT_CHANNEL_AXIS);
    let layer = Weighted { weight, bias: Some(bias), weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu };
    conv_from(&m.options, layer, x, input, path)
}

fn linear_from(layer: Weighted<'_, 2>, x: Tensor<2>, input: Grid, path: &str) -> Result<(Tensor<2>, Grid)> {
    let Weighted { weight, bias, weight_fq, output_fq, relu } = layer;
    let [o, i] = weight.dims();
    if x.dims()[1] != i {
        return Err(QatError::shape(path, format!("input [N, {i}]"), format!("{:?}", x.dims())));
    }
    let w = weight_codes(weight, weight_fq, 0, path)?;
    let output = Grid::of_output(output_fq, path)?;
    let acc = input.codes(x).cast(DType::F64).matmul(w.codes.transpose());
    debug_assert_eq!(w.scale.len(), o);
    Ok((requantize_accumulator(acc, bias, input, &w.scale, output, relu), output))
}

pub(crate) fn linear(m: &qat::Linear, relu: bool, x: Tensor<2>, input: Grid, path: &str) -> Result<(Tensor<2>, Grid)> {
    let bias = m.bias.as_ref().map(|b| b.val());
    let layer = Weighted { weight: m.weight.val(), bias, weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu };
    linear_from(layer, x, input, path)
}

pub(crate) fn linear_bn(m: &LinearBn1d, x: Tensor<2>, input: Grid, path: &str) -> Result<(Tensor<2>, Grid)> {
    let (weight, bias) = fold(m.weight.val(), m.bias.as_ref().map(|b| b.val()), &m.bn, 0);
    let layer = Weighted { weight, bias: Some(bias), weight_fq: &m.weight_fake_quant, output_fq: &m.activation_post_process, relu: false };
    linear_from(layer, x, input, path)
}
