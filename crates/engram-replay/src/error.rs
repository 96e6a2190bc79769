//! Errors of the replay crate; each names the file, line, option or endpoint concerned.

use std::path::PathBuf;

/// Errors of `engram-replay`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
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
    /// A generation endpoint that cannot be reached or answers badly.
    #[error("{url}: {message}")]
    Http { url: String, message: String },
    /// A malformed line of a replay-data or source file.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    #[error(transparent)]
    Tokenizer(#[from] engram_tokenizer::TokenizerError),
    #[error(transparent)]
    Eval(#[from] engram_eval::EvalError),
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
