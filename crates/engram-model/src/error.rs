//! Errors of the model crate: bad files (from the format and tokenizer crates), shapes, options and devices.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model; each names the file, tensor or option concerned.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] engram_formats::FormatError),
    #[error(transparent)]
    Tokenizer(#[from] engram_tokenizer::TokenizerError),
    #[error("{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", path.display())]
    WrongShape {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    #[error("invalid {name} `{value}`: {reason}")]
    InvalidOption {
        name: String,
        value: String,
        reason: String,
    },
    #[error("device `{device}`: {reason}")]
    Device { device: String, reason: String },
    #[error("{}: {reason}", path.display())]
    Model { path: PathBuf, reason: String },
    #[error("backend error: {0}")]
    Backend(String),
    #[error("the model produced non-finite logits at generation step {step}")]
    NonFinite { step: usize },
}

impl ModelError {
    /// An out-of-range or malformed option.
    pub fn invalid(name: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        ModelError::InvalidOption {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
