//! The conversion driver both roads share: [`convert`](super::convert) walks a model's layer
//! table through it, and the `convert` that `#[derive(QatModule)]` generates walks a hand-written
//! model's fields through it. It carries the grid of the value flowing from layer to layer, so
//! every layer gets its input qparams by one rule on both roads: a quant stub starts the grid,
//! each converted module reads it and leaves its own output grid, a layer that keeps its input's
//! grid leaves it as it is, and a DeQuantStub ends it.

use super::convert_fields::{Int8Output, QuantizeInput};
use super::convert_module::ToQuantized;
use crate::error::{QatError, Result};
use crate::nn::quantized::{self, ActivationQParams};

/// The grid between layers during one conversion, and the output grid of every layer converted
/// so far (for a layer that reads another's output, `#[qat(after = field)]`).
#[derive(Clone, Debug, Default)]
pub struct ConvertChain {
    grid: Option<ActivationQParams>,
    outputs: Vec<(String, ActivationQParams)>,
}

impl ConvertChain {
    /// A chain on float input (a quant stub must come first).
    pub fn new() -> Self {
        Self::default()
    }

    /// A chain starting on `grid` (a block's quantized input).
    pub(crate) fn on(grid: ActivationQParams) -> Self {
        Self { grid: Some(grid), outputs: Vec::new() }
    }

    /// The grid flowing now; `None` while the values are float.
    pub fn grid(&self) -> Option<ActivationQParams> {
        self.grid
    }

    /// The input grid of `layer`: the grid flowing now, or the output of the layer `after`.
    pub fn input(&self, layer: &str, after: Option<&str>) -> Result<ActivationQParams> {
        let Some(after) = after else { return need_input(self.grid, layer) };
        self.outputs.iter().rev().find(|(name, _)| name == after).map(|&(_, grid)| grid).ok_or_else(|| {
            QatError::structure(layer, format!("reads the output of {after:?}, which is not converted before it (or not quantized)"))
        })
    }

    /// Records that `layer` was converted: its output grid flows on (`None`: the layer keeps its
    /// input's grid).
    pub fn advance(&mut self, layer: &str, output: Option<ActivationQParams>) {
        self.grid = output.or(self.grid);
        if let Some(grid) = self.grid {
            self.outputs.push((layer.to_string(), grid));
        }
    }

    /// A DeQuantStub: float flows on.
    pub fn dequantized(&mut self) {
        self.grid = None;
    }

    /// Converts the quant stub `stub` at `layer`; its grid starts flowing.
    pub fn quantize_input<S: QuantizeInput + ?Sized>(&mut self, stub: &S, layer: &str) -> Result<quantized::Quantize> {
        let quantize = stub.to_quantize(layer)?;
        self.advance(layer, Some(quantize.qparams));
        Ok(quantize)
    }

    /// Converts `module` at `layer` with the grid flowing now (or `after`'s output); its output
    /// grid flows on.
    pub fn convert<M>(&mut self, module: &M, layer: &str, after: Option<&str>) -> Result<M::Quantized>
    where
        M: ToQuantized + ?Sized,
        M::Quantized: Int8Output,
    {
        let converted = module.to_quantized(self.input(layer, after)?, layer)?;
        self.advance(layer, Some(converted.output_qparams()));
        Ok(converted)
    }
}

/// The grid a quantized layer at `path` reads, or the error that nothing before it quantizes.
pub(crate) fn need_input(input: Option<ActivationQParams>, path: &str) -> Result<ActivationQParams> {
    input.ok_or_else(|| {
        QatError::structure(
            path,
            "receives float input but is quantized; put a QuantStub before it (in a hand-written model, a #[qat(input)] \
             quant stub field, or name its input field with #[qat(after = field)])",
        )
    })
}
