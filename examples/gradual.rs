//! Gradual Learning's first step (`engram-curriculum`): probe how well the model knows each trivia fact —
//! greedy and sampled answers under few-shot prompts made from other facts — sort the facts into SliCK's
//! categories, and let the two-stage schedule pick what stage 1 trains (the `MaybeKnown` facts).
//!
//! ```sh
//! cargo run --release --example gradual -- 32
//! ```
//! The whole curriculum with its equal-compute baselines: `engram eval --methods base,gradual,gradual-all`.

use engram::curriculum::category::counts;
use engram::curriculum::{Curriculum, ProbeSettings, TwoStage, facts, probe_facts};
use engram::eval::shipped::trivia;
use engram::model::ModelGenerator;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Probes the first `n` trivia facts; returns the category counts (HK, MK, WK, UK) and stage 1's facts.
fn run(n: usize, probe: &ProbeSettings) -> Result<([usize; 4], Vec<String>)> {
    let lm = engram::load_default_model()?;
    let dataset = trivia()?;
    let all = facts(&dataset.items);
    let (asked, pool) = (&all[..n.min(all.len())], &all[..]);
    let mut generator = ModelGenerator::new(&lm);
    let knowledge = probe_facts(&mut generator, asked, pool, probe, &mut |done, total| {
        eprintln!("probe: {done}/{total} answer rounds");
    })?;
    for k in &knowledge {
        println!(
            "{:<12} {}/{} greedy, {}/{} sampled  {} → {}",
            k.category.name(),
            k.greedy_right,
            k.greedy.len(),
            k.sampled_right,
            k.sampled.len(),
            k.question,
            k.greedy.first().map(String::as_str).unwrap_or("")
        );
    }
    let counts = counts(knowledge.iter().map(|k| &k.category));
    let schedule = TwoStage {
        steps: [40, 40],
        replay_share: 0.5,
        seed: 0,
    };
    let stage1 = schedule
        .plan(0, &knowledge, &knowledge)
        .map(|p| p.train)
        .unwrap_or_default();
    Ok((counts, stage1))
}

fn main() -> Result<()> {
    let n = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(32);
    let (c, stage1) = run(n, &ProbeSettings::default())?;
    println!(
        "HighlyKnown {}, MaybeKnown {}, WeaklyKnown {}, Unknown {}",
        c[0], c[1], c[2], c[3]
    );
    println!(
        "stage 1 trains {} MaybeKnown facts: {}",
        stage1.len(),
        stage1.join(", ")
    );
    Ok(())
}

#[test]
fn sorts_facts_into_categories() {
    let quick = ProbeSettings {
        prompts: 1,
        shots: 2,
        samples: 2,
        ..ProbeSettings::default()
    };
    let (c, stage1) = run(4, &quick).unwrap();
    assert_eq!(c.iter().sum::<usize>(), 4);
    // Stage 1 trains exactly the MaybeKnown facts.
    assert_eq!(stage1.len(), c[1]);
}
