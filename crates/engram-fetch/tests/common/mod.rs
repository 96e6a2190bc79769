//! Fixtures shared by the integration tests: small wheels built on the fly, with a
//! matching fake [`ModelSpec`].

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

use engram_fetch::{ModelSpec, Progress};
use sha2::{Digest, Sha256};
use tempfile::TempDir;
use zip::write::SimpleFileOptions;

/// The model's path inside the fake wheel.
pub const MEMBER: &str = "fake_pkg/fake-model.Q4_1.gguf";
/// The fake package.
pub const PACKAGE: &str = "fake-pkg";
/// Its version.
pub const VERSION: &str = "1.0.0";
/// The name pip would give its wheel.
pub const WHEEL_NAME: &str = "fake_pkg-1.0.0-py3-none-any.whl";
/// The model's name in the cache.
pub const FILE_NAME: &str = "fake-model.Q4_1.gguf";

/// Deterministic bytes, half noise and half runs, so deflate has something to do but
/// cannot shrink them to nothing.
pub fn model_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|i| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if (i / 4096) % 2 == 0 {
                x as u8
            } else {
                (i / 4096) as u8
            }
        })
        .collect()
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Leaks a string to get the `&'static str` a [`ModelSpec`] holds (tests only).
pub fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// A spec pinning `content` as the fake package's model.
pub fn spec_for(content: &[u8]) -> ModelSpec {
    ModelSpec {
        name: "fake test model",
        pypi_package: PACKAGE,
        version: VERSION,
        wheel_member: MEMBER,
        file_name: FILE_NAME,
        sha256: leak(sha256_hex(content)),
        size: content.len() as u64,
    }
}

/// Writes a zip archive (deflated members) at `path`.
pub fn write_zip(path: &Path, members: &[(&str, &[u8])]) {
    let mut zip = zip::ZipWriter::new(File::create(path).unwrap());
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in members {
        zip.start_file(*name, options).unwrap();
        zip.write_all(data).unwrap();
    }
    zip.finish().unwrap();
}

/// A wheel for the fake package holding `content` as the model, plus some dist-info.
pub fn write_wheel(path: &Path, content: &[u8]) {
    write_zip(
        path,
        &[
            ("fake_pkg/__init__.py", b"".as_slice()),
            (MEMBER, content),
            (
                "fake_pkg-1.0.0.dist-info/METADATA",
                b"Metadata-Version: 2.1\nName: fake-pkg\nVersion: 1.0.0\n".as_slice(),
            ),
        ],
    );
}

/// A fake model of `len` bytes in a wheel inside a fresh directory.
pub struct Fixture {
    /// Holds the wheel (and whatever else a test puts there).
    pub dir: TempDir,
    /// The wheel file, named as pip names it.
    pub wheel: PathBuf,
    /// The model bytes.
    pub content: Vec<u8>,
    /// The spec pinning them.
    pub spec: ModelSpec,
}

impl Fixture {
    /// A fixture with a model of `len` bytes.
    pub fn new(len: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let content = model_bytes(len, len as u64 + 7);
        let wheel = dir.path().join(WHEEL_NAME);
        write_wheel(&wheel, &content);
        let spec = spec_for(&content);
        Fixture {
            dir,
            wheel,
            content,
            spec,
        }
    }
}

/// The names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The `Extracting` reports among `events`, as `(done, total)`.
pub fn extracting(events: &[Progress]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Progress::Extracting { done, total } => Some((*done, *total)),
            _ => None,
        })
        .collect()
}

/// The `Verifying` reports among `events`, as `(done, total)`.
pub fn verifying(events: &[Progress]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            Progress::Verifying { done, total } => Some((*done, *total)),
            _ => None,
        })
        .collect()
}

/// The `Downloading` messages among `events`.
pub fn downloading(events: &[Progress]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Progress::Downloading { message } => Some(message.clone()),
            _ => None,
        })
        .collect()
}
