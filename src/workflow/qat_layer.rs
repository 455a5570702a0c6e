//! The QAT stage of the layer table: each layer kind of a prepared model implements [`QatOp`]
//! (in `kinds/`, beside its int8 stage), and [`QatLayer`] is generated from one list of those
//! kinds. The model's float and deployment forwards, its switches and fake quants, its state
//! dict, conversion and inspection all dispatch through the trait.

use burn::module::Module;

use super::convert_chain::{ConvertChain, need_input};
use super::deployment_arith::{Flow, Grid, add, detach, need_grid, with_gradient_of};
use super::float_layer::{Concat, Layer, Residual, with_float_kinds};
use super::int8_layer::Int8Layer;
use super::layer_enum::{layer_enum, with_unweighted_kinds};
use super::layers::{DeQuantStub, Named, QatQuantStub, Value, map_float, zip_float};
use super::qat_batch_norm::QatBatchNorm2d;
use super::qconfig_map::QConfigMap;
use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantize;
use crate::nn::QatModule;
use crate::nn::intrinsic::qat::{
    ConvBn2d, ConvBn3d, ConvBnNd, ConvBnReLU2d, ConvBnReLU3d, ConvBnReLUNd, ConvReLU2d, ConvReLU3d, ConvReLUNd, LinearBn1d, LinearReLU,
};
use crate::nn::qat;
use crate::nn::quantized::{self, ActivationQParams};
use crate::nn::{Conv1dOptions, ConvTranspose2dOptions};
use crate::qconfig::QConfig;
use crate::state_dict::{StateDict, StateReader, join};

/// The float weight a layer deploys (BN folded), its output channels and its weight fake quant.
pub(crate) struct DeployedWeight<'a> {
    pub values: Vec<f32>,
    pub channels: usize,
    pub fake_quant: &'a FakeQuantize,
}

/// One layer kind of a prepared model.
pub(crate) trait QatOp {
    /// The kind's name in reports.
    fn kind(&self) -> &'static str;

    /// The float fake-quant forward (PyTorch's QAT arithmetic).
    fn forward(&mut self, x: Value, path: &str) -> Result<Value>;

    /// The deployment arithmetic: `x` lies on `grid` (`None` in float), the output on the
    /// returned grid ([`super::deployment_eval`]).
    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow>;

    /// The deployment arithmetic, carrying the float forward's gradient when `straight_through`.
    fn forward_deployment(&mut self, (value, grid): Flow, path: &str, straight_through: bool) -> Result<Flow> {
        let (exact, grid) = self.forward_exact(detach(value.clone()), grid, path)?;
        if !straight_through {
            return Ok((exact, grid));
        }
        let surrogate = self.forward(value, path)?;
        Ok((with_gradient_of(exact, surrogate, path)?, grid))
    }

    /// The layer as a QAT module (its fake quants and switches), when it has any.
    fn module(&mut self) -> Option<&mut dyn QatModule> {
        None
    }

    /// Whether the layer's own batch statistics are frozen (true when it has none; a block's
    /// body answers for itself).
    fn is_bn_frozen(&self) -> bool {
        true
    }

    fn write_state(&self, _prefix: &str, _out: &mut StateDict) {}

    fn read_state(&mut self, _prefix: &str, _reader: &mut StateReader<'_>) {}

    /// PyTorch's convert for this layer, given its input's grid (`None`: float input).
    fn convert(&self, input: Option<ActivationQParams>, path: &str) -> Result<Int8Layer>;

    /// Removes the output fake quant, so that forward returns the float output, and returns it.
    fn take_output_fake_quant(&mut self) -> Option<FakeQuantize> {
        None
    }

    fn deployed_weight(&self) -> Option<DeployedWeight<'_>> {
        None
    }
}

/// A [`QatOp`]'s `module`, `write_state` and `read_state` for a layer that is a [`QatModule`]
/// with its own state dict in PyTorch's keys (`SaveStateDict`, `LoadStateDict`).
macro_rules! own_module_ops {
    () => {
        fn module(&mut self) -> Option<&mut dyn $crate::nn::QatModule> {
            Some(self)
        }

        fn write_state(&self, prefix: &str, out: &mut $crate::state_dict::StateDict) {
            $crate::state_dict::SaveStateDict::write_state(self, prefix, out);
        }

        fn read_state(&mut self, prefix: &str, reader: &mut $crate::state_dict::StateReader<'_>) {
            $crate::state_dict::LoadStateDict::read_state(self, prefix, reader);
        }
    };
}
pub(crate) use own_module_ops;

/// Declares [`QatLayer`] from a list of kinds.
macro_rules! qat_layers {
    ($($kinds:tt)*) => {
        layer_enum! {
            /// A layer of a prepared model.
            QatLayer: QatOp { $($kinds)* }
        }
    };
}

with_unweighted_kinds! { qat_layers! {
    QuantStub(QatQuantStub),
    DeQuantStub(DeQuantStub),
    ConvBn2d(ConvBn2d),
    ConvBnReLU2d(ConvBnReLU2d),
    ConvReLU2d(ConvReLU2d),
    Conv2d(qat::Conv2d),
    Linear(qat::Linear),
    LinearReLU(LinearReLU),
    LinearBn1d(LinearBn1d),
    Residual(QatResidual),
    Concat(QatConcat),
    Hardswish(super::layers::QatHardswish),
    /// A `BatchNorm2d` or `BNReLU2d` no conv precedes, with its output fake quant.
    BatchNorm2d(QatBatchNorm2d),
    /// A layer whose qconfig is `None`: left in float.
    Float(Layer),
    Conv3d(qat::Conv3d),
    ConvBn3d(ConvBn3d),
    ConvBnReLU3d(ConvBnReLU3d),
    ConvReLU3d(ConvReLU3d),
    /// The 1-d family runs on the generic modules over `[N, C, L]`.
    Conv1d(qat::ConvNd<3, Conv1dOptions>),
    ConvBn1d(ConvBnNd<3, Conv1dOptions>),
    ConvBnReLU1d(ConvBnReLUNd<3, Conv1dOptions>),
    ConvReLU1d(ConvReLUNd<3, Conv1dOptions>),
    ConvTranspose2d(qat::ConvNd<4, ConvTranspose2dOptions>),
    ConvTransposeBn2d(ConvBnNd<4, ConvTranspose2dOptions>),
    ConvTransposeBnReLU2d(ConvBnReLUNd<4, ConvTranspose2dOptions>),
    ConvTransposeReLU2d(ConvReLUNd<4, ConvTranspose2dOptions>),
} }

/// A block's fake quants and switches (residual, concatenation): its body's, then the fake
/// quant of the operation joining the two paths (`$join`).
macro_rules! block_switches {
    ($block:ty, $join:ident) => {
        impl QatModule for $block {
            fn fake_quants_mut(&mut self) -> Vec<&mut FakeQuantize> {
                let mut out: Vec<&mut FakeQuantize> = body_modules(&mut self.body).flat_map(|m| m.fake_quants_mut()).collect();
                out.push(&mut self.$join);
                out
            }

            fn set_training(&mut self, mode: bool) {
                body_modules(&mut self.body).for_each(|m| m.set_training(mode));
            }

            fn freeze_bn_stats(&mut self) {
                body_modules(&mut self.body).for_each(|m| m.freeze_bn_stats());
            }

            fn update_bn_stats(&mut self) {
                body_modules(&mut self.body).for_each(|m| m.update_bn_stats());
            }
        }
    };
}

fn body_modules(body: &mut [Named<QatLayer>]) -> impl Iterator<Item = &mut dyn QatModule> {
    body.iter_mut().filter_map(|l| l.layer.op_mut().module())
}

/// A block body's float forward (layers named `<path>.<name>` in errors, as the float model
/// names them).
fn body_forward(body: &mut [Named<QatLayer>], mut x: Value, path: &str) -> Result<Value> {
    for l in body {
        x = l.layer.op_mut().forward(x, &format!("{path}.{}", l.name))?;
    }
    Ok(x)
}

/// A block body in the deployment arithmetic from the block's input; it must end on a grid.
fn body_deployment(body: &mut [Named<QatLayer>], mut flow: Flow, path: &str, straight_through: bool) -> Result<(Value, Grid)> {
    for l in body {
        flow = l.layer.op_mut().forward_deployment(flow, &format!("{path}.body.{}", l.name), straight_through)?;
    }
    let (value, grid) = flow;
    Ok((value, need_grid(grid, &format!("{path} (end of its body)"))?))
}

/// A block body converted from the block's (quantized) input; it must end quantized.
fn convert_body(body: &[Named<QatLayer>], input: Option<ActivationQParams>, path: &str) -> Result<Vec<Named<Int8Layer>>> {
    let mut chain = ConvertChain::on(need_input(input, path)?);
    let body = convert_layers(body, &format!("{path}.body."), &mut chain)?;
    chain.input(&format!("{path} (end of its body)"), None)?;
    Ok(body)
}

/// A block's state: its body under `body.`, the joining fake quant under
/// `<join>.activation_post_process.` (PyTorch's `FloatFunctional` child).
fn write_block(body: &[Named<QatLayer>], join_fq: &FakeQuantize, join_name: &str, prefix: &str, out: &mut StateDict) {
    write_layers(body, &join(prefix, "body."), out);
    join_fq.write_state(&join(prefix, &format!("{join_name}.activation_post_process.")), out);
}

fn read_block(body: &mut [Named<QatLayer>], join_fq: &mut FakeQuantize, join_name: &str, prefix: &str, reader: &mut StateReader<'_>) {
    read_layers(body, &join(prefix, "body."), reader);
    join_fq.read_state(&join(prefix, &format!("{join_name}.activation_post_process.")), reader);
}

/// A residual block after prepare: the addition gets its own output fake quant (PyTorch's
/// `FloatFunctional` observer), after the ReLU when there is one.
#[derive(Module, Debug)]
pub struct QatResidual {
    pub body: Vec<Named<QatLayer>>,
    pub relu: bool,
    pub add: FakeQuantize,
}

impl QatOp for QatResidual {
    fn kind(&self) -> &'static str {
        "Residual"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        let y = body_forward(&mut self.body, x.clone(), path)?;
        let sum = y.float_add(x, path)?;
        let sum = if self.relu { sum.relu() } else { sum };
        let named = |e| crate::nn::qat::in_layer(e, path, "residual sum");
        Ok(map_float!(sum, |t| self.add.forward(t).map_err(named)?, |q| Value::Quantized(q)))
    }

    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        self.clone().forward_deployment((x, grid), path, false)
    }

    /// The body from the block's input, then the two grids added onto the addition's.
    fn forward_deployment(&mut self, (value, grid): Flow, path: &str, straight_through: bool) -> Result<Flow> {
        let shortcut_grid = need_grid(grid, path)?;
        let (body, body_grid) = body_deployment(&mut self.body, (value.clone(), grid), path, straight_through)?;
        let output = Grid::of(&self.add, &format!("{path}.add"))?;
        let exact = zip_float!(
            detach(body.clone()),
            detach(value.clone()),
            |a, b| add(a, body_grid, b, shortcut_grid, output, self.relu),
            |a, b| {
                return Err(QatError::shape(path, format!("the residual shape {}", b.describe()), a.describe()));
            }
        );
        if !straight_through {
            return Ok((exact, Some(output)));
        }
        let sum = body.float_add(value, path)?;
        let sum = if self.relu { sum.relu() } else { sum };
        let surrogate = map_float!(sum, |t| self.add.forward(t)?, |q| Value::Quantized(q));
        Ok((with_gradient_of(exact, surrogate, path)?, Some(output)))
    }

    fn module(&mut self) -> Option<&mut dyn QatModule> {
        Some(self)
    }

    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        write_block(&self.body, &self.add, "add", prefix, out);
    }

    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        read_block(&mut self.body, &mut self.add, "add", prefix, reader);
    }

    fn convert(&self, input: Option<ActivationQParams>, path: &str) -> Result<Int8Layer> {
        let body = convert_body(&self.body, input, path)?;
        let add = quantized::Add::new(self.add.activation_qparams(&format!("{path}.add"))?, self.relu)?;
        Ok(Int8Layer::Residual { body, add })
    }
}

block_switches!(QatResidual, add);

/// The grid of a quantized layer's input: an error when the input is float.
/// Converts `layers` in order along `chain`.
pub(crate) fn convert_layers(layers: &[Named<QatLayer>], prefix: &str, chain: &mut ConvertChain) -> Result<Vec<Named<Int8Layer>>> {
    let mut out = Vec::with_capacity(layers.len());
    for l in layers {
        let path = format!("{prefix}{}", l.name);
        let layer = l.layer.op().convert(chain.grid(), &path)?;
        match &layer {
            Int8Layer::DeQuantize(_) => chain.dequantized(),
            converted => chain.advance(&path, converted.output_qparams()),
        }
        out.push(Named { name: l.name.clone(), layer });
    }
    Ok(out)
}

/// Every layer's state under `<prefix><name>.`.
pub(crate) fn write_layers(layers: &[Named<QatLayer>], prefix: &str, out: &mut StateDict) {
    layers.iter().for_each(|l| l.layer.op().write_state(&join(prefix, &format!("{}.", l.name)), out));
}

pub(crate) fn read_layers(layers: &mut [Named<QatLayer>], prefix: &str, reader: &mut StateReader<'_>) {
    layers.iter_mut().for_each(|l| l.layer.op_mut().read_state(&join(prefix, &format!("{}.", l.name)), reader));
}

impl QatLayer {
    /// The layers inside a block (a residual or concatenation body).
    pub fn body(&self) -> Option<&[Named<QatLayer>]> {
        match self {
            Self::Residual(r) => Some(&r.body),
            Self::Concat(c) => Some(&c.body),
            _ => None,
        }
    }
}

/// The QAT stage's view of a float layer kind: PyTorch's `prepare_qat` swap.
pub(crate) trait PrepareQat {
    /// The layer's QAT module with `qconfig`, an output fake quant attached. `after_unfused`
    /// says the layer before absorbs a batch norm but was not fused with it.
    fn prepare(self, qconfig: QConfig, path: &str, after_unfused: bool, context: &mut Prepare<'_>) -> Result<QatLayer>;
}

/// What preparing a whole model carries from layer to layer.
pub(crate) struct Prepare<'a> {
    pub map: &'a QConfigMap,
    /// Every qconfig met so far uses one qparam formula for training and convert.
    pub consistent: bool,
}

/// Declares [`Layer::prepare`] from the list of float kinds.
macro_rules! prepare_dispatch {
    ($($(#[doc = $doc:literal])* $variant:ident($ty:ty)),* $(,)?) => {
        impl Layer {
            pub(crate) fn prepare(self, qconfig: QConfig, path: &str, after_unfused: bool, context: &mut Prepare<'_>) -> Result<QatLayer> {
                match self { $(Self::$variant(m) => <$ty as PrepareQat>::prepare(m, qconfig, path, after_unfused, context),)* }
            }
        }
    };
}

with_float_kinds!(prepare_dispatch);

/// The body prepared layer by layer; the addition gets its own output fake quant.
impl PrepareQat for Residual {
    fn prepare(self, qconfig: QConfig, path: &str, _: bool, context: &mut Prepare<'_>) -> Result<QatLayer> {
        let body = prepare_layers(self.body, &format!("{path}.body."), context)?;
        Ok(QatLayer::Residual(QatResidual { body, relu: self.relu, add: qconfig.activation.init()? }))
    }
}

/// Prepares `layers` in order: a layer without a qconfig stays in float.
pub(crate) fn prepare_layers(layers: Vec<Named<Layer>>, prefix: &str, context: &mut Prepare<'_>) -> Result<Vec<Named<QatLayer>>> {
    let mut after_unfused = false;
    layers
        .into_iter()
        .map(|Named { name, layer }| {
            let after = std::mem::replace(&mut after_unfused, layer.op().absorbs_next_batch_norm());
            let path = format!("{prefix}{name}");
            let Some(qconfig) = context.map.get(&path).cloned() else {
                return Ok(Named { name, layer: QatLayer::Float(layer) });
            };
            context.consistent &= qconfig.is_consistent();
            Ok(Named { layer: layer.prepare(qconfig, &path, after, context)?, name })
        })
        .collect()
}

/// A concatenation block after prepare: the joined tensor gets its own output fake quant
/// (PyTorch's `FloatFunctional.cat` observer), and both parts are requantized onto its grid.
#[derive(Module, Debug)]
pub struct QatConcat {
    pub body: Vec<Named<QatLayer>>,
    pub cat: FakeQuantize,
}

impl QatOp for QatConcat {
    fn kind(&self) -> &'static str {
        "Concat"
    }

    fn forward(&mut self, x: Value, path: &str) -> Result<Value> {
        let y = body_forward(&mut self.body, x.clone(), path)?;
        let joined = x.concat_channels(y, path)?;
        let named = |e| crate::nn::qat::in_layer(e, path, "concatenation");
        Ok(map_float!(joined, |t| self.cat.forward(t).map_err(named)?, |q| Value::Quantized(q)))
    }

    fn forward_exact(&self, x: Value, grid: Option<Grid>, path: &str) -> Result<Flow> {
        self.clone().forward_deployment((x, grid), path, false)
    }

    /// The body from the block's input, then both parts requantized onto the output grid
    /// (`codes(real)`, as the int8 concatenation rounds them) and joined.
    fn forward_deployment(&mut self, (value, grid): Flow, path: &str, straight_through: bool) -> Result<Flow> {
        need_grid(grid, path)?;
        let (body, _) = body_deployment(&mut self.body, (value.clone(), grid), path, straight_through)?;
        let output = Grid::of(&self.cat, &format!("{path}.cat"))?;
        let onto_output = |v: Value| map_float!(detach(v), |t| output.real(output.codes(t)), |q| Value::Quantized(q));
        let exact = onto_output(value.clone()).concat_channels(onto_output(body.clone()), path)?;
        if !straight_through {
            return Ok((exact, Some(output)));
        }
        let joined = value.concat_channels(body, path)?;
        let surrogate = map_float!(joined, |t| self.cat.forward(t)?, |q| Value::Quantized(q));
        Ok((with_gradient_of(exact, surrogate, path)?, Some(output)))
    }

    fn module(&mut self) -> Option<&mut dyn QatModule> {
        Some(self)
    }

    fn write_state(&self, prefix: &str, out: &mut StateDict) {
        write_block(&self.body, &self.cat, "cat", prefix, out);
    }

    fn read_state(&mut self, prefix: &str, reader: &mut StateReader<'_>) {
        read_block(&mut self.body, &mut self.cat, "cat", prefix, reader);
    }

    fn convert(&self, input: Option<ActivationQParams>, path: &str) -> Result<Int8Layer> {
        let body = convert_body(&self.body, input, path)?;
        let cat = quantized::Concat::new(self.cat.activation_qparams(&format!("{path}.cat"))?)?;
        Ok(Int8Layer::Concat { body, cat })
    }
}

block_switches!(QatConcat, cat);

/// The body prepared layer by layer; the concatenation gets its own output fake quant.
impl PrepareQat for Concat {
    fn prepare(self, qconfig: QConfig, path: &str, _: bool, context: &mut Prepare<'_>) -> Result<QatLayer> {
        let body = prepare_layers(self.body, &format!("{path}.body."), context)?;
        Ok(QatLayer::Concat(QatConcat { body, cat: qconfig.activation.init()? }))
    }
}
