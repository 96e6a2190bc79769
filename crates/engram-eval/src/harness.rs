//! The evaluation run: every method injects the items (one adapter per item, one for all, or one after
//! another), every question is asked under every condition, and each finished unit of work is appended to
//! `OUT/results.jsonl` at once — so a run that is interrupted resumes where it stopped.
//!
//! Files in `OUT`: `run.json` (what was asked; a resumed run must ask the same), `results.jsonl` (one row per
//! question per condition), `locality.jsonl` (one row per adapter measured), `locality-base.json` (the base
//! model's answers to the locality questions), `adapters/<method>/<unit>/` (PEFT adapters, their training
//! data and metrics), then `summary.json`, `report.md` and the SVG plots written by [`crate::report`].

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use engram_inject::{InjectEnv, Injection, Method};
use engram_lora::{Adapters, load_adapter};
use engram_model::LoadedModel;
use engram_model::formats::atomic::write_file_atomically;
use engram_model::formats::jsonl::{self, JsonlError};
use engram_train::StepMetrics;
use serde::{Deserialize, Serialize};

use crate::locality::{
    LocalityBaseline, LocalityScores, LocalitySet, locality_baseline, locality_scores,
};
use crate::probe::{Asker, ProbeConfig, QuestionScores, probe_questions};
use crate::{EvalError, Item, QuestionKind};

/// How items are injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// One adapter per item, evaluated on that item's questions.
    Single,
    /// One adapter for all items.
    Batch,
    /// Items injected one after another into the same adapter; after each, every item so far is asked again
    /// (the retention curve).
    Sequential,
}

impl Mode {
    /// The mode's name as the CLI and `run.json` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Single => "single",
            Mode::Batch => "batch",
            Mode::Sequential => "sequential",
        }
    }
}

impl FromStr for Mode {
    type Err = EvalError;
    fn from_str(s: &str) -> Result<Self, EvalError> {
        [Mode::Single, Mode::Batch, Mode::Sequential]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| EvalError::Option {
                name: "mode".into(),
                value: s.into(),
                reason: "expected single, batch or sequential".into(),
            })
    }
}

/// One question asked under one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultRow {
    /// The method (condition) the question was asked under, e.g. `base`, `icl`, `naive-ft`.
    pub condition: String,
    /// The injection measured: `-` (nothing trained), an item id (single), `all` (batch), `step-007`
    /// (sequential).
    pub unit: String,
    /// Sequential mode: how many items had been injected when the question was asked.
    pub step: Option<usize>,
    /// Id of the item the question belongs to.
    pub item_id: String,
    /// The item's domain.
    pub domain: String,
    /// What the question tests.
    pub kind: QuestionKind,
    /// Position of the question in its item.
    pub question_index: usize,
    /// The question text.
    pub question: String,
    /// The reference answer.
    pub answer: String,
    /// How the model's answer scored.
    #[serde(flatten)]
    pub scores: QuestionScores,
}

/// Locality measured after one injection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalityRow {
    /// The method (condition) whose adapter was measured.
    pub condition: String,
    /// The injection measured, as in [`ResultRow::unit`].
    pub unit: String,
    /// Sequential mode: how many items had been injected.
    pub step: Option<usize>,
    /// How much the adapter changed the model's behaviour elsewhere.
    #[serde(flatten)]
    pub scores: LocalityScores,
}

/// What a run asks: a resumed run must ask exactly this.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunManifest {
    /// The dataset's name (a shipped dataset or the items file).
    pub dataset: String,
    /// The split asked: `train`, `dev`, `test` or `all`.
    pub split: String,
    /// How items are injected.
    pub mode: Mode,
    /// Ids of the items asked, in order.
    pub item_ids: Vec<String>,
    /// The methods (conditions) compared, by name.
    pub methods: Vec<String>,
    /// How questions are asked and scored.
    pub probe: ProbeConfig,
    /// Method settings as given (e.g. the fine-tuning recipe), compared on resume.
    pub settings: serde_json::Value,
    /// Number of locality questions (0: locality not measured).
    pub locality_questions: usize,
    /// The model's display name.
    pub model: String,
}

impl RunManifest {
    /// What a run of `methods` on `items` asks; each training method's settings are recorded under its name
    /// ([`Method::settings_json`]), so a resumed run must use the same.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        dataset: &str,
        split: &str,
        mode: Mode,
        items: &[Item],
        methods: &[Box<dyn Method>],
        probe: ProbeConfig,
        locality_questions: usize,
        model: &Path,
    ) -> Self {
        let settings: serde_json::Map<String, serde_json::Value> = methods
            .iter()
            .filter(|m| m.trains())
            .map(|m| (m.name().to_owned(), m.settings_json()))
            .collect();
        Self {
            dataset: dataset.into(),
            split: split.into(),
            mode,
            item_ids: items.iter().map(|i| i.id.clone()).collect(),
            methods: methods.iter().map(|m| m.name().to_owned()).collect(),
            probe,
            settings: settings.into(),
            locality_questions,
            model: model
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| model.display().to_string()),
        }
    }
}

/// The notes the methods wrote about their injections ([`Method::report`]), as Markdown sections: one per
/// training method, on its batch adapter, its last sequential step or its first single-mode item.
pub fn method_notes(
    out: &Path,
    methods: &[Box<dyn Method>],
    mode: Mode,
    items: usize,
) -> Result<String, EvalError> {
    let mut text = String::new();
    for m in methods.iter().filter(|m| m.trains()) {
        let Some(unit) = units(m.as_ref(), mode, items, 0).pop() else {
            continue;
        };
        let unit = match mode {
            Mode::Single => "item-000".to_owned(),
            _ => unit.name,
        };
        let dir = out.join("adapters").join(m.name()).join(&unit);
        let note = m.notes(&dir).map_err(|source| EvalError::Method {
            method: m.name().to_owned(),
            source: Box::new(source),
        })?;
        if let Some(note) = note {
            text.push_str(&format!(
                "\n## {} ({unit})\n\n{}\n",
                m.name(),
                note.trim_end()
            ));
        }
    }
    Ok(text)
}

/// Everything a run needs besides the model and the methods.
pub struct RunSpec {
    /// What is asked; written to `run.json`.
    pub manifest: RunManifest,
    /// The items, in the order of `manifest.item_ids`.
    pub items: Vec<Item>,
    /// The locality questions and texts; `None`: locality not measured.
    pub locality: Option<LocalitySet>,
    /// Adapters whose locality is measured per method (single mode trains one per item; measuring each
    /// would cost more than the training). Sequential mode measures the last step only.
    pub locality_units: usize,
    /// The run folder.
    pub out: PathBuf,
}

/// What the harness reports while it runs.
pub enum Progress<'a> {
    /// The run's size in questions to ask (counting every condition and re-asking).
    Planned {
        /// Questions in the whole run.
        questions: usize,
        /// Questions already answered by an earlier invocation.
        resumed: usize,
    },
    /// A method starts injecting for a unit.
    Injecting {
        /// The method's name.
        method: &'a str,
        /// The unit's name (an item id, `all` or `step-NNN`).
        unit: &'a str,
    },
    /// A training step of the current injection.
    Step(&'a StepMetrics),
    /// Questions asked.
    Asked {
        /// Questions just answered (one item's).
        questions: usize,
    },
    /// Locality is being measured.
    Locality {
        /// The method's name.
        method: &'a str,
        /// The unit's name.
        unit: &'a str,
    },
}

/// One unit of work: inject `items` (continuing from `previous_unit`), then ask `ask`.
struct Unit {
    name: String,
    step: Option<usize>,
    inject: Vec<usize>,
    previous: Option<String>,
    ask: Vec<usize>,
    locality: bool,
}

fn units(method: &dyn Method, mode: Mode, n: usize, locality_units: usize) -> Vec<Unit> {
    let all: Vec<usize> = (0..n).collect();
    if !method.trains() {
        return vec![Unit {
            name: "-".into(),
            step: None,
            inject: all.clone(),
            previous: None,
            ask: all,
            locality: false,
        }];
    }
    match mode {
        Mode::Batch => vec![Unit {
            name: "all".into(),
            step: None,
            inject: all.clone(),
            previous: None,
            ask: all,
            locality: locality_units > 0,
        }],
        Mode::Single => (0..n)
            .map(|i| Unit {
                name: format!("item-{i:03}"),
                step: None,
                inject: vec![i],
                previous: None,
                ask: vec![i],
                locality: i < locality_units,
            })
            .collect(),
        Mode::Sequential => (0..n)
            .map(|i| Unit {
                name: format!("step-{:03}", i + 1),
                step: Some(i + 1),
                inject: vec![i],
                previous: (i > 0).then(|| format!("step-{i:03}")),
                ask: (0..=i).collect(),
                locality: i + 1 == n && locality_units > 0,
            })
            .collect(),
    }
}

/// One row per question per condition, inside the run folder.
pub const RESULTS_FILE: &str = "results.jsonl";
/// One row per adapter whose locality was measured, inside the run folder.
pub const LOCALITY_FILE: &str = "locality.jsonl";
/// What the run asks (its [`RunManifest`]), inside the run folder.
pub const MANIFEST_FILE: &str = "run.json";
const LOCALITY_BASE_FILE: &str = "locality-base.json";
/// Seconds spent on the run so far, over every invocation (model loading excluded).
pub const ELAPSED_FILE: &str = "elapsed.json";

/// The seconds recorded in `OUT/elapsed.json` (0 for a new run).
pub fn elapsed_seconds(out: &Path) -> f64 {
    std::fs::read_to_string(out.join(ELAPSED_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v.get("seconds")?.as_f64())
        .unwrap_or(0.0)
}

fn record_elapsed(out: &Path, seconds: f64) -> Result<(), EvalError> {
    let path = out.join(ELAPSED_FILE);
    let text = serde_json::json!({ "seconds": seconds }).to_string();
    write_file_atomically(&path, text.as_bytes()).map_err(io(&path))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> EvalError + '_ {
    move |source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Reads a JSONL file of `T` rows; a missing file is empty. A line cut short by an interruption (the last
/// one, not ending in a newline) is dropped; any other bad line is an error naming it.
pub fn read_rows<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Vec<T>, EvalError> {
    jsonl::read_jsonl(path).map_err(rows_error)
}

fn rows_error(e: JsonlError) -> EvalError {
    match e {
        JsonlError::Io { path, source } => EvalError::Io { path, source },
        JsonlError::Parse {
            path,
            line,
            message,
        } => EvalError::Run {
            path,
            reason: format!("line {line}: {message}"),
        },
    }
}

fn write_rows<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), EvalError> {
    jsonl::write_jsonl(path, rows).map_err(rows_error)
}

fn append_rows<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), EvalError> {
    // One write per unit: an interruption leaves at most one partial line, which `read_rows` drops.
    jsonl::append_jsonl(path, rows).map_err(rows_error)
}

/// Runs (or resumes) the evaluation in `spec.out`. Returns every result row and locality row. The time spent
/// is added to `OUT/elapsed.json` after every unit ([`elapsed_seconds`] reads it).
pub fn run_eval(
    lm: &mut LoadedModel,
    methods: &[Box<dyn Method>],
    spec: &RunSpec,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Vec<ResultRow>, Vec<LocalityRow>), EvalError> {
    let out = &spec.out;
    std::fs::create_dir_all(out).map_err(io(out))?;
    check_manifest(out, &spec.manifest)?;
    let (started, before) = (std::time::Instant::now(), elapsed_seconds(out));
    let n = spec.items.len();

    // Keep only complete units from an earlier run of the same manifest.
    let results_path = out.join(RESULTS_FILE);
    let locality_path = out.join(LOCALITY_FILE);
    let mut rows: Vec<ResultRow> = read_rows(&results_path)?;
    let mut loc_rows: Vec<LocalityRow> = read_rows(&locality_path)?;
    let plan: Vec<(&dyn Method, Vec<Unit>)> = methods
        .iter()
        .map(|m| {
            let m = m.as_ref();
            (m, units(m, spec.manifest.mode, n, spec.locality_units))
        })
        .collect();
    let expected =
        |u: &Unit| -> usize { u.ask.iter().map(|&i| spec.items[i].questions.len()).sum() };
    let mut done: HashSet<(String, String)> = HashSet::new();
    for (m, us) in &plan {
        for u in us {
            let have = rows
                .iter()
                .filter(|r| r.condition == m.name() && r.unit == u.name)
                .count();
            let loc_ok = !u.locality
                || spec.locality.is_none()
                || loc_rows
                    .iter()
                    .any(|r| r.condition == m.name() && r.unit == u.name);
            if have == expected(u) && loc_ok {
                done.insert((m.name().to_owned(), u.name.clone()));
            }
        }
    }
    rows.retain(|r| done.contains(&(r.condition.clone(), r.unit.clone())));
    loc_rows.retain(|r| done.contains(&(r.condition.clone(), r.unit.clone())));
    write_rows(&results_path, &rows)?;
    write_rows(&locality_path, &loc_rows)?;

    let total: usize = plan
        .iter()
        .flat_map(|(_, us)| us.iter().map(expected))
        .sum();
    progress(Progress::Planned {
        questions: total,
        resumed: rows.len(),
    });

    let base_locality = match &spec.locality {
        Some(set) if plan.iter().any(|(_, us)| us.iter().any(|u| u.locality)) => {
            Some(baseline(lm, set, &spec.manifest.probe, out)?)
        }
        _ => None,
    };

    for (method, us) in &plan {
        let name = method.name();
        for u in us {
            if done.contains(&(name.to_owned(), u.name.clone())) {
                continue;
            }
            progress(Progress::Injecting {
                method: name,
                unit: &u.name,
            });
            let dir = out.join("adapters").join(name).join(&u.name);
            let previous = u
                .previous
                .as_ref()
                .map(|p| out.join("adapters").join(name).join(p));
            let inject: Vec<Item> = u.inject.iter().map(|&i| spec.items[i].clone()).collect();
            let injection = {
                let mut on_step = |m: &StepMetrics| progress(Progress::Step(m));
                let mut env = InjectEnv {
                    model: lm,
                    on_step: &mut on_step,
                };
                method
                    .inject(&mut env, &inject, previous.as_deref(), &dir)
                    .map_err(|source| EvalError::Method {
                        method: name.to_owned(),
                        source: Box::new(source),
                    })?
            };
            // A method must leave the base model bare; make sure before attaching the result.
            for a in lm.model.adapter_names() {
                lm.model.remove_adapter(&a)?;
            }
            let with_context = match &injection {
                Injection::Prompt { context } => *context,
                Injection::Adapter(path) => {
                    load_adapter(&mut lm.model, path, "eval")?;
                    false
                }
            };
            let outcome = ask_unit(
                lm,
                spec,
                u,
                name,
                with_context,
                base_locality.as_ref(),
                progress,
            );
            if matches!(injection, Injection::Adapter(_)) {
                lm.model.remove_adapter("eval")?;
            }
            let (new_rows, loc) = outcome?;
            append_rows(&results_path, &new_rows)?;
            rows.extend(new_rows);
            if let Some(l) = loc {
                append_rows(&locality_path, std::slice::from_ref(&l))?;
                loc_rows.push(l);
            }
            record_elapsed(out, before + started.elapsed().as_secs_f64())?;
        }
    }
    Ok((rows, loc_rows))
}

fn ask_unit(
    lm: &LoadedModel,
    spec: &RunSpec,
    u: &Unit,
    condition: &str,
    with_context: bool,
    base_locality: Option<&LocalityBaseline>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<(Vec<ResultRow>, Option<LocalityRow>), EvalError> {
    let asker = Asker {
        model: &lm.model,
        tokenizer: &lm.tokenizer,
        template: &lm.chat_template,
    };
    let mut rows = Vec::new();
    // Ask item by item so the progress bar moves; each item's questions are one batch.
    for &i in &u.ask {
        let item = &spec.items[i];
        let pairs: Vec<_> = item.questions.iter().map(|q| (item, q)).collect();
        let scores = probe_questions(asker, &pairs, with_context, &spec.manifest.probe)?;
        for (k, (q, s)) in item.questions.iter().zip(scores).enumerate() {
            rows.push(ResultRow {
                condition: condition.to_owned(),
                unit: u.name.clone(),
                step: u.step,
                item_id: item.id.clone(),
                domain: item.domain.clone(),
                kind: q.kind,
                question_index: k,
                question: q.question.clone(),
                answer: q.answer.clone(),
                scores: s,
            });
        }
        progress(Progress::Asked {
            questions: item.questions.len(),
        });
    }
    let loc = match (&spec.locality, base_locality) {
        (Some(set), Some(base)) if u.locality => {
            progress(Progress::Locality {
                method: condition,
                unit: &u.name,
            });
            Some(LocalityRow {
                condition: condition.to_owned(),
                unit: u.name.clone(),
                step: u.step,
                scores: locality_scores(asker, set, base, spec.manifest.probe.max_new_tokens)?,
            })
        }
        _ => None,
    };
    Ok((rows, loc))
}

/// The base model's locality answers, cached in the run folder.
fn baseline(
    lm: &LoadedModel,
    set: &LocalitySet,
    probe: &ProbeConfig,
    out: &Path,
) -> Result<LocalityBaseline, EvalError> {
    let path = out.join(LOCALITY_BASE_FILE);
    if let Ok(text) = std::fs::read_to_string(&path)
        && let Ok(b) = serde_json::from_str::<LocalityBaseline>(&text)
        && b.answers.len() == set.questions.len()
    {
        return Ok(b);
    }
    let asker = Asker {
        model: &lm.model,
        tokenizer: &lm.tokenizer,
        template: &lm.chat_template,
    };
    let b = locality_baseline(asker, set, probe.max_new_tokens)?;
    let text = serde_json::to_string_pretty(&b).expect("baseline serializes");
    write_file_atomically(&path, text.as_bytes()).map_err(io(&path))?;
    Ok(b)
}

/// Writes `run.json`, or checks that the one there describes the same run.
fn check_manifest(out: &Path, manifest: &RunManifest) -> Result<(), EvalError> {
    let path = out.join(MANIFEST_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => {
            let old: RunManifest = serde_json::from_str(&text).map_err(|e| EvalError::Run {
                path: path.clone(),
                reason: format!("not a run manifest ({e}); use a new --out folder"),
            })?;
            if &old != manifest {
                let a = serde_json::to_value(&old).expect("manifest serializes");
                let b = serde_json::to_value(manifest).expect("manifest serializes");
                let differs: Vec<String> = match (a, b) {
                    (serde_json::Value::Object(a), serde_json::Value::Object(b)) => a
                        .iter()
                        .filter(|(k, v)| b.get(*k) != Some(*v))
                        .map(|(k, _)| k.clone())
                        .collect(),
                    _ => vec![],
                };
                return Err(EvalError::Run {
                    path,
                    reason: format!(
                        "this folder holds another run (differs in: {}); use a new --out folder to start one",
                        differs.join(", ")
                    ),
                });
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let text = serde_json::to_string_pretty(manifest).expect("manifest serializes");
            write_file_atomically(&path, text.as_bytes()).map_err(io(&path))
        }
        Err(e) => Err(io(&path)(e)),
    }
}

/// The items of `split` in a dataset (`all` for every item), at most `limit` of them, taken round-robin
/// over domains so a small limit still covers every domain.
pub fn select_items(items: &[Item], ids: Option<&[String]>, limit: Option<usize>) -> Vec<Item> {
    let chosen: Vec<&Item> = match ids {
        Some(ids) => {
            let set: HashSet<&str> = ids.iter().map(String::as_str).collect();
            items
                .iter()
                .filter(|i| set.contains(i.id.as_str()))
                .collect()
        }
        None => items.iter().collect(),
    };
    let Some(limit) = limit else {
        return chosen.into_iter().cloned().collect();
    };
    let mut by_domain: BTreeMap<&str, Vec<&Item>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for i in &chosen {
        if !by_domain.contains_key(i.domain.as_str()) {
            order.push(&i.domain);
        }
        by_domain.entry(&i.domain).or_default().push(i);
    }
    let mut out = Vec::new();
    let mut round = 0;
    while out.len() < limit.min(chosen.len()) {
        for d in &order {
            if let Some(i) = by_domain[d].get(round)
                && out.len() < limit
            {
                out.push((*i).clone());
            }
        }
        round += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_inject::{FineTune, FineTuneSettings, Prompted};

    fn item(id: &str, domain: &str) -> Item {
        Item {
            id: id.into(),
            domain: domain.into(),
            context: "c".into(),
            questions: vec![],
        }
    }

    #[test]
    fn units_per_mode() {
        let ft = FineTune::naive(FineTuneSettings::default());
        let names = |m: &dyn Method, mode| {
            units(m, mode, 3, 1)
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        u.ask.clone(),
                        u.previous.clone(),
                        u.locality,
                    )
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(&Prompted::BASE, Mode::Sequential),
            vec![("-".into(), vec![0, 1, 2], None, false)],
            "a method that trains nothing is asked once"
        );
        assert_eq!(
            names(&ft, Mode::Single),
            vec![
                ("item-000".into(), vec![0], None, true),
                ("item-001".into(), vec![1], None, false),
                ("item-002".into(), vec![2], None, false),
            ]
        );
        assert_eq!(
            names(&ft, Mode::Sequential),
            vec![
                ("step-001".into(), vec![0], None, false),
                (
                    "step-002".into(),
                    vec![0, 1],
                    Some("step-001".into()),
                    false
                ),
                (
                    "step-003".into(),
                    vec![0, 1, 2],
                    Some("step-002".into()),
                    true
                ),
            ],
            "every earlier item is asked again; locality after the last step"
        );
        assert_eq!(names(&ft, Mode::Batch).len(), 1);
    }

    #[test]
    fn limit_takes_domains_round_robin() {
        let items = vec![
            item("a1", "a"),
            item("a2", "a"),
            item("a3", "a"),
            item("b1", "b"),
            item("c1", "c"),
        ];
        let ids = |v: Vec<Item>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            ids(select_items(&items, None, Some(4))),
            ["a1", "b1", "c1", "a2"]
        );
        assert_eq!(ids(select_items(&items, None, Some(99))).len(), 5);
        let split = vec!["a3".to_string(), "c1".to_string()];
        assert_eq!(ids(select_items(&items, Some(&split), None)), ["a3", "c1"]);
    }

    #[test]
    fn rows_survive_a_cut_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.jsonl");
        std::fs::write(&p, "{\"a\":1}\n{\"a\":2}\n{\"a\":").unwrap();
        let rows: Vec<serde_json::Value> = read_rows(&p).unwrap();
        assert_eq!(rows.len(), 2, "the partial line is dropped");
        std::fs::write(&p, "{\"a\":1}\nnot json\n").unwrap();
        let err = read_rows::<serde_json::Value>(&p).unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(
            read_rows::<serde_json::Value>(&dir.path().join("none"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn mode_parses_and_names_the_bad_value() {
        assert_eq!("batch".parse::<Mode>().unwrap(), Mode::Batch);
        let e = "parallel".parse::<Mode>().unwrap_err().to_string();
        assert!(e.contains("parallel") && e.contains("sequential"), "{e}");
    }
}
