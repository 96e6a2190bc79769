//! What stops a training run; each error names the file, option or step concerned.

use std::path::PathBuf;

/// Errors of `engram-train`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error("invalid training option `{name}` = {value}: {reason}")]
    InvalidOption {
        name: String,
        value: String,
        reason: String,
    },
    #[error(
        "step {step}: the {what} is {value}; training stopped (the last good checkpoint, step {last_good}, is kept{})",
        checkpoint.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default()
    )]
    NonFinite {
        step: usize,
        what: &'static str,
        value: f64,
        last_good: usize,
        checkpoint: Option<PathBuf>,
    },
    #[error("{}: {reason}", path.display())]
    Checkpoint { path: PathBuf, reason: String },
    #[error("cannot resume from {}: {reason}", path.display())]
    Resume { path: PathBuf, reason: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
    #[error(transparent)]
    Data(#[from] engram_data::DataError),
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
}

impl TrainError {
    pub(crate) fn invalid(name: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        TrainError::InvalidOption {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl From<(PathBuf, std::io::Error)> for TrainError {
    fn from((path, source): (PathBuf, std::io::Error)) -> Self {
        TrainError::Io { path, source }
    }
}
