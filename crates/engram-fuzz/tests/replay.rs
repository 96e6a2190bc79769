//! Replays the fuzz corpora in `cargo test` (stable Rust, no fuzzer): every file under
//! `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` goes through the same entry point the fuzzer drove
//! (`engram_fuzz::TARGETS`), and must come back `Ok` or `Err`, never as a panic. A regression file is an input
//! that once crashed a parser; replaying it here keeps the fix.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use engram_fuzz::TARGETS;

/// The repository's `fuzz/` folder.
fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

/// The files of one corpus folder, sorted (a missing folder is empty: not every target has regressions).
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable corpus folder").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every file of `kind` (`seeds` or `regressions`) through its target; returns (files, parsed) per target
/// and fails naming every file that panicked.
fn replay(kind: &str) -> Vec<(&'static str, usize, usize)> {
    let mut panicked = Vec::new();
    let mut counts = Vec::new();
    for target in &TARGETS {
        let dir = fuzz_dir().join(kind).join(target.name);
        let mut parsed = 0;
        let inputs = files(&dir);
        for path in &inputs {
            let data = std::fs::read(path).expect("readable corpus file");
            match catch_unwind(AssertUnwindSafe(|| (target.run)(&data))) {
                Ok(Ok(())) => parsed += 1,
                Ok(Err(message)) => assert!(!message.is_empty(), "{}: empty error", path.display()),
                Err(_) => panicked.push(path.display().to_string()),
            }
        }
        counts.push((target.name, inputs.len(), parsed));
    }
    assert!(
        panicked.is_empty(),
        "these inputs made a parser panic:\n{}",
        panicked.join("\n")
    );
    counts
}

#[test]
fn every_target_has_seeds_and_some_of_them_parse() {
    for (target, files, parsed) in replay("seeds") {
        // Seeds are real, valid samples (plus a few broken ones): a target none of whose seeds parses would
        // be fuzzing only its error paths.
        assert!(files > 0, "fuzz/seeds/{target} is empty");
        assert!(parsed > 0, "no seed of {target} parses ({files} files)");
    }
}

#[test]
fn valid_gguf_seeds_are_written_back_unchanged() {
    // The gguf target also writes each file it parsed back through `write_gguf` and reads it again; the valid
    // seeds (named for what they are, unlike the broken ones) must all make that round trip.
    let dir = fuzz_dir().join("seeds/gguf");
    for name in [
        "every-tensor-type.gguf",
        "tiny-llama-tensors.gguf",
        "v2-qwen2-all-value-types.gguf",
    ] {
        let data = std::fs::read(dir.join(name)).expect("seed present");
        // Every tensor has a known size, so the target does not skip the rewrite for this file.
        let file = engram_formats::gguf::GgufFile::from_bytes(name, data.clone()).unwrap();
        assert!(
            file.tensors().iter().all(|t| t.nbytes().is_some()),
            "{name}"
        );
        engram_fuzz::gguf(&data).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn regression_inputs_do_not_panic() {
    let counts = replay("regressions");
    let total: usize = counts.iter().map(|(_, files, _)| files).sum();
    // The folder holds the crashes the fuzzer found (see fuzz/README.md); it must not silently go missing.
    assert!(total > 0, "no regression inputs under fuzz/regressions");
}

#[test]
fn every_corpus_folder_belongs_to_a_target() {
    // A misnamed folder would be skipped silently by the replay above.
    for kind in ["seeds", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("readable").file_name();
            let name = name.to_string_lossy();
            assert!(
                TARGETS.iter().any(|t| t.name == name),
                "fuzz/{kind}/{name} is not a fuzz target"
            );
        }
    }
}
