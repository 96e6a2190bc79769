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
    /// Fine-tuning or another evaluation-crate step failed.
    #[error(transparent)]
    Eval(#[from] engram_eval::EvalError),
    /// Attaching, training or saving the adapter failed.
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
