//! Every way a model file can be wrong, each naming the file (and tensor or key) it is about.

use std::path::PathBuf;

/// Errors reading or writing model files. Never a panic: malformed input always ends here.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// Reading or writing the file failed at the OS level.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file being read or written.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the GGUF magic bytes.
    #[error("{}: not a GGUF file (magic bytes {found:02x?}, expected \"GGUF\")", path.display())]
    BadMagic {
        /// The GGUF file.
        path: PathBuf,
        /// The first bytes actually found (up to four).
        found: Vec<u8>,
    },
    /// The GGUF header names a format version other than 2 or 3.
    #[error("{}: GGUF version {version} is not supported (engram reads versions 2 and 3)", path.display())]
    UnsupportedVersion {
        /// The GGUF file.
        path: PathBuf,
        /// The version number in the header.
        version: u32,
    },
    /// The file ends before a header field, metadata value or tensor info is complete.
    #[error("{}: file is truncated: {what}", path.display())]
    Truncated {
        /// The truncated file.
        path: PathBuf,
        /// What was being read, and at which byte offset.
        what: String,
    },
    /// The content is invalid: bad lengths, counts or values, duplicate tensor names and the like.
    #[error("{}: malformed: {what}", path.display())]
    Malformed {
        /// The file read or written.
        path: PathBuf,
        /// What is wrong.
        what: String,
    },
    /// A tensor is stored in a type (GGML type or safetensors dtype) that engram cannot convert to f32.
    #[error("{}: tensor `{tensor}` has type {ty}, which engram cannot dequantise", path.display())]
    UnsupportedTensorType {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// The tensor's type, by name.
        ty: String,
    },
    /// A tensor's data range, as its header entry gives it, runs past the end of the file.
    #[error(
        "{}: tensor `{tensor}` data (bytes {start}..{end}) lies past the end of the file ({file_len} bytes)",
        path.display()
    )]
    TensorOutOfBounds {
        /// The file holding the tensor.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
        /// First byte of the tensor's data.
        start: u64,
        /// One past the last byte of the tensor's data.
        end: u64,
        /// The file's length in bytes.
        file_len: u64,
    },
    /// A tensor the model needs is not in the file.
    #[error("{}: no tensor named `{tensor}`", path.display())]
    MissingTensor {
        /// The weights file (or sharded index) searched.
        path: PathBuf,
        /// The tensor's name.
        tensor: String,
    },
    /// A metadata key the model needs is not in the GGUF file.
    #[error("{}: metadata key `{key}` is missing", path.display())]
    MissingKey {
        /// The GGUF file.
        path: PathBuf,
        /// The missing key.
        key: String,
    },
    /// A metadata key holds a value of a different type than expected.
    #[error("{}: metadata key `{key}` should be {expected}, found {found}", path.display())]
    WrongType {
        /// The GGUF file.
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// The type the key should have.
        expected: String,
        /// The type found in the file.
        found: String,
    },
    /// The model's architecture is neither llama nor qwen2.
    #[error("{}: unknown architecture `{name}` (engram runs llama and qwen2 models)", path.display())]
    UnknownArchitecture {
        /// The file that names the architecture.
        path: PathBuf,
        /// The architecture name as written in the file.
        name: String,
    },
    /// A configuration value is missing, out of range or inconsistent with the others.
    #[error("{}: `{field}`: {message}", path.display())]
    BadConfig {
        /// The file the configuration came from.
        path: PathBuf,
        /// The offending field or metadata key.
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A JSON file (`config.json`, `model.safetensors.index.json`) that does not parse; serde_json's message
    /// gives the line and column.
    #[error("{}: invalid JSON: {source}", path.display())]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// serde_json's error.
        #[source]
        source: serde_json::Error,
    },
    /// A safetensors file the `safetensors` crate rejects (truncated, bad header, offsets not covering the data, ...).
    #[error("{}: invalid safetensors file: {source}", path.display())]
    Safetensors {
        /// The safetensors file.
        path: PathBuf,
        /// The `safetensors` crate's error.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// `model.safetensors.index.json` maps a tensor to a shard file that does not exist.
    #[error(
        "{}: shard `{shard}` (holding tensor `{tensor}`) does not exist",
        index.display()
    )]
    MissingShard {
        /// The index file.
        index: PathBuf,
        /// The shard file name, relative to the index's folder.
        shard: String,
        /// One tensor the index maps to that shard.
        tensor: String,
    },
    /// A tensor's element count differs from what its shape (or the model config) implies.
    #[error("{what}: expected {expected} elements, found {found}")]
    ShapeMismatch {
        /// Which tensor, and in which file where known.
        what: String,
        /// The number of elements expected.
        expected: usize,
        /// The number of elements found.
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
