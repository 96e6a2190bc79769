//! Errors of the injection seam; each names the file, line, field or option concerned.

use std::path::PathBuf;

/// Errors of `engram-inject`, and what every [`Method`](crate::Method) returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InjectError {
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
        /// The option's name, as the CLI spells it.
        name: String,
        /// The value given.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// A method crate's own failure (a replay generator that cannot be reached, a malformed cache file, ...).
    #[error(transparent)]
    Method(Box<dyn std::error::Error + Send + Sync>),
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] engram_model::ModelError),
    /// Attaching, saving or loading an adapter failed.
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
    /// Preparing training data failed.
    #[error(transparent)]
    Data(#[from] engram_data::DataError),
    /// A training run failed.
    #[error(transparent)]
    Train(#[from] engram_train::TrainError),
    /// Rendering a chat prompt failed.
    #[error(transparent)]
    Template(#[from] engram_tokenizer::TokenizerError),
}

impl InjectError {
    /// An [`InjectError::Option`].
    pub fn option(name: &str, value: impl ToString, reason: impl Into<String>) -> Self {
        Self::Option {
            name: name.into(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }

    /// An [`InjectError::Io`] maker for `path`, for `map_err`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

impl From<engram_model::formats::jsonl::JsonlError> for InjectError {
    fn from(e: engram_model::formats::jsonl::JsonlError) -> Self {
        use engram_model::formats::jsonl::JsonlError;
        match e {
            JsonlError::Io { path, source } => Self::Io { path, source },
            JsonlError::Parse {
                path,
                line,
                message,
            } => Self::Item {
                path,
                line,
                field: String::new(),
                message,
            },
        }
    }
}
