//! Errors of the distillation crate; each names the option, file or target concerned.

use std::path::PathBuf;

/// Errors of `engram-distill`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DistillError {
    /// Reading or writing a file (targets, report) failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// An option out of range or unknown.
    #[error("invalid option `{name}` = {value}: {reason}")]
    Option {
        /// The option's name, as the CLI spells it.
        name: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// Inputs of the plain loss that do not fit together (lengths, vocabulary, non-finite values).
    #[error("distillation loss: {0}")]
    Shape(String),
    /// A malformed line of a targets file.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The targets file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Tokenizing or batching the targets failed.
    #[error(transparent)]
    Data(#[from] engram_data::DataError),
    /// Generating the self-QA pairs failed.
    #[error(transparent)]
    Replay(#[from] engram_replay::ReplayError),
    /// Training, or another step of the injection seam, failed.
    #[error(transparent)]
    Inject(#[from] engram_inject::InjectError),
    /// The training run failed.
    #[error(transparent)]
    Train(#[from] engram_train::TrainError),
    /// Attaching, training or saving the adapter failed.
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
    /// Generating (the teacher's answers) failed.
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    /// A JSONL file (records, targets) could not be read.
    #[error(transparent)]
    Jsonl(#[from] engram_model::formats::jsonl::JsonlError),
}

impl From<DistillError> for engram_inject::InjectError {
    fn from(e: DistillError) -> Self {
        match e {
            DistillError::Inject(e) => e,
            DistillError::Replay(e) => e.into(),
            DistillError::Train(e) => e.into(),
            DistillError::Model(e) => Self::Model(e),
            other => Self::Method(Box::new(other)),
        }
    }
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
