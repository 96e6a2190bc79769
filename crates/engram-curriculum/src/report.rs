//! The curriculum table: categories before and after each stage, knowledge acquired and forgotten, dev and
//! test accuracy, for a schedule and its baselines — with paired bootstrap intervals on the differences.

use std::collections::HashMap;
use std::fmt::Write as _;

use engram_inject::bootstrap_mean;

use crate::{Category, GradualReport};

fn pct(x: f64) -> String {
    format!("{:.0}%", 100.0 * x)
}

fn cats(c: &[usize; 4]) -> String {
    c.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Per fact: 1 when newly `HighlyKnown` at the end, and 1 when a `HighlyKnown` fact was lost.
fn indicators(r: &GradualReport) -> HashMap<&str, (f64, f64)> {
    let hk = Category::HighlyKnown;
    r.outcomes
        .iter()
        .map(|(id, a, b)| {
            let acquired = f64::from(u8::from(*a != hk && *b == hk));
            let forgotten = f64::from(u8::from(*a == hk && *b != hk));
            (id.as_str(), (acquired, forgotten))
        })
        .collect()
}

/// Markdown: one row per run, then the difference of every later run from the first (acquired and forgotten
/// facts per 100 probed, mean and 95% paired bootstrap interval over the facts both runs probed), then each
/// run's transition matrices.
pub fn render_markdown(runs: &[GradualReport]) -> String {
    let mut s = String::new();
    s.push_str("| method | stage objective | facts | steps | before (HK / MK / WK / UK) | after stage 1 | after stage 2 | acquired | forgotten | dev acc. (base) | test acc. (base) |\n");
    s.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let after = |i: usize| {
            r.stages
                .get(i)
                .map_or("–".into(), |st| cats(&st.categories))
        };
        let dev = r
            .stages
            .iter()
            .rev()
            .find_map(|st| st.chosen.map(|c| st.rounds[c].dev_accuracy))
            .map_or("–".into(), pct);
        let test = r
            .stages
            .iter()
            .rev()
            .find_map(|st| st.test_accuracy)
            .map_or("–".into(), pct);
        writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {dev} ({}) | {test} ({}) |",
            r.method,
            r.stage_method,
            r.facts,
            r.steps,
            cats(&r.initial),
            after(0),
            after(1),
            r.acquired,
            r.forgotten,
            pct(r.dev_accuracy_base),
            r.test_accuracy_base.map_or("–".into(), pct),
        )
        .ok();
    }
    if let Some((first, rest)) = runs.split_first()
        && !rest.is_empty()
    {
        writeln!(
            s,
            "\nDifferences from `{}` per 100 facts (mean and 95% paired bootstrap interval, 2000 resamples):\n",
            first.method
        )
        .ok();
        s.push_str("| baseline | acquired: first − baseline | forgotten: first − baseline |\n|---|---|---|\n");
        let a = indicators(first);
        for r in rest {
            let b = indicators(r);
            let (mut acq, mut forg) = (Vec::new(), Vec::new());
            // In the first run's fact order, so the seeded bootstrap gives the same interval every time.
            for (id, _, _) in &first.outcomes {
                if let (Some((a_acq, a_forg)), Some((b_acq, b_forg))) =
                    (a.get(id.as_str()), b.get(id.as_str()))
                {
                    acq.push(100.0 * (a_acq - b_acq));
                    forg.push(100.0 * (a_forg - b_forg));
                }
            }
            let est = |v: &[f64]| {
                bootstrap_mean(v, 2000, 0.95, 0).map_or("–".into(), |e| {
                    format!("{:+.1} [{:+.1}, {:+.1}]", e.mean, e.lo, e.hi)
                })
            };
            writeln!(s, "| {} | {} | {} |", r.method, est(&acq), est(&forg)).ok();
        }
    }
    for r in runs {
        writeln!(s, "\nTransitions of `{}`:\n", r.method).ok();
        for t in &r.transitions {
            s.push_str(&t.to_markdown());
            s.push('\n');
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Transitions;
    use Category::*;

    fn run(method: &str, outcomes: &[(Category, Category)]) -> GradualReport {
        let outcomes: Vec<(String, Category, Category)> = outcomes
            .iter()
            .enumerate()
            .map(|(i, (a, b))| (format!("f{i}"), *a, *b))
            .collect();
        let tag = |second: bool| -> Vec<(String, Category)> {
            outcomes
                .iter()
                .map(|(id, a, b)| (id.clone(), if second { *b } else { *a }))
                .collect()
        };
        let hk = HighlyKnown;
        GradualReport {
            method: method.into(),
            stage_method: "qa-ft".into(),
            probe: Default::default(),
            facts: outcomes.len(),
            initial: crate::category::counts(outcomes.iter().map(|o| &o.1)),
            dev_accuracy_base: 0.5,
            test_accuracy_base: None,
            stages: vec![],
            transitions: vec![
                Transitions::between("before", &tag(false), "final", &tag(true)).unwrap(),
            ],
            acquired: outcomes.iter().filter(|o| o.1 != hk && o.2 == hk).count(),
            forgotten: outcomes.iter().filter(|o| o.1 == hk && o.2 != hk).count(),
            outcomes,
            steps: 80,
            seconds: 1.0,
            adapter: None,
        }
    }

    #[test]
    fn table_differences_and_transitions() {
        let two = run(
            "gradual",
            &[
                (MaybeKnown, HighlyKnown),
                (HighlyKnown, HighlyKnown),
                (Unknown, Unknown),
            ],
        );
        let all = run(
            "gradual-all",
            &[
                (MaybeKnown, MaybeKnown),
                (HighlyKnown, Unknown),
                (Unknown, Unknown),
            ],
        );
        let md = render_markdown(&[two.clone(), all.clone()]);
        assert!(
            md.contains("| gradual | qa-ft | 3 | 80 | 1 / 1 / 0 / 1 |"),
            "{md}"
        );
        // Acquired: gradual 1/3, gradual-all 0/3 -> +33.3 per 100; forgotten: 0 vs 1/3 -> -33.3.
        assert!(md.contains("| gradual-all | +33.3 ["), "{md}");
        assert!(md.contains("| -33.3 ["), "{md}");
        assert!(md.contains("Transitions of `gradual-all`"), "{md}");
        assert_eq!(md, render_markdown(&[two, all]), "deterministic");
    }
}
