//! What stops a training run; each error names the file, option or step concerned.

use std::path::PathBuf;

/// Errors of `engram-train`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// A training option is out of range or inconsistent (`lr` not positive, `grad-accum` of 0, no batches, ...).
    #[error("invalid training option `{name}` = {value}: {reason}")]
    InvalidOption {
        /// The option's name, as the CLI spells it.
        name: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// The loss or the gradient norm became NaN or infinite; the run stops rather than write bad weights.
    #[error(
        "step {step}: the {what} is {value}; training stopped (the last good checkpoint, step {last_good}, is kept{})",
        checkpoint.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default()
    )]
    NonFinite {
        /// The optimizer step (1-based) at which it happened.
        step: usize,
        /// Which figure went bad: `loss` or `gradient norm`.
        what: &'static str,
        /// Its value.
        value: f64,
        /// The step of the last checkpoint written (0: none).
        last_good: usize,
        /// The checkpoint folder holding that step's state, if one was written.
        checkpoint: Option<PathBuf>,
    },
    /// Saving a checkpoint's optimizer state failed.
    #[error("{}: {reason}", path.display())]
    Checkpoint {
        /// The checkpoint folder.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// A checkpoint cannot be resumed: it is missing, damaged, or from a run with different settings or data.
    #[error("cannot resume from {}: {reason}", path.display())]
    Resume {
        /// The checkpoint folder.
        path: PathBuf,
        /// Why resuming is refused.
        reason: String,
    },
    /// Reading or writing a run file (metrics, checkpoint, adapter) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// An adapter operation failed (no such adapter, saving or loading it, ...).
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
    /// Reading or batching the training data failed.
    #[error(transparent)]
    Data(#[from] engram_data::DataError),
    /// The model failed (loading, a bad option, or the backend).
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
