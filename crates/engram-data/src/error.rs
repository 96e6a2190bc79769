//! The one error type of the crate.

use std::path::PathBuf;

use engram_tokenizer::TokenizerError;

/// Everything that can go wrong while reading, tokenizing or batching training data.
///
/// Errors about a data file name the file and, where it applies, the 1-based line:
/// `data.jsonl:7: expected a "messages" array or a "text" string`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// A data file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },

    /// A line of a JSONL file is not a valid example.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file concerned (as given to [`crate::read_jsonl`] or [`crate::parse_jsonl`]).
        path: PathBuf,
        /// The 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },

    /// A data file holds no example at all (empty, or only blank lines).
    #[error("{}: no examples (the file is empty or has only blank lines)", path.display())]
    Empty {
        /// The file concerned.
        path: PathBuf,
    },

    /// The tokenizer or the chat template failed.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),

    /// The chat template renders a conversation so that an assistant turn cannot be located: the
    /// text up to that turn, rendered with the generation prompt, is not a prefix of the text
    /// that includes the turn (or that is not a prefix of the whole conversation).
    #[error(
        "chat template {template:?} is not prefix-consistent at message {message}: the \
         conversation rendered up to this assistant turn does not continue the prompt rendered \
         before it, so the turn's tokens cannot be found (a chat that starts with an assistant \
         turn does this with ChatML's default system prompt)"
    )]
    TemplateNotPrefix {
        /// The template's name ([`engram_tokenizer::ChatTemplate::name`]).
        template: String,
        /// The 1-based index of the assistant message in its conversation.
        message: usize,
    },

    /// An example has no token to train on.
    #[error("{}", no_targets_message(*.tokens, *.max_len))]
    NoTargets {
        /// The number of tokens of the example before truncation.
        tokens: usize,
        /// The truncation length in use.
        max_len: usize,
    },

    /// An error about one example of a list; `source` says what it is.
    #[error("example {index}: {source}")]
    Example {
        /// The 1-based position of the example in the list (for the output of
        /// [`crate::read_jsonl`]: the n-th non-blank line of the file).
        index: usize,
        /// What went wrong with it.
        #[source]
        source: Box<DataError>,
    },

    /// A [`crate::BatchConfig`] or the examples handed to [`crate::Batcher::new`] are unusable.
    #[error("invalid batch configuration: {0}")]
    Config(String),
}

fn no_targets_message(tokens: usize, max_len: usize) -> String {
    if tokens > max_len {
        format!(
            "no target tokens within the first {max_len} tokens (the example has {tokens}): \
             raise max_len or shorten the example"
        )
    } else {
        format!(
            "no target tokens in {tokens} tokens: nothing to learn from (a text needs two tokens, \
             a chat an assistant turn)"
        )
    }
}

impl DataError {
    /// Wraps the error as being about the `index`-th (1-based) example of a list.
    pub fn in_example(self, index: usize) -> Self {
        Self::Example {
            index,
            source: Box::new(self),
        }
    }
}
