//! The locality guard: self-rehearsal. A pool of general prompts is answered once by the *base* model (greedy,
//! every adapter off), and those answers are mixed into the training data of every method at a set share, so
//! the adapter is trained to keep answering unrelated questions as the model did before. The pool needs no
//! outside data: the prompts ship with engram (`datasets/rehearsal`), written apart from everything that
//! measures locality (the trivia questions, the general-text perplexity texts).
//!
//! Supervised methods train on the rehearsal rows with cross-entropy on the base's own answers ([`fine_tune`]
//! mixes them in); distillation methods take the same rows as KL targets whose teacher is the base model
//! reading the same prompt, i.e. a KL to the base. Either way the rows come from [`Guard::rehearsal`].
//!
//! [`fine_tune`]: crate::fine_tune

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use engram_data::Example;
use engram_lora::Adapters;
use engram_model::{Generator, LoadedModel, ModelGenerator, Sampling};
use engram_tokenizer::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{Length, TrainError};

/// The shipped pool (`datasets/rehearsal/prompts.jsonl`): general prompts, none about a fact that a locality
/// measure asks.
const SHIPPED: &str = include_str!("../rehearsal/prompts.jsonl");

/// One line of the shipped pool.
#[derive(Deserialize)]
struct PoolLine {
    prompt: String,
}

/// The shipped rehearsal prompts, in file order.
pub fn shipped_prompts() -> Vec<String> {
    SHIPPED
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<PoolLine>(l)
                .expect("the shipped rehearsal pool is valid JSONL (a test checks it)")
                .prompt
        })
        .collect()
}

/// A general prompt and the base model's greedy answer to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rehearsal {
    /// The user turn.
    pub prompt: String,
    /// The base model's greedy answer.
    pub answer: String,
}

impl Rehearsal {
    /// The row as a chat example: the prompt as the user turn, the base's answer as the assistant turn.
    pub fn example(&self) -> Example {
        Example::chat(vec![
            Message::user(self.prompt.clone()),
            Message::assistant(self.answer.clone()),
        ])
    }
}

/// Self-rehearsal settings: which prompts, at what share of the training rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Guard {
    /// Share of the training rows that are rehearsal, in `[0, 1)`; 0 switches the guard off.
    pub share: f64,
    /// The general prompts the base model answers.
    pub prompts: Vec<String>,
    /// Tokens per base answer.
    pub max_new_tokens: usize,
    /// Folder where the base answers are kept per model (`None`: only for the life of the process).
    pub cache: Option<PathBuf>,
}

/// The guard's default share of rehearsal rows (chosen on the dev splits, `docs/results.md`).
pub const DEFAULT_SHARE: f64 = 0.5;

impl Default for Guard {
    /// The shipped pool at [`DEFAULT_SHARE`], 48-token answers, answers kept in memory.
    fn default() -> Self {
        Self {
            share: DEFAULT_SHARE,
            prompts: shipped_prompts(),
            max_new_tokens: 48,
            cache: None,
        }
    }
}

impl Guard {
    /// No rehearsal.
    pub fn off() -> Self {
        Self {
            share: 0.0,
            ..Self::default()
        }
    }

    /// Whether it adds rows.
    pub fn is_on(&self) -> bool {
        self.share > 0.0
    }

    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.share.is_finite() && (0.0..1.0).contains(&self.share)) {
            return Err(TrainError::invalid(
                "--rehearsal",
                self.share,
                "must be a share in [0, 1) (0 switches the locality guard off)",
            ));
        }
        if self.is_on() && self.prompts.is_empty() {
            return Err(TrainError::invalid(
                "--rehearsal",
                self.share,
                "the rehearsal pool has no prompts",
            ));
        }
        if self.is_on() && self.max_new_tokens == 0 {
            return Err(TrainError::invalid(
                "rehearsal max_new_tokens",
                0,
                "must be at least 1",
            ));
        }
        Ok(())
    }

    /// The settings as JSON, for run manifests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "share": self.share,
            "pool": self.prompts.len(),
            "max_new_tokens": self.max_new_tokens,
        })
    }

    /// How a guarded run of `length` sees its rows: the task rows this many times over in one epoch, each
    /// time beside other rehearsal rows (drawn for all of them), rather than the same few rehearsal rows
    /// every epoch. Returns the repeats and the run's new length; with the guard off, or a step count, the
    /// run is left as it is (1 repeat).
    pub fn passes(&self, length: Length) -> (usize, Length) {
        match length {
            Length::Epochs(e) if self.is_on() && e > 1 => (e, Length::Epochs(1)),
            other => (1, other),
        }
    }

    /// Rehearsal rows to add to `task` rows so that they are `share` of the whole: `⌈task·s/(1−s)⌉`.
    pub fn rows_for(&self, task: usize) -> usize {
        if !self.is_on() || task == 0 {
            return 0;
        }
        (task as f64 * self.share / (1.0 - self.share) - 1e-9).ceil() as usize
    }

    /// The base model's answers to the pool, made once per model and pool (kept in memory for the process and,
    /// with `cache`, on disk), and how many seconds making them took now (0 when they were kept).
    pub fn pool(&self, lm: &LoadedModel) -> Result<(Arc<Vec<Rehearsal>>, f64), TrainError> {
        let key = self.key(lm);
        let memory = MEMORY.get_or_init(Default::default);
        if let Some(p) = memory.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok((p.clone(), 0.0));
        }
        let file = self
            .cache
            .as_ref()
            .map(|d| d.join(format!("rehearsal-{}.jsonl", &key[..16])));
        if let Some(path) = file.as_ref().filter(|p| p.is_file())
            && let Ok(rows) = engram_model::formats::jsonl::read_jsonl::<Rehearsal>(path)
            && rows.len() == self.prompts.len()
            && rows.iter().zip(&self.prompts).all(|(r, p)| &r.prompt == p)
        {
            let rows = Arc::new(rows);
            memory
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, rows.clone());
            return Ok((rows, 0.0));
        }
        let start = Instant::now();
        let base = LoadedModel {
            model: lm.model.without_adapters()?,
            tokenizer: lm.tokenizer.clone(),
            chat_template: lm.chat_template.clone(),
            path: lm.path.clone(),
        };
        let prompts: Vec<Vec<Message>> = self
            .prompts
            .iter()
            .map(|p| vec![Message::user(p.clone())])
            .collect();
        // 32 prompts a batch: 1.6x faster than the generator's 8 on a 2-core CPU, and greedy answers do not
        // depend on the batch (the whole shipped pool came out the same).
        let mut generator = ModelGenerator::new(&base);
        generator.batch_size = 32;
        let completions = generator.complete(&prompts, &Sampling::greedy(self.max_new_tokens))?;
        let rows: Vec<Rehearsal> = self
            .prompts
            .iter()
            .zip(completions)
            .map(|(p, c)| Rehearsal {
                prompt: p.clone(),
                answer: c.text.trim().to_owned(),
            })
            .filter(|r| !r.answer.is_empty())
            .collect();
        let seconds = start.elapsed().as_secs_f64();
        if let Some(path) = &file {
            // A cache that cannot be written costs the next run the generation again, nothing more.
            if let Some(dir) = path.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            let _ = engram_model::formats::atomic::write_file_atomically(
                path,
                engram_model::formats::jsonl::to_jsonl(&rows).as_bytes(),
            );
        }
        let rows = Arc::new(rows);
        memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, rows.clone());
        Ok((rows, seconds))
    }

    /// The rehearsal rows for `task` training rows: [`Guard::rows_for`] of them, drawn from `pool` in a seeded
    /// order, every row once before any repeats.
    pub fn draw(&self, pool: &[Rehearsal], task: usize, seed: u64) -> Vec<Rehearsal> {
        let n = self.rows_for(task);
        if n == 0 || pool.is_empty() {
            return Vec::new();
        }
        let mut rng = StdRng::seed_from_u64(seed ^ 0x7265_6865_6172_7365);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let mut order: Vec<&Rehearsal> = pool.iter().collect();
            order.shuffle(&mut rng);
            out.extend(order.into_iter().take(n - out.len()).cloned());
        }
        out
    }

    /// Identifies the pool's answers: the model file (name and size), the prompts and the answer length.
    fn key(&self, lm: &LoadedModel) -> String {
        let size = std::fs::metadata(&lm.path).map(|m| m.len()).unwrap_or(0);
        let mut h = Sha256::new();
        h.update(
            lm.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        h.update(size.to_le_bytes());
        h.update((self.max_new_tokens as u64).to_le_bytes());
        for p in &self.prompts {
            h.update(p.as_bytes());
            h.update([0]);
        }
        format!("{:x}", h.finalize())
    }
}

static MEMORY: OnceLock<Mutex<HashMap<String, Arc<Vec<Rehearsal>>>>> = OnceLock::new();

/// What the guard added to one training run, written beside the adapter as [`GUARD_FILE`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct GuardReport {
    /// The share of rehearsal rows asked for.
    pub share: f64,
    /// Rows of the method's own data.
    pub task_rows: usize,
    /// Rehearsal rows mixed in.
    pub rehearsal_rows: usize,
    /// Prompts in the pool.
    pub pool: usize,
    /// Seconds spent making the base answers in this run (0: they were cached).
    pub pool_seconds: f64,
}

/// The file in an adapter folder that says what the guard added.
pub const GUARD_FILE: &str = "guard.json";

impl GuardReport {
    /// Writes it into `out` (atomically).
    pub fn write(&self, out: &Path) -> Result<(), TrainError> {
        let path = out.join(GUARD_FILE);
        let json = serde_json::to_string_pretty(self).expect("report serializes") + "\n";
        engram_model::formats::atomic::write_file_atomically(&path, json.as_bytes())
            .map_err(|e| TrainError::from((path.clone(), e)))
    }

    /// Reads the report in `out`, if the run wrote one.
    pub fn read(out: &Path) -> Option<Self> {
        serde_json::from_str(&std::fs::read_to_string(out.join(GUARD_FILE)).ok()?).ok()
    }

    /// One line for reports.
    pub fn summary(&self) -> String {
        if self.rehearsal_rows == 0 {
            return "locality guard off".into();
        }
        format!(
            "locality guard: {} rehearsal rows beside {} task rows (share {:.2}, pool of {}){}",
            self.rehearsal_rows,
            self.task_rows,
            self.share,
            self.pool,
            if self.pool_seconds > 0.0 {
                format!(", base answers made in {:.1} s", self.pool_seconds)
            } else {
                String::new()
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(n: usize) -> Vec<Rehearsal> {
        (0..n)
            .map(|i| Rehearsal {
                prompt: format!("p{i}"),
                answer: format!("a{i}"),
            })
            .collect()
    }

    #[test]
    fn the_share_sets_the_rehearsal_rows() {
        let g = |share| Guard {
            share,
            ..Guard::default()
        };
        assert_eq!(g(0.0).rows_for(48), 0);
        assert_eq!(g(0.5).rows_for(48), 48);
        assert_eq!(g(0.25).rows_for(48), 16);
        assert_eq!(g(0.2).rows_for(10), 3, "2.5 rounds up");
        assert_eq!(g(0.5).rows_for(0), 0);
        for share in [0.1, 0.25, 0.5, 0.75] {
            let task = 37;
            let r = g(share).rows_for(task);
            let got = r as f64 / (r + task) as f64;
            assert!(got >= share - 1e-9 && got < share + 0.05, "{share}: {got}");
        }
    }

    #[test]
    fn a_guarded_run_repeats_its_task_rows_within_one_epoch() {
        let on = Guard::default();
        assert_eq!(on.passes(Length::Epochs(11)), (11, Length::Epochs(1)));
        assert_eq!(on.passes(Length::Steps(30)), (1, Length::Steps(30)));
        assert_eq!(
            Guard::off().passes(Length::Epochs(11)),
            (1, Length::Epochs(11))
        );
    }

    #[test]
    fn draws_cover_the_pool_before_repeating_and_follow_the_seed() {
        let g = Guard {
            share: 0.5,
            ..Guard::default()
        };
        let p = pool(5);
        let d = g.draw(&p, 12, 7);
        assert_eq!(d.len(), 12);
        let mut first: Vec<&str> = d[..5].iter().map(|r| r.prompt.as_str()).collect();
        first.sort();
        assert_eq!(first, ["p0", "p1", "p2", "p3", "p4"]);
        assert_eq!(d, g.draw(&p, 12, 7));
        assert_ne!(d, g.draw(&p, 12, 8));
        assert!(Guard::off().draw(&p, 12, 7).is_empty());
    }

    #[test]
    fn out_of_range_shares_name_the_option() {
        for share in [-0.1, 1.0, f64::NAN] {
            let g = Guard {
                share,
                ..Guard::default()
            };
            let e = g.validate().unwrap_err().to_string();
            assert!(e.contains("--rehearsal"), "{e}");
        }
        assert!(Guard::default().validate().is_ok());
    }

    #[test]
    fn the_shipped_pool_parses_and_has_no_repeats() {
        let p = shipped_prompts();
        assert!(p.len() >= 100, "{}", p.len());
        let mut sorted = p.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), p.len());
    }
}
