//! SELF-PARAM (`engram-distill`): the frozen model reading a text is the teacher, the same weights with a
//! LoRA adapter and *without* the text the student; KL distillation over questions about the text, its
//! continuations and unrelated regulariser text writes the text into the adapter.
//!
//! ```sh
//! cargo run --release --example self_param
//! ```

use engram::MethodSettings;
use engram::distill::DistillReport;
use engram::eval::shipped::load_dataset;
use engram::inject::{InjectEnv, Injection};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Injects news item `news-math-003` with `examples` target sequences into `out`; returns the report.
fn run(out: &std::path::Path, examples: usize, continuations: usize) -> Result<DistillReport> {
    let mut lm = engram::load_default_model()?;
    let news = load_dataset("news")?;
    let items: Vec<_> = news
        .items
        .iter()
        .filter(|i| i.id == "news-math-003")
        .cloned()
        .collect();

    // lr 1e-3 (the one-text recipe); the target budget and continuations as asked. The regulariser reads
    // the general texts 01-04 (locality reads all eight): `MethodSettings::default()` sets them.
    let mut settings = MethodSettings::one_text();
    settings.replay.examples_per_item = examples;
    settings.distill.continuations = continuations;
    let method = engram::registry(&settings, &news.items).build("self-param")?;

    let mut on_step = |m: &engram::train::StepMetrics| {
        println!("step {}/{} KL {:.4}", m.step, m.total_steps, m.loss)
    };
    let mut env = InjectEnv {
        model: &mut lm,
        on_step: &mut on_step,
    };
    let Injection::Adapter(dir) = method.inject(&mut env, &items, None, out)? else {
        return Err("self-param writes an adapter".into());
    };
    let report = std::fs::read_to_string(dir.join(engram::distill::method::DISTILL_REPORT_FILE))?;
    Ok(serde_json::from_str(&report)?)
}

fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "skarrow-self-param".into());
    let r = run(out.as_ref(), 128, 8)?;
    println!(
        "targets {:?}, {} target tokens, teacher cache {:.1} MB; adapter in {out}",
        r.targets,
        r.target_tokens,
        r.cache_bytes as f64 / 1e6
    );
    println!("ask it: engram ask --adapter {out} --question \"Who proved the Skarrow theorem?\"");
    Ok(())
}

#[test]
fn distils_a_text_into_an_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adapter");
    let r = run(&out, 8, 2).unwrap();
    assert!(r.target_tokens > 0 && r.cache_bytes > 0, "{r:?}");
    // The one-text settings keep the locality guard on: its rows are KL targets beside the text's
    // (crates/engram-cli/tests/inject.rs runs self-param with the guard off, to halve its steps).
    assert!(
        ["continuation", "qa", "regulariser", "rehearsal"]
            .iter()
            .all(|k| r.targets.get(*k).is_some_and(|&n| n > 0)),
        "{r:?}"
    );
    assert!(out.join("adapter_model.safetensors").is_file());
}
