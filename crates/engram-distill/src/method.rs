//! `self-param` as an injection [`Method`]: self-QA records from the replay crate, context continuations and
//! regulariser text become targets; the base model reading the context is the teacher; a LoRA adapter is
//! trained by KL distillation, through the same training engine and adapter files as every other method.

use std::collections::BTreeMap;
use std::path::Path;

use engram_data::{BatchConfig, Batcher};
use engram_inject::{
    Family, FamilyKind, FineTuneSettings, InjectEnv, InjectError, Injection, Item, Method,
    MethodInfo, Recipe, Registry, user_turn,
};
use engram_model::formats::atomic::write_file_atomically;
use engram_replay::text::clean_generation;
use engram_replay::{
    Cached, Format, GenerationCache, Generator, ModelGenerator, ReplaySettings, Sampling, SelfQa,
    Source, replay_once,
};
use engram_tokenizer::Message;
use engram_train::sft::{Job, train_objective};
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DistillError;
use crate::kl::KlReduction;
use crate::objective::{Distill, DistillBatches};
use crate::on_policy::{OnPolicySettings, SelfDistill};
use crate::target::{
    Target, TargetKind, continuation_targets, qa_targets, read_targets, record_pairs,
    regulariser_targets, targets_jsonl, with_rehearsal_targets,
};
use crate::teacher::{TeacherConfig, prepare};

/// The targets of an injection, beside its adapter.
pub const TARGETS_FILE: &str = "targets.jsonl";
/// What the distillation prepared and cost ([`DistillReport`]).
pub const DISTILL_REPORT_FILE: &str = "distill.json";

/// Whose answers the QA targets carry. The KL is taken on the answer tokens, so the answer decides which
/// path through the teacher's distributions the student learns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QaAnswers {
    /// The teacher's own greedy answer to each self-QA question, read with the context: the student learns to
    /// say what the model says with the text in view (the ICL behaviour SELF-PARAM distils). Measured better
    /// than `Replay` here: with the replay's short span answers the student matched the teacher's
    /// distribution after an answer it would not itself give, and kept answering in its own long form.
    Teacher,
    /// The self-QA records' answers as they are (quality-checked model answers or text spans).
    Replay,
}

impl QaAnswers {
    /// `teacher` or `replay`.
    pub fn parse(s: &str) -> Result<Self, DistillError> {
        match s {
            "teacher" => Ok(Self::Teacher),
            "replay" => Ok(Self::Replay),
            other => Err(DistillError::option(
                "qa-answers",
                other,
                "expected teacher or replay",
            )),
        }
    }

    /// The name [`QaAnswers::parse`] reads.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Teacher => "teacher",
            Self::Replay => "replay",
        }
    }
}

/// The teacher's greedy answers (up to two sentences) to `questions`, read after `context`.
pub fn teacher_answers(
    generator: &mut dyn Generator,
    context: &str,
    questions: &[String],
) -> Result<Vec<String>, DistillError> {
    let prompts: Vec<Vec<Message>> = questions
        .iter()
        .map(|q| vec![Message::user(user_turn(Some(context), q))])
        .collect();
    let completions = generator.complete(&prompts, &Sampling::greedy(48))?;
    Ok(completions
        .iter()
        .map(|c| clean_generation(&c.text, 2, c.finished))
        .collect())
}

/// How `self-param` builds its targets (its self-QA generation and training budget are the replay methods'
/// [`ReplaySettings`], its LoRA and optimiser the registry's [`FineTuneSettings`]).
#[derive(Clone, Debug, PartialEq)]
pub struct DistillSettings {
    /// Context continuations per item.
    pub continuations: usize,
    /// Regulariser windows per item, and their length in words.
    pub regulariser: usize,
    /// Length of each regulariser window, in words.
    pub regulariser_words: usize,
    /// Whether the teacher reads the context before the regulariser text (SELF-PARAM's default).
    pub regulariser_with_context: bool,
    /// The unrelated texts the regulariser windows come from.
    pub regulariser_texts: Vec<String>,
    /// In sequential mode, QA targets of earlier injections carried into each later one (0: none).
    pub replay_previous: usize,
    /// Whose answers the QA targets carry.
    pub qa_answers: QaAnswers,
    /// Distillation temperature `T` (> 0).
    pub temperature: f32,
    /// Teacher tokens kept per position (`None`: the whole vocabulary).
    pub top_k: Option<usize>,
    /// How per-token KL values become one loss.
    pub reduction: KlReduction,
    /// `self-distill`'s sampling, divergence, rounds and stop.
    pub on_policy: OnPolicySettings,
}

impl Default for DistillSettings {
    /// 8 continuations and 4 regulariser windows of 48 words per item next to its self-QA pairs; T = 1,
    /// top-64, per-token reduction (measured: see `docs/results.md`); 16 earlier QA targets replayed in
    /// sequential mode.
    fn default() -> Self {
        Self {
            continuations: 8,
            regulariser: 4,
            regulariser_words: 48,
            regulariser_with_context: true,
            regulariser_texts: Vec::new(),
            replay_previous: 16,
            qa_answers: QaAnswers::Teacher,
            temperature: 1.0,
            top_k: Some(64),
            reduction: KlReduction::default(),
            on_policy: OnPolicySettings::default(),
        }
    }
}

impl DistillSettings {
    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), DistillError> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(DistillError::option(
                "kl-temperature",
                self.temperature,
                "must be a positive number",
            ));
        }
        if self.top_k == Some(0) {
            return Err(DistillError::option(
                "kl-top-k",
                0,
                "must be at least 1, or `full`",
            ));
        }
        if self.regulariser > 0 && self.regulariser_words == 0 {
            return Err(DistillError::option(
                "regulariser-words",
                0,
                "must be at least 1",
            ));
        }
        self.on_policy.validate()
    }

    /// The settings as JSON, for run manifests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "continuations": self.continuations,
            "regulariser": self.regulariser,
            "regulariser_words": self.regulariser_words,
            "regulariser_with_context": self.regulariser_with_context,
            "regulariser_texts": self.regulariser_texts.len(),
            "replay_previous": self.replay_previous,
            "qa_answers": self.qa_answers.as_str(),
            "temperature": self.temperature,
            "top_k": self.top_k,
            "reduction": self.reduction.as_str(),
            "on_policy": self.on_policy.to_json(),
        })
    }
}

/// What an injection distilled and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct DistillReport {
    /// Target sequences per kind (`qa`, `continuation`, `regulariser`, and `qa-previous` in sequential mode).
    pub targets: BTreeMap<String, usize>,
    /// Targets with no token shared by both readers.
    pub dropped: usize,
    /// Teacher distributions cached (one per student target token).
    pub target_tokens: usize,
    /// Memory of the cached distributions, in bytes.
    pub cache_bytes: usize,
    /// Wall time of the teacher's forward passes, in seconds.
    pub teacher_seconds: f64,
    /// Passes over the target sequences.
    pub epochs: usize,
}

/// SELF-PARAM (Wang et al., ICLR 2025).
pub struct SelfParam {
    /// Its entry (`self-param`).
    pub info: &'static MethodInfo,
    /// How targets are built.
    pub settings: DistillSettings,
    /// Self-QA generation (n, temperature, seed) and the training budget (`examples_per_item`: target
    /// sequences seen per item, so compute matches the replay methods).
    pub replay: ReplaySettings,
    /// LoRA, optimiser and batches (the length is set from the budget).
    pub finetune: FineTuneSettings,
    /// Every source of the dataset (unused by self-QA, kept for the replay seam).
    pub dataset: Vec<Source>,
    /// Shared with the replay methods of the same registry: the self-QA generations are made once.
    pub cache: GenerationCache,
}

impl SelfParam {
    /// Builds every target of `items` (QA from the replayed `records`, answered as `qa_answers` says), plus
    /// earlier QA targets from `previous`.
    fn targets(
        &self,
        generator: &mut dyn Generator,
        items: &[Item],
        records: &[engram_replay::Record],
        previous: Option<&Path>,
    ) -> Result<Vec<Target>, DistillError> {
        let s = &self.settings;
        let mut targets = Vec::new();
        for (k, item) in items.iter().enumerate() {
            let mine: Vec<_> = records
                .iter()
                .filter(|r| r.provenance.source == item.id)
                .cloned()
                .collect();
            let mut pairs = record_pairs(&mine);
            if s.qa_answers == QaAnswers::Teacher {
                let questions: Vec<String> = pairs.iter().map(|(q, _)| q.clone()).collect();
                let answers = teacher_answers(generator, &item.context, &questions)?;
                pairs = questions
                    .into_iter()
                    .zip(answers)
                    .filter(|(_, a)| !a.trim().is_empty())
                    .collect();
            }
            let seed = self.replay.seed ^ (k as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            targets.extend(qa_targets(&item.id, &item.context, &pairs));
            targets.extend(continuation_targets(
                &item.id,
                &item.context,
                s.continuations,
                6,
                seed,
            ));
            targets.extend(regulariser_targets(
                &item.id,
                &item.context,
                &s.regulariser_texts,
                s.regulariser,
                s.regulariser_words,
                s.regulariser_with_context,
                seed ^ 1,
            ));
        }
        if let Some(dir) = previous.filter(|_| s.replay_previous > 0) {
            let path = dir.join(TARGETS_FILE);
            if path.is_file() {
                let mut earlier: Vec<Target> = read_targets(&path)?
                    .into_iter()
                    .filter(|t| t.kind == TargetKind::Qa)
                    .collect();
                earlier.shuffle(&mut StdRng::seed_from_u64(self.replay.seed ^ 0x5eed));
                earlier.truncate(s.replay_previous);
                targets.extend(earlier);
            }
        }
        Ok(targets)
    }

    fn run(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, DistillError> {
        self.settings.validate()?;
        self.replay.validate()?;
        let s = &self.settings;
        let r = &self.replay;
        let protocol = SelfQa::new(r.n / 2, r.temperature, r.seed);
        let records = replay_once(
            &*env.model,
            &protocol,
            &Format::default(),
            items,
            &self.dataset,
            &self.cache,
            out,
        )?;
        let mut model = ModelGenerator::new(&*env.model);
        let mut generator = Cached {
            inner: &mut model,
            cache: self.cache.clone(),
        };
        let task = self.targets(&mut generator, items, &records, previous)?;
        let units = engram_replay::text::budget_units(items);
        let guard = &self.finetune.guard;
        // Drawn for every pass the run will make over the task targets (known exactly after the teacher pass).
        let (passes, _) = guard.passes(
            self.finetune
                .for_epochs(r.epochs(task.len(), units))
                .train
                .length,
        );
        let seen = task.len() * passes;
        let (fresh, guarded) = with_rehearsal_targets(&*env.model, guard, task, seen, r.seed)?;
        guarded.write(out)?;
        let current: std::collections::BTreeSet<&str> =
            items.iter().map(|i| i.id.as_str()).collect();
        let path = out.join(TARGETS_FILE);
        let jsonl = targets_jsonl(&fresh);
        write_file_atomically(&path, jsonl.as_bytes()).map_err(|source| DistillError::Io {
            path: path.clone(),
            source,
        })?;

        let lm = &*env.model;
        let prepared = prepare(
            lm,
            &fresh,
            &TeacherConfig {
                temperature: s.temperature,
                top_k: s.top_k,
                max_len: self.finetune.batching.max_len,
                batch_size: 4,
            },
        )?;
        // The budget counts the method's own targets; the guard's rows come on top.
        let task = prepared
            .kept
            .iter()
            .filter(|&&i| fresh[i].kind != TargetKind::Rehearsal)
            .count();
        let epochs = r.epochs(task, units);
        let mut report = DistillReport {
            dropped: prepared.dropped,
            target_tokens: prepared.target_tokens,
            cache_bytes: prepared.cache_bytes,
            teacher_seconds: prepared.teacher_seconds,
            epochs,
            ..Default::default()
        };
        for &i in &prepared.kept {
            let t = &fresh[i];
            let kind = if t.kind == TargetKind::Qa && !current.contains(t.source.as_str()) {
                "qa-previous".to_owned()
            } else {
                t.kind.as_str().to_owned()
            };
            *report.targets.entry(kind).or_default() += 1;
        }
        let rep = out.join(DISTILL_REPORT_FILE);
        let json = serde_json::to_string_pretty(&report).expect("report serializes") + "\n";
        write_file_atomically(&rep, json.as_bytes()).map_err(|source| DistillError::Io {
            path: rep.clone(),
            source,
        })?;

        let settings = self.finetune.for_epochs(epochs);
        let (passes, length) = guard.passes(settings.train.length);
        let settings = settings.with_length(length);
        let (students, teachers) =
            prepared.spread(|i| fresh[i].kind != TargetKind::Rehearsal, passes);
        let batcher = Batcher::new(
            students,
            BatchConfig {
                batch_size: self.finetune.batching.batch_size,
                max_len: self.finetune.batching.max_len,
                packing: false,
                seed: r.seed,
                pad_id: lm.tokenizer.padding_id(),
            },
        )?;
        let data_id = format!(
            "sha256:{:x} ({} targets), {}, previous {:?}",
            Sha256::digest(jsonl.as_bytes()),
            fresh.len(),
            serde_json::json!({
                "temperature": s.temperature,
                "top_k": s.top_k,
                "reduction": s.reduction.as_str()
            }),
            previous
        );
        let source = DistillBatches {
            batcher: &batcher,
            teacher: &teachers,
            device: lm.model.device(),
        };
        let objective = Distill {
            temperature: s.temperature,
            reduction: s.reduction,
            alpha: 0.0,
        };
        let job = Job::in_folder(out, previous, data_id);
        train_objective(env.model, &settings, job, &objective, &source, env.on_step)?;
        Ok(Injection::Adapter(out.to_path_buf()))
    }
}

impl Method for SelfParam {
    fn info(&self) -> &MethodInfo {
        self.info
    }
    fn inject(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, InjectError> {
        if self.finished(out) {
            return Ok(Injection::Adapter(out.to_path_buf()));
        }
        Ok(self.run(env, items, previous, out)?)
    }
    fn settings_json(&self) -> serde_json::Value {
        serde_json::json!({
            "finetune": self.finetune.to_json(),
            "replay": self.replay.to_json(),
            "distill": self.settings.to_json(),
        })
    }
    fn report(&self, out: &Path) -> Result<Option<String>, InjectError> {
        let path = out.join(DISTILL_REPORT_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(None);
        };
        let r: DistillReport = serde_json::from_str(&text).map_err(|e| InjectError::Dataset {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Ok(Some(r.summary()))
    }
}

impl DistillReport {
    /// One line: the targets per kind, the teacher cache and the epochs.
    pub fn summary(&self) -> String {
        let kinds: Vec<String> = self
            .targets
            .iter()
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        format!(
            "distillation targets: {} ({} target tokens, {} dropped); teacher cache {:.1} MB in {:.1} s; {} epochs",
            kinds.join(", "),
            self.target_tokens,
            self.dropped,
            self.cache_bytes as f64 / 1e6,
            self.teacher_seconds,
            self.epochs
        )
    }
}

/// The distillation family: builds `self-param` and `self-distill` for the registry.
#[derive(Clone)]
pub struct SelfParams {
    /// How targets are built.
    pub settings: DistillSettings,
    /// Self-QA generation and the training budget, shared with the replay methods.
    pub replay: ReplaySettings,
    /// Every source of the dataset.
    pub dataset: Vec<Source>,
    /// Shared with the replay methods: the self-QA generations are made once.
    pub cache: GenerationCache,
}

impl SelfParams {
    /// The family for a dataset's items, generating through `cache` (share it with the replay family).
    pub fn new(
        settings: DistillSettings,
        replay: ReplaySettings,
        dataset: &[Item],
        cache: &GenerationCache,
    ) -> Self {
        Self {
            settings,
            replay,
            dataset: dataset.iter().map(Source::from).collect(),
            cache: cache.clone(),
        }
    }
}

impl Family for SelfParams {
    fn kind(&self) -> FamilyKind {
        FamilyKind::Distill
    }
    fn build(
        &self,
        info: &'static MethodInfo,
        finetune: &FineTuneSettings,
        _: &Registry,
    ) -> Result<Box<dyn Method>, InjectError> {
        self.settings.validate()?;
        if info.recipe == Recipe::SelfDistill {
            return Ok(Box::new(SelfDistill {
                info,
                settings: self.settings.on_policy.clone(),
                top_k: self.settings.top_k,
                replay: self.replay.clone(),
                finetune: finetune.clone(),
                dataset: self.dataset.clone(),
                cache: self.cache.clone(),
            }));
        }
        Ok(Box::new(SelfParam {
            info,
            settings: self.settings.clone(),
            replay: self.replay.clone(),
            finetune: finetune.clone(),
            dataset: self.dataset.clone(),
            cache: self.cache.clone(),
        }))
    }
}
