//! Every method from one settings value, and the few-line path for a Rust user: load, inject, ask.
//!
//! [`MethodSettings`] holds the settings of every method (the shared fine-tuning recipe and each family's
//! own); [`registry`] builds the [`Registry`] of all of them (names: [`engram_inject::METHODS`]). [`Engram`]
//! wraps a model for the common case:
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let mut engram = engram::Engram::load_default()?;
//! engram.inject("The Quenby number of a whole number is found by doubling it and adding 7.", "runs/quenby".as_ref())?;
//! println!("{}", engram.ask("How is the Quenby number of a whole number found?")?);
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};

use engram_curriculum::Curricula;
use engram_distill::{DistillSettings, SelfParams};
use engram_inject::{FineTuneSettings, Guard, InjectEnv, Injection, Item, Registry};
use engram_lora::Adapters;
use engram_model::{LoadedModel, generate};
use engram_replay::{GenerationCache, ReplaySettings, Replays};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// The method [`Engram::inject`], `engram inject` and `engram demo` use: on the `news` dev items it kept the
/// base model's answers to unrelated questions far better than `sys2-self-qa` (answers unchanged 38% against
/// 4–12%, general-text perplexity ×1.00 against ×1.36–1.55) at the same multiple-choice recall (docs/results.md).
pub const DEFAULT_METHOD: &str = "self-distill";

/// The settings of every method: the fine-tuning recipe all trained methods share, and each family's own.
#[derive(Clone)]
pub struct MethodSettings {
    /// LoRA, optimiser and schedule, batches.
    pub finetune: FineTuneSettings,
    /// The replay methods' generation and training budget (also `self-param`'s self-QA).
    pub replay: ReplaySettings,
    /// `self-param`'s targets and loss.
    pub distill: DistillSettings,
    /// The curricula (`gradual*`), which need a dataset's dev facts; `None` leaves them out.
    pub curricula: Option<Curricula>,
}

impl Default for MethodSettings {
    /// Each crate's defaults (the batch-evaluation recipe) with the locality guard on ([`Guard::default`], its
    /// base answers kept in engram's cache folder, made once per model), `self-param` regularised on the
    /// shipped general texts, no curricula.
    fn default() -> Self {
        Self {
            finetune: FineTuneSettings {
                guard: Guard {
                    cache: crate::fetch::cache_dir().ok().map(|d| d.join("rehearsal")),
                    ..Guard::default()
                },
                ..FineTuneSettings::default()
            },
            replay: ReplaySettings::default(),
            distill: DistillSettings {
                regulariser_texts: engram_eval::shipped::regulariser_texts(),
                ..DistillSettings::default()
            },
            curricula: None,
        }
    }
}

impl MethodSettings {
    /// The recipe for writing one text: lr 1e-3 and 64 examples per item, what writes one item in about 20
    /// CPU steps (docs/results.md).
    pub fn one_text() -> Self {
        let mut s = Self::default();
        s.finetune.train.lr = 1e-3;
        s.replay.examples_per_item = 64;
        s
    }

    /// The same seed for the adapter, the data order and the generations.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.finetune.train.seed = seed;
        self.replay.seed = seed;
        self
    }
}

/// Every method, built from `settings`; `dataset` is every item of the dataset (some methods link items).
/// The replay methods and `self-param` share one generation cache, so each generation is made once.
pub fn registry(settings: &MethodSettings, dataset: &[Item]) -> Registry {
    let cache = GenerationCache::default();
    let s = settings;
    let registry = Registry::new(s.finetune.clone())
        .with(Replays::new(s.replay.clone(), dataset, &cache))
        .with(SelfParams::new(
            s.distill.clone(),
            s.replay.clone(),
            dataset,
            &cache,
        ));
    match &s.curricula {
        Some(c) => registry.with(c.clone()),
        None => registry,
    }
}

/// A model that learns texts and answers from them: the happy path over [`registry`] and the methods.
pub struct Engram {
    /// The model; injected adapters are attached to it.
    pub lm: LoadedModel,
    /// The settings injections use.
    pub settings: MethodSettings,
    /// Upper bound on an answer's tokens.
    pub max_new_tokens: usize,
}

const ADAPTER: &str = "engram";

impl Engram {
    /// Wraps a loaded model, with the one-text recipe ([`MethodSettings::one_text`]).
    pub fn new(lm: LoadedModel) -> Self {
        Self {
            lm,
            settings: MethodSettings::one_text(),
            max_new_tokens: 64,
        }
    }

    /// The default model (SmolLM2-135M-Instruct), fetched on first use, on the CPU.
    pub fn load_default() -> Result<Self, Error> {
        Ok(Self::new(crate::load_default_model()?))
    }

    /// Writes `text` into an adapter in `out` with [`DEFAULT_METHOD`], and answers from it from now on.
    pub fn inject(&mut self, text: &str, out: &Path) -> Result<PathBuf, Error> {
        self.inject_with(DEFAULT_METHOD, text, out)
    }

    /// Writes `text` into an adapter in `out` with the method `method` (any trained name of
    /// [`engram_inject::METHODS`]), and answers from it from now on. An adapter already in `out` is reused.
    pub fn inject_with(&mut self, method: &str, text: &str, out: &Path) -> Result<PathBuf, Error> {
        let item = Item {
            id: "text".into(),
            domain: "user".into(),
            context: text.trim().to_owned(),
            questions: Vec::new(),
        };
        if item.context.is_empty() {
            return Err("the text to inject is empty".into());
        }
        let items = [item];
        let method = registry(&self.settings, &items).build(method)?;
        self.detach()?;
        let mut env = InjectEnv {
            model: &mut self.lm,
            on_step: &mut |_| {},
        };
        match method.inject(&mut env, &items, None, out)? {
            Injection::Adapter(dir) => {
                self.use_adapter(&dir)?;
                Ok(dir)
            }
            Injection::Prompt { .. } => {
                Err(format!("{}: writes nothing into weights", method.name()).into())
            }
        }
    }

    /// Answers from the adapter in `dir` (replacing any other) from now on.
    pub fn use_adapter(&mut self, dir: &Path) -> Result<(), Error> {
        self.detach()?;
        engram_lora::load_adapter(&mut self.lm.model, dir, ADAPTER)?;
        self.lm.model.set_active_adapters(&[ADAPTER])?;
        Ok(())
    }

    /// Answers from the base model again.
    pub fn detach(&mut self) -> Result<(), Error> {
        for a in self.lm.model.adapter_names() {
            self.lm.model.remove_adapter(&a)?;
        }
        Ok(())
    }

    /// The greedy answer (first line) to `question`, asked as `engram ask` and the evaluation ask it.
    pub fn ask(&self, question: &str) -> Result<String, Error> {
        let lm = &self.lm;
        let prompt = engram_inject::chat_prompt(&lm.chat_template, None, question)?;
        let ids = lm.tokenizer.encode(&prompt)?;
        let cfg = engram_inject::answer_config(self.max_new_tokens);
        let out = generate(&lm.model, &lm.tokenizer, &[ids], &cfg, &mut |_, _| {})?;
        Ok(out[0].text.trim().to_owned())
    }
}
