//! Errors of the model crate: bad files (from the format and tokenizer crates), shapes, options and devices.

use std::path::PathBuf;

/// Everything that can go wrong loading or running a model; each names the file, tensor or option concerned.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model file (GGUF, `config.json`, safetensors) could not be read or written.
    #[error(transparent)]
    Format(#[from] engram_formats::FormatError),
    /// The tokenizer could not be built from `tokenizer.json` or the GGUF vocabulary.
    #[error(transparent)]
    Tokenizer(#[from] engram_tokenizer::TokenizerError),
    /// A tensor's shape differs from the one the model config implies.
    #[error("{}: tensor `{tensor}` has shape {found:?}, expected {expected:?}", path.display())]
    WrongShape {
        /// The model file or folder.
        path: PathBuf,
        /// The tensor's Hugging Face name.
        tensor: String,
        /// The shape the config implies.
        expected: Vec<usize>,
        /// The shape in the file.
        found: Vec<usize>,
    },
    /// An option or input (sampling setting, device name, prompt, ...) is out of range or malformed.
    #[error("invalid {name} `{value}`: {reason}")]
    InvalidOption {
        /// What the value is for.
        name: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// An OpenAI-compatible endpoint failed or answered something unusable.
    #[error("{url}: {message}")]
    Http {
        /// The request URL.
        url: String,
        /// What went wrong (status and body, or the transport error, after the retries).
        message: String,
    },
    /// A device that does not exist or that this build cannot use.
    #[error("device `{device}`: {reason}")]
    Device {
        /// The device as named (`wgpu`, `cuda:1`, ...).
        device: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// A model path that is not a model (a folder without `config.json` or `tokenizer.json`), or an export that failed.
    #[error("{}: {reason}", path.display())]
    Model {
        /// The file or folder concerned.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The model would not fit in the memory available (checked before loading).
    #[error("{}: {reason}", path.display())]
    OutOfMemory {
        /// The model file or folder.
        path: PathBuf,
        /// How much it needs against how much there is.
        reason: String,
    },
    /// The tensor backend failed (reading data back from the device, for instance); the backend's message.
    #[error("backend error: {0}")]
    Backend(String),
    /// The forward pass produced NaN or infinite logits, usually from diverged or corrupted weights.
    #[error("the model produced non-finite logits at generation step {step}")]
    NonFinite {
        /// The generation step (0 for the first new token) at which it happened.
        step: usize,
    },
    /// Generation was cancelled (see [`crate::generate_cancellable`]) before it finished.
    #[error("generation cancelled after {step} new tokens")]
    Cancelled {
        /// How many tokens each row had generated when it stopped.
        step: usize,
    },
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
