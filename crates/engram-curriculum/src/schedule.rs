//! Which facts each stage trains: the [`Curriculum`] seam, Gradual Learning's [`TwoStage`] schedule and the
//! one-stage baselines it is compared with ([`OneStage`]), all pure functions of probe results.

use std::collections::HashSet;

use engram_model::splitmix64;
use serde::{Deserialize, Serialize};

use crate::{Category, CurriculumError, Knowledge};

/// One stage: the facts it trains and its step budget.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StagePlan {
    /// Facts chosen for what the probe says of them.
    pub train: Vec<String>,
    /// Mastered facts replayed beside them, so they are not forgotten.
    pub replay: Vec<String>,
    /// Optimizer steps (the data repeats as needed): schedules compared at equal compute get equal sums.
    pub steps: usize,
}

impl StagePlan {
    /// Every fact the stage trains on.
    pub fn all(&self) -> impl Iterator<Item = &String> {
        self.train.iter().chain(&self.replay)
    }
}

/// Decides, from what the model knew before training (`initial`) and knows now (`current`), what stage
/// `stage` (0-based) trains; `None` when the schedule is done.
pub trait Curriculum: Send + Sync {
    /// The method name it runs under (`gradual`, `gradual-all`, ...).
    fn name(&self) -> &str;
    /// One line for `--help` and the report.
    fn description(&self) -> &str;
    /// What stage `stage` trains, given the probe before training (`initial`) and now (`current`).
    fn plan(&self, stage: usize, initial: &[Knowledge], current: &[Knowledge])
    -> Option<StagePlan>;
    /// Steps over all stages: what baselines at equal compute get.
    fn total_steps(&self) -> usize;
}

fn ids_where(k: &[Knowledge], keep: impl Fn(&Knowledge) -> bool) -> Vec<String> {
    k.iter().filter(|k| keep(k)).map(|k| k.id.clone()).collect()
}

/// Gradual Learning's schedule: stage 1 trains the `MaybeKnown` facts (partly mastered: the ones fine-tuning
/// helps most); then every fact is re-probed, and stage 2 trains the facts that are partly mastered now —
/// every fact `MaybeKnown` now (moved up into it, still there after stage 1, or slipped down from
/// `HighlyKnown`) and those that moved up into `WeaklyKnown` — with `replay_share` × as many `HighlyKnown`
/// facts replayed so that mastered knowledge is kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TwoStage {
    /// Optimizer steps of stage 1 and stage 2.
    pub steps: [usize; 2],
    /// `HighlyKnown` facts replayed in stage 2 per fact trained (≥ 0).
    pub replay_share: f64,
    /// Seeds which `HighlyKnown` facts are replayed.
    pub seed: u64,
}

impl TwoStage {
    /// Checks that both stages have steps and `replay_share` is a finite number ≥ 0.
    pub fn validate(&self) -> Result<(), CurriculumError> {
        if self.steps.contains(&0) {
            return Err(CurriculumError::option(
                "stage-steps",
                format!("{},{}", self.steps[0], self.steps[1]),
                "each stage needs at least 1 step",
            ));
        }
        if !(self.replay_share.is_finite() && self.replay_share >= 0.0) {
            return Err(CurriculumError::option(
                "replay-share",
                self.replay_share,
                "must be a finite number >= 0",
            ));
        }
        Ok(())
    }
}

impl Curriculum for TwoStage {
    fn name(&self) -> &str {
        "gradual"
    }
    fn description(&self) -> &str {
        "Gradual Learning: stage 1 on MaybeKnown facts, re-probe, stage 2 on facts that moved up plus HighlyKnown replay"
    }
    fn plan(
        &self,
        stage: usize,
        initial: &[Knowledge],
        current: &[Knowledge],
    ) -> Option<StagePlan> {
        match stage {
            0 => Some(StagePlan {
                train: ids_where(current, |k| k.category == Category::MaybeKnown),
                replay: Vec::new(),
                steps: self.steps[0],
            }),
            1 => {
                let before: std::collections::HashMap<&str, Category> = initial
                    .iter()
                    .map(|k| (k.id.as_str(), k.category))
                    .collect();
                let train = ids_where(current, |k| {
                    let was = before
                        .get(k.id.as_str())
                        .copied()
                        .unwrap_or(Category::Unknown);
                    match k.category {
                        Category::HighlyKnown | Category::Unknown => false,
                        Category::MaybeKnown => true,
                        Category::WeaklyKnown => k.category.rank() > was.rank(),
                    }
                });
                let mastered = ids_where(current, |k| k.category == Category::HighlyKnown);
                let n =
                    ((train.len() as f64 * self.replay_share).round() as usize).min(mastered.len());
                Some(StagePlan {
                    replay: seeded_sample(&mastered, n, self.seed),
                    train,
                    steps: self.steps[1],
                })
            }
            _ => None,
        }
    }
    fn total_steps(&self) -> usize {
        self.steps.iter().sum()
    }
}

/// Which facts a one-stage baseline trains.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Selection {
    /// Every fact (plain fine-tuning on the dataset).
    All,
    /// `MaybeKnown` facts only (stage 1 without the rest).
    MaybeKnown,
}

/// A baseline: one stage of `steps` steps on the [`Selection`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OneStage {
    /// Which facts the stage trains.
    pub selection: Selection,
    /// Optimizer steps of the stage.
    pub steps: usize,
}

impl Curriculum for OneStage {
    fn name(&self) -> &str {
        match self.selection {
            Selection::All => "gradual-all",
            Selection::MaybeKnown => "gradual-maybe",
        }
    }
    fn description(&self) -> &str {
        match self.selection {
            Selection::All => {
                "one stage on every fact, the two-stage schedule's compute (baseline)"
            }
            Selection::MaybeKnown => {
                "one stage on MaybeKnown facts, the two-stage schedule's compute (baseline)"
            }
        }
    }
    fn plan(&self, stage: usize, _: &[Knowledge], current: &[Knowledge]) -> Option<StagePlan> {
        (stage == 0).then(|| StagePlan {
            train: ids_where(current, |k| {
                self.selection == Selection::All || k.category == Category::MaybeKnown
            }),
            replay: Vec::new(),
            steps: self.steps,
        })
    }
    fn total_steps(&self) -> usize {
        self.steps
    }
}

/// `n` of `ids` picked by `seed`, in their original order.
fn seeded_sample(ids: &[String], n: usize, seed: u64) -> Vec<String> {
    let mut keyed: Vec<(u64, usize)> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let h = id
                .bytes()
                .fold(splitmix64(seed), |h, b| splitmix64(h ^ b as u64));
            (h, i)
        })
        .collect();
    keyed.sort_unstable();
    let chosen: HashSet<usize> = keyed.iter().take(n).map(|&(_, i)| i).collect();
    ids.iter()
        .enumerate()
        .filter(|(i, _)| chosen.contains(i))
        .map(|(_, id)| id.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn k(id: &str, category: Category) -> Knowledge {
        Knowledge {
            id: id.into(),
            question: String::new(),
            answer: String::new(),
            category,
            greedy: vec![],
            greedy_right: 0,
            sampled: vec![],
            sampled_right: 0,
        }
    }

    #[test]
    fn two_stages_follow_the_probe() {
        use Category::*;
        let initial = vec![
            k("a", MaybeKnown),
            k("b", MaybeKnown),
            k("c", Unknown),
            k("d", WeaklyKnown),
            k("e", HighlyKnown),
            k("f", HighlyKnown),
            k("g", WeaklyKnown),
        ];
        let s = TwoStage {
            steps: [10, 20],
            replay_share: 0.5,
            seed: 3,
        };
        let one = s.plan(0, &initial, &initial).unwrap();
        assert_eq!(one.train, ["a", "b"]);
        assert!(one.replay.is_empty());
        assert_eq!(one.steps, 10);
        let after = vec![
            k("a", HighlyKnown), // mastered in stage 1: replay pool
            k("b", MaybeKnown),  // still partly known: trained again
            k("c", WeaklyKnown), // moved up
            k("d", MaybeKnown),  // moved up
            k("e", HighlyKnown),
            k("f", MaybeKnown),  // forgotten a bit: partly known, trained
            k("g", WeaklyKnown), // did not move: left out
        ];
        let two = s.plan(1, &initial, &after).unwrap();
        assert_eq!(two.train, ["b", "c", "d", "f"]);
        assert_eq!(
            two.replay.len(),
            2,
            "half as many as trained, from {{a, e}}"
        );
        assert!(two.replay.iter().all(|id| id == "a" || id == "e"));
        assert_eq!(two.steps, 20);
        assert!(s.plan(2, &initial, &after).is_none());
        assert_eq!(s.total_steps(), 30);
    }

    #[test]
    fn replay_is_capped_by_what_is_mastered_and_seeded() {
        let ids: Vec<String> = (0..20).map(|i| format!("f{i}")).collect();
        let a = seeded_sample(&ids, 5, 1);
        assert_eq!(a.len(), 5);
        assert_eq!(a, seeded_sample(&ids, 5, 1));
        assert_ne!(a, seeded_sample(&ids, 5, 2));
        assert_eq!(seeded_sample(&ids, 50, 1), ids);
    }

    #[test]
    fn baselines_have_one_stage() {
        use Category::*;
        let now = vec![k("a", MaybeKnown), k("b", Unknown), k("c", HighlyKnown)];
        let all = OneStage {
            selection: Selection::All,
            steps: 30,
        };
        assert_eq!(all.plan(0, &now, &now).unwrap().train, ["a", "b", "c"]);
        assert!(all.plan(1, &now, &now).is_none());
        let maybe = OneStage {
            selection: Selection::MaybeKnown,
            steps: 30,
        };
        assert_eq!(maybe.plan(0, &now, &now).unwrap().train, ["a"]);
        assert_eq!(maybe.name(), "gradual-maybe");
    }

    #[test]
    fn settings_are_checked() {
        let bad = TwoStage {
            steps: [0, 5],
            replay_share: 0.5,
            seed: 0,
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("stage-steps")
        );
        let bad = TwoStage {
            steps: [5, 5],
            replay_share: f64::NAN,
            seed: 0,
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("replay-share")
        );
    }
}
