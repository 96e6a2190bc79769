//! A [`Curriculum`] run as an injection [`Method`]: probe, train a stage, re-probe, train the next — each
//! stage's objective being any registered training method (`qa-ft`, `sys2-self-qa`, `self-param`, ...), so
//! "gradual + self-QA" is one setting, not new code.
//!
//! Every stage's step budget is split into `rounds`; after each round the adapter's greedy accuracy on the
//! **dev** facts is measured and the stage keeps its best round (ties: the later, more trained one). Test
//! facts are never looked at to choose anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use engram_inject::{
    Family, FamilyKind, FineTuneSettings, InjectEnv, InjectError, Injection, Item, Method,
    MethodInfo, Recipe, Registry, Stages,
};
use engram_lora::Adapters;
use engram_model::formats::atomic::write_file_atomically;
use engram_model::{LoadedModel, ModelGenerator};
use engram_train::Length;
use serde::{Deserialize, Serialize};

use crate::category::{Transitions, counts};
use crate::probe::{
    Fact, Knowledge, ProbeCache, ProbeSettings, facts, model_identity, write_knowledge,
};
use crate::schedule::{Curriculum, OneStage, Selection, StagePlan, TwoStage};
use crate::{Category, CurriculumError};

/// How a curriculum probes and trains.
#[derive(Clone)]
pub struct GradualSettings {
    /// How facts are probed.
    pub probe: ProbeSettings,
    /// The training method of every stage, by name.
    pub stage_method: String,
    /// Dev checks per stage.
    pub rounds: usize,
    /// Greedy prompts per dev (and test) fact in the accuracy checks.
    pub check_prompts: usize,
    /// Facts that choose the round of each stage.
    pub dev: Vec<Item>,
    /// Held-out facts whose accuracy is reported (never used to choose).
    pub test: Vec<Item>,
    /// Few-shot exemplars are drawn from these.
    pub pool: Vec<Item>,
    /// Where probe results are cached; `None`: a `probes` folder in the method's output folder.
    pub cache: Option<PathBuf>,
    /// Called with a line of progress.
    pub log: Arc<dyn Fn(&str) + Send + Sync>,
}

impl GradualSettings {
    /// Checks ranges (probe settings, `rounds`, `check_prompts`) and that there are dev facts, naming the option.
    pub fn validate(&self) -> Result<(), CurriculumError> {
        self.probe.validate()?;
        if self.rounds == 0 {
            return Err(CurriculumError::option("rounds", 0, "must be at least 1"));
        }
        if self.check_prompts == 0 {
            return Err(CurriculumError::option(
                "check-prompts",
                0,
                "must be at least 1",
            ));
        }
        if self.dev.is_empty() {
            return Err(CurriculumError::option(
                "dev",
                "0 items",
                "a curriculum chooses its rounds on dev facts: use a dataset with a dev split",
            ));
        }
        Ok(())
    }
}

/// One training round of a stage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RoundReport {
    /// Optimizer steps of this round.
    pub steps: usize,
    /// Mean greedy accuracy on the dev facts after the round.
    pub dev_accuracy: f64,
    /// The adapter after the round (rounds continue one another).
    pub adapter: PathBuf,
}

/// One stage: what it trained, its rounds and what the probe found after it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StageReport {
    /// The facts the stage trained and its step budget.
    pub plan: StagePlan,
    /// Its rounds, in order.
    pub rounds: Vec<RoundReport>,
    /// Index of the kept round; `None` when the stage had nothing to train.
    pub chosen: Option<usize>,
    /// Facts per category after the stage (`Category::ALL` order).
    pub categories: [usize; 4],
    /// Mean greedy accuracy on the test facts after the stage; `None` without test facts.
    pub test_accuracy: Option<f64>,
}

/// What `gradual.json` holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GradualReport {
    /// The curriculum's name (`gradual`, `gradual-all`, ...).
    pub method: String,
    /// The training method every stage ran.
    pub stage_method: String,
    /// How facts were probed.
    pub probe: ProbeSettings,
    /// Facts the curriculum chose from (the injected items' direct questions).
    pub facts: usize,
    /// Facts per category before training (`Category::ALL` order).
    pub initial: [usize; 4],
    /// Mean greedy accuracy on the dev facts before training.
    pub dev_accuracy_base: f64,
    /// The same on the test facts; `None` without test facts.
    pub test_accuracy_base: Option<f64>,
    /// The stages, in order.
    pub stages: Vec<StageReport>,
    /// Before → after stage 1, after stage 1 → after stage 2, ..., and before → final.
    pub transitions: Vec<Transitions>,
    /// Per fact: category before and after the last stage (for paired comparisons).
    pub outcomes: Vec<(String, Category, Category)>,
    /// Facts newly `HighlyKnown` at the end.
    pub acquired: usize,
    /// `HighlyKnown` facts that are not at the end.
    pub forgotten: usize,
    /// Optimizer steps actually run (all rounds).
    pub steps: usize,
    /// Wall time of the whole curriculum, in seconds.
    pub seconds: f64,
    /// The final adapter; `None` when nothing was trained.
    pub adapter: Option<PathBuf>,
}

/// The report file in a curriculum's output folder.
pub const REPORT_FILE: &str = "gradual.json";
const PROBE_ADAPTER: &str = "gradual-probe";

/// A curriculum as an injection method.
pub struct Gradual {
    /// Its entry (`gradual`, `gradual-all`, `gradual-maybe`).
    pub info: &'static MethodInfo,
    /// Decides what each stage trains.
    pub curriculum: Box<dyn Curriculum>,
    /// Probe, training and dev-check settings.
    pub settings: GradualSettings,
    /// LoRA and optimiser settings of the stages (the length is set per round).
    pub finetune: FineTuneSettings,
    /// Builds each round's training method by name.
    pub registry: Registry,
}

/// The curricula's family: `gradual` (two stages of `two_stage.steps`) and its baselines at equal compute and
/// with as many dev checks, `gradual-all` (one stage on every fact) and `gradual-maybe` (one stage on
/// `MaybeKnown` facts).
#[derive(Clone)]
pub struct Curricula {
    /// Probe and dev-check settings, and the stage method.
    pub settings: GradualSettings,
    /// The two-stage schedule; the baselines get its total steps.
    pub two_stage: TwoStage,
}

impl Family for Curricula {
    fn kind(&self) -> FamilyKind {
        FamilyKind::Curriculum
    }
    fn build(
        &self,
        info: &'static MethodInfo,
        finetune: &FineTuneSettings,
        registry: &Registry,
    ) -> Result<Box<dyn Method>, InjectError> {
        let Recipe::Curriculum(stages) = info.recipe else {
            return Err(InjectError::option("method", info.name, "not a curriculum"));
        };
        self.two_stage.validate()?;
        let total = self.two_stage.steps.iter().sum();
        let (curriculum, rounds): (Box<dyn Curriculum>, usize) = match stages {
            Stages::TwoStage => (Box::new(self.two_stage.clone()), self.settings.rounds),
            // A baseline's one stage gets as many dev checks as the two stages together.
            Stages::AllFacts => (
                Box::new(OneStage {
                    selection: Selection::All,
                    steps: total,
                }),
                2 * self.settings.rounds,
            ),
            Stages::MaybeKnown => (
                Box::new(OneStage {
                    selection: Selection::MaybeKnown,
                    steps: total,
                }),
                2 * self.settings.rounds,
            ),
        };
        Ok(Box::new(Gradual {
            info,
            curriculum,
            settings: GradualSettings {
                rounds,
                ..self.settings.clone()
            },
            finetune: finetune.clone(),
            registry: registry.clone(),
        }))
    }
}

/// The items restricted to the direct questions of the facts in `ids` (items left with none are dropped).
pub fn stage_items<'a>(items: &[Item], ids: impl IntoIterator<Item = &'a String>) -> Vec<Item> {
    let wanted: std::collections::HashSet<&str> = ids.into_iter().map(String::as_str).collect();
    let all = facts(items);
    items
        .iter()
        .filter_map(|item| {
            let keep: Vec<&Fact> = all
                .iter()
                .filter(|f| f.item == item.id && wanted.contains(f.id.as_str()))
                .collect();
            if keep.is_empty() {
                return None;
            }
            let questions = item
                .questions
                .iter()
                .filter(|q| keep.iter().any(|f| f.question == q.question))
                .cloned()
                .collect();
            Some(Item {
                questions,
                ..item.clone()
            })
        })
        .collect()
}

/// Runs `f` with the adapter in `dir` attached to the model, detaching it whatever happened.
fn with_adapter<T>(
    lm: &mut LoadedModel,
    dir: Option<&Path>,
    f: impl FnOnce(&LoadedModel) -> Result<T, CurriculumError>,
) -> Result<T, CurriculumError> {
    let Some(dir) = dir else { return f(lm) };
    engram_lora::load_adapter(&mut lm.model, dir, PROBE_ADAPTER)?;
    let result = f(lm);
    lm.model.remove_adapter(PROBE_ADAPTER)?;
    result
}

impl Gradual {
    fn log(&self, line: String) {
        (self.settings.log)(&format!("{}: {line}", self.name()));
    }

    /// Probes `which` with the adapter in `dir` (or the bare model).
    fn probe(
        &self,
        lm: &mut LoadedModel,
        dir: Option<&Path>,
        which: &[Fact],
        settings: &ProbeSettings,
        cache: &ProbeCache,
    ) -> Result<Vec<Knowledge>, CurriculumError> {
        let pool = facts(&self.settings.pool);
        with_adapter(lm, dir, |lm| {
            let identity = model_identity(lm, dir)?;
            let mut generator = ModelGenerator::new(lm);
            let (found, _) = cache.probe(
                &mut generator,
                &identity,
                which,
                &pool,
                settings,
                &mut |_, _| {},
            )?;
            Ok(found)
        })
    }

    /// Mean greedy accuracy of `which` (dev or test facts).
    fn accuracy(
        &self,
        lm: &mut LoadedModel,
        dir: Option<&Path>,
        which: &[Fact],
        cache: &ProbeCache,
    ) -> Result<f64, CurriculumError> {
        let check = self.settings.probe.greedy(self.settings.check_prompts);
        let k = self.probe(lm, dir, which, &check, cache)?;
        Ok(k.iter().map(Knowledge::greedy_accuracy).sum::<f64>() / k.len().max(1) as f64)
    }

    fn run(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<GradualReport, CurriculumError> {
        let start = Instant::now();
        let s = &self.settings;
        s.validate()?;
        let cache = ProbeCache {
            dir: s.cache.clone().unwrap_or_else(|| out.join("probes")),
        };
        let train_facts = facts(items);
        let (dev, test) = (facts(&s.dev), facts(&s.test));
        let tag = |k: &[Knowledge]| -> Vec<(String, Category)> {
            k.iter().map(|k| (k.id.clone(), k.category)).collect()
        };

        self.log(format!("probing {} facts", train_facts.len()));
        let initial = self.probe(env.model, previous, &train_facts, &s.probe, &cache)?;
        write_knowledge(&out.join("knowledge-0.jsonl"), &initial)?;
        let dev_base = self.accuracy(env.model, previous, &dev, &cache)?;
        let test_base = (!test.is_empty())
            .then(|| self.accuracy(env.model, previous, &test, &cache))
            .transpose()?;
        self.log(format!(
            "before: {:?} (HighlyKnown, MaybeKnown, WeaklyKnown, Unknown); dev accuracy {dev_base:.3}",
            counts(initial.iter().map(|k| &k.category))
        ));

        let mut current = initial.clone();
        let mut adapter = previous.map(Path::to_path_buf);
        let mut stages = Vec::new();
        let mut snapshots = vec![("before".to_string(), tag(&initial))];
        let mut steps_run = 0;
        let mut stage = 0;
        while let Some(plan) = self.curriculum.plan(stage, &initial, &current) {
            stage += 1;
            let stage_facts: Vec<Item> = stage_items(items, plan.all());
            let mut rounds = Vec::new();
            let mut chosen = None;
            if stage_facts.is_empty() {
                self.log(format!("stage {stage}: nothing to train"));
            } else {
                let n_rounds = s.rounds.min(plan.steps).max(1);
                let mut round_start = adapter.clone();
                let mut best = f64::NEG_INFINITY;
                for r in 0..n_rounds {
                    let steps = plan.steps / n_rounds + usize::from(r < plan.steps % n_rounds);
                    let settings = self.finetune.with_length(Length::Steps(steps));
                    let method = self
                        .registry
                        .with_finetune(settings)
                        .build(&s.stage_method)?;
                    if !method.trains() {
                        return Err(CurriculumError::option(
                            "stage-method",
                            &s.stage_method,
                            "writes nothing into weights; a stage needs a training method",
                        ));
                    }
                    self.log(format!(
                        "stage {stage} round {}/{n_rounds}: {} facts + {} replayed, {steps} steps of {}",
                        r + 1,
                        plan.train.len(),
                        plan.replay.len(),
                        s.stage_method
                    ));
                    let dir = out
                        .join(format!("stage-{stage}"))
                        .join(format!("round-{}", r + 1));
                    let dir =
                        match method.inject(env, &stage_facts, round_start.as_deref(), &dir)? {
                            Injection::Adapter(dir) => dir,
                            Injection::Prompt { .. } => {
                                return Err(CurriculumError::option(
                                    "stage-method",
                                    &s.stage_method,
                                    "wrote no adapter",
                                ));
                            }
                        };
                    steps_run += steps;
                    let dev_accuracy = self.accuracy(env.model, Some(&dir), &dev, &cache)?;
                    self.log(format!(
                        "stage {stage} round {}: dev accuracy {dev_accuracy:.3}",
                        r + 1
                    ));
                    if dev_accuracy >= best {
                        best = dev_accuracy;
                        chosen = Some(r);
                    }
                    rounds.push(RoundReport {
                        steps,
                        dev_accuracy,
                        adapter: dir.clone(),
                    });
                    round_start = Some(dir);
                }
                adapter = chosen.map(|r| rounds[r].adapter.clone());
                current = self.probe(
                    env.model,
                    adapter.as_deref(),
                    &train_facts,
                    &s.probe,
                    &cache,
                )?;
            }
            write_knowledge(&out.join(format!("knowledge-{stage}.jsonl")), &current)?;
            let test_accuracy = (!test.is_empty() && chosen.is_some())
                .then(|| self.accuracy(env.model, adapter.as_deref(), &test, &cache))
                .transpose()?;
            let categories = counts(current.iter().map(|k| &k.category));
            self.log(format!("after stage {stage}: {categories:?}"));
            snapshots.push((format!("stage {stage}"), tag(&current)));
            stages.push(StageReport {
                plan,
                rounds,
                chosen,
                categories,
                test_accuracy,
            });
        }

        let mut transitions = Vec::new();
        for w in snapshots.windows(2) {
            transitions.push(Transitions::between(&w[0].0, &w[0].1, &w[1].0, &w[1].1)?);
        }
        let last = snapshots.last().map(|s| s.1.clone()).unwrap_or_default();
        if snapshots.len() > 2 {
            transitions.push(Transitions::between(
                "before",
                &snapshots[0].1,
                "final",
                &last,
            )?);
        }
        let outcomes: Vec<(String, Category, Category)> = initial
            .iter()
            .zip(&current)
            .map(|(a, b)| (a.id.clone(), a.category, b.category))
            .collect();
        let hk = Category::HighlyKnown;
        Ok(GradualReport {
            method: self.name().into(),
            stage_method: s.stage_method.clone(),
            probe: s.probe.clone(),
            facts: train_facts.len(),
            initial: counts(initial.iter().map(|k| &k.category)),
            dev_accuracy_base: dev_base,
            test_accuracy_base: test_base,
            acquired: outcomes.iter().filter(|o| o.1 != hk && o.2 == hk).count(),
            forgotten: outcomes.iter().filter(|o| o.1 == hk && o.2 != hk).count(),
            outcomes,
            stages,
            transitions,
            steps: steps_run,
            seconds: start.elapsed().as_secs_f64(),
            adapter: adapter.filter(|a| Some(a.as_path()) != previous),
        })
    }
}

/// Reads a `gradual.json`.
pub fn read_report(dir: &Path) -> Result<Option<GradualReport>, CurriculumError> {
    let path = dir.join(REPORT_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| CurriculumError::Parse {
                path,
                line: e.line(),
                message: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CurriculumError::Io { path, source }),
    }
}

impl Method for Gradual {
    fn info(&self) -> &MethodInfo {
        self.info
    }
    fn finished(&self, out: &Path) -> bool {
        out.join(REPORT_FILE).is_file()
    }
    fn settings_json(&self) -> serde_json::Value {
        let s = &self.settings;
        // The stage method's own settings too (its family's), so a resumed run with other ones is refused.
        let stage = self
            .registry
            .with_finetune(self.finetune.clone())
            .build(&s.stage_method)
            .map(|m| m.settings_json())
            .unwrap_or(serde_json::Value::Null);
        serde_json::json!({
            "name": self.name(),
            "steps": self.curriculum.total_steps(),
            "rounds": s.rounds,
            "stage_method": s.stage_method,
            "stage": stage,
            "check_prompts": s.check_prompts,
            "probe": s.probe,
        })
    }
    fn report(&self, out: &Path) -> Result<Option<String>, InjectError> {
        Ok(read_report(out)?.map(|r| crate::report::render_markdown(&[r])))
    }
    fn inject(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, InjectError> {
        let report = match read_report(out)? {
            // `finished`: the report is written last.
            Some(done) => done,
            None => {
                let report = self.run(env, items, previous, out)?;
                let path = out.join(REPORT_FILE);
                let json = serde_json::to_string_pretty(&report).unwrap_or_default();
                write_file_atomically(&path, json.as_bytes()).map_err(InjectError::io(&path))?;
                report
            }
        };
        Ok(match report.adapter {
            Some(dir) => Injection::Adapter(dir),
            // Nothing to train (no fact in the selected categories): the model as it was.
            None => match previous {
                Some(p) => Injection::Adapter(p.to_path_buf()),
                None => Injection::Prompt { context: false },
            },
        })
    }
}
