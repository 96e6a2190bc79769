//! End to end on the real model, CPU: `engram inject --method sys2-self-qa` writes one `news` item into an
//! adapter, and `engram ask` then answers a direct question about it without the text, where the base model
//! could not.

use std::process::Command;

fn engram(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_engram"))
        .args(args)
        .output()
        .expect("engram runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn self_qa_injection_answers_what_the_base_model_could_not() {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter");
    let adapter = adapter.to_str().unwrap();
    // The Skarrow theorem: "... every glimmerfold shape has exactly 7 corners. It was proved by Benna
    // Oxtolle ...". The replay data is made from the context alone; the dataset's questions are not used.
    let (ok, stdout, stderr) = engram(&[
        "inject",
        "--dataset",
        "news",
        "--item",
        "news-math-003",
        "--method",
        "sys2-self-qa",
        "--lr",
        "1e-3",
        "--examples-per-item",
        "64",
        "--out",
        adapter,
    ]);
    assert!(ok, "{stderr}");
    assert!(
        stdout.contains("self-qa") && stdout.contains("adapter:"),
        "{stdout}"
    );
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "replay.jsonl",
        "replay.json",
    ] {
        assert!(dir.path().join("adapter").join(f).is_file(), "{f} written");
    }
    // The generation prompts (in each record's provenance) hold the context; the training turns do not.
    let replay = std::fs::read_to_string(dir.path().join("adapter/replay.jsonl")).unwrap();
    for line in replay.lines() {
        let record: serde_json::Value = serde_json::from_str(line).unwrap();
        let user = record["messages"][0]["content"].as_str().unwrap();
        assert!(
            !user.contains("Before that, the problem had stayed open for 40 years."),
            "no example carries the context as a prefix: {user}"
        );
    }

    let direct = [
        ("How many corners does every glimmerfold shape have?", "7"),
        ("Who proved the Skarrow theorem?", "Oxtolle"),
    ];
    let mut base_right = 0;
    let mut adapter_right = 0;
    let mut learned = Vec::new();
    for (q, answer) in direct {
        let (ok, base, stderr) = engram(&["ask", "--question", q]);
        assert!(ok, "{stderr}");
        let (ok, tuned, stderr) = engram(&["ask", "--adapter", adapter, "--question", q]);
        assert!(ok, "{stderr}");
        let (b, t) = (base.contains(answer), tuned.contains(answer));
        base_right += b as usize;
        adapter_right += t as usize;
        if t && !b {
            learned.push(q);
        }
        eprintln!("{q}\n  base: {}\n  adapter: {}", base.trim(), tuned.trim());
    }
    assert!(
        !learned.is_empty() && adapter_right > base_right,
        "the adapter answers a direct question the base model could not (base {base_right}, adapter {adapter_right})"
    );
}
