//! Errors of the replay crate; each names the file, line, option or endpoint concerned.

use std::path::PathBuf;

/// Errors of `engram-replay`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
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
    /// A malformed line of a replay-data or source file.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Loading the generator model or generating failed (an HTTP endpoint's errors too).
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    /// Rendering a chat template or tokenizing failed.
    #[error(transparent)]
    Tokenizer(#[from] engram_tokenizer::TokenizerError),
    /// Fine-tuning on the records, or another step of the injection seam, failed.
    #[error(transparent)]
    Inject(#[from] engram_inject::InjectError),
    /// A JSONL file (records, targets) could not be read.
    #[error(transparent)]
    Jsonl(#[from] engram_model::formats::jsonl::JsonlError),
}

impl From<ReplayError> for engram_inject::InjectError {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Inject(e) => e,
            ReplayError::Model(e) => Self::Model(e),
            other => Self::Method(Box::new(other)),
        }
    }
}

impl ReplayError {
    pub(crate) fn option(name: &str, value: impl ToString, reason: &str) -> Self {
        Self::Option {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}
