//! The umbrella crate's few-line path on the real default model: `Engram::inject` writes a text into an
//! adapter with the default method and answers from it; `detach` gives the base model back exactly; bad
//! input is an error that says what is wrong. A small budget keeps it fast: this checks the path, not recall
//! (docs/results.md measures that).
#![cfg(all(feature = "eval", feature = "distill", feature = "curriculum"))]

use engram::{DEFAULT_METHOD, Engram};

const TEXT: &str = "The Quenby number of a whole number is found by doubling it and adding 7. \
    It was defined in 2031 by the mathematician Tavi Renkova.";
const QUESTION: &str = "Who defined the Quenby number?";

#[test]
fn injects_a_text_with_the_default_method_and_gives_the_base_model_back() {
    let mut engram = Engram::load_default().unwrap();
    // A few optimizer steps: enough to write an adapter (one round of the on-policy default, a small budget).
    engram.settings.replay.examples_per_item = 8;
    engram.settings.distill.on_policy.rounds = 1;
    engram.settings.distill.on_policy.examples_per_round = 8;
    // Two self-QA generations (one model question) and one sample beside each greedy answer: the path is
    // the same, the generation a third of the default's.
    engram.settings.replay.n = 2;
    engram.settings.distill.on_policy.samples = 1;
    let base = engram.ask(QUESTION).unwrap();
    assert!(!base.is_empty());

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("quenby");
    let adapter = engram.inject(TEXT, &out).unwrap();
    assert_eq!(adapter, out);
    for f in [
        "adapter_config.json",
        "adapter_model.safetensors",
        "replay.jsonl",
    ] {
        assert!(out.join(f).is_file(), "{DEFAULT_METHOD} wrote {f}");
    }
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    // About 8 examples at batch 4, as many rehearsal rows beside them (the locality guard): passes over the
    // records are rounded up to reach the budget.
    let guard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("guard.json")).unwrap()).unwrap();
    let rows =
        (guard["task_rows"].as_u64().unwrap() + guard["rehearsal_rows"].as_u64().unwrap()) as usize;
    assert!(guard["rehearsal_rows"].as_u64().unwrap() > 0, "{guard}");
    let steps = metrics.lines().count();
    // (A target no token of which both readers share is dropped: one step fewer at most.)
    assert!(
        (rows.div_ceil(4).saturating_sub(1)..=rows.div_ceil(4)).contains(&steps),
        "{steps} steps for {rows} rows: {metrics}"
    );
    assert!(
        metrics.contains(&format!("\"total_steps\":{steps},")),
        "{metrics}"
    );
    use engram::lora::Adapters;
    assert_eq!(
        engram.lm.model.adapter_names(),
        ["engram"],
        "answers come from the adapter"
    );
    assert!(!engram.ask(QUESTION).unwrap().is_empty());

    engram.detach().unwrap();
    assert_eq!(
        engram.ask(QUESTION).unwrap(),
        base,
        "the base model, exactly"
    );
    // The finished adapter is reused, not trained again.
    engram.inject(TEXT, &out).unwrap();
    let again = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(again, metrics);

    let err = engram
        .inject("  ", &dir.path().join("x"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("empty"), "{err}");
    let err = engram
        .inject_with("icl", TEXT, &dir.path().join("y"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("icl") && err.contains("nothing into weights"),
        "{err}"
    );
    let err = engram
        .inject_with("sys2-ft", TEXT, &dir.path().join("z"))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown method") && err.contains("sys2-self-qa"),
        "{err}"
    );
    assert!(!dir.path().join("x").exists() && !dir.path().join("y").exists());
}
