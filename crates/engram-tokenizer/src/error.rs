//! The one error type of the crate.

use std::path::PathBuf;

/// Everything that can go wrong while loading, running or saving a tokenizer or a chat template.
///
/// Each variant carries what a user needs to fix the problem: the file, the token or merge, the
/// template line. Nothing in this crate panics on bad input; it returns one of these instead.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A file was read but its content is not what it should be (corrupt or truncated JSON, ...).
    #[error("{}: not a valid {what}: {message}", path.display())]
    InvalidFile {
        /// The file concerned.
        path: PathBuf,
        /// What the file should have been, e.g. `tokenizer.json`.
        what: &'static str,
        /// Why it was rejected.
        message: String,
    },

    /// Tokenizer JSON handed over in memory could not be parsed.
    #[error("invalid tokenizer JSON: {0}")]
    InvalidJson(String),

    /// The vocabulary vectors of a GGUF file are inconsistent (bad merge, wrong lengths, ...).
    #[error("invalid GGUF vocabulary: {0}")]
    InvalidVocab(String),

    /// A tokenizer kind or pre-tokenizer this crate does not implement.
    #[error("unsupported {what} {value:?}: {hint}")]
    Unsupported {
        /// What kind of setting, e.g. `GGUF tokenizer model (tokenizer.ggml.model)`.
        what: &'static str,
        /// The value found.
        value: String,
        /// What is supported instead.
        hint: String,
    },

    /// Text could not be encoded.
    #[error("encoding failed: {0}")]
    Encode(String),

    /// Token ids could not be decoded.
    #[error("decoding failed: {0}")]
    Decode(String),

    /// A chat template failed to compile or to render.
    #[error("chat template {template:?}{}: {message}", line_suffix(*.line))]
    Template {
        /// The template's name (see [`crate::ChatTemplate::name`]).
        template: String,
        /// The 1-based template line of the problem, when known.
        line: Option<usize>,
        /// What went wrong, with the offending source text when known.
        message: String,
    },
}

fn line_suffix(line: Option<usize>) -> String {
    line.map(|l| format!(", line {l}")).unwrap_or_default()
}

impl TokenizerError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}
