//! Errors of the curriculum crate; each names the option, file or fact concerned.

use std::path::PathBuf;

/// Errors of `engram-curriculum`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurriculumError {
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
    /// A malformed line of a knowledge (categories) file.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// Counts that cannot come from a probe (more right answers than answers, no greedy answer at all).
    #[error("fact {id:?}: {message}")]
    Counts { id: String, message: String },
    /// An answerer returned a different number of answers than asked.
    #[error("answerer {name}: {message}")]
    Answerer { name: String, message: String },
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    #[error(transparent)]
    Template(#[from] engram_tokenizer::TokenizerError),
    #[error(transparent)]
    Eval(#[from] engram_eval::EvalError),
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
}

impl CurriculumError {
    pub(crate) fn option(name: &str, value: impl ToString, reason: &str) -> Self {
        Self::Option {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

impl CurriculumError {
    /// As an evaluation error of the method `method` (a curriculum runs as an evaluation method); errors of
    /// the layers below keep their own variant.
    pub fn into_eval(self, method: &str) -> engram_eval::EvalError {
        use engram_eval::EvalError;
        match self {
            CurriculumError::Eval(e) => e,
            CurriculumError::Model(e) => EvalError::Model(e),
            CurriculumError::Lora(e) => EvalError::Lora(e),
            CurriculumError::Io { path, source } => EvalError::Io { path, source },
            other => EvalError::Method {
                method: method.into(),
                source: Box::new(other),
            },
        }
    }
}
