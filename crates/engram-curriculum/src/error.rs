//! Errors of the curriculum crate; each names the option, file or fact concerned.

use std::path::PathBuf;

/// Errors of `engram-curriculum`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CurriculumError {
    /// Reading or writing a file (probe cache, knowledge, report, adapter) failed.
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
    /// A malformed line of a knowledge (categories) file, or a `gradual.json` that does not parse.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line (the JSON error's line for `gradual.json`).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// Counts that cannot come from a probe (more right answers than answers, no greedy answer at all), or a
    /// fact missing from a later probe.
    #[error("fact {id:?}: {message}")]
    Counts {
        /// The fact's id.
        id: String,
        /// What is wrong.
        message: String,
    },
    /// A generator returned a different number of answers than asked.
    #[error("answerer {name}: {message}")]
    Answerer {
        /// The generator's name.
        name: String,
        /// What it returned.
        message: String,
    },
    /// Loading the model or generating answers failed.
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    /// Rendering a few-shot prompt with the chat template failed.
    #[error(transparent)]
    Template(#[from] engram_tokenizer::TokenizerError),
    /// A stage's training method, or another step of the injection seam, failed.
    #[error(transparent)]
    Inject(#[from] engram_inject::InjectError),
    /// A probe or knowledge file could not be read.
    #[error(transparent)]
    Jsonl(#[from] engram_model::formats::jsonl::JsonlError),
    /// Loading or attaching an adapter failed.
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

impl From<CurriculumError> for engram_inject::InjectError {
    /// Errors of the layers below keep their own variant.
    fn from(e: CurriculumError) -> Self {
        match e {
            CurriculumError::Inject(e) => e,
            CurriculumError::Model(e) => Self::Model(e),
            CurriculumError::Lora(e) => Self::Lora(e),
            CurriculumError::Io { path, source } => Self::Io { path, source },
            other => Self::Method(Box::new(other)),
        }
    }
}
