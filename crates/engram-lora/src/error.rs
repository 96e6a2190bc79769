//! What can go wrong configuring, attaching, saving or loading an adapter; each error names the key,
//! file or value concerned.

use std::path::PathBuf;

/// Errors of `engram-lora`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoraError {
    #[error("invalid LoRA option `{name}` = {value}: {reason}")]
    InvalidOption {
        name: String,
        value: String,
        reason: String,
    },
    #[error(
        "unknown target module `{0}` (known: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or \"all-linear\")"
    )]
    UnknownTarget(String),
    #[error("no adapter named `{0}` on this model")]
    NoSuchAdapter(String),
    #[error("an adapter named `{0}` is already attached")]
    DuplicateAdapter(String),
    #[error("adapter `{name}`: {reason}")]
    State { name: String, reason: String },
    #[error("{}: {reason}", path.display())]
    Config { path: PathBuf, reason: String },
    #[error("{}: tensor `{key}`: {reason}", path.display())]
    Tensor {
        path: PathBuf,
        key: String,
        reason: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl LoraError {
    pub(crate) fn invalid(name: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        LoraError::InvalidOption {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| LoraError::Io { path, source }
    }
}
