//! The seam every knowledge-injection method plugs into, and the baselines each is compared with.
//!
//! A [`Method`] turns knowledge items into either a way of prompting (`base`: nothing; `icl`: the context in
//! the prompt) or a LoRA adapter (PEFT files) on the frozen base model. The harness registers methods by name
//! in a [`Registry`]; later crates (replay protocols, SELF-PARAM, the curriculum) add theirs there.
//!
//! The fine-tuning baselines share one runner, [`FineTune`], and differ only in the training examples they
//! build from an item: `naive-ft` trains on the raw context text, `prefix-ft` on question/answer turns with the
//! context as a prefix of the question (the contextual-shadowing control: the model can copy the answer from
//! the prefix, so the weights need not learn it), `qa-ft` on the same turns without the prefix.

use std::path::{Path, PathBuf};

use engram_data::{BatchConfig, Batcher, Example, tokenize_examples};
use engram_lora::{Adapters, LoraConfig, load_adapter, write_file_atomically};
use engram_model::LoadedModel;
use engram_tokenizer::Message;
use engram_train::{
    BatchSource, CrossEntropy, DeviceBatches, Length, Objective, StepMetrics, TrainConfig, Trainer,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::probe::user_turn;
use crate::{EvalError, Item, QuestionKind};

/// How the knowledge reaches the model when it is asked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Injection {
    /// Nothing is written into the weights; `context` says whether the item's context is in the prompt.
    Prompt {
        /// Whether the item's context is put in the prompt (`icl`) or not (`base`).
        context: bool,
    },
    /// A PEFT adapter folder to load on the base model (questions are asked without the context).
    Adapter(PathBuf),
}

/// What a method may use while injecting.
pub struct InjectEnv<'a> {
    /// The base model, with no adapter attached; a method must leave it so.
    pub model: &'a mut LoadedModel,
    /// Called after every training step.
    pub on_step: &'a mut dyn FnMut(&StepMetrics),
}

/// A way of giving the model new knowledge.
pub trait Method: Send + Sync {
    /// The name used on the command line and in reports (`naive-ft`).
    fn name(&self) -> &str;
    /// One line for `--help` and the report.
    fn description(&self) -> &str;
    /// Whether it writes into weights. Methods that do not are evaluated once per run, whatever the mode.
    fn trains(&self) -> bool;
    /// Writes the knowledge of `items` into an adapter in the folder `out` — continuing from the adapter in
    /// `previous` when given (sequential mode) — or says how the prompt carries it. A method that finds a
    /// finished adapter in `out` may return it at once (an interrupted run resumes); one whose training was
    /// cut short resumes from its checkpoint there.
    fn inject(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, EvalError>;
}

/// A condition that writes nothing into the weights: `base` (the floor every method is measured from) or
/// `icl`, the context in the prompt (the upper bound a method that writes into weights aims at).
pub struct Prompted {
    context: bool,
}

impl Prompted {
    /// `base`: the model as it is, no context.
    pub const BASE: Prompted = Prompted { context: false };
    /// `icl`: the item's context in the prompt.
    pub const ICL: Prompted = Prompted { context: true };
}

impl Method for Prompted {
    fn name(&self) -> &str {
        if self.context { "icl" } else { "base" }
    }
    fn description(&self) -> &str {
        if self.context {
            "the base model with the item's context in the prompt (upper bound)"
        } else {
            "the base model, no context"
        }
    }
    fn trains(&self) -> bool {
        false
    }
    fn inject(
        &self,
        _: &mut InjectEnv<'_>,
        _: &[Item],
        _: Option<&Path>,
        _: &Path,
    ) -> Result<Injection, EvalError> {
        Ok(Injection::Prompt {
            context: self.context,
        })
    }
}

/// How the fine-tuning baselines train.
#[derive(Clone, Debug, PartialEq)]
pub struct FineTuneSettings {
    /// The adapter's LoRA settings.
    pub lora: LoraConfig,
    /// Learning rate, schedule, clipping... (`length` is replaced by `epochs`).
    pub train: TrainConfig,
    /// Passes over the examples built from the items.
    pub epochs: usize,
    /// When set, exactly this many optimizer steps instead of `epochs` (the data repeats as needed): how a
    /// curriculum gives every schedule the same compute.
    pub steps: Option<usize>,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Tokens per example (longer ones are truncated).
    pub max_len: usize,
    /// Seeds the adapter's initialisation and the data order.
    pub seed: u64,
}

impl Default for FineTuneSettings {
    /// LoRA r 8, alpha 16 on all seven projections, lr 3e-4 (the PyTorch + PEFT reference's recipe), batch 4,
    /// 20 epochs.
    fn default() -> Self {
        Self {
            lora: LoraConfig::default(),
            train: TrainConfig::default(),
            epochs: 20,
            steps: None,
            batch_size: 4,
            max_len: 512,
            seed: 0,
        }
    }
}

impl FineTuneSettings {
    /// The settings as JSON (the LoRA part in PEFT's `adapter_config.json` vocabulary), for run manifests.
    pub fn to_json(&self) -> serde_json::Value {
        let mut json = serde_json::json!({
            "lora": self.lora.to_peft_json(),
            "train": self.train,
            "epochs": self.epochs,
            "batch_size": self.batch_size,
            "max_len": self.max_len,
            "seed": self.seed,
        });
        // Only when set, so manifests written before the field existed still match on resume.
        if let Some(steps) = self.steps {
            json["steps"] = steps.into();
        }
        json
    }

    /// How long training runs: `steps` when set, else `epochs`.
    pub fn length(&self) -> Length {
        self.steps
            .map_or(Length::Epochs(self.epochs), Length::Steps)
    }

    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), EvalError> {
        let bad = |name: &str, value: usize| EvalError::Option {
            name: name.into(),
            value: value.to_string(),
            reason: "must be at least 1".into(),
        };
        if self.epochs == 0 {
            return Err(bad("epochs", 0));
        }
        if self.steps == Some(0) {
            return Err(bad("steps", 0));
        }
        if self.batch_size == 0 {
            return Err(bad("batch-size", 0));
        }
        if self.max_len < 2 {
            return Err(EvalError::Option {
                name: "max-len".into(),
                value: self.max_len.to_string(),
                reason: "must be at least 2".into(),
            });
        }
        self.lora.validate()?;
        let train = TrainConfig {
            length: self.length(),
            ..self.train.clone()
        };
        train.validate()?;
        Ok(())
    }
}

/// Builds one item's training examples.
pub type ExampleBuilder = fn(&Item) -> Vec<Example>;

/// Supervised fine-tuning of a LoRA adapter on examples built from each item.
pub struct FineTune {
    /// The method's name (`naive-ft`, `prefix-ft`, `qa-ft`, ...).
    pub name: String,
    /// One line for `--help` and the report.
    pub description: String,
    /// Turns each item into training examples.
    pub build: ExampleBuilder,
    /// Training settings.
    pub settings: FineTuneSettings,
}

/// The file in an injection folder that holds the training examples (for inspection and reruns).
pub const TRAIN_DATA_FILE: &str = "train.jsonl";
const ADAPTER_NAME: &str = "inject";

impl FineTune {
    /// `naive-ft`: the raw context as a plain-text document.
    pub fn naive(settings: FineTuneSettings) -> Self {
        Self {
            name: "naive-ft".into(),
            description: "fine-tune on the raw context text".into(),
            build: naive_examples,
            settings,
        }
    }

    /// `prefix-ft`: the item's direct questions as chat turns, the context before each question.
    pub fn prefix(settings: FineTuneSettings) -> Self {
        Self {
            name: "prefix-ft".into(),
            description: "fine-tune on direct question/answer turns with the context as a prefix (the contextual-shadowing control)".into(),
            build: prefix_examples,
            settings,
        }
    }

    /// `qa-ft`: the item's direct questions as chat turns, without the context.
    pub fn qa(settings: FineTuneSettings) -> Self {
        Self {
            name: "qa-ft".into(),
            description: "fine-tune on direct question/answer turns without the context".into(),
            build: qa_examples,
            settings,
        }
    }
}

/// The raw context.
pub fn naive_examples(item: &Item) -> Vec<Example> {
    vec![Example::text(item.context.clone())]
}

fn direct_turns(item: &Item, with_context: bool) -> Vec<Example> {
    item.questions
        .iter()
        .filter(|q| q.kind == QuestionKind::Direct)
        .map(|q| {
            let ctx = with_context.then_some(item.context.as_str());
            Example::chat(vec![
                Message::user(user_turn(ctx, &q.question)),
                Message::assistant(q.answer.clone()),
            ])
        })
        .collect()
}

/// Direct questions and answers with the context before each question.
pub fn prefix_examples(item: &Item) -> Vec<Example> {
    direct_turns(item, true)
}

/// Direct questions and answers alone.
pub fn qa_examples(item: &Item) -> Vec<Example> {
    direct_turns(item, false)
}

impl Method for FineTune {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        &self.description
    }
    fn trains(&self) -> bool {
        true
    }
    fn inject(
        &self,
        env: &mut InjectEnv<'_>,
        items: &[Item],
        previous: Option<&Path>,
        out: &Path,
    ) -> Result<Injection, EvalError> {
        let examples: Vec<Example> = items.iter().flat_map(|i| (self.build)(i)).collect();
        train_adapter(env, &examples, &self.settings, previous, out)
    }
}

/// Trains an adapter on `examples` into `out` (PEFT files, `metrics.jsonl`, `train.jsonl`), starting from
/// `previous` when given. Reused by every method that ends in supervised fine-tuning.
pub fn train_adapter(
    env: &mut InjectEnv<'_>,
    examples: &[Example],
    settings: &FineTuneSettings,
    previous: Option<&Path>,
    out: &Path,
) -> Result<Injection, EvalError> {
    settings.validate()?;
    if out.join(engram_lora::CONFIG_FILE).is_file() {
        return Ok(Injection::Adapter(out.to_path_buf()));
    }
    if examples.is_empty() {
        return Err(EvalError::Option {
            name: "training data".into(),
            value: "0 examples".into(),
            reason: "the method built no training example from these items".into(),
        });
    }
    let io = |path: PathBuf| move |source| EvalError::Io { path, source };
    std::fs::create_dir_all(out).map_err(io(out.to_path_buf()))?;
    let jsonl = crate::harness::jsonl(examples);
    let data_path = out.join(TRAIN_DATA_FILE);
    write_file_atomically(&data_path, jsonl.as_bytes()).map_err(io(data_path.clone()))?;

    let lm = &mut *env.model;
    let tokenized =
        tokenize_examples(&lm.tokenizer, &lm.chat_template, examples, settings.max_len)?;
    let pad = lm.tokenizer.padding_id();
    let batcher = Batcher::new(
        tokenized.examples,
        BatchConfig {
            batch_size: settings.batch_size,
            max_len: settings.max_len,
            packing: false,
            seed: settings.seed,
            pad_id: pad,
        },
    )?;
    let data_id = format!(
        "sha256:{:x} ({} examples), previous {:?}",
        Sha256::digest(jsonl.as_bytes()),
        examples.len(),
        previous
    );
    let source = DeviceBatches {
        batcher: &batcher,
        device: lm.model.device(),
    };
    train_objective(
        env,
        settings,
        previous,
        out,
        data_id,
        &CrossEntropy,
        &source,
    )
}

/// Trains the adapter of an injection on any [`Objective`]: attaches a fresh adapter (or loads `previous`, in
/// sequential mode), runs the [`Trainer`] into `out` (resuming from its checkpoint when one is there) and
/// detaches the adapter again, whatever happened. `data_id` identifies the data, so that a resumed run is
/// refused if the data changed. [`train_adapter`] is this with [`CrossEntropy`]; SELF-PARAM's distillation
/// objective is another.
pub fn train_objective<O, S>(
    env: &mut InjectEnv<'_>,
    settings: &FineTuneSettings,
    previous: Option<&Path>,
    out: &Path,
    data_id: String,
    objective: &O,
    source: &S,
) -> Result<Injection, EvalError>
where
    O: Objective,
    S: BatchSource<Batch = O::Batch>,
{
    let lm = &mut *env.model;
    let lora = match previous {
        Some(dir) => load_adapter(&mut lm.model, dir, ADAPTER_NAME)?,
        None => {
            let mut lora = settings.lora.clone();
            lora.base_model = Some(
                lm.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            lm.model.add_adapter(ADAPTER_NAME, &lora, settings.seed)?;
            lora
        }
    };
    let config = TrainConfig {
        length: settings.length(),
        seed: settings.seed,
        ..settings.train.clone()
    };
    let resume = out.join("checkpoint").is_dir();
    let result = Trainer {
        model: &mut lm.model,
        adapter: ADAPTER_NAME.into(),
        lora,
        config,
        out: out.to_path_buf(),
        data_id,
        replicas: Vec::new(),
    }
    .run(objective, source, resume, env.on_step);
    // Leave the base model as it was, whatever happened.
    lm.model.remove_adapter(ADAPTER_NAME)?;
    result?;
    Ok(Injection::Adapter(out.to_path_buf()))
}

/// Methods by name, in the order they were registered.
#[derive(Default)]
pub struct Registry {
    methods: Vec<Box<dyn Method>>,
}

impl Registry {
    /// `base`, `icl`, `naive-ft`, `prefix-ft` and `qa-ft`, the fine-tunes with `settings`.
    pub fn with_baselines(settings: &FineTuneSettings) -> Self {
        let mut r = Self::default();
        r.register(Box::new(Prompted::BASE));
        r.register(Box::new(Prompted::ICL));
        r.register(Box::new(FineTune::naive(settings.clone())));
        r.register(Box::new(FineTune::prefix(settings.clone())));
        r.register(Box::new(FineTune::qa(settings.clone())));
        r
    }

    /// Adds a method; one of the same name is replaced.
    pub fn register(&mut self, method: Box<dyn Method>) {
        self.methods.retain(|m| m.name() != method.name());
        self.methods.push(method);
    }

    /// Removes the method `name` and hands it over (a curriculum runs it as one stage's objective).
    pub fn take(&mut self, name: &str) -> Option<Box<dyn Method>> {
        let i = self.methods.iter().position(|m| m.name() == name)?;
        Some(self.methods.remove(i))
    }

    /// The method called `name`, if registered.
    pub fn get(&self, name: &str) -> Option<&dyn Method> {
        self.methods
            .iter()
            .find(|m| m.name() == name)
            .map(|m| m.as_ref())
    }

    /// The registered methods' names, in registration order.
    pub fn names(&self) -> Vec<&str> {
        self.methods.iter().map(|m| m.name()).collect()
    }

    /// The methods named in `names`, in that order; an unknown name is an error listing the known ones.
    pub fn select(&self, names: &[String]) -> Result<Vec<&dyn Method>, EvalError> {
        names
            .iter()
            .map(|n| {
                self.get(n).ok_or_else(|| EvalError::Option {
                    name: "methods".into(),
                    value: n.clone(),
                    reason: format!("unknown method; known: {}", self.names().join(", ")),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Question;

    fn item() -> Item {
        let q = |kind, question: &str, answer: &str| Question {
            kind,
            question: question.into(),
            answer: answer.into(),
            options: vec![answer.into(), "x".into(), "y".into(), "z".into()],
        };
        Item {
            id: "t-1".into(),
            domain: "d".into(),
            context: "Glon live in caves.".into(),
            questions: vec![
                q(QuestionKind::Direct, "Where do glon live?", "caves"),
                q(QuestionKind::Reversal, "What lives in caves?", "glon"),
            ],
        }
    }

    #[test]
    fn baseline_examples() {
        let i = item();
        assert_eq!(
            naive_examples(&i),
            vec![Example::text("Glon live in caves.")]
        );
        assert_eq!(
            prefix_examples(&i),
            vec![Example::chat(vec![
                Message::user("Glon live in caves.\n\nWhere do glon live?"),
                Message::assistant("caves"),
            ])],
            "direct questions only, context first"
        );
        assert_eq!(
            qa_examples(&i),
            vec![Example::chat(vec![
                Message::user("Where do glon live?"),
                Message::assistant("caves"),
            ])]
        );
    }

    #[test]
    fn registry_selects_by_name_and_names_the_unknown() {
        let r = Registry::with_baselines(&FineTuneSettings::default());
        assert_eq!(r.names(), ["base", "icl", "naive-ft", "prefix-ft", "qa-ft"]);
        let picked = r.select(&["icl".into(), "base".into()]).unwrap();
        assert_eq!(picked[0].name(), "icl");
        assert!(!picked[1].trains());
        let err = r.select(&["sys2-ft".into()]).err().unwrap().to_string();
        assert!(err.contains("sys2-ft") && err.contains("naive-ft"), "{err}");
    }

    #[test]
    fn settings_are_checked() {
        let s = FineTuneSettings {
            epochs: 0,
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("epochs"));
        let s = FineTuneSettings {
            train: TrainConfig {
                lr: f64::NAN,
                ..Default::default()
            },
            ..Default::default()
        };
        assert!(s.validate().unwrap_err().to_string().contains("lr"));
    }
}
