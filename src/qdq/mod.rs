//! The ONNX QDQ graph: the protobuf messages ([`proto`]) and the builder each int8 layer kind
//! emits its nodes with. It sits below `workflow`, so every layer kind declares its own export
//! beside its other stages (`workflow/kinds/`); `crate::export` writes the file.

mod graph;
pub mod proto;

pub use graph::{INPUT_NAME, OUTPUT_NAME};
pub(crate) use graph::{QdqGraph, Wire};
