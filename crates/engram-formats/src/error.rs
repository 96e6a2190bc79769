//! Every way a model file can be wrong, each naming the file (and tensor or key) it is about.

use std::path::PathBuf;

/// Errors reading or writing model files. Never a panic: malformed input always ends here.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a GGUF file (magic bytes {found:02x?}, expected \"GGUF\")", path.display())]
    BadMagic { path: PathBuf, found: Vec<u8> },
    #[error("{}: GGUF version {version} is not supported (engram reads versions 2 and 3)", path.display())]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{}: file is truncated: {what}", path.display())]
    Truncated { path: PathBuf, what: String },
    #[error("{}: malformed: {what}", path.display())]
    Malformed { path: PathBuf, what: String },
    #[error("{}: tensor `{tensor}` has type {ty}, which engram cannot dequantise", path.display())]
    UnsupportedTensorType {
        path: PathBuf,
        tensor: String,
        ty: String,
    },
    #[error(
        "{}: tensor `{tensor}` data (bytes {start}..{end}) lies past the end of the file ({file_len} bytes)",
        path.display()
    )]
    TensorOutOfBounds {
        path: PathBuf,
        tensor: String,
        start: u64,
        end: u64,
        file_len: u64,
    },
    #[error("{}: no tensor named `{tensor}`", path.display())]
    MissingTensor { path: PathBuf, tensor: String },
    #[error("{}: metadata key `{key}` is missing", path.display())]
    MissingKey { path: PathBuf, key: String },
    #[error("{}: metadata key `{key}` should be {expected}, found {found}", path.display())]
    WrongType {
        path: PathBuf,
        key: String,
        expected: String,
        found: String,
    },
    #[error("{}: unknown architecture `{name}` (engram runs llama and qwen2 models)", path.display())]
    UnknownArchitecture { path: PathBuf, name: String },
    #[error("{}: `{field}`: {message}", path.display())]
    BadConfig {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// A JSON file (`config.json`, `model.safetensors.index.json`) that does not parse; serde_json's message
    /// gives the line and column.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file the `safetensors` crate rejects (truncated, bad header, offsets not covering the data, ...).
    #[error("{}: invalid safetensors file: {source}", path.display())]
    Safetensors {
        path: PathBuf,
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// `model.safetensors.index.json` maps a tensor to a shard file that does not exist.
    #[error(
        "{}: shard `{shard}` (holding tensor `{tensor}`) does not exist",
        index.display()
    )]
    MissingShard {
        index: PathBuf,
        shard: String,
        tensor: String,
    },
    #[error("{what}: expected {expected} elements, found {found}")]
    ShapeMismatch {
        what: String,
        expected: usize,
        found: usize,
    },
}

impl FormatError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FormatError::Io {
            path: path.into(),
            source,
        }
    }
}
