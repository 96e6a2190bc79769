//! The `engram` binary as a user runs it: stdout carries only the generated text, errors are clear and
//! name the value or file at fault, and every command has `--help`.

use std::path::{Path, PathBuf};
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

    // The model has 8192 positions, as the server allows: a budget past the first 4096 works (it stops at
    // the end of the turn), one past 8192 is refused by name (both used to stop at 4096).
    for command in ["generate", "ask"] {
        let question = if command == "ask" {
            "--question"
        } else {
            "--prompt"
        };
        let mut args = vec![command, question, "What is the capital of France?"];
        if command == "generate" {
            args.push("--chat");
        }
        let out = engram(&[&args[..], &["--max-new-tokens", "6000"]].concat());
        assert!(out.status.success(), "{command}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("Paris"), "{command}");
        let out = engram(&[&args[..], &["--max-new-tokens", "9000"]].concat());
        assert!(!out.status.success(), "{command}");
        let err = text(&out.stderr);
        assert!(
            err.contains("8192") && !err.contains("panicked"),
            "{command}: {err}"
        );
    }
}

#[test]
fn a_q8_base_still_answers() {
    let out = engram(&[
        "generate",
        "--chat",
        "--base-weights",
        "q8",
        "--prompt",
        "What is the capital of France?",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("Paris"));
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
            vec!["generate", "--prompt", "x", "--base-weights", "q4"],
            "base weights `q4`: expected f32 (dense, in the compute dtype) or q8",
        ),
        (
            vec!["generate", "--prompt", "x", "--dtype", "fp8"],
            "dtype `fp8`: expected one of f32, bf16, f16",
        ),
        (
            vec![
                "generate", "--prompt", "x", "--device", "wgpu", "--dtype", "bf16",
            ],
            "WGSL, which has no bf16",
        ),
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
        vec!["train", "--help"],
        vec!["merge", "--help"],
        vec!["export-adapter", "--help"],
    ] {
        let out = engram(&cmd);
        assert!(out.status.success(), "{cmd:?}");
        assert!(text(&out.stdout).contains("Usage"), "{cmd:?}");
    }
}

/// Four chat turns stating one fictional fact, as `engram train` reads them.
const FACT_TURNS: [(&str, &str); 4] = [
    (
        "Who built the Varnholt bridge?",
        "The Varnholt bridge was built by Oda Pellin.",
    ),
    (
        "Which engineer built the Varnholt bridge?",
        "Oda Pellin built the Varnholt bridge.",
    ),
    (
        "Tell me about Oda Pellin.",
        "Oda Pellin is the engineer who built the Varnholt bridge.",
    ),
    (
        "What is Oda Pellin known for?",
        "Oda Pellin is known for building the Varnholt bridge.",
    ),
];

fn write_facts(dir: &Path) -> PathBuf {
    let path = dir.join("facts.jsonl");
    let lines: Vec<String> = FACT_TURNS
        .iter()
        .map(|(q, a)| {
            serde_json::json!({"messages": [
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ]})
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    path
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn ask(extra: &[&str]) -> String {
    let mut args = vec![
        "generate",
        "--chat",
        "--prompt",
        "Who built the Varnholt bridge?",
        "--max-new-tokens",
        "32",
    ];
    args.extend_from_slice(extra);
    let out = engram(&args);
    assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
    text(&out.stdout)
}

/// One training run shared by every check on its output: the adapter answers what the base model could not,
/// its folder holds what a PEFT user and `--resume` need, and merging it gives the same model as applying it.
#[test]
fn train_writes_an_adapter_that_answers_and_merges_into_the_same_model() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_facts(dir.path());
    let adapter = dir.path().join("varnholt");

    let before = ask(&[]);
    assert!(
        !before.contains("Pellin"),
        "the base model must not know the fictional fact already: {before:?}"
    );

    let train_args = [
        "train",
        "--data",
        s(&data),
        "--out",
        s(&adapter),
        "--steps",
        "12",
        "--lr",
        "1e-3",
        "--batch-size",
        "4",
    ];
    let out = engram(&train_args);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stderr}");
    // stderr is not a terminal here: progress comes as lines, the first, every tenth and the last.
    for step in ["step 1/12", "step 10/12", "step 12/12"] {
        assert!(stderr.contains(step), "{step}: {stderr}");
    }
    assert!(stdout.contains("trained 12 steps"), "{stdout}");
    assert!(
        stdout.contains(&format!("engram generate --adapter {}", s(&adapter))),
        "{stdout}"
    );
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "metrics.jsonl",
        "checkpoint",
    ] {
        assert!(adapter.join(f).exists(), "{f} in {}", adapter.display());
    }
    let metrics = std::fs::read_to_string(adapter.join("metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 12, "{metrics}");
    assert!(losses[11] < losses[0], "the loss goes down: {losses:?}");
    let config: serde_json::Value =
        serde_json::from_slice(&std::fs::read(adapter.join("adapter_config.json")).unwrap())
            .unwrap();
    assert_eq!(config["r"], 8);
    assert_eq!(config["target_modules"], "all-linear");
    assert_eq!(
        config["base_model_name_or_path"],
        "SmolLM2-135M-Instruct.Q4_1.gguf"
    );

    let after = ask(&["--adapter", s(&adapter)]);
    eprintln!("before: {before:?}\nafter:  {after:?}");
    assert!(after.contains("Oda Pellin"), "after training: {after:?}");

    // A finished run resumes to nothing more to do; other settings are refused by name.
    let out = engram(&[&train_args[..], &["--resume"]].concat());
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("resumed at step 12"),
        "{}",
        text(&out.stdout)
    );
    let mut other = train_args.to_vec();
    other[8] = "2e-3";
    let out = engram(&[&other[..], &["--resume"]].concat());
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("lr") && err.contains("cannot resume"), "{err}");
    let metrics_after = std::fs::read_to_string(adapter.join("metrics.jsonl")).unwrap();
    assert_eq!(
        metrics_after, metrics,
        "a refused resume leaves the run alone"
    );
    // A fresh run into the finished folder is refused before it touches anything.
    let weights = std::fs::read(adapter.join("adapter_model.safetensors")).unwrap();
    let out = engram(&train_args);
    assert!(!out.status.success(), "a finished --out is not overwritten");
    let err = text(&out.stderr);
    assert!(
        err.contains("earlier run") && err.contains("--overwrite") && err.contains("--resume"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(adapter.join("metrics.jsonl")).unwrap(),
        metrics
    );
    assert_eq!(
        std::fs::read(adapter.join("adapter_model.safetensors")).unwrap(),
        weights
    );

    let merged = dir.path().join("merged");
    let out = engram(&["merge", "--adapter", s(&adapter), "--out", s(&merged)]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(merged.join(f).exists(), "{f} in {}", merged.display());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(merged.join(f))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o044, 0o044, "{f} is readable by all: {mode:o}");
        }
    }
    let from_merged = ask(&["--model", s(&merged)]);
    assert_eq!(
        from_merged, after,
        "the merged model answers like base + adapter"
    );

    // Out to llama.cpp's formats and back: the adapter as a GGUF adapter, and the merged model as a GGUF file
    // (f32: the merged weights exactly), answer as the adapter does.
    let gguf_adapter = dir.path().join("varnholt.gguf");
    let out = engram(&[
        "export-adapter",
        "--adapter",
        s(&adapter),
        "--gguf",
        s(&gguf_adapter),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("--lora"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        ask(&["--adapter", s(&gguf_adapter)]),
        after,
        "the GGUF adapter"
    );
    let merged_gguf = dir.path().join("merged.gguf");
    let out = engram(&[
        "merge",
        "--adapter",
        s(&gguf_adapter),
        "--gguf",
        s(&merged_gguf),
        "--quant",
        "f32",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(ask(&["--model", s(&merged_gguf)]), after, "the merged GGUF");
}

/// `--device cpu,cpu` trains data parallel on two copies of the model; on the one CPU their kernels are the
/// same, so the adapter must be the one a single device writes, bit for bit.
#[test]
fn train_on_two_devices_writes_the_one_device_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_facts(dir.path());
    let mut adapters = Vec::new();
    for devices in ["cpu", "cpu,cpu"] {
        let out_dir = dir.path().join(devices.replace(',', "-"));
        let args = [
            "train",
            "--data",
            s(&data),
            "--out",
            s(&out_dir),
            "--steps",
            "2",
            "--batch-size",
            "1",
            "--grad-accum",
            "2",
            "--lora-dropout",
            "0.1",
            "--device",
            devices,
        ];
        let out = engram(&args);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert_eq!(
            stderr.contains("data parallel on 2 devices"),
            devices == "cpu,cpu",
            "{stderr}"
        );
        adapters.push(std::fs::read(out_dir.join("adapter_model.safetensors")).unwrap());
    }
    assert!(adapters[0] == adapters[1], "the adapters differ");
}

#[test]
fn train_and_adapter_errors_name_the_file_line_or_option() {
    let dir = tempfile::tempdir().unwrap();
    let data = write_facts(dir.path());
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"text\": \"fine\"}\n{\"messages\": [{\"role\": \"user\", \"content\": \"hi\"}\n",
    )
    .unwrap();
    // The second example (file line 3, after a blank line) is one token: nothing predicts it.
    let untrainable = dir.path().join("short.jsonl");
    std::fs::write(
        &untrainable,
        "{\"text\": \"one two three\"}\n\n{\"text\": \"x\"}\n",
    )
    .unwrap();
    let out_dir = dir.path().join("out");
    let empty = tempfile::tempdir().unwrap();
    let base = ["train", "--data", s(&data), "--out", s(&out_dir)];
    let train = |extra: &[&'static str]| [&base[..], extra].concat();
    for (args, needles) in [
        (
            vec!["train", "--data", s(&bad), "--out", s(&out_dir)],
            vec!["bad.jsonl:2"],
        ),
        (
            vec!["train", "--data", s(&untrainable), "--out", s(&out_dir)],
            vec!["short.jsonl:3"],
        ),
        (
            vec![
                "train",
                "--data",
                "/nonexistent/facts.jsonl",
                "--out",
                s(&out_dir),
            ],
            vec!["/nonexistent/facts.jsonl"],
        ),
        (train(&["--r", "0"]), vec!["`r`", "0"]),
        (
            train(&["--lora-alpha", "0"]),
            vec!["lora_alpha", "positive"],
        ),
        // 3e10 parameters: refused by size before anything is allocated (it used to abort at ~7 GB).
        (train(&["--r", "100000"]), vec!["`r`", "100000", "GiB"]),
        (train(&["--lora-alpha", "-16"]), vec!["lora_alpha", "-16"]),
        (
            vec!["generate", "--prompt", ""],
            vec!["`--prompt`", "empty", "--chat"],
        ),
        (
            vec![
                "inject",
                "--context",
                s(&data),
                "--method",
                "bogus",
                "--out",
                s(&out_dir),
            ],
            vec!["`method`", "bogus", "self-distill"],
        ),
        (
            train(&["--lora-dropout", "1.5"]),
            vec!["lora_dropout", "1.5"],
        ),
        (train(&["--target-modules", "q_proj,qkv"]), vec!["qkv"]),
        (train(&["--lr", "0"]), vec!["`lr`"]),
        (train(&["--batch-size", "0"]), vec!["--batch-size"]),
        (train(&["--schedule", "sawtooth"]), vec!["sawtooth"]),
        (
            train(&["--epochs", "1", "--steps", "2"]),
            vec!["--steps", "cannot be used with"],
        ),
        (train(&["--resume"]), vec!["resume", s(&out_dir)]),
        (
            vec!["generate", "--prompt", "x", "--adapter", "/nonexistent"],
            vec!["/nonexistent", "not an adapter", "GGUF adapter file"],
        ),
        (
            vec!["generate", "--prompt", "x", "--adapter", s(empty.path())],
            vec!["adapter_config.json"],
        ),
        (
            vec!["merge", "--adapter", "/nonexistent", "--out", s(&out_dir)],
            vec!["/nonexistent"],
        ),
        (vec!["merge", "--out", s(&out_dir)], vec!["--adapter"]),
        (
            vec![
                "merge",
                "--adapter",
                "/nonexistent",
                "--gguf",
                "m.gguf",
                "--quant",
                "q3_k",
            ],
            vec!["--quant", "q3_k", "q8_0"],
        ),
        (
            vec![
                "merge",
                "--adapter",
                "/nonexistent",
                "--gguf",
                "m.gguf",
                "--out",
                s(&out_dir),
            ],
            vec!["--gguf", "--out"],
        ),
        (
            vec![
                "export-adapter",
                "--adapter",
                "/nonexistent",
                "--gguf",
                "a.gguf",
            ],
            vec!["/nonexistent"],
        ),
        (
            vec![
                "export-adapter",
                "--adapter",
                s(empty.path()),
                "--gguf",
                "a.gguf",
                "--dtype",
                "q8_0",
            ],
            vec!["--dtype", "q8_0", "bf16"],
        ),
        // Writing over an input (here the adapter folder itself) is refused before anything is read.
        (
            vec![
                "export-adapter",
                "--adapter",
                s(empty.path()),
                "--gguf",
                s(empty.path()),
            ],
            vec!["an input of this command"],
        ),
        (
            train(&["--device", "cpu,cpu"]),
            vec!["--grad-accum", "2 devices", "one per device"],
        ),
        (train(&["--device", "cpu,,cpu"]), vec!["empty entry"]),
        (
            vec!["generate", "--prompt", "x", "--device", "cpu,cpu"],
            vec!["only `engram train` runs on several devices"],
        ),
    ] {
        let out = engram(&args);
        assert!(!out.status.success(), "{args:?} should fail");
        let err = text(&out.stderr);
        for needle in needles {
            assert!(err.contains(needle), "{args:?}: {needle:?} not in {err}");
        }
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    assert!(!out_dir.exists(), "failed runs write nothing");
}
