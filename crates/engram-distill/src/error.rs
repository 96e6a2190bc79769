//! Errors of the distillation crate; each names the option, file or target concerned.

use std::path::PathBuf;

/// Errors of `engram-distill`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistillError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// An option out of range or unknown.
    #[error("invalid option `{name}` = {value}: {reason}")]
    Option {
        name: String,
        value: String,
        reason: String,
    },
    /// Inputs of the plain loss that do not fit together (lengths, vocabulary, non-finite values).
    #[error("distillation loss: {0}")]
    Shape(String),
    /// A malformed line of a targets file.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Data(#[from] engram_data::DataError),
    #[error(transparent)]
    Replay(#[from] engram_replay::ReplayError),
    #[error(transparent)]
    Eval(#[from] engram_eval::EvalError),
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
}

impl DistillError {
    pub(crate) fn option(name: &str, value: impl ToString, reason: &str) -> Self {
        Self::Option {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
