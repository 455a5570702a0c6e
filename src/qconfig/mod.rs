//! QConfig: how a module's activations and weights are fake quantized. PyTorch's presets
//! ([`get_default_qat_qconfig`]), our own ([`QConfig::consistent`]), and a builder for custom
//! bit widths and schemes ([`QConfigBuilder`]).

mod builder;
mod quantizer;

pub use builder::QConfigBuilder;
pub use quantizer::Quantizer;

use std::fmt;

use crate::error::{QatError, Result};
use crate::fake_quantize::FakeQuantizeConfig;
use crate::observer::ObserverConfig;
use crate::quant::{QScheme, QuantDtype};

/// The bins of the histograms [`QConfig::with_histogram_activations`] uses (PyTorch's default).
pub const HISTOGRAM_BINS: usize = 2048;

/// The fake-quant configs for a module's output activation and its weight.
#[derive(Clone, Debug, PartialEq)]
pub struct QConfig {
    pub activation: FakeQuantizeConfig,
    pub weight: FakeQuantizeConfig,
}

/// The quantized backends PyTorch's presets are named after.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum QuantBackend {
    Fbgemm,
    X86,
    Qnnpack,
    Onednn,
}

impl QuantBackend {
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "fbgemm" => Ok(Self::Fbgemm),
            "x86" => Ok(Self::X86),
            "qnnpack" => Ok(Self::Qnnpack),
            "onednn" => Ok(Self::Onednn),
            other => Err(QatError::invalid("backend", format!("unknown backend {other:?}; expected fbgemm, x86, qnnpack or onednn"))),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Fbgemm => "fbgemm",
            Self::X86 => "x86",
            Self::Qnnpack => "qnnpack",
            Self::Onednn => "onednn",
        }
    }

    /// fbgemm and x86 keep activations to 7 bits (0..127) to avoid overflow in their int8 kernels.
    fn reduces_activation_range(self) -> bool {
        matches!(self, Self::Fbgemm | Self::X86)
    }

    /// qnnpack quantizes weights per tensor; the others per output channel.
    fn per_channel_weights(self) -> bool {
        !matches!(self, Self::Qnnpack)
    }
}

impl fmt::Display for QuantBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// PyTorch's default averaging constant for every QAT observer (weights included: the weight
/// fake quants are *not* memoryless, despite PyTorch's docstrings; issue #170169).
pub const DEFAULT_AVERAGING_CONSTANT: f32 = 0.01;

/// The activation observer of PyTorch's presets: moving-average min/max, quint8, per-tensor
/// affine over 0..255, halved to 0..127 on fbgemm and x86.
fn activation_observer(backend: QuantBackend) -> ObserverConfig {
    ObserverConfig::moving_average(DEFAULT_AVERAGING_CONSTANT)
        .with_quant_range(0, 255)
        .with_reduce_range(backend.reduces_activation_range())
}

/// The weight observer of PyTorch's presets: qint8 -128..127, symmetric, per channel on axis 0
/// (per tensor for qnnpack).
fn weight_observer(backend: QuantBackend) -> ObserverConfig {
    let observer = if backend.per_channel_weights() {
        ObserverConfig::moving_average_per_channel(DEFAULT_AVERAGING_CONSTANT, 0).with_qscheme(QScheme::PerChannelSymmetric)
    } else {
        ObserverConfig::moving_average(DEFAULT_AVERAGING_CONSTANT).with_qscheme(QScheme::PerTensorSymmetric)
    };
    observer.with_dtype(QuantDtype::QInt8).with_quant_range(-128, 127)
}

/// What the presets take as a backend: a [`QuantBackend`], or PyTorch's name for one
/// (`"fbgemm"`, `"x86"`, `"qnnpack"`, `"onednn"`), which is parsed.
pub trait IntoBackend {
    fn into_backend(self) -> Result<QuantBackend>;
}

impl IntoBackend for QuantBackend {
    fn into_backend(self) -> Result<QuantBackend> {
        Ok(self)
    }
}

impl<T: AsRef<str>> IntoBackend for T {
    fn into_backend(self) -> Result<QuantBackend> {
        QuantBackend::parse(self.as_ref())
    }
}

/// PyTorch's `get_default_qat_qconfig(backend, version)`, reproduced exactly: version 0 uses
/// `FakeQuantize` (observer formula throughout), version 1 (PyTorch's default) the fused
/// moving-average fake quant, which trains with ChooseQuantizationParams while convert uses the
/// observer formula (PyTorch issue #88800; see [`QConfig::consistent`] for our fix).
pub fn get_default_qat_qconfig(backend: impl IntoBackend, version: u32) -> Result<QConfig> {
    let backend = backend.into_backend()?;
    let (activation, weight) = (activation_observer(backend), weight_observer(backend));
    match version {
        0 => Ok(QConfig { activation: FakeQuantizeConfig::standard(activation), weight: FakeQuantizeConfig::standard(weight) }),
        1 => Ok(QConfig { activation: FakeQuantizeConfig::fused(activation)?, weight: FakeQuantizeConfig::fused(weight)? }),
        v => Err(QatError::invalid("version", format!("qconfig version {v} does not exist; PyTorch has versions 0 and 1"))),
    }
}

impl QConfig {
    /// Our preset: PyTorch's version-1 schedule (the fused moving-average fake quant, the
    /// backend's ranges and granularity), but one qparam formula, the observer's, for training
    /// and convert. The converted int8 model then computes with exactly the qparams training
    /// simulated, and symmetric weights keep zero point 0 even when a channel is one-sided.
    pub fn consistent(backend: impl IntoBackend) -> Result<Self> {
        let mut q = get_default_qat_qconfig(backend, 1)?;
        q.activation = q.activation.consistent();
        q.weight = q.weight.consistent();
        Ok(q)
    }

    /// Per-channel weight quantization along `axis` (1 for transposed convolutions, whose
    /// output channel is weight axis 1); per-tensor configs are unchanged.
    pub fn with_weight_channel_axis(mut self, axis: usize) -> Self {
        if self.weight.observer.qscheme.is_per_channel() {
            self.weight.observer.ch_axis = axis;
        }
        self
    }

    /// Activations observed by histograms (PyTorch's HistogramObserver, 2048 bins, searching for
    /// the activation range's own levels), as PyTorch's PTQ qconfigs observe them; weights keep
    /// their observers.
    pub fn with_histogram_activations(mut self) -> Result<Self> {
        self.activation = self.activation.with_histogram_observer(HISTOGRAM_BINS)?;
        Ok(self)
    }

    /// Whether training and convert use the same qparams for both activation and weight.
    pub fn is_consistent(&self) -> bool {
        self.activation.is_consistent() && self.weight.is_consistent()
    }

    /// Checks both configs by building them once.
    pub fn validate(&self) -> Result<()> {
        self.activation.init()?;
        self.weight.init()?;
        Ok(())
    }
}
