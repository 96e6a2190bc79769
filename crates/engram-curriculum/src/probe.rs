//! The knowledge probe: how well does the model know each fact, before and after training?
//!
//! After SliCK (Gekhman et al., 2024): each fact's question is asked under several few-shot prompts — each
//! built from `shots` other facts of the same dataset, chosen by a seed — once greedily per prompt and
//! `samples` times sampled at `temperature` (spread over the prompts). An answer is right when it contains
//! the fact's answer (normalised, whole words: a chat model answers "The capital is Paris."). The counts give
//! the [`Category`].
//!
//! Who answers is `engram-model`'s one generation seam, a [`Generator`]: an engram model
//! ([`engram_model::ModelGenerator`]: n samples of a prompt share one prefill) or any OpenAI-compatible
//! endpoint ([`engram_model::HttpGenerator`]); tests script one. [`ProbeCache`] keeps every result on disk
//! under a key made of who answered ([`model_identity`]: model file and adapter weights), the settings and the
//! facts, so a re-run costs nothing.

use std::path::{Path, PathBuf};

use engram_inject::{Item, QuestionKind, contains_answer, normalize_answer};
use engram_model::{Generator, LoadedModel, Sampling, splitmix64};
use engram_tokenizer::Message;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Category, CurriculumError, categorize};

/// One question-answer fact: what the probe asks and a stage trains.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// The item id, with `#k` appended when the item has several direct questions.
    pub id: String,
    /// The item it comes from.
    pub item: String,
    /// The question (the item's direct question).
    pub question: String,
    /// Its reference answer.
    pub answer: String,
}

/// One fact per direct question of each item, in order.
pub fn facts(items: &[Item]) -> Vec<Fact> {
    let mut out = Vec::new();
    for item in items {
        let direct: Vec<_> = item
            .questions
            .iter()
            .filter(|q| q.kind == QuestionKind::Direct)
            .collect();
        for (k, q) in direct.iter().enumerate() {
            out.push(Fact {
                id: if direct.len() == 1 {
                    item.id.clone()
                } else {
                    format!("{}#{}", item.id, k + 1)
                },
                item: item.id.clone(),
                question: q.question.clone(),
                answer: q.answer.clone(),
            });
        }
    }
    out
}

/// How facts are asked. Defaults after SliCK: several 4-shot prompts (SliCK used 10; 4 here, as each costs a
/// prefill of every fact), 16 samples at temperature 0.5.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeSettings {
    /// Few-shot prompts per fact; each gives one greedy answer.
    pub prompts: usize,
    /// Exemplar question-answer turns per prompt, from other facts.
    pub shots: usize,
    /// Sampled answers per fact, spread over the prompts (0: greedy only, so no fact is `WeaklyKnown`).
    pub samples: usize,
    /// Temperature of the sampled answers.
    pub temperature: f32,
    /// Upper bound on an answer's tokens (an answer also ends at its first line).
    pub max_new_tokens: usize,
    /// Seeds the exemplars and the sampler.
    pub seed: u64,
}

impl Default for ProbeSettings {
    fn default() -> Self {
        Self {
            prompts: 4,
            shots: 4,
            samples: 16,
            temperature: 0.5,
            max_new_tokens: 16,
            seed: 0,
        }
    }
}

impl ProbeSettings {
    /// Greedy answers under `prompts` prompts only: a cheap accuracy (dev checks between training rounds).
    pub fn greedy(&self, prompts: usize) -> Self {
        Self {
            prompts,
            samples: 0,
            ..self.clone()
        }
    }

    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), CurriculumError> {
        if self.prompts == 0 {
            return Err(CurriculumError::option(
                "probe-prompts",
                0,
                "must be at least 1 (each prompt gives the greedy answer)",
            ));
        }
        if self.max_new_tokens == 0 {
            return Err(CurriculumError::option(
                "probe-max-new-tokens",
                0,
                "must be at least 1",
            ));
        }
        if self.samples > 0 && !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(CurriculumError::option(
                "probe-temperature",
                self.temperature,
                "must be a finite number > 0 when sampling",
            ));
        }
        Ok(())
    }

    /// Samples drawn under prompt `j`.
    fn samples_for(&self, j: usize) -> usize {
        self.samples / self.prompts + usize::from(j < self.samples % self.prompts)
    }
}

/// What one probe found about one fact.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Knowledge {
    /// The fact's id.
    pub id: String,
    /// The question asked.
    pub question: String,
    /// The reference answer.
    pub answer: String,
    /// The category the counts give.
    pub category: Category,
    /// Greedy answers, one per prompt.
    pub greedy: Vec<String>,
    /// Greedy answers that are right.
    pub greedy_right: usize,
    /// Sampled answers.
    pub sampled: Vec<String>,
    /// Sampled answers that are right.
    pub sampled_right: usize,
}

impl Knowledge {
    /// Share of greedy answers that are right: the fact's accuracy.
    pub fn greedy_accuracy(&self) -> f64 {
        self.greedy_right as f64 / self.greedy.len().max(1) as f64
    }
}

/// The few-shot prompt `j` for `fact`: `shots` exemplar turns drawn (by the seed, `j` and the fact's id) from
/// the facts of `pool` that are neither the fact itself nor share its answer, then the question.
pub fn few_shot_prompt(
    fact: &Fact,
    pool: &[Fact],
    shots: usize,
    j: usize,
    seed: u64,
) -> Vec<Message> {
    let answer = normalize_answer(&fact.answer);
    let mut candidates: Vec<&Fact> = pool
        .iter()
        .filter(|f| {
            f.id != fact.id && f.question != fact.question && normalize_answer(&f.answer) != answer
        })
        .collect();
    let mut state = fact
        .id
        .bytes()
        .fold(splitmix64(seed ^ (j as u64 + 1)), |h, b| {
            splitmix64(h ^ b as u64)
        });
    let take = shots.min(candidates.len());
    for i in 0..take {
        state = splitmix64(state);
        let pick = i + (state % (candidates.len() - i) as u64) as usize;
        candidates.swap(i, pick);
    }
    let mut messages = Vec::with_capacity(2 * take + 1);
    for ex in &candidates[..take] {
        messages.push(Message::user(ex.question.clone()));
        messages.push(Message::assistant(ex.answer.clone()));
    }
    messages.push(Message::user(fact.question.clone()));
    messages
}

/// Asks every fact as [`ProbeSettings`] say and sorts it into a category; `on_progress(done, total)` after
/// each batch of answers.
pub fn probe_facts(
    generator: &mut dyn Generator,
    facts: &[Fact],
    pool: &[Fact],
    settings: &ProbeSettings,
    on_progress: &mut dyn FnMut(usize, usize),
) -> Result<Vec<Knowledge>, CurriculumError> {
    settings.validate()?;
    let mut greedy: Vec<Vec<String>> = vec![Vec::new(); facts.len()];
    let mut sampled: Vec<Vec<String>> = vec![Vec::new(); facts.len()];
    let total = settings.prompts + settings.samples.min(settings.prompts);
    let mut done = 0;
    for j in 0..settings.prompts {
        let prompts: Vec<Vec<Message>> = facts
            .iter()
            .map(|f| few_shot_prompt(f, pool, settings.shots, j, settings.seed))
            .collect();
        let mut ask = |n: usize, temperature: f32, seed: u64| -> Result<_, CurriculumError> {
            // An answer is the first line of the assistant's turn.
            let sampling = Sampling {
                temperature,
                n,
                seed,
                stop: vec!["\n".into()],
                ..Sampling::greedy(settings.max_new_tokens)
            };
            let answers = generator.complete(&prompts, &sampling)?;
            if answers.len() != prompts.len() * n {
                return Err(CurriculumError::Answerer {
                    name: generator.name(),
                    message: format!(
                        "asked {n} answer(s) for each of {} prompts, got {} in all",
                        prompts.len(),
                        answers.len()
                    ),
                });
            }
            let mut by_prompt = vec![Vec::with_capacity(n); prompts.len()];
            for (k, a) in answers.into_iter().enumerate() {
                by_prompt[k / n].push(a.text.trim().to_owned());
            }
            Ok(by_prompt)
        };
        for (f, mut a) in ask(1, 0.0, settings.seed)?.into_iter().enumerate() {
            greedy[f].append(&mut a);
        }
        done += 1;
        on_progress(done, total);
        let n = settings.samples_for(j);
        if n > 0 {
            let seed = splitmix64(settings.seed ^ 0x5eed ^ j as u64);
            for (f, mut a) in ask(n, settings.temperature, seed)?.into_iter().enumerate() {
                sampled[f].append(&mut a);
            }
            done += 1;
            on_progress(done, total);
        }
    }
    facts
        .iter()
        .zip(greedy.into_iter().zip(sampled))
        .map(|(fact, (greedy, sampled))| {
            let right = |answers: &[String]| {
                answers
                    .iter()
                    .filter(|a| contains_answer(a, &fact.answer))
                    .count()
            };
            let (greedy_right, sampled_right) = (right(&greedy), right(&sampled));
            Ok(Knowledge {
                id: fact.id.clone(),
                question: fact.question.clone(),
                answer: fact.answer.clone(),
                category: categorize(
                    &fact.id,
                    greedy_right,
                    greedy.len(),
                    sampled_right,
                    sampled.len(),
                )?,
                greedy,
                greedy_right,
                sampled,
                sampled_right,
            })
        })
        .collect()
}

/// The model file's name and size, and the SHA-256 of the adapter's weights and config.
pub fn model_identity(
    model: &LoadedModel,
    adapter: Option<&Path>,
) -> Result<String, CurriculumError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| CurriculumError::Io { path, source }
    };
    let size = std::fs::metadata(&model.path)
        .map_err(io(&model.path))?
        .len();
    let mut id = format!(
        "{} ({size} bytes)",
        model
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    if let Some(dir) = adapter {
        let mut h = Sha256::new();
        for file in [engram_lora::CONFIG_FILE, engram_lora::WEIGHTS_FILE] {
            let path = dir.join(file);
            h.update(std::fs::read(&path).map_err(io(&path))?);
        }
        id.push_str(&format!(" + adapter sha256:{:x}", h.finalize()));
    }
    Ok(id)
}

/// Probe results on disk, one JSONL file per identity of who answered, settings and facts.
#[derive(Clone, Debug)]
pub struct ProbeCache {
    /// The folder holding the cache files.
    pub dir: PathBuf,
}

impl ProbeCache {
    /// The file that holds (or will hold) this probe's results.
    pub fn path(
        &self,
        identity: &str,
        facts: &[Fact],
        pool: &[Fact],
        settings: &ProbeSettings,
    ) -> PathBuf {
        let key = serde_json::json!([identity, settings, facts, pool]).to_string();
        let hash = format!("{:x}", Sha256::digest(key.as_bytes()));
        self.dir.join(format!("probe-{}.jsonl", &hash[..24]))
    }

    /// [`probe_facts`], answered from the cache when the same `identity` (who answers: [`model_identity`])
    /// was asked the same before. Returns the results and whether they came from the cache.
    pub fn probe(
        &self,
        generator: &mut dyn Generator,
        identity: &str,
        facts: &[Fact],
        pool: &[Fact],
        settings: &ProbeSettings,
        on_progress: &mut dyn FnMut(usize, usize),
    ) -> Result<(Vec<Knowledge>, bool), CurriculumError> {
        let path = self.path(identity, facts, pool, settings);
        if path.is_file() {
            return Ok((read_knowledge(&path)?, true));
        }
        let found = probe_facts(generator, facts, pool, settings, on_progress)?;
        write_knowledge(&path, &found)?;
        Ok((found, false))
    }
}

/// Writes probe results as JSONL, atomically (a reader never sees half a file).
pub fn write_knowledge(path: &Path, rows: &[Knowledge]) -> Result<(), CurriculumError> {
    let io = |source| CurriculumError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    Ok(engram_model::formats::jsonl::write_jsonl(path, rows)?)
}

/// Reads probe results (a categories file); a bad line is an error naming the file and line.
pub fn read_knowledge(path: &Path) -> Result<Vec<Knowledge>, CurriculumError> {
    Ok(engram_model::formats::jsonl::read_jsonl_strict(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_model::{Completion, ModelError};
    use std::collections::HashMap;

    /// Scripted answers: per question, the greedy answer of each successive prompt and the successive
    /// samples (both cycled).
    struct Scripted {
        greedy: HashMap<String, Vec<&'static str>>,
        sampled: HashMap<String, Vec<&'static str>>,
        calls: usize,
        greedy_calls: usize,
        sample_draws: usize,
    }

    impl Generator for Scripted {
        fn name(&self) -> String {
            "scripted".into()
        }
        fn complete(
            &mut self,
            prompts: &[Vec<Message>],
            ask: &Sampling,
        ) -> Result<Vec<Completion>, ModelError> {
            self.calls += 1;
            let greedy = ask.temperature == 0.0;
            let (draw, script) = if greedy {
                (self.greedy_calls, &self.greedy)
            } else {
                (self.sample_draws, &self.sampled)
            };
            let out = prompts
                .iter()
                .flat_map(|p| {
                    let s = &script[&p.last().unwrap().content];
                    (0..ask.n).map(move |j| Completion {
                        text: s[(draw + if greedy { 0 } else { j }) % s.len()].to_string(),
                        tokens: 1,
                        finished: true,
                    })
                })
                .collect();
            if greedy {
                self.greedy_calls += 1;
            } else {
                self.sample_draws += ask.n;
            }
            Ok(out)
        }
    }

    fn fact(id: &str, q: &str, a: &str) -> Fact {
        Fact {
            id: id.into(),
            item: id.into(),
            question: q.into(),
            answer: a.into(),
        }
    }

    fn scripted() -> (Vec<Fact>, Scripted) {
        let facts = vec![
            fact("hk", "Capital of France?", "Paris"),
            fact("mk", "Capital of Australia?", "Canberra"),
            fact("wk", "Symbol of sodium?", "Na"),
            fact("uk", "Year the Berlin Wall fell?", "1989"),
            fact("hk-samples-wrong", "Legs of a spider?", "8"),
        ];
        let mut greedy = HashMap::new();
        let mut sampled = HashMap::new();
        let mut script = |q: &str, g: Vec<&'static str>, s: Vec<&'static str>| {
            greedy.insert(q.to_string(), g);
            sampled.insert(q.to_string(), s);
        };
        script("Capital of France?", vec!["Paris."], vec!["Paris", "Lyon"]);
        script(
            "Capital of Australia?",
            vec!["Sydney", "It is Canberra."],
            vec!["Sydney"],
        );
        script("Symbol of sodium?", vec!["So"], vec!["S", "Na", "N"]);
        script(
            "Year the Berlin Wall fell?",
            vec!["1991"],
            vec!["1990", "1991"],
        );
        script("Legs of a spider?", vec!["8"], vec!["six", "18"]);
        (
            facts,
            Scripted {
                greedy,
                sampled,
                calls: 0,
                greedy_calls: 0,
                sample_draws: 0,
            },
        )
    }

    #[test]
    fn scripted_answers_give_each_category() {
        let (facts, mut s) = scripted();
        let settings = ProbeSettings {
            prompts: 2,
            samples: 6,
            ..Default::default()
        };
        let mut progress = Vec::new();
        let k = probe_facts(&mut s, &facts, &facts, &settings, &mut |d, t| {
            progress.push((d, t))
        })
        .unwrap();
        let cat: HashMap<&str, Category> = k.iter().map(|k| (k.id.as_str(), k.category)).collect();
        assert_eq!(cat["hk"], Category::HighlyKnown);
        assert_eq!(cat["mk"], Category::MaybeKnown, "{:?}", k[1]);
        assert_eq!(cat["wk"], Category::WeaklyKnown, "{:?}", k[2]);
        assert_eq!(cat["uk"], Category::Unknown);
        assert_eq!(
            cat["hk-samples-wrong"],
            Category::HighlyKnown,
            "greedy right, samples wrong (\"18\" does not contain 8)"
        );
        assert!(
            k.iter()
                .all(|k| k.greedy.len() == 2 && k.sampled.len() == 6)
        );
        assert_eq!(progress.last(), Some(&(4, 4)));
    }

    #[test]
    fn no_samples_means_greedy_only() {
        let (facts, mut s) = scripted();
        let k = probe_facts(
            &mut s,
            &facts,
            &facts,
            &ProbeSettings::default().greedy(1),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(s.calls, 1);
        assert!(k.iter().all(|k| k.sampled.is_empty()));
        assert_eq!(
            k.iter().find(|k| k.id == "wk").unwrap().category,
            Category::Unknown,
            "without samples nothing is WeaklyKnown"
        );
    }

    #[test]
    fn a_short_answerer_is_an_error() {
        struct Short;
        impl Generator for Short {
            fn name(&self) -> String {
                "short".into()
            }
            fn complete(
                &mut self,
                _: &[Vec<Message>],
                _: &Sampling,
            ) -> Result<Vec<Completion>, ModelError> {
                Ok(vec![Completion {
                    text: "x".into(),
                    tokens: 1,
                    finished: true,
                }])
            }
        }
        let (facts, _) = scripted();
        let e = probe_facts(
            &mut Short,
            &facts,
            &facts,
            &ProbeSettings::default(),
            &mut |_, _| {},
        )
        .unwrap_err();
        assert!(e.to_string().contains("short"), "{e}");
    }

    #[test]
    fn few_shot_prompts_leave_out_the_fact_and_its_answer() {
        let (mut facts, _) = scripted();
        facts.push(fact("dup", "Where is the Louvre?", "Paris"));
        let target = &facts[0];
        for j in 0..6 {
            let p = few_shot_prompt(target, &facts, 3, j, 0);
            assert_eq!(p.len(), 7);
            assert_eq!(p.last().unwrap().content, target.question);
            assert!(
                p[..6]
                    .iter()
                    .all(|m| m.content != "Paris" && m.content != target.question),
                "{p:?}"
            );
            assert_eq!(p, few_shot_prompt(target, &facts, 3, j, 0), "seeded");
        }
        let distinct: std::collections::HashSet<_> = (0..6)
            .map(|j| few_shot_prompt(target, &facts, 2, j, 0))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|p| format!("{p:?}"))
            .collect();
        assert!(distinct.len() > 1, "prompts differ");
        assert_eq!(
            few_shot_prompt(target, &facts[..1], 4, 0, 0).len(),
            1,
            "no pool: zero-shot"
        );
    }

    #[test]
    fn the_cache_answers_a_rerun_and_names_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache {
            dir: dir.path().to_path_buf(),
        };
        let (facts, mut s) = scripted();
        let settings = ProbeSettings {
            prompts: 2,
            samples: 2,
            ..Default::default()
        };
        let (first, hit) = cache
            .probe(
                &mut s,
                "scripted",
                &facts,
                &facts,
                &settings,
                &mut |_, _| {},
            )
            .unwrap();
        assert!(!hit);
        let calls = s.calls;
        let (again, hit) = cache
            .probe(
                &mut s,
                "scripted",
                &facts,
                &facts,
                &settings,
                &mut |_, _| {},
            )
            .unwrap();
        assert!(hit);
        assert_eq!(s.calls, calls, "a re-run asks nothing");
        assert_eq!(first, again);
        let other = ProbeSettings {
            seed: 1,
            ..settings.clone()
        };
        assert_ne!(
            cache.path("scripted", &facts, &facts, &other),
            cache.path("scripted", &facts, &facts, &settings)
        );
        let path = cache.path("scripted", &facts, &facts, &settings);
        std::fs::write(&path, "{\"id\": 3}\n").unwrap();
        let e = cache
            .probe(
                &mut s,
                "scripted",
                &facts,
                &facts,
                &settings,
                &mut |_, _| {},
            )
            .unwrap_err();
        assert!(e.to_string().contains(":1:"), "{e}");
    }

    #[test]
    fn facts_from_items() {
        let item = |id: &str, n: usize| Item {
            id: id.into(),
            domain: "d".into(),
            context: "c".into(),
            questions: (0..n)
                .map(|k| engram_inject::Question {
                    kind: QuestionKind::Direct,
                    question: format!("q{k}"),
                    answer: format!("a{k}"),
                    options: vec![],
                })
                .collect(),
        };
        let f = facts(&[item("one", 1), item("two", 2)]);
        let ids: Vec<&str> = f.iter().map(|f| f.id.as_str()).collect();
        assert_eq!(ids, ["one", "two#1", "two#2"]);
        assert_eq!(f[2].item, "two");
    }

    #[test]
    fn settings_are_checked() {
        assert!(
            ProbeSettings {
                prompts: 0,
                ..Default::default()
            }
            .validate()
            .is_err()
        );
        let e = ProbeSettings {
            temperature: 0.0,
            ..Default::default()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("probe-temperature"));
        assert!(
            ProbeSettings {
                temperature: 0.0,
                samples: 0,
                ..Default::default()
            }
            .validate()
            .is_ok()
        );
    }
}
