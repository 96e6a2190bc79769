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
    /// The loss, the gradient norm or the updated adapter became NaN or infinite; the run stops rather than
    /// write bad weights, and says which checkpoint (if any) still holds good ones.
    #[error(
        "step {step}: the {what} is {value}; training stopped ({})",
        match checkpoint {
            Some(p) => format!(
                "the last good checkpoint, step {last_good}, is kept in {}: lower --lr and --resume from it",
                p.display()
            ),
            None => "no checkpoint is kept: none was written before it; lower --lr and start again".into(),
        }
    )]
    NonFinite {
        /// The optimizer step (1-based) at which it happened.
        step: usize,
        /// Which figure went bad: `loss`, `gradient norm` or `adapter update of MODULE`.
        what: String,
        /// Its value.
        value: f64,
        /// The step of the last checkpoint this run wrote or resumed from (0: none).
        last_good: usize,
        /// That checkpoint's folder, when there is one.
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
