//! The evaluation harness (`engram-eval`): the base model, in-context learning (the text in the prompt: the
//! upper bound) and injection methods on the same `news` questions, scored by multiple-choice likelihood,
//! letter choice, teacher-forced token accuracy and greedy answers; writes results.jsonl, report.md and charts.
//!
//! ```sh
//! cargo run --release --example evaluate -- runs/example-eval
//! ```
//! The same through the command line, with every option: `engram eval --help`.

use engram::eval::harness::RunManifest;
use engram::eval::report::{summarize, write_report};
use engram::eval::shipped::load_dataset;
use engram::eval::{
    FineTuneSettings, Mode, ProbeConfig, Registry, RunSpec, run_eval, select_items,
};
use engram::replay::{GenerationCache, ReplaySettings};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs `methods` on the first `limit` news test items into `out`; returns (condition, MC-likelihood accuracy).
fn run(out: &std::path::Path, methods: &[&str], limit: usize) -> Result<Vec<(String, f64)>> {
    let mut lm = engram::load_default_model()?;
    let news = load_dataset("news")?;
    let items = select_items(&news.items, news.split_ids("test")?, Some(limit));
    let settings = FineTuneSettings::default();
    let replay = ReplaySettings {
        finetune: settings.clone(),
        ..ReplaySettings::default()
    };
    let mut registry = Registry::with_baselines(&settings);
    engram::replay::register(
        &mut registry,
        &replay,
        &news.items,
        &GenerationCache::default(),
    );
    let names: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
    let chosen = registry.select(&names)?;
    let spec = RunSpec {
        manifest: RunManifest {
            dataset: news.name.clone(),
            split: "test".into(),
            mode: Mode::Batch,
            item_ids: items.iter().map(|i| i.id.clone()).collect(),
            methods: names.clone(),
            probe: ProbeConfig {
                letter_orders: 1,
                ..ProbeConfig::default()
            },
            // Compared when a run resumes: a changed recipe must not mix with old results.
            settings: serde_json::json!({"finetune": settings.to_json(), "replay": replay.to_json()}),
            locality_questions: 0,
            model: "SmolLM2-135M-Instruct.Q4_1.gguf".into(),
        },
        items,
        locality: None,
        locality_units: 1,
        out: out.to_path_buf(),
    };
    // Rerunning with the same `out` resumes where an interrupted run stopped.
    let (rows, locality) = run_eval(&mut lm, &chosen, &spec, &mut |_| {})?;
    write_report(out, &summarize(&spec.manifest, &rows, &locality, 0.0))?;
    Ok(names
        .iter()
        .map(|c| {
            let mine: Vec<_> = rows.iter().filter(|r| &r.condition == c).collect();
            let right = mine.iter().filter(|r| r.scores.likelihood_correct).count();
            (c.clone(), right as f64 / mine.len().max(1) as f64)
        })
        .collect())
}

fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "runs/example-eval".into());
    let scores = run(
        out.as_ref(),
        &["base", "icl", "naive-ft", "sys2-self-qa"],
        4,
    )?;
    for (condition, accuracy) in scores {
        println!("{condition:<14} MC likelihood {:.0}%", 100.0 * accuracy);
    }
    println!("report: {out}/report.md");
    Ok(())
}

#[test]
fn compares_base_with_in_context_learning() {
    let dir = tempfile::tempdir().unwrap();
    let scores = run(dir.path(), &["base", "icl"], 2).unwrap();
    assert_eq!(scores.len(), 2);
    // The text in the prompt is the upper bound: on these fictional items it beats the model's memory.
    assert!(scores[1].1 > scores[0].1, "{scores:?}");
    assert!(dir.path().join("report.md").is_file() && dir.path().join("results.jsonl").is_file());
}
