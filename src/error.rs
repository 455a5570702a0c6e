//! One error type for everything a user can get wrong. Each variant says what was wrong and,
//! where there is one, what to do instead.

use thiserror::Error;

/// The error returned by every fallible operation of this crate.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum QatError {
    /// A quantization range that PyTorch would also reject.
    #[error("invalid quantization range [{quant_min}, {quant_max}]: {reason}")]
    InvalidRange { quant_min: i64, quant_max: i64, reason: String },

    /// A configuration value out of its domain (a negative eps, a momentum above 1, an unknown
    /// backend, ...). `field` names the argument, option or flag as the caller spelled it
    /// (PyTorch's name where it has one: `eps`, `momentum`, `groups`, `backend`, `--epochs`), so
    /// a caller can match on it; `reason` says what is wrong and what would be accepted.
    #[error("invalid {field}: {reason}")]
    InvalidConfig { field: String, reason: String },

    /// A model whose layers cannot take the step asked of them: two layers with one name, a
    /// batch norm with no conv to fold into, a quantized layer with no QuantStub before it, a
    /// float layer where the int8 engine needs a quantized one. `layer` names the layer (its
    /// path in the model), `reason` what to change.
    #[error("{layer}: {reason}")]
    ModelStructure { layer: String, reason: String },

    /// Tensor shapes that do not fit together.
    #[error("shape mismatch in {context}: expected {expected}, got {actual}")]
    ShapeMismatch { context: String, expected: String, actual: String },

    /// Training-mode batch norm needs more than one value per channel to estimate a variance.
    #[error(
        "{layer}: expected more than 1 value per channel when training, got input shape {shape:?}; \
         use a larger batch, or call freeze_bn_stats() to normalize with the running statistics"
    )]
    SingleValuePerChannel { layer: String, shape: Vec<usize> },

    /// NaN or infinity where a finite value is required.
    #[error("{context}: {what} is not finite")]
    NonFinite { context: String, what: String },

    /// A state dict that does not match the module it is loaded into.
    #[error("state dict does not fit the module:\n{}", problems.join("\n"))]
    StateDict { problems: Vec<String> },

    /// An operation called before what it needs has happened: converting (or evaluating the
    /// deployment arithmetic of) a layer whose observer never saw data, training on the
    /// deployment arithmetic before the qparams and BN statistics are fixed. `context` names the
    /// layer or operation, `reason` what is missing and what to call first.
    #[error("{context}: {reason}")]
    Lifecycle { context: String, reason: String },

    /// A file that could not be read or written, or is not what it claims to be.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
}

impl QatError {
    /// [`QatError::InvalidConfig`]: `field` out of its domain, for `reason`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig { field: field.into(), reason: reason.into() }
    }

    /// [`QatError::ModelStructure`]: the model does not fit at `layer`, for `reason`.
    pub fn structure(layer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::ModelStructure { layer: layer.into(), reason: reason.into() }
    }

    pub fn lifecycle(context: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Lifecycle { context: context.into(), reason: reason.into() }
    }

    pub fn shape(context: impl Into<String>, expected: impl Into<String>, actual: impl Into<String>) -> Self {
        Self::ShapeMismatch { context: context.into(), expected: expected.into(), actual: actual.into() }
    }
}

/// Shorthand used across the crate.
pub type Result<T> = std::result::Result<T, QatError>;
