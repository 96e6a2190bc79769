//! `self-distill`: on-policy context distillation (SDFT, Shenfeld et al. 2026; TRL's `SDFTTrainer`). The
//! student — the adapter, reading a question alone — answers the item's self-QA questions itself (a greedy
//! answer and a few samples); the teacher — the same weights with the adapter off, reading the item's context
//! before the question — scores the student's own tokens; the loss is the per-token divergence between the two
//! on those tokens only ([`Distill`] at `alpha`). Generation is repeated every round, so the student always
//! learns on answers it would give now.
//!
//! Why on-policy: the student learns to *start* its answers the way the teacher would, from where it actually
//! is, which is what moves the greedy answer (off-policy targets teach the teacher's path after tokens the
//! student would never produce); and targets close to the model's own distribution are what forgets least.
//!
//! The injection stops by itself: before each round after the first, the adapter's greedy answers to the
//! item's *text* questions (made from its sentences, never the evaluation's) are checked for their spans;
//! once `stop_at` of them contain it, no further round runs.

use std::path::{Path, PathBuf};
use std::time::Instant;

use engram_data::{BatchConfig, Batcher};
use engram_inject::{
    FineTuneSettings, InjectEnv, InjectError, Injection, Item, Method, MethodInfo, contains_answer,
    user_turn,
};
use engram_lora::Adapters;
use engram_model::formats::atomic::write_file_atomically;
use engram_model::formats::jsonl::{read_jsonl, to_jsonl};
use engram_replay::text::{clean_generation, text_questions_per_sentence};
use engram_replay::{
    Format, GenerationCache, Generator, ModelGenerator, ReplaySettings, Sampling, SelfQa, Source,
    replay_once,
};
use engram_tokenizer::Message;
use engram_train::guard::GuardReport;
use engram_train::sft::{Job, train_objective};
use engram_train::{Length, StepMetrics};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::DistillError;
use crate::kl::KlReduction;
use crate::objective::{Distill, DistillBatches};
use crate::target::{TargetKind, qa_targets, record_pairs, with_rehearsal_targets};
use crate::teacher::{TeacherConfig, prepare};

/// What a `self-distill` injection did, round by round, beside its adapter.
pub const SELF_DISTILL_FILE: &str = "self-distill.json";

/// How `self-distill` samples, scores and stops.
#[derive(Clone, Debug, PartialEq)]
pub struct OnPolicySettings {
    /// At most this many rounds of generate → score → train.
    pub rounds: usize,
    /// Sampled student answers per question and round, besides its greedy one.
    pub samples: usize,
    /// Temperature of those samples.
    pub temperature: f32,
    /// The divergence: 0 forward KL, 1 reverse KL, between them the generalised JSD.
    pub alpha: f32,
    /// Target sequences per item trained on in each round, per passage of a long text (the round's answers are
    /// repeated to it).
    pub examples_per_round: usize,
    /// Stop once this share of the item's text questions get a greedy answer that contains their span.
    pub stop_at: f64,
    /// Tokens per student answer.
    pub max_new_tokens: usize,
}

impl Default for OnPolicySettings {
    /// Up to 3 rounds of 24 target sequences per item (two rounds are the replay methods' 48), the greedy
    /// answer and 2 samples at T = 0.7 per question (at T = 1 the 135M model's samples were mostly
    /// invented stories), forward KL, stop at 90%.
    fn default() -> Self {
        Self {
            rounds: 3,
            samples: 2,
            temperature: 0.7,
            alpha: 0.0,
            examples_per_round: 24,
            stop_at: 0.9,
            max_new_tokens: 48,
        }
    }
}

impl OnPolicySettings {
    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), DistillError> {
        if self.rounds == 0 {
            return Err(DistillError::option(
                "distill-rounds",
                0,
                "must be at least 1",
            ));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(DistillError::option(
                "sample-temperature",
                self.temperature,
                "must be a positive number",
            ));
        }
        if !(self.alpha.is_finite() && (0.0..=1.0).contains(&self.alpha)) {
            return Err(DistillError::option(
                "distillation-alpha",
                self.alpha,
                "must be in [0, 1] (0 forward KL, 1 reverse KL, between them JSD)",
            ));
        }
        if self.examples_per_round == 0 {
            return Err(DistillError::option(
                "examples-per-round",
                0,
                "must be at least 1",
            ));
        }
        if !(self.stop_at.is_finite() && (0.0..=1.0).contains(&self.stop_at)) {
            return Err(DistillError::option(
                "stop-at",
                self.stop_at,
                "must be a share in [0, 1] (1: never stop early)",
            ));
        }
        if self.max_new_tokens == 0 {
            return Err(DistillError::option(
                "max-new-tokens",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The settings as JSON, for run manifests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "rounds": self.rounds,
            "samples": self.samples,
            "temperature": self.temperature,
            "alpha": self.alpha,
            "examples_per_round": self.examples_per_round,
            "stop_at": self.stop_at,
            "max_new_tokens": self.max_new_tokens,
        })
    }
}

/// One round: what the student answered, what it was trained on, what it cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Round {
    /// 0-based.
    pub round: usize,
    /// Share of the text questions whose greedy answer contained the span before this round trained.
    pub check: f64,
    /// Target sequences (student answers) made.
    pub targets: usize,
    /// Rehearsal rows mixed in (the locality guard).
    pub rehearsal: usize,
    /// Seconds of student generation.
    pub generation_s: f64,
    /// Seconds of the teacher's scoring pass.
    pub teacher_s: f64,
    /// Optimizer steps.
    pub steps: usize,
    /// Seconds of training.
    pub train_s: f64,
}

/// The whole injection's record ([`SELF_DISTILL_FILE`]).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SelfDistillReport {
    /// Questions the student answers (the self-QA questions).
    pub questions: usize,
    /// Text questions the stop check reads.
    pub check_questions: usize,
    /// The rounds that trained.
    pub rounds: Vec<Round>,
    /// The check when it stopped (after the last round trained, when the cap was reached: not measured).
    pub final_check: Option<f64>,
    /// Why it stopped.
    pub stopped: String,
}

impl SelfDistillReport {
    /// One line for reports.
    pub fn summary(&self) -> String {
        let steps: usize = self.rounds.iter().map(|r| r.steps).sum();
        let gen_s: f64 = self.rounds.iter().map(|r| r.generation_s).sum();
        let train_s: f64 = self.rounds.iter().map(|r| r.train_s + r.teacher_s).sum();
        let checks: Vec<String> = self
            .rounds
            .iter()
            .map(|r| format!("{:.0}%", 100.0 * r.check))
            .chain(self.final_check.map(|c| format!("{:.0}%", 100.0 * c)))
            .collect();
        format!(
            "on-policy rounds: {} ({}); {} steps, generation {:.0} s, scoring and training {:.0} s; text questions answered greedily: {}",
            self.rounds.len(),
            self.stopped,
            steps,
            gen_s,
            train_s,
            checks.join(" → ")
        )
    }
}

/// The item's questions for the student, and the text questions with spans for the stop check.
struct Questions {
    /// (item index, question, the self-QA record's answer: the model's own answer with the context in view,
    /// checked against the text, or the text's sentence).
    asked: Vec<(usize, String, String)>,
    /// (question, span).
    check: Vec<(String, String)>,
}

/// Everything `self-distill` needs to run.
struct OnPolicy<'a> {
    settings: &'a OnPolicySettings,
    top_k: Option<usize>,
    replay: &'a ReplaySettings,
    finetune: &'a FineTuneSettings,
    dataset: &'a [Source],
    cache: &'a GenerationCache,
}

const STUDENT: &str = "student";

impl Questions {
    /// The check questions the student is not asked anyway (their greedy answers are generated after the
    /// asked ones').
    fn unasked_checks(&self) -> impl Iterator<Item = &String> {
        self.check
            .iter()
            .map(|(q, _)| q)
            .filter(|q| !self.asked.iter().any(|(_, a, _)| a == *q))
    }
}

/// The greedy answer to each check question, in order, from the greedy answers to the asked questions
/// followed by those to [`Questions::unasked_checks`].
fn greedy_check(qs: &Questions, greedy: &[String]) -> Vec<String> {
    let mut extra = greedy[qs.asked.len()..].iter();
    qs.check
        .iter()
        .map(
            |(q, _)| match qs.asked.iter().position(|(_, a, _)| a == q) {
                Some(i) => greedy[i].clone(),
                None => extra.next().cloned().unwrap_or_default(),
            },
        )
        .collect()
}

impl OnPolicy<'_> {
    fn run(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<(), DistillError> {
        self.settings.validate()?;
        self.replay.validate()?;
        let s = self.settings;
        let r = self.replay;
        let records = replay_once(
            &*env.model,
            &SelfQa::new(r.n / 2, r.temperature, r.seed),
            &Format::default(),
            items,
            self.dataset,
            self.cache,
            out,
        )?;
        let mut qs = Questions {
            asked: Vec::new(),
            check: Vec::new(),
        };
        for (k, item) in items.iter().enumerate() {
            let mine: Vec<_> = records
                .iter()
                .filter(|rec| rec.provenance.source == item.id)
                .cloned()
                .collect();
            for (q, a) in record_pairs(&mine) {
                if !qs.asked.iter().any(|(j, known, _)| *j == k && *known == q) {
                    qs.asked.push((k, q, a));
                }
            }
            qs.check.extend(
                text_questions_per_sentence(&item.context, SelfQa::TEXT_QUESTIONS_PER_SENTENCE)
                    .into_iter()
                    .map(|t| (t.question, t.answer)),
            );
        }
        if qs.asked.is_empty() {
            return Err(DistillError::option(
                "targets",
                0,
                "self-QA made no question to answer",
            ));
        }
        let mut report = SelfDistillReport {
            questions: qs.asked.len(),
            check_questions: qs.check.len(),
            ..Default::default()
        };
        let rounds_dir = out.join("rounds");
        let mut student: Option<PathBuf> = previous.map(Path::to_path_buf);
        let mut metrics: Vec<StepMetrics> = Vec::new();
        let mut guard = GuardReport {
            share: self.finetune.guard.share,
            ..GuardReport::default()
        };
        for round in 0..s.rounds {
            let dir = rounds_dir.join(round.to_string());
            let record = dir.join(SELF_DISTILL_FILE);
            if let Some(done) = std::fs::read_to_string(&record)
                .ok()
                .and_then(|t| serde_json::from_str::<Round>(&t).ok())
                .filter(|_| dir.join(engram_lora::CONFIG_FILE).is_file())
            {
                report.rounds.push(done);
                metrics.extend(read_jsonl::<StepMetrics>(&dir.join("metrics.jsonl"))?);
                student = Some(dir);
                continue;
            }
            let start = Instant::now();
            let (greedy, sampled) = self.answer(env, student.as_deref(), &qs, round)?;
            let check = check_share(&qs.check, &greedy_check(&qs, &greedy));
            let generation_s = start.elapsed().as_secs_f64();
            // At 1 every round runs: the ablation without the stop.
            if round > 0 && s.stop_at < 1.0 && check >= s.stop_at {
                report.final_check = Some(check);
                report.stopped =
                    format!("stopped: {:.0}% ≥ {:.0}%", 100.0 * check, 100.0 * s.stop_at);
                break;
            }
            let mut targets = Vec::new();
            for (i, (k, q, anchor)) in qs.asked.iter().enumerate() {
                let item = &items[*k];
                // The checked answer read with the context anchors each round where the student's own
                // answers have not found the fact yet; the student's answers are the on-policy part.
                let answers: Vec<(String, String)> = [anchor, &greedy[i]]
                    .into_iter()
                    .chain(&sampled[i * s.samples..(i + 1) * s.samples])
                    .filter(|a| !a.trim().is_empty())
                    .map(|a| (q.clone(), a.clone()))
                    .collect();
                targets.extend(qa_targets(&item.id, &item.context, &answers));
            }
            let task = targets.len();
            let want = s.examples_per_round * engram_replay::text::budget_units(items);
            let epochs = want.div_ceil(task.max(1)).clamp(1, 100);
            let g = &self.finetune.guard;
            let (passes, length) = g.passes(Length::Epochs(epochs));
            let (targets, added) = with_rehearsal_targets(
                &*env.model,
                g,
                targets,
                task * passes,
                r.seed ^ round as u64,
            )?;
            guard.pool = added.pool;
            guard.pool_seconds += added.pool_seconds;
            guard.task_rows += added.task_rows;
            guard.rehearsal_rows += added.rehearsal_rows;
            std::fs::create_dir_all(&dir).map_err(|source| DistillError::Io {
                path: dir.clone(),
                source,
            })?;
            let jsonl = to_jsonl(&targets);
            let path = dir.join(crate::method::TARGETS_FILE);
            write_file_atomically(&path, jsonl.as_bytes())
                .map_err(|source| DistillError::Io { path, source })?;
            let lm = &*env.model;
            let prepared = prepare(
                lm,
                &targets,
                &TeacherConfig {
                    temperature: 1.0,
                    top_k: self.top_k,
                    max_len: self.finetune.batching.max_len,
                    batch_size: 4,
                },
            )?;
            let (students, teachers) =
                prepared.spread(|i| targets[i].kind != TargetKind::Rehearsal, passes);
            let batcher = Batcher::new(
                students,
                BatchConfig {
                    batch_size: self.finetune.batching.batch_size,
                    max_len: self.finetune.batching.max_len,
                    packing: false,
                    seed: r.seed ^ round as u64,
                    pad_id: lm.tokenizer.padding_id(),
                },
            )?;
            let data_id = format!(
                "sha256:{:x} ({} targets), on-policy round {round}, {}",
                Sha256::digest(jsonl.as_bytes()),
                targets.len(),
                s.to_json()
            );
            let source = DistillBatches {
                batcher: &batcher,
                teacher: &teachers,
                device: lm.model.device(),
            };
            let objective = Distill {
                temperature: 1.0,
                reduction: KlReduction::PerToken,
                alpha: s.alpha,
            };
            let settings = self.finetune.with_length(length);
            let t0 = Instant::now();
            let job = Job::in_folder(&dir, student.as_deref(), data_id);
            let mut round_metrics = Vec::new();
            let summary = train_objective(
                env.model,
                &settings,
                job,
                &objective,
                &source,
                &mut |m: &StepMetrics| {
                    round_metrics.push(m.clone());
                    (env.on_step)(m)
                },
            )?;
            let done = Round {
                round,
                check,
                targets: task,
                rehearsal: added.rehearsal_rows,
                generation_s,
                teacher_s: prepared.teacher_seconds,
                steps: summary.steps,
                train_s: t0.elapsed().as_secs_f64(),
            };
            let json = serde_json::to_string_pretty(&done).expect("round serializes") + "\n";
            write_file_atomically(&record, json.as_bytes()).map_err(|source| DistillError::Io {
                path: record.clone(),
                source,
            })?;
            report.rounds.push(done);
            metrics.extend(read_jsonl::<StepMetrics>(&dir.join("metrics.jsonl"))?);
            student = Some(dir);
        }
        if report.stopped.is_empty() {
            report.stopped = format!("the cap of {} rounds", s.rounds);
        }
        let last = student
            .filter(|d| d.starts_with(&rounds_dir))
            .ok_or_else(|| DistillError::option("distill-rounds", s.rounds, "no round trained"))?;
        self.finish(out, &last, &metrics, &report, &guard)
    }

    /// The student's greedy answers (to the asked questions, then the check questions) and its samples (`samples`
    /// per asked question, question-major), with the adapter in `student` on (none: the base model).
    fn answer(
        &self,
        env: &mut InjectEnv<'_>,
        student: Option<&Path>,
        qs: &Questions,
        round: usize,
    ) -> Result<(Vec<String>, Vec<String>), DistillError> {
        let s = self.settings;
        if let Some(dir) = student {
            engram_lora::load_adapter(&mut env.model.model, dir, STUDENT)?;
        }
        let result = (|| {
            let mut generator = ModelGenerator::new(&*env.model);
            let prompt = |q: &String| vec![Message::user(user_turn(None, q))];
            let greedy_prompts: Vec<Vec<Message>> = qs
                .asked
                .iter()
                .map(|(_, q, _)| q)
                .chain(qs.unasked_checks())
                .map(prompt)
                .collect();
            let first_line = Sampling {
                stop: vec!["\n".into()],
                ..Sampling::greedy(s.max_new_tokens)
            };
            let greedy = generator.complete(&greedy_prompts, &first_line)?;
            let sampled = if s.samples > 0 {
                let asked: Vec<Vec<Message>> = qs.asked.iter().map(|(_, q, _)| prompt(q)).collect();
                generator.complete(
                    &asked,
                    &Sampling {
                        temperature: s.temperature,
                        n: s.samples,
                        seed: self.replay.seed ^ (round as u64).wrapping_mul(0x9E37_79B9),
                        ..first_line.clone()
                    },
                )?
            } else {
                Vec::new()
            };
            let clean = |c: &engram_replay::Completion| clean_generation(&c.text, 2, c.finished);
            Ok::<_, DistillError>((
                greedy.iter().map(clean).collect(),
                sampled.iter().map(clean).collect(),
            ))
        })();
        if student.is_some() {
            env.model.model.remove_adapter(STUDENT)?;
        }
        result
    }

    /// Copies the last round's adapter into `out`, with every round's metrics (steps numbered through) and the
    /// reports.
    fn finish(
        &self,
        out: &Path,
        last: &Path,
        metrics: &[StepMetrics],
        report: &SelfDistillReport,
        guard: &GuardReport,
    ) -> Result<(), DistillError> {
        let io = |path: PathBuf| move |source| DistillError::Io { path, source };
        let total: usize = metrics.len();
        let lines: Vec<StepMetrics> = metrics
            .iter()
            .enumerate()
            .map(|(i, m)| StepMetrics {
                step: i + 1,
                total_steps: total,
                ..m.clone()
            })
            .collect();
        let path = out.join("metrics.jsonl");
        write_file_atomically(&path, to_jsonl(&lines).as_bytes()).map_err(io(path.clone()))?;
        let path = out.join(SELF_DISTILL_FILE);
        let json = serde_json::to_string_pretty(report).expect("report serializes") + "\n";
        write_file_atomically(&path, json.as_bytes()).map_err(io(path.clone()))?;
        guard.write(out)?;
        // The config last: it marks the injection finished.
        for file in [engram_lora::WEIGHTS_FILE, engram_lora::CONFIG_FILE] {
            let from = last.join(file);
            let bytes = std::fs::read(&from).map_err(io(from.clone()))?;
            let to = out.join(file);
            write_file_atomically(&to, &bytes).map_err(io(to.clone()))?;
        }
        Ok(())
    }
}

/// `self-distill` as an injection [`Method`].
pub struct SelfDistill {
    /// Its entry (`self-distill`).
    pub info: &'static MethodInfo,
    /// Sampling, divergence, rounds and stop.
    pub settings: OnPolicySettings,
    /// Teacher tokens kept per position (`None`: the whole vocabulary).
    pub top_k: Option<usize>,
    /// Self-QA generation (n, temperature, seed), shared with the replay methods.
    pub replay: ReplaySettings,
    /// LoRA, optimiser, batches and the locality guard (the length is set per round).
    pub finetune: FineTuneSettings,
    /// Every source of the dataset.
    pub dataset: Vec<Source>,
    /// Shared with the replay methods: the self-QA generations are made once.
    pub cache: GenerationCache,
}

impl Method for SelfDistill {
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
        if !self.finished(out) {
            OnPolicy {
                settings: &self.settings,
                top_k: self.top_k,
                replay: &self.replay,
                finetune: &self.finetune,
                dataset: &self.dataset,
                cache: &self.cache,
            }
            .run(env, items, previous, out)?;
        }
        Ok(Injection::Adapter(out.to_path_buf()))
    }
    fn settings_json(&self) -> serde_json::Value {
        serde_json::json!({
            "finetune": self.finetune.to_json(),
            "replay": self.replay.to_json(),
            "on_policy": self.settings.to_json(),
            "top_k": self.top_k,
        })
    }
    fn report(&self, out: &Path) -> Result<Option<String>, InjectError> {
        Ok(read_report(out).map(|r| r.summary()))
    }
}

/// Share of `check` questions whose answer (in the same order) contains the span.
fn check_share(check: &[(String, String)], answers: &[String]) -> f64 {
    if check.is_empty() {
        return 0.0;
    }
    let hits = check
        .iter()
        .zip(answers)
        .filter(|((_, span), a)| contains_answer(a, span))
        .count();
    hits as f64 / check.len() as f64
}

/// Reads a `self-distill` injection's record, if it wrote one.
pub fn read_report(out: &Path) -> Option<SelfDistillReport> {
    serde_json::from_str(&std::fs::read_to_string(out.join(SELF_DISTILL_FILE)).ok()?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_check_reads_spans_in_the_answers() {
        let check = vec![
            ("Who defined it?".to_owned(), "Tavi Renkova".to_owned()),
            ("What year?".to_owned(), "2031".to_owned()),
        ];
        let answers = vec![
            "It was defined by Tavi Renkova.".to_owned(),
            "In 2030.".to_owned(),
        ];
        assert_eq!(check_share(&check, &answers), 0.5);
        assert_eq!(check_share(&[], &answers), 0.0);
    }

    #[test]
    fn settings_out_of_range_name_the_option() {
        let bad = [
            OnPolicySettings {
                rounds: 0,
                ..Default::default()
            },
            OnPolicySettings {
                alpha: 1.5,
                ..Default::default()
            },
            OnPolicySettings {
                stop_at: f64::NAN,
                ..Default::default()
            },
            OnPolicySettings {
                temperature: 0.0,
                ..Default::default()
            },
        ];
        let names = [
            "distill-rounds",
            "distillation-alpha",
            "stop-at",
            "sample-temperature",
        ];
        for (s, name) in bad.iter().zip(names) {
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
        assert!(OnPolicySettings::default().validate().is_ok());
    }
}
