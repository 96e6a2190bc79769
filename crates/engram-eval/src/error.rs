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
    /// A method failed while injecting.
    #[error("method `{method}`: {source}")]
    Method {
        /// The method's name.
        method: String,
        /// Its error.
        source: Box<engram_inject::InjectError>,
    },
    /// Reading items, or another step of the injection seam, failed.
    #[error(transparent)]
    Inject(Box<engram_inject::InjectError>),
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

impl From<engram_inject::InjectError> for EvalError {
    fn from(e: engram_inject::InjectError) -> Self {
        Self::Inject(Box::new(e))
    }
}
