//! The ONNX QDQ graph as the layers of a converted model emit it: [`QdqGraph`] holds the nodes
//! and initializers written so far and the names taken, [`Wire`] the tensor flowing between
//! layers. Each int8 layer kind calls the emitter for its nodes (`workflow/kinds/`); the
//! exporter (`crate::export`) drives them and writes the file.

use std::collections::{HashMap, HashSet};

use super::proto::{AttributeProto, NodeProto, TensorProto, attribute_type, data_type};
use crate::error::{QatError, Result};
use crate::nn::PaddingMode;
use crate::nn::quantized::{self, ActivationQParams, Int8ConvGeometry, Int8ConvKind, Int8Weight, LayerQParams, QuantizedConv};
use crate::quant::packing::{bits_needed, pack};

/// The name of the graph input, float32 `[N, C, ...]`.
pub const INPUT_NAME: &str = "input";
/// The name of the graph output, float32 `[N, classes]`.
pub const OUTPUT_NAME: &str = "logits";

/// A block's shortcut and body outputs, with the names of their dequantized (float) copies.
struct BlockPaths {
    shortcut: Wire,
    body: Wire,
    shortcut_float: String,
    body_float: String,
}

/// Emits a block's body onto the block's input and returns the body's output.
pub(crate) trait EmitBody: FnOnce(&mut QdqGraph, Wire) -> Result<Wire> {}

impl<F: FnOnce(&mut QdqGraph, Wire) -> Result<Wire>> EmitBody for F {}

/// A float node run on the tensor flowing between layers ([`QdqGraph::same_qparams`],
/// [`QdqGraph::in_steps`]): its operator, attributes, the inputs after the tensor (Clip's
/// bounds), and its output's shape.
struct FloatNode<'a> {
    op: &'a str,
    attributes: Vec<AttributeProto>,
    extra_inputs: &'a [String],
    shape: Vec<usize>,
}

/// The tensor flowing between layers: its graph name, its shape (batch 1) and, when it is
/// uint8, its qparams.
#[derive(Clone, Debug)]
pub(crate) struct Wire {
    pub name: String,
    pub shape: Vec<usize>,
    pub qparams: Option<ActivationQParams>,
}

impl Wire {
    pub(crate) fn quantized(&self, path: &str) -> Result<ActivationQParams> {
        self.qparams.ok_or_else(|| QatError::structure(path, "receives a float tensor but is quantized; put a QuantStub before it"))
    }

    fn image(&self, path: &str) -> Result<[usize; 4]> {
        self.shape.clone().try_into().map_err(|_| QatError::shape(path, "an image tensor [N, C, H, W]", format!("{:?}", self.shape)))
    }
}

/// The graph under construction.
#[derive(Default)]
pub(crate) struct QdqGraph {
    nodes: Vec<NodeProto>,
    initializers: Vec<TensorProto>,
    /// Every tensor name produced so far (node outputs and initializers), to keep them unique.
    names: HashSet<String>,
    /// Activation (scale, zero point) initializers, shared by every node that uses them.
    qparams: HashMap<(u32, i32), (String, String)>,
    /// Weights that fit 4 bits go out as INT4 (opset 21).
    int4_weights: bool,
}

impl QdqGraph {
    /// An empty graph; `int4_weights` writes weights that fit 4 bits as INT4 (opset 21).
    pub(crate) fn new(int4_weights: bool) -> Self {
        Self { int4_weights, ..Self::default() }
    }

    /// The nodes and initializers written, in order.
    pub(crate) fn finish(self) -> (Vec<NodeProto>, Vec<TensorProto>) {
        (self.nodes, self.initializers)
    }

    /// A QuantStub: `QuantizeLinear` of the float input.
    pub(crate) fn quantize_input(&mut self, q: ActivationQParams, path: &str, cur: Wire) -> Result<Wire> {
        if cur.qparams.is_some() {
            return Err(QatError::structure(path, "Quantize receives an already quantized tensor"));
        }
        let name = self.quantize(path, &cur.name, q, true)?;
        Ok(Wire { name, shape: cur.shape, qparams: Some(q) })
    }

    /// A DeQuantStub: `DequantizeLinear`.
    pub(crate) fn dequantize_output(&mut self, path: &str, cur: Wire) -> Result<Wire> {
        let q = cur.quantized(path)?;
        let name = self.unique(path)?;
        self.dequantize(&name, &cur.name, q)?;
        Ok(Wire { name, shape: cur.shape, qparams: None })
    }

    pub(crate) fn relu(&mut self, path: &str, cur: Wire) -> Result<Wire> {
        let shape = cur.shape.clone();
        self.same_qparams(path, cur, FloatNode { op: "Relu", attributes: vec![], extra_inputs: &[], shape })
    }

    /// Clamped in step units, `[0, quantize(6) - z]`, so the bound is the int8 engine's
    /// quantized 6 exactly. Opset 13 takes Clip's bounds as inputs.
    pub(crate) fn relu6(&mut self, path: &str, cur: Wire) -> Result<Wire> {
        let q = cur.quantized(path)?;
        let six = crate::quant::quantize_value(6.0, 1.0 / q.scale, q.zero_point, q.quant_min, q.quant_max);
        let bounds = [self.f32_scalar(&format!("{path}.min"), 0.0)?, self.f32_scalar(&format!("{path}.max"), (six - q.zero_point) as f32)?];
        let shape = cur.shape.clone();
        self.in_steps(path, cur, FloatNode { op: "Clip", attributes: vec![], extra_inputs: &bounds, shape })
    }

    pub(crate) fn global_avg_pool(&mut self, path: &str, cur: Wire) -> Result<Wire> {
        if cur.shape.len() < 3 {
            return Err(QatError::shape(path, "a tensor with spatial axes to average", format!("{:?}", cur.shape)));
        }
        let shape = [&cur.shape[..2], &vec![1; cur.shape.len() - 2][..]].concat();
        self.in_steps(path, cur, FloatNode { op: "GlobalAveragePool", attributes: vec![], extra_inputs: &[], shape })
    }

    pub(crate) fn flatten(&mut self, path: &str, cur: Wire) -> Result<Wire> {
        match cur.shape.len() {
            3..=5 => {
                let name = self.unique(path)?;
                self.node("Flatten", &name, &[&cur.name], vec![attr_int("axis", 1)]);
                Ok(Wire { name, shape: vec![cur.shape[0], cur.shape[1..].iter().product()], qparams: cur.qparams })
            }
            // The int8 model leaves quantized features as they are.
            2 if cur.qparams.is_some() => Ok(cur),
            _ => Err(QatError::shape(path, "a tensor of rank 3 to 5 to flatten", format!("{:?}", cur.shape))),
        }
    }

    /// A conv of any geometry: ONNX `Conv` (after a `Pad` for reflect and replicate padding) or
    /// `ConvTranspose`, between the QDQ pairs of its operands.
    pub(crate) fn conv<const D: usize, O: Int8ConvGeometry<D>>(&mut self, m: &QuantizedConv<D, O>, path: &str, cur: Wire) -> Result<Wire> {
        let q = cur.quantized(path)?;
        check_input_qparams(path, q, m.qparams.input)?;
        let o = &m.options;
        let dims: [usize; D] = cur
            .shape
            .clone()
            .try_into()
            .map_err(|_| QatError::shape(path, format!("a tensor of rank {D} [N, C, spatial...]"), format!("{:?}", cur.shape)))?;
        o.check_input(dims, path)?;
        let window = o.window_3d();
        // The module's own axes: the last D - 2 of the three-axis window.
        let first = 5 - D;
        let own = |v: &[usize; 3]| v[first..].to_vec();
        let out = (0..D - 2).map(|a| window.output_size(first + a, dims[2 + a]));
        let shape = [vec![dims[0], o.out_channels()], out.collect()].concat();
        let mut attributes = vec![
            attr_ints("kernel_shape", ints(&own(&window.kernel))),
            attr_ints("strides", ints(&own(&window.stride))),
            attr_ints("dilations", ints(&own(&window.dilation))),
        ];
        let (input, node, op) = match window.kind {
            Int8ConvKind::Forward { padding_after, padding_mode } => {
                let (input, pads) = self.conv_padding(padding_mode, path, &cur.name, &own(&window.padding), &own(&padding_after))?;
                attributes.insert(1, attr_ints("pads", pads));
                (input, "conv", "Conv")
            }
            Int8ConvKind::Transposed { output_padding } => {
                attributes.insert(1, attr_ints("pads", ints(&[own(&window.padding), own(&window.padding)].concat())));
                attributes.push(attr_ints("output_padding", ints(&own(&output_padding))));
                (cur.name.clone(), "conv_transpose", "ConvTranspose")
            }
        };
        attributes.push(attr_int("group", window.groups as i64));
        let weight_shape = o.weight_shape();
        // The weight scales run along the output channels' axis (1 for a transposed conv).
        let operands = WeightOperands { shape: &weight_shape, axis: O::WEIGHT_CHANNEL_AXIS, weight: &m.weight, bias: &m.bias };
        self.weighted(path, &input, node, FloatNode { op, attributes, extra_inputs: &[], shape }, operands, &m.qparams)
    }

    /// The conv's input and its `pads` attribute (every axis's start, then every axis's end) for
    /// `padding_mode`. Zeros: the Conv pads. Reflect and replicate copy input values, so they pad
    /// the uint8 tensor itself (ONNX `Pad`, modes `reflect` and `edge`) and the Conv pads
    /// nothing: exact, as the int8 engine pads its u8 input. Circular padding needs `Pad`'s
    /// `wrap` mode (opset 19), not written yet.
    fn conv_padding(
        &mut self,
        mode: PaddingMode,
        path: &str,
        input: &str,
        before: &[usize],
        after: &[usize],
    ) -> Result<(String, Vec<i64>)> {
        let onnx_mode = match mode {
            PaddingMode::Zeros => return Ok((input.to_string(), ints(&[before, after].concat()))),
            PaddingMode::Reflect => "reflect",
            PaddingMode::Replicate => "edge",
            PaddingMode::Circular => {
                return Err(QatError::invalid(
                    "padding_mode",
                    format!(
                        "{path}: padding_mode circular is not exportable to ONNX yet (it needs Pad's wrap mode, opset 19); \
                         use zeros, reflect or replicate"
                    ),
                ));
            }
        };
        // Pad's pads cover every axis: none on the batch and channel axes.
        let pads = ints(&[&[0, 0], before, &[0, 0], after].concat());
        let raw = pads.iter().flat_map(|p| p.to_le_bytes()).collect();
        let pads_name = self.initializer(&format!("{path}.pads"), data_type::INT64, vec![pads.len() as i64], raw)?;
        let padded = self.unique(&format!("{path}.pad"))?;
        self.node("Pad", &padded, &[input, &pads_name], vec![attr_string("mode", onnx_mode)]);
        Ok((padded, vec![0; 2 * before.len()]))
    }

    pub(crate) fn linear(&mut self, m: &quantized::Linear, path: &str, cur: Wire) -> Result<Wire> {
        let q = cur.quantized(path)?;
        check_input_qparams(path, q, m.qparams.input)?;
        if cur.shape.len() != 2 || cur.shape[1] != m.in_features {
            return Err(QatError::shape(
                path,
                format!("features [N, {}] (ONNX Gemm takes rank-2 input; add a Flatten before it)", m.in_features),
                format!("{:?}", cur.shape),
            ));
        }
        let weight_shape = [m.out_features, m.in_features];
        let operands = WeightOperands { shape: &weight_shape, axis: 0, weight: &m.weight, bias: &m.bias };
        let shape = vec![cur.shape[0], m.out_features];
        self.weighted(
            path,
            &cur.name,
            "gemm",
            FloatNode { op: "Gemm", attributes: vec![attr_int("transB", 1)], extra_inputs: &[], shape },
            operands,
            &m.qparams,
        )
    }

    /// A quantized conv, transposed conv or linear as QDQ: its dequantized operands
    /// ([`Self::qdq_operands`]) into the float `node`, named `<path>.<suffix>`, then the fused
    /// ReLU and the quantize onto the output grid.
    fn weighted(
        &mut self,
        path: &str,
        input: &str,
        suffix: &str,
        node: FloatNode,
        operands: WeightOperands,
        qparams: &LayerQParams,
    ) -> Result<Wire> {
        let (x, weight, bias) = self.qdq_operands(path, input, qparams.input, operands)?;
        let float = self.unique(&format!("{path}.{suffix}"))?;
        self.node(node.op, &float, &[&x, &weight, &bias], node.attributes);
        let name = self.activation_out(path, &float, qparams.relu, qparams.output)?;
        Ok(Wire { name, shape: node.shape, qparams: Some(qparams.output) })
    }

    /// The three float operands of a quantized Conv / Gemm: the dequantized activation, the
    /// int8 weight dequantized per output channel (axis 0), and the int32 bias dequantized at
    /// `input.scale * weight_scale[o]` with zero point 0.
    fn qdq_operands(&mut self, path: &str, x: &str, input: ActivationQParams, w: WeightOperands) -> Result<(String, String, String)> {
        let WeightOperands {
            shape: weight_shape,
            axis,
            weight: Int8Weight { values: weight, scale: weight_scale, zero_point: weight_zero_point },
            bias,
        } = w;
        let out_channels = bias.len();
        // ONNX quantizes along the weight's channel axis: its length in scales and zero points.
        let axis_len = weight_shape[axis];
        let zero_points = weight_zero_point[..axis_len]
            .iter()
            .map(|&z| {
                i8::try_from(z).map_err(|_| {
                    QatError::invalid("zero_point", format!("{path}: weight zero point {z} does not fit int8; only int8 weights export"))
                })
            })
            .collect::<Result<Vec<i8>>>()?;
        let dims = |s: &[usize]| s.iter().map(|&d| d as i64).collect::<Vec<_>>();
        let x_name = self.unique(&format!("{path}.input_dequantize"))?;
        self.dequantize(&x_name, x, input)?;

        // INT4 shares the int8 file's packing: two values per byte, the first in the low nibble.
        let int4 = self.int4_weights && bits_needed(weight) <= 4 && bits_needed(&zero_points) <= 4;
        let (weight_type, weight_raw, zero_point_raw) = if int4 {
            (data_type::INT4, pack(weight, 4)?, pack(&zero_points, 4)?)
        } else {
            (data_type::INT8, weight.iter().map(|&v| v as u8).collect(), zero_points.iter().map(|&v| v as u8).collect())
        };
        let w_q = self.initializer(&format!("{path}.weight_quantized"), weight_type, dims(weight_shape), weight_raw)?;
        let w_s = self.f32_initializer(&format!("{path}.weight_scale"), &weight_scale[..axis_len])?;
        let w_z = self.initializer(&format!("{path}.weight_zero_point"), weight_type, vec![axis_len as i64], zero_point_raw)?;
        let w_name = self.unique(&format!("{path}.weight_dequantize"))?;
        self.node("DequantizeLinear", &w_name, &[&w_q, &w_s, &w_z], vec![attr_int("axis", axis as i64)]);

        let b_q = self.initializer(
            &format!("{path}.bias_quantized"),
            data_type::INT32,
            vec![out_channels as i64],
            bias.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )?;
        let bias_scale: Vec<f32> = weight_scale.iter().map(|&s| (input.scale as f64 * s as f64) as f32).collect();
        let b_s = self.f32_initializer(&format!("{path}.bias_scale"), &bias_scale)?;
        let b_z =
            self.initializer(&format!("{path}.bias_zero_point"), data_type::INT32, vec![out_channels as i64], vec![0u8; 4 * out_channels])?;
        let b_name = self.unique(&format!("{path}.bias_dequantize"))?;
        self.node("DequantizeLinear", &b_name, &[&b_q, &b_s, &b_z], vec![attr_int("axis", 0)]);
        Ok((x_name, w_name, b_name))
    }

    /// The fused ReLU (if any) and the requantization of a float accumulator.
    fn activation_out(&mut self, path: &str, float: &str, relu: bool, output: ActivationQParams) -> Result<String> {
        let mut float = float.to_string();
        if relu {
            let name = self.unique(&format!("{path}.relu"))?;
            self.node("Relu", &name, &[&float], vec![]);
            float = name;
        }
        self.quantize(path, &float, output, true)
    }

    /// `z_out + rne(f32(q - z_in) * m_c + b_c)`: in step units (DequantizeLinear with scale 1
    /// and the input zero point, Mul, Add, QuantizeLinear with scale 1 and the output zero
    /// point), the runtime computes the same f32 multiply and add the int8 engine does.
    pub(crate) fn batch_norm(&mut self, m: &quantized::BatchNorm2d, path: &str, cur: Wire) -> Result<Wire> {
        let q = cur.quantized(path)?;
        check_input_qparams(path, q, m.input)?;
        let [_, c, _, _] = cur.image(path)?;
        if c != m.channels() {
            return Err(QatError::shape(path, format!("{} channels", m.channels()), format!("{:?}", cur.shape)));
        }
        let per_channel = |v: &[f32]| (vec![1, v.len() as i64, 1, 1], v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
        let (dims, raw) = per_channel(&m.multiplier);
        let multiplier = self.initializer(&format!("{path}.multiplier"), data_type::FLOAT, dims, raw)?;
        let (dims, raw) = per_channel(&m.offset);
        let offset = self.initializer(&format!("{path}.offset"), data_type::FLOAT, dims, raw)?;
        let x = self.unique(&format!("{path}.input_dequantize"))?;
        self.dequantize(&x, &cur.name, ActivationQParams { scale: 1.0, ..q })?;
        let scaled = self.unique(&format!("{path}.mul"))?;
        self.node("Mul", &scaled, &[&x, &multiplier], vec![]);
        let shifted = self.unique(&format!("{path}.add"))?;
        self.node("Add", &shifted, &[&scaled, &offset], vec![]);
        let out = if m.relu { m.output.zero_point.max(m.output.quant_min) } else { m.output.quant_min };
        let steps = ActivationQParams { scale: 1.0, quant_min: out, ..m.output };
        let name = self.quantize(path, &shifted, steps, true)?;
        Ok(Wire { name, shape: cur.shape, qparams: Some(m.output) })
    }

    /// Max or average pooling over square windows without padding.
    pub(crate) fn window_pool(&mut self, op: &str, kernel_size: usize, stride: usize, path: &str, cur: Wire) -> Result<Wire> {
        let [n, c, h, w] = cur.image(path)?;
        let out = |size: usize| {
            if size < kernel_size {
                Err(QatError::shape(path, format!("spatial size at least {kernel_size}"), format!("{size}")))
            } else {
                Ok((size - kernel_size) / stride + 1)
            }
        };
        let shape = vec![n, c, out(h)?, out(w)?];
        let (k, s) = (kernel_size as i64, stride as i64);
        let attributes = vec![attr_ints("kernel_shape", vec![k, k]), attr_ints("strides", vec![s, s])];
        let node = FloatNode { op, attributes, extra_inputs: &[], shape };
        if op == "AveragePool" { self.in_steps(path, cur, node) } else { self.same_qparams(path, cur, node) }
    }

    /// A float op applied to a quantized tensor in units of its quantization step: dequantize
    /// with scale 1 (giving the integers `q - z` exactly), apply, quantize back with scale 1.
    /// The runtime then rounds the same value the int8 engine rounds (an average's half-way
    /// ties included, which `(q - z) * s` summed in float would blur), and the output is the
    /// same integers in the input's real qparams.
    fn in_steps(&mut self, path: &str, cur: Wire, node: FloatNode<'_>) -> Result<Wire> {
        let Some(q) = cur.qparams else { return self.same_qparams(path, cur, node) };
        let steps = ActivationQParams { scale: 1.0, ..q };
        let result = self.same_qparams(path, Wire { qparams: Some(steps), ..cur }, node)?;
        Ok(Wire { qparams: Some(q), ..result })
    }

    /// A float op that keeps the qparams: on a quantized tensor, dequantize, apply, quantize back
    /// with the same qparams (exact: the op only selects or floors at real 0, and
    /// `(q - z) * s / s` rounds back to `q - z`); on a float tensor, just the op.
    fn same_qparams(&mut self, path: &str, cur: Wire, node: FloatNode<'_>) -> Result<Wire> {
        let FloatNode { op, attributes, extra_inputs, shape } = node;
        let inputs = |x: &str| std::iter::once(x.to_string()).chain(extra_inputs.iter().cloned()).collect::<Vec<_>>();
        let Some(q) = cur.qparams else {
            let name = self.unique(path)?;
            let inputs = inputs(&cur.name);
            self.node(op, &name, &inputs.iter().map(String::as_str).collect::<Vec<_>>(), attributes);
            return Ok(Wire { name, shape, qparams: None });
        };
        let x = self.unique(&format!("{path}.input_dequantize"))?;
        self.dequantize(&x, &cur.name, q)?;
        let y = self.unique(&format!("{path}.{}", op.to_lowercase()))?;
        let inputs = inputs(&x);
        self.node(op, &y, &inputs.iter().map(String::as_str).collect::<Vec<_>>(), attributes);
        // The values stay inside [quant_min, quant_max]: no clip needed.
        let name = self.quantize(path, &y, q, false)?;
        Ok(Wire { name, shape, qparams: Some(q) })
    }

    /// A block's two paths as float tensors: the body run from the block's input, then the
    /// shortcut and the body's output dequantized (`<path>.<join>.shortcut_dequantize`,
    /// `<path>.<join>.body_dequantize`).
    fn block_paths(&mut self, body: impl EmitBody, path: &str, join: &str, cur: Wire) -> Result<BlockPaths> {
        let shortcut_q = cur.quantized(path)?;
        let shortcut = cur.clone();
        let body = body(self, cur)?;
        let body_q = body.quantized(&format!("{path} (end of its body)"))?;
        let shortcut_float = self.unique(&format!("{path}.{join}.shortcut_dequantize"))?;
        self.dequantize(&shortcut_float, &shortcut.name, shortcut_q)?;
        let body_float = self.unique(&format!("{path}.{join}.body_dequantize"))?;
        self.dequantize(&body_float, &body.name, body_q)?;
        Ok(BlockPaths { shortcut, body, shortcut_float, body_float })
    }

    pub(crate) fn residual(&mut self, body: impl EmitBody, add: &quantized::Add, path: &str, cur: Wire) -> Result<Wire> {
        let p = self.block_paths(body, path, "add", cur)?;
        if p.body.shape != p.shortcut.shape {
            let (expected, actual) = (format!("{:?} (the shortcut's shape)", p.shortcut.shape), format!("{:?}", p.body.shape));
            return Err(QatError::shape(format!("{path}.add"), expected, actual));
        }
        let sum = self.unique(&format!("{path}.add.add"))?;
        self.node("Add", &sum, &[&p.body_float, &p.shortcut_float], vec![]);
        let name = self.activation_out(&format!("{path}.add"), &sum, add.relu, add.output)?;
        Ok(Wire { name, shape: p.body.shape, qparams: Some(add.output) })
    }

    /// `DequantizeLinear` of both parts, `Concat` along the channels, `QuantizeLinear` onto the
    /// concatenation's grid: the real values requantized as the int8 concatenation does.
    pub(crate) fn concat(&mut self, body: impl EmitBody, cat: &quantized::Concat, path: &str, cur: Wire) -> Result<Wire> {
        let p = self.block_paths(body, path, "cat", cur)?;
        let (a, b) = (&p.shortcut.shape, &p.body.shape);
        if a.len() != b.len() || a.len() < 2 || a[0] != b[0] || a[2..] != b[2..] {
            let expected = format!("{a:?} but for the channel axis (the block input's shape)");
            return Err(QatError::shape(format!("{path}.cat"), expected, format!("{b:?}")));
        }
        let joined = self.unique(&format!("{path}.cat.concat"))?;
        self.node("Concat", &joined, &[&p.shortcut_float, &p.body_float], vec![attr_int("axis", 1)]);
        let name = self.quantize(&format!("{path}.cat"), &joined, cat.output, true)?;
        let mut shape = p.shortcut.shape;
        shape[1] += p.body.shape[1];
        Ok(Wire { name, shape, qparams: Some(cat.output) })
    }

    /// `x * HardSigmoid(x)` with `alpha = 1/6`, `beta = 1/2` (opset 13 has no HardSwish):
    /// dequantized in, requantized onto the module's output grid.
    pub(crate) fn hardswish(&mut self, m: &quantized::Hardswish, path: &str, cur: Wire) -> Result<Wire> {
        let q = cur.quantized(path)?;
        check_input_qparams(path, q, m.input)?;
        let x = self.unique(&format!("{path}.input_dequantize"))?;
        self.dequantize(&x, &cur.name, q)?;
        let gate = self.unique(&format!("{path}.hard_sigmoid"))?;
        self.node("HardSigmoid", &gate, &[&x], vec![attr_float("alpha", 1.0 / 6.0), attr_float("beta", 0.5)]);
        let y = self.unique(&format!("{path}.mul"))?;
        self.node("Mul", &y, &[&x, &gate], vec![]);
        let name = self.quantize(path, &y, m.output, true)?;
        Ok(Wire { name, shape: cur.shape, qparams: Some(m.output) })
    }

    /// `QuantizeLinear` of the float tensor `x` to `q` (node and output named
    /// `{path}.quantize`).
    ///
    /// A reduced range (`quant_min > 0` or `quant_max < 255`, e.g. fbgemm's 0..=127) cannot be
    /// expressed by a uint8 QuantizeLinear, which saturates at 0 and 255: with `clip`, an integer
    /// `Clip` of the uint8 result to `[quant_min, quant_max]` follows it (node and output
    /// `{path}.saturate`). `clamp(clamp(v, 0, 255), lo, hi) == clamp(v, lo, hi)`, so this is
    /// exactly the saturation the int8 kernels apply, with no float bound to round; and it keeps
    /// `DequantizeLinear -> Conv -> QuantizeLinear` contiguous, so runtimes that fuse QDQ groups
    /// into integer kernels (onnxruntime's QLinearConv, QGemm, QLinearAdd) still do.
    fn quantize(&mut self, path: &str, x: &str, q: ActivationQParams, clip: bool) -> Result<String> {
        let (scale, zero_point) = self.activation_qparams(q)?;
        let name = self.unique(&format!("{path}.quantize"))?;
        self.node("QuantizeLinear", &name, &[x, &scale, &zero_point], vec![]);
        if !(clip && (q.quant_min > 0 || q.quant_max < 255)) {
            return Ok(name);
        }
        let min = self.initializer(&format!("{path}.saturate_min"), data_type::UINT8, vec![], vec![q.quant_min as u8])?;
        let max = self.initializer(&format!("{path}.saturate_max"), data_type::UINT8, vec![], vec![q.quant_max as u8])?;
        let saturated = self.unique(&format!("{path}.saturate"))?;
        self.node("Clip", &saturated, &[&name, &min, &max], vec![]);
        Ok(saturated)
    }

    /// `DequantizeLinear` of the uint8 tensor `x` with `q`, output `name` (already reserved).
    pub(crate) fn dequantize(&mut self, name: &str, x: &str, q: ActivationQParams) -> Result<()> {
        let (scale, zero_point) = self.activation_qparams(q)?;
        self.node("DequantizeLinear", name, &[x, &scale, &zero_point], vec![]);
        Ok(())
    }

    /// Scalar scale (float) and zero point (uint8) initializers for `q`, shared.
    fn activation_qparams(&mut self, q: ActivationQParams) -> Result<(String, String)> {
        let key = (q.scale.to_bits(), q.zero_point);
        if let Some(names) = self.qparams.get(&key) {
            return Ok(names.clone());
        }
        let k = self.qparams.len();
        let scale = self.f32_scalar(&format!("activation{k}.scale"), q.scale)?;
        let zero_point =
            self.initializer(&format!("activation{k}.zero_point"), data_type::UINT8, vec![], vec![q.zero_point.clamp(0, 255) as u8])?;
        self.qparams.insert(key, (scale.clone(), zero_point.clone()));
        Ok((scale, zero_point))
    }

    fn f32_scalar(&mut self, name: &str, v: f32) -> Result<String> {
        self.initializer(name, data_type::FLOAT, vec![], v.to_le_bytes().to_vec())
    }

    fn f32_initializer(&mut self, name: &str, v: &[f32]) -> Result<String> {
        self.initializer(name, data_type::FLOAT, vec![v.len() as i64], v.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn initializer(&mut self, name: &str, data_type: i32, dims: Vec<i64>, raw: Vec<u8>) -> Result<String> {
        let name = self.unique(name)?;
        self.initializers.push(TensorProto { dims, data_type: Some(data_type), name: Some(name.clone()), raw_data: Some(raw) });
        Ok(name)
    }

    /// Reserves a tensor name; a clash means two layers share a path.
    fn unique(&mut self, name: &str) -> Result<String> {
        if !self.names.insert(name.to_string()) || name == INPUT_NAME || name == OUTPUT_NAME {
            return Err(QatError::structure(
                name,
                format!("ONNX export: the tensor name {name:?} is used twice; give the layers unique names"),
            ));
        }
        Ok(name.to_string())
    }

    /// A node named like its single output.
    fn node(&mut self, op: &str, output: &str, inputs: &[&str], attribute: Vec<AttributeProto>) {
        self.nodes.push(NodeProto {
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: vec![output.to_string()],
            name: Some(output.to_string()),
            op_type: Some(op.to_string()),
            attribute,
            doc_string: None,
            domain: None,
        });
    }
}

fn check_input_qparams(path: &str, got: ActivationQParams, want: ActivationQParams) -> Result<()> {
    if got != want {
        return Err(QatError::structure(path, format!("input qparams {got:?} differ from the ones it was converted for {want:?}")));
    }
    Ok(())
}

fn attr_float(name: &str, f: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), f: Some(f), r#type: Some(attribute_type::FLOAT), ..Default::default() }
}

fn attr_string(name: &str, s: &str) -> AttributeProto {
    AttributeProto { name: Some(name.into()), s: Some(s.as_bytes().to_vec()), r#type: Some(attribute_type::STRING), ..Default::default() }
}

fn attr_int(name: &str, i: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), i: Some(i), r#type: Some(attribute_type::INT), ..Default::default() }
}

fn attr_ints(name: &str, ints: Vec<i64>) -> AttributeProto {
    AttributeProto { name: Some(name.into()), ints, r#type: Some(attribute_type::INTS), ..Default::default() }
}

/// A quantized Conv's or Gemm's integer parameters, as [`qdq_operands`](QdqGraph::qdq_operands)
/// writes them: the weight in its shape with per-output-channel (axis 0) scales and zero
/// points, and the int32 bias.
struct WeightOperands<'a> {
    shape: &'a [usize],
    /// The weight axis of the output channels (1 for a transposed conv); `scale` and
    /// `zero_point` hold one entry per output channel, repeating along it per group.
    axis: usize,
    weight: &'a Int8Weight,
    bias: &'a [i32],
}

/// Sizes as ONNX's int64 attribute values.
fn ints(v: &[usize]) -> Vec<i64> {
    v.iter().map(|&x| x as i64).collect()
}
