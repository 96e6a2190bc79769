//! Errors of the evaluation crate; each names the file, line, field or option concerned.

use std::path::PathBuf;

/// Errors of `engram-eval`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvalError {
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// A malformed item: `field` is a path into the JSON object (`questions[2].answer`), empty for the line.
    #[error("{}:{line}: {}{message}", path.display(), if field.is_empty() { String::new() } else { format!("field `{field}`: ") })]
    Item {
        /// The items file.
        path: PathBuf,
        /// 1-based line of the item.
        line: usize,
        /// Path to the offending field, empty when the line as a whole is bad.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// A dataset that is wrong as a whole: no items, or a `splits.json` that does not parse or match the items.
    #[error("{}: {message}", path.display())]
    Dataset {
        /// The items or splits file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An option out of range or unknown.
    #[error("invalid option `{name}` = {value}: {reason}")]
    Option {
        /// The option's name.
        name: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A run folder that holds another run, or a results file that cannot be read back.
    #[error("{}: {reason}", path.display())]
    Run {
        /// The run folder or results file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A method's own failure (a replay generator that cannot be reached, ...).
    #[error("method `{method}`: {source}")]
    Method {
        /// The method's name.
        method: String,
        /// Its error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    /// Attaching, training, saving or loading an adapter failed.
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
    /// Preparing training data failed.
    #[error(transparent)]
    Data(#[from] engram_data::DataError),
    /// A training run failed.
    #[error(transparent)]
    Train(#[from] engram_train::TrainError),
}
