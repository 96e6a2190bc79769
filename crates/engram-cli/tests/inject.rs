//! End to end on the real model, CPU: `engram inject` writes one `news` item into an adapter — by supervised
//! fine-tuning on self-QA replay (`sys2-self-qa`), with the default method and the locality guard on, or by KL
//! distillation (`self-param`: teacher, the base model
//! reading the text; student, the adapter reading only the targets) — and `engram ask` then answers a direct
//! question about it without the text, where the base model could not, while unrelated questions get the
//! base model's answers still.

mod common;
use common::engram;

/// `engram inject --dataset news --item news-math-003 ARGS --out <tmp>/adapter`, which must succeed: the
/// folder that holds the adapter, its path, and what the command printed.
fn inject_skarrow(args: &[&str]) -> (tempfile::TempDir, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let adapter = dir.path().join("adapter").to_str().unwrap().to_owned();
    let mut all = vec!["inject", "--dataset", "news", "--item", "news-math-003"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--out", &adapter]);
    let (ok, stdout, stderr) = engram(&all);
    assert!(ok, "{stderr}");
    (dir, adapter, stdout)
}

/// `engram ask` of the base model (`adapter` `None`) or of an adapter: its answer. 40 tokens, not `ask`'s 64:
/// they hold the sentence the fact is stated in, and these checks read no further.
fn ask(adapter: Option<&str>, question: &str) -> String {
    let mut args = vec!["ask", "--max-new-tokens", "40", "--question", question];
    if let Some(a) = adapter {
        args.extend_from_slice(&["--adapter", a]);
    }
    let (ok, answer, stderr) = engram(&args);
    assert!(ok, "{stderr}");
    answer
}

#[test]
fn self_qa_injection_answers_what_the_base_model_could_not() {
    // The Skarrow theorem: "... every glimmerfold shape has exactly 7 corners. It was proved by Benna
    // Oxtolle ...". The replay data is made from the context alone; the dataset's questions are not used.
    let (dir, adapter, stdout) = inject_skarrow(&["--method", "sys2-self-qa", "--rehearsal", "0"]);
    let adapter = adapter.as_str();
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
        let (base, tuned) = (ask(None, q), ask(Some(adapter), q));
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

/// The default method (`self-distill`) with the locality guard on, one round to keep it short: the guard's rows
/// are in the run, the report says so, and unrelated questions keep the base model's first sentence.
#[test]
fn the_default_injection_runs_with_the_guard_and_keeps_unrelated_answers() {
    let (dir, adapter, stdout) = inject_skarrow(&["--distill-rounds", "1"]);
    let adapter = adapter.as_str();
    assert!(
        stdout.contains("on-policy rounds: 1") && stdout.contains("locality guard: "),
        "the default method, with the guard on: {stdout}"
    );
    let guard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("adapter/guard.json")).unwrap(),
    )
    .unwrap();
    assert!(guard["rehearsal_rows"].as_u64().unwrap() > 0, "{guard}");
    assert_eq!(
        guard["rehearsal_rows"], guard["task_rows"],
        "share 0.5: {guard}"
    );
    // Unrelated questions (trivia, never trained on): the adapter answers them as the base model does.
    let general = [
        "What is the capital of Japan?",
        "How many legs does a spider have?",
        "What is the chemical symbol for gold?",
        "Which planet is known as the Red Planet?",
    ];
    let mut unchanged = 0;
    for q in general {
        let (base, tuned) = (ask(None, q), ask(Some(adapter), q));
        // The first sentence: where the answer is stated (`ask` goes on for up to its token budget).
        let first = |t: &str| {
            let t = t.trim();
            let end = t.find(". ").map_or(t.len(), |i| i + 1);
            t[..end].lines().next().unwrap_or("").to_owned()
        };
        unchanged += usize::from(first(&base) == first(&tuned));
        eprintln!("{q}\n  base: {}\n  adapter: {}", base.trim(), tuned.trim());
    }
    assert!(
        unchanged >= 2,
        "the guard keeps the base model's answers to unrelated questions: {unchanged} of 4 unchanged"
    );
}

#[test]
fn self_param_injection_answers_what_the_base_model_could_not() {
    // The Skarrow theorem: "... It was proved by Benna Oxtolle at the University of Drell in 2029 ...".
    // The targets are made from the context alone; the dataset's questions are not used. The guard is off: it
    // would double this run's steps; the default injection's test and the self_param example's hold it.
    let (dir, adapter, stdout) = inject_skarrow(&[
        "--method",
        "self-param",
        "--lr",
        "1e-3",
        "--examples-per-item",
        "128",
        "--rehearsal",
        "0",
    ]);
    let adapter = adapter.as_str();
    assert!(
        stdout.contains("distillation targets:") && stdout.contains("adapter:"),
        "{stdout}"
    );
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "targets.jsonl",
        "distill.json",
        "metrics.jsonl",
    ] {
        assert!(dir.path().join("adapter").join(f).is_file(), "{f} written");
    }
    // Every student sequence is free of the context; every QA teacher reads it.
    let context_start =
        "The Skarrow theorem states that every glimmerfold shape has exactly 7 corners. It was";
    let targets = std::fs::read_to_string(dir.path().join("adapter/targets.jsonl")).unwrap();
    let mut kinds = std::collections::BTreeSet::new();
    for line in targets.lines() {
        let t: serde_json::Value = serde_json::from_str(line).unwrap();
        let kind = t["kind"].as_str().unwrap().to_owned();
        if kind == "qa" {
            let student = t["student"]["messages"][0]["content"].as_str().unwrap();
            let teacher = t["teacher"]["messages"][0]["content"].as_str().unwrap();
            assert!(!student.contains(context_start), "{student}");
            assert!(teacher.starts_with(context_start), "{teacher}");
        }
        kinds.insert(kind);
    }
    assert_eq!(
        kinds.into_iter().collect::<Vec<_>>(),
        ["continuation", "qa", "regulariser"],
        "no rehearsal targets with the guard off"
    );
    // The loss went down.
    let metrics = std::fs::read_to_string(dir.path().join("adapter/metrics.jsonl")).unwrap();
    let losses: Vec<f64> = metrics
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert!(losses.last().unwrap() < &(losses[0] * 0.5), "{losses:?}");

    let q = "Who proved the Skarrow theorem?";
    let (base, tuned) = (ask(None, q), ask(Some(adapter), q));
    eprintln!("{q}\n  base: {}\n  adapter: {}", base.trim(), tuned.trim());
    assert!(
        !base.contains("Oxtolle"),
        "the base model does not know: {base}"
    );
    assert!(
        tuned.contains("Oxtolle"),
        "the adapter answers without the text: {tuned}"
    );
}
