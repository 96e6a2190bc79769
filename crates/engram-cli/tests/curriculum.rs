//! End to end on the real model, CPU: `engram probe` sorts facts into SliCK categories — a fact every
//! small model knows is `HighlyKnown`, an invented one is `Unknown` — and a re-run is answered from the
//! probe cache; `engram inject --method gradual-all` trains in rounds chosen on dev facts and reports the
//! category transitions.

mod common;
use common::engram;

const ITEMS: [(&str, &str, &str); 6] = [
    ("france", "What is the capital of France?", "Paris"),
    (
        "skarrow",
        "Who proved the Skarrow theorem?",
        "Benna Oxtolle",
    ),
    ("spider", "How many legs does a spider have?", "8"),
    ("japan", "What is the capital of Japan?", "Tokyo"),
    ("water", "What is the chemical formula of water?", "H2O"),
    ("sun", "Which star is closest to the Earth?", "the Sun"),
];

const DEV: [(&str, &str, &str); 3] = [
    ("italy", "What is the capital of Italy?", "Rome"),
    ("ice", "What does water turn into when it freezes?", "ice"),
    ("week", "How many days are in a week?", "7"),
];

/// `items` as a dataset file; with `splits`, a splits.json beside it (train = ITEMS, dev = DEV).
fn dataset(
    dir: &std::path::Path,
    items: &[(&str, &str, &str)],
    splits: bool,
) -> std::path::PathBuf {
    let data = dir.join("items.jsonl");
    let lines: Vec<String> = items
        .iter()
        .map(|(id, q, a)| {
            serde_json::json!({"id": id, "domain": "d", "context": format!("{q} {a}."), "questions": [
                {"kind": "direct", "question": q, "answer": a, "options": [a, "x", "y", "z"]}]})
            .to_string()
        })
        .collect();
    std::fs::write(&data, lines.join("\n")).unwrap();
    if splits {
        let ids = |set: &[(&str, &str, &str)]| -> Vec<String> {
            set.iter().map(|i| i.0.to_owned()).collect()
        };
        let json = serde_json::json!({"train": ids(&ITEMS), "dev": ids(&DEV), "test": []});
        std::fs::write(dir.join("splits.json"), json.to_string()).unwrap();
    }
    data
}

#[test]
fn probe_sorts_known_and_invented_facts_and_caches() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), &ITEMS, false);
    let out = dir.path().join("categories.jsonl");
    let cache = dir.path().join("cache");
    let args = [
        "probe",
        "--dataset",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--probe-prompts",
        "2",
        "--probe-samples",
        "4",
        "--probe-cache",
        cache.to_str().unwrap(),
    ];
    let (ok, stdout, stderr) = engram(&args);
    assert!(ok, "{stderr}");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), ITEMS.len());
    let category = |id: &str| {
        let r = rows.iter().find(|r| r["id"] == id).unwrap();
        (r["category"].as_str().unwrap().to_owned(), r.to_string())
    };
    let (france, row) = category("france");
    assert_eq!(france, "HighlyKnown", "{row}");
    let (skarrow, row) = category("skarrow");
    assert_eq!(skarrow, "Unknown", "an invented fact: {row}");
    for r in &rows {
        assert_eq!(r["greedy"].as_array().unwrap().len(), 2);
        assert_eq!(r["sampled"].as_array().unwrap().len(), 4);
    }
    assert!(
        stdout.contains("HighlyKnown") && !stdout.contains("cache"),
        "{stdout}"
    );

    let (ok, again, stderr) = engram(&args);
    assert!(ok, "{stderr}");
    assert!(again.contains("from the probe cache"), "{again}");
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        ITEMS.len()
    );
}

#[test]
fn out_of_range_probe_options_are_named_before_the_model_loads() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.jsonl");
    let (ok, _, stderr) = engram(&[
        "probe",
        "--dataset",
        "trivia",
        "--out",
        out.to_str().unwrap(),
        "--probe-prompts",
        "0",
    ]);
    assert!(!ok);
    assert!(stderr.contains("probe-prompts"), "{stderr}");
    assert!(!stderr.contains("loaded"), "fails before loading: {stderr}");
}

#[test]
fn gradual_all_trains_in_rounds_chosen_on_dev_and_reports_transitions() {
    let dir = tempfile::tempdir().unwrap();
    let all: Vec<_> = ITEMS.iter().chain(&DEV).copied().collect();
    let data = dataset(dir.path(), &all, true);
    let out = dir.path().join("adapter");
    let (ok, stdout, stderr) = engram(&[
        "inject",
        "--dataset",
        data.to_str().unwrap(),
        "--split",
        "train",
        "--method",
        "gradual-all",
        "--stage-steps",
        "2,2",
        "--rounds",
        "1",
        "--probe-prompts",
        "1",
        "--probe-samples",
        "2",
        "--lr",
        "1e-3",
        "--probe-cache",
        dir.path().join("cache").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{stderr}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("gradual.json")).unwrap()).unwrap();
    assert_eq!(report["facts"], 6);
    assert_eq!(report["steps"], 4, "one stage of 2 + 2 steps");
    let stages = report["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 1);
    let rounds = stages[0]["rounds"].as_array().unwrap();
    assert_eq!(
        rounds.len(),
        2,
        "a baseline gets the two stages' dev checks"
    );
    for r in rounds {
        let acc = r["dev_accuracy"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&acc));
    }
    assert_eq!(stages[0]["plan"]["train"].as_array().unwrap().len(), 6);
    let moved: u64 = report["transitions"][0]["counts"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| row.as_array().unwrap().iter().map(|n| n.as_u64().unwrap()))
        .sum();
    assert_eq!(moved, 6, "every fact in the transition matrix");
    let adapter = std::path::PathBuf::from(report["adapter"].as_str().unwrap());
    assert!(adapter.join("adapter_model.safetensors").is_file());
    for k in ["knowledge-0.jsonl", "knowledge-1.jsonl"] {
        assert_eq!(
            std::fs::read_to_string(out.join(k))
                .unwrap()
                .lines()
                .count(),
            6,
            "{k}"
        );
    }
    assert!(stdout.contains("Transitions of `gradual-all`"), "{stdout}");

    // Without a dataset there are no dev facts to choose rounds with.
    let ctx = dir.path().join("ctx.txt");
    std::fs::write(&ctx, "Glon live in caves.").unwrap();
    let (ok, _, stderr) = engram(&[
        "inject",
        "--context",
        ctx.to_str().unwrap(),
        "--method",
        "gradual",
        "--out",
        dir.path().join("x").to_str().unwrap(),
    ]);
    assert!(!ok);
    assert!(stderr.contains("--dataset"), "{stderr}");
}
