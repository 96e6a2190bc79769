//! Errors of the evaluation crate; each names the file, line, field or option concerned.

use std::path::PathBuf;

/// Errors of `engram-eval`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A malformed item: `field` is a path into the JSON object (`questions[2].answer`), empty for the line.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("field `{field}`: ") })]
    Item {
        path: PathBuf,
        line: usize,
        field: String,
        message: String,
    },
    #[error("{}: {message}", path.display())]
    Dataset { path: PathBuf, message: String },
    /// An option out of range or unknown.
    #[error("invalid option `{name}` = {value}: {reason}")]
    Option {
        name: String,
        value: String,
        reason: String,
    },
    /// A run folder that holds another run, or a results file that cannot be read back.
    #[error("{}: {reason}", path.display())]
    Run { path: PathBuf, reason: String },
    /// A method's own failure (a replay generator that cannot be reached, ...).
    #[error("method `{method}`: {source}")]
    Method {
        method: String,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
    #[error(transparent)]
    Data(#[from] engram_data::DataError),
    #[error(transparent)]
    Train(#[from] engram_train::TrainError),
}
