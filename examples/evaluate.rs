//! The evaluation harness (`engram-eval`): the base model, in-context learning (the text in the prompt: the
//! upper bound) and injection methods on the same `news` questions, scored by multiple-choice likelihood,
//! letter choice, teacher-forced token accuracy and greedy answers; writes results.jsonl, report.md and charts.
//!
//! ```sh
//! cargo run --release --example evaluate -- runs/example-eval
//! ```
//! The same through the command line, with every option: `engram eval --help`.

use engram::MethodSettings;
use engram::eval::report::{summarize, write_report_with_notes};
use engram::eval::shipped::load_dataset;
use engram::eval::{Mode, ProbeConfig, RunManifest, RunSpec, method_notes, run_eval, select_items};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Runs `methods` on the first `limit` news test items into `out`; returns (condition, MC-likelihood accuracy).
fn run(out: &std::path::Path, methods: &[&str], limit: usize) -> Result<Vec<(String, f64)>> {
    let mut lm = engram::load_default_model()?;
    let news = load_dataset("news")?;
    let items = select_items(&news.items, news.split_ids("test")?, Some(limit));
    // Every method by name, from one settings value (each crate's defaults).
    let names: Vec<String> = methods.iter().map(|m| m.to_string()).collect();
    let chosen = engram::registry(&MethodSettings::default(), &news.items).select(&names)?;
    let probe = ProbeConfig {
        letter_orders: 1,
        ..ProbeConfig::default()
    };
    let spec = RunSpec {
        // Records each method's settings: a resumed run with a changed recipe is refused.
        manifest: RunManifest::new(
            &news.name,
            "test",
            Mode::Batch,
            &items,
            &chosen,
            probe,
            0,
            &lm.path,
        ),
        items,
        locality: None,
        locality_units: 1,
        out: out.to_path_buf(),
    };
    // Rerunning with the same `out` resumes where an interrupted run stopped.
    let (rows, locality) = run_eval(&mut lm, &chosen, &spec, &mut |_| {})?;
    let notes = method_notes(out, &chosen, Mode::Batch, spec.items.len())?;
    write_report_with_notes(
        out,
        &summarize(&spec.manifest, &rows, &locality, 0.0),
        &notes,
    )?;
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
