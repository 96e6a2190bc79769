//! What can go wrong configuring, attaching, saving or loading an adapter; each error names the key,
//! file or value concerned.

use std::path::PathBuf;

/// Errors of `engram-lora`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoraError {
    /// A LoRA setting is out of range (`r` of 0, dropout outside `[0, 1)`, a layer index past the model, ...).
    #[error("invalid LoRA option `{name}` = {value}: {reason}")]
    InvalidOption {
        /// The setting's name (PEFT's name where it has one).
        name: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A target module that is not one of the llama block's linear layers; holds the name given.
    #[error(
        "unknown target module `{0}` (known: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or \"all-linear\")"
    )]
    UnknownTarget(String),
    /// An operation names an adapter that is not attached; holds the name.
    #[error("no adapter named `{0}` on this model")]
    NoSuchAdapter(String),
    /// An adapter is attached (or loaded) under a name already in use; holds the name.
    #[error("an adapter named `{0}` is already attached")]
    DuplicateAdapter(String),
    /// The adapter is in the wrong state for the operation (already merged, not merged, config mismatch, ...).
    #[error("adapter `{name}`: {reason}")]
    State {
        /// The adapter's name.
        name: String,
        /// What is wrong, phrased to follow the name.
        reason: String,
    },
    /// An adapter folder or `adapter_config.json` that is missing, not valid JSON, or asks for what engram lacks.
    #[error("{}: {reason}", path.display())]
    Config {
        /// The folder or file concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tensor of `adapter_model.safetensors` that is unexpected, malformed or misshapen, or cannot be written.
    #[error("{}: tensor `{key}`: {reason}", path.display())]
    Tensor {
        /// The weights file.
        path: PathBuf,
        /// The safetensors key (`*` for the file as a whole).
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A GGUF adapter file that cannot be parsed or written (the message names the file).
    #[error(transparent)]
    Format(Box<engram_model::formats::FormatError>),
    /// Reading or writing an adapter file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
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
