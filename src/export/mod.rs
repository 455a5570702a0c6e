//! ONNX export of a converted [`Int8Model`](crate::workflow::Int8Model), in the QDQ format that
//! ONNX runtimes understand without any code from this crate.
//!
//! ```no_run
//! # fn main() -> burn_qat::Result<()> {
//! # let int8: burn_qat::workflow::Int8Model = todo!();
//! use std::path::Path;
//! use burn_qat::export::export_onnx;
//!
//! // `int8 = convert(&qat_model)?`, for a model taking 1x12x12 images; the batch dimension of
//! // the file is the symbolic "N" whatever input_shape[0] says.
//! export_onnx(&int8, [1, 1, 12, 12], Path::new("model.onnx"))?;
//! # Ok(())
//! # }
//! ```
//!
//! # The graph
//!
//! Opset 13, IR version 7. Input `input`: float32 `[N, C, H, W]`, the raw values
//! [`Int8Model::forward`](crate::workflow::Int8Model::forward) takes. Output `logits`: float32
//! `[N, classes]`, the dequantized output of the final quantized Linear. Each layer becomes:
//!
//! | layer | nodes |
//! | --- | --- |
//! | QuantStub | `QuantizeLinear` (scalar float scale, uint8 zero point) |
//! | Conv2d / ConvReLU2d | `DequantizeLinear` of the activation; int8 weight initializer with a per-output-channel `DequantizeLinear` (axis 0); int32 bias with `DequantizeLinear` at scale `input.scale * weight_scale[o]`, zero point 0; float `Conv` (its `pads` begin and end apart, for an asymmetric `"same"`); `Relu` if fused; `QuantizeLinear`. Reflect and replicate padding: a `Pad` (modes `reflect`, `edge`) of the uint8 input first, exact, and a Conv without pads |
//! | Linear / LinearReLU | the same with `Gemm(transB = 1)` |
//! | ReLU | `DequantizeLinear`, `Relu`, `QuantizeLinear` with the same qparams |
//! | MaxPool2d | `DequantizeLinear`, `MaxPool`, `QuantizeLinear` with the same qparams |
//! | Flatten | `Flatten(axis = 1)` on the uint8 tensor |
//! | residual block | the body, then `DequantizeLinear` of body output and shortcut, `Add`, `Relu` if fused, `QuantizeLinear` to the add's qparams |
//! | DeQuantStub | `DequantizeLinear` |
//!
//! Float layers (qconfig `None`), circular padding (ONNX's `Pad` has `wrap` from opset 19 only), weight zero points outside
//! int8, and models that do not end with a quantized Linear followed by a DeQuantStub are
//! refused with an error naming the layer.
//!
//! ## Sub-8-bit weights
//!
//! Opset 13 has no type narrower than int8: weights trained at fewer bits are int8 initializers
//! whose values stay in their narrow range (-8..=7 at 4 bits), with the same scales.
//! [`export_onnx_with`] at [`OnnxOpset::V21`] (IR 10) writes every weight tensor whose values
//! and zero points fit 4 signed bits as an INT4 initializer, packed two per byte with the first
//! in the low nibble (ONNX's layout, and the int8 file's), with an INT4 zero point: opset 21's
//! `DequantizeLinear` takes it per channel, and a runtime sees the weights' true width. Wider
//! weights, activations and biases are as at opset 13. (Activations at 4 bits stay uint8 with
//! their `Clip`; opset 21's UINT4 `QuantizeLinear` would express them too, not done yet.)
//!
//! ## Reduced activation ranges
//!
//! A uint8 `QuantizeLinear` saturates at 0 and 255; it cannot express `quant_max = 127` (the
//! fbgemm/x86 `reduce_range` activations) or any other range narrower than 0..=255. Wherever
//! such an activation is produced from a new float value (QuantStub, Conv, Linear, Add), the
//! exporter puts an integer `Clip(q, quant_min, quant_max)` on the uint8 output of the
//! `QuantizeLinear` (Clip accepts uint8 since opset 12). Since
//! `clamp(clamp(v, 0, 255), lo, hi) == clamp(v, lo, hi)`, this is exactly the saturation the int8
//! kernels apply, with no float bound to round. (A float `Clip` before the `QuantizeLinear`
//! would be exact too, but it sits between the Conv and its QuantizeLinear and stops
//! onnxruntime from fusing the group into an integer kernel; the integer Clip does not.) Full
//! 0..=255 ranges (qnnpack) get no Clip. MaxPool and ReLU requantize values already inside the
//! range and get none either.
//!
//! ## Numerics
//!
//! The int8 kernels accumulate exactly in int32 and requantize with one f32 multiply
//! (`rne(f32(acc + bias) * f32(s_in * s_w / s_out))`); the QDQ graph computes the same sum in
//! float on dequantized values and divides by `s_out`. The two agree except where the real value
//! lies within float rounding of a half-integer, where they can land one step apart: the
//! exported model's logits are within one output step (LSB) of `Int8Model::forward`'s, and most
//! are identical (the tests measure it with tract).
//!
//! # Checking the file with onnxruntime
//!
//! ```python
//! import numpy as np, onnx, onnxruntime
//! onnx.checker.check_model(onnx.load("model.onnx"))
//! sess = onnxruntime.InferenceSession("model.onnx", providers=["CPUExecutionProvider"])
//! x = np.random.randn(4, 1, 12, 12).astype(np.float32)   # any batch size
//! (logits,) = sess.run(None, {"input": x})               # shape (4, classes)
//! ```
//!
//! With its default graph optimizations, onnxruntime (1.32) recognizes the
//! `DequantizeLinear -> Conv/Gemm/Add -> QuantizeLinear` groups and runs them as integer kernels
//! (`QLinearConv`, `QGemm`, `QLinearAdd`); its requantization rounds like ours up to the same
//! one-step ties.
//!
//! The protobuf messages are declared in [`proto`] (see there why by hand) and encoded with
//! `prost`.

mod onnx;

/// The protobuf messages of the ONNX file (declared in [`crate::qdq`]).
pub use crate::qdq::proto;

pub use crate::qdq::{INPUT_NAME, OUTPUT_NAME};
pub use onnx::{
    BATCH_DIM, IR_VERSION, OPSET_VERSION, OnnxOpset, export_onnx, export_onnx_with, onnx_bytes, to_model_proto, to_model_proto_with,
};
