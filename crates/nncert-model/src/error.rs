//! Errors of model loading, validation and execution.

use thiserror::Error;

/// Everything that can go wrong while reading, checking or running a model.
/// Each variant renders as one line that says what to fix.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("not a valid ONNX file: {0}")]
    Decode(String),
    #[error("unsupported ONNX op `{op}` (node `{node}`)")]
    UnsupportedOp { op: String, node: String },
    #[error("unsupported use of `{op}` (node `{node}`): {reason}")]
    Unsupported {
        op: String,
        node: String,
        reason: String,
    },
    #[error("shape mismatch at node `{node}`: {reason}")]
    Shape { node: String, reason: String },
    #[error("non-finite value (NaN or Inf) in weights of node `{node}`")]
    NonFinite { node: String },
    #[error("invalid model: {0}")]
    Invalid(String),
    #[error("input has {got} values but the model expects {expected} (shape {shape:?})")]
    InputSize {
        got: usize,
        expected: usize,
        shape: Vec<usize>,
    },
}

pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    pub fn shape(node: &str, reason: impl Into<String>) -> Self {
        ModelError::Shape {
            node: node.to_string(),
            reason: reason.into(),
        }
    }
    pub fn unsupported(op: &str, node: &str, reason: impl Into<String>) -> Self {
        ModelError::Unsupported {
            op: op.to_string(),
            node: node.to_string(),
            reason: reason.into(),
        }
    }
}
