//! The `engram` binary as a user runs it: stdout carries only the generated text, errors are clear and
//! name the value or file at fault, and every command has `--help`.

use std::process::{Command, Output};

fn engram(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(args)
        .output()
        .expect("engram runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn generate_prints_only_the_generated_text_on_stdout() {
    let out = engram(&[
        "generate",
        "--prompt",
        "The capital of France is",
        "--max-new-tokens",
        "8",
        "--no-eos-stop",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // The first 8 tokens of the reference greedy continuation.
    assert_eq!(text(&out.stdout), " Paris.\n\nThe answer is:\n");
    assert!(
        text(&out.stderr).contains("tokens/s"),
        "diagnostics go to stderr"
    );
}

#[test]
fn chat_generation_answers_and_stops_at_the_end_of_turn() {
    let out = engram(&[
        "generate",
        "--chat",
        "--prompt",
        "What is the capital of France?",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("Paris"), "{stdout:?}");
    assert!(!stdout.contains("<|im_end|>"), "{stdout:?}");
}

#[test]
fn several_prompts_run_as_one_batch() {
    let out = engram(&[
        "generate",
        "--prompt",
        "The capital of France is",
        "--prompt",
        "One, two,",
        "--max-new-tokens",
        "3",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("=== 1 ===\n Paris") && stdout.contains("=== 2 ==="),
        "{stdout:?}"
    );
}

#[test]
fn out_of_range_options_are_rejected_by_name() {
    for (args, needle) in [
        (
            vec!["generate", "--prompt", "x", "--temperature", "-1"],
            "temperature",
        ),
        (vec!["generate", "--prompt", "x", "--top-p", "1.5"], "top-p"),
        (vec!["generate", "--prompt", "x", "--device", "tpu"], "tpu"),
        (
            vec!["generate", "--prompt", "x", "--device", "cuda"],
            "--features cuda",
        ),
    ] {
        let out = engram(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = text(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn bad_model_files_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("broken.gguf");
    std::fs::write(&bad, b"this is not a model").unwrap();
    let out = engram(&["info", "--model", bad.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("broken.gguf") && err.contains("GGUF"), "{err}");

    let missing = dir.path().join("nope.gguf");
    let out = engram(&[
        "generate",
        "--prompt",
        "x",
        "--model",
        missing.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("nope.gguf"));
}

#[test]
fn info_describes_the_default_model() {
    let out = engram(&["info", "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["parameters"], 134_515_008);
    assert_eq!(v["config"]["num_hidden_layers"], 30);
    assert_eq!(v["tensor_types"]["Q4_1"], 210);
}

#[test]
fn every_command_has_help() {
    for cmd in [
        vec!["--help"],
        vec!["fetch", "--help"],
        vec!["info", "--help"],
        vec!["generate", "--help"],
        vec!["export", "--help"],
    ] {
        let out = engram(&cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(text(&out.stdout).contains("Usage"), "{cmd:?}");
    }
}
