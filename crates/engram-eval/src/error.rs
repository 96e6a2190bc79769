//! Errors of the evaluation crate; each names the file, line and field concerned.

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
}
