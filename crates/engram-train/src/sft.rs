//! Supervised fine-tuning of a LoRA adapter, end to end: examples → tokens and loss masks → batches → a fresh
//! adapter (or one to continue) → the [`Trainer`] → PEFT files in `out`. `engram train` and every method that
//! ends in fine-tuning run this one pipeline; [`train_objective`] is its second half for any [`Objective`]
//! (SELF-PARAM's distillation is one).

use std::path::{Path, PathBuf};

use burn::tensor::Device;
use engram_data::{BatchConfig, Batcher, Example, tokenize_examples};
use engram_lora::{Adapters, LoraConfig, load_adapter};
use engram_model::LoadedModel;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::guard::{Guard, GuardReport};
use crate::{
    BatchSource, CrossEntropy, DeviceBatches, Length, Objective, StepMetrics, TrainConfig,
    TrainError, TrainSummary, Trainer,
};

/// Rows per micro-batch and tokens per row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batching {
    /// Rows per micro-batch.
    pub batch_size: usize,
    /// Tokens per row (longer examples are truncated).
    pub max_len: usize,
    /// Pack several short examples into one row (attention kept within each example).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub packing: bool,
}

impl Default for Batching {
    /// 4 rows of up to 512 tokens, no packing.
    fn default() -> Self {
        Self {
            batch_size: 4,
            max_len: 512,
            packing: false,
        }
    }
}

impl Batching {
    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.batch_size == 0 {
            return Err(TrainError::invalid("--batch-size", 0, "must be at least 1"));
        }
        if self.max_len < 2 {
            return Err(TrainError::invalid(
                "--max-len",
                self.max_len,
                "must be at least 2 (a target needs a token before it)",
            ));
        }
        Ok(())
    }
}

/// How an adapter is fine-tuned: one flat value per concern — the adapter ([`LoraConfig`]), the optimiser,
/// schedule, length and seed ([`TrainConfig`]), the batches ([`Batching`]).
#[derive(Clone, Debug, PartialEq)]
pub struct FineTuneSettings {
    /// The adapter's LoRA settings.
    pub lora: LoraConfig,
    /// Learning rate, schedule, clipping, length; its `seed` also seeds the adapter's initialisation and the
    /// data order.
    pub train: TrainConfig,
    /// Rows per batch and tokens per row.
    pub batching: Batching,
    /// The locality guard: the base model's own answers to general prompts mixed into the training rows.
    pub guard: Guard,
}

impl Default for FineTuneSettings {
    /// LoRA r 8, alpha 16 on all seven projections, lr 3e-4 (the PyTorch + PEFT reference's recipe), batch 4,
    /// 20 epochs, no locality guard (the reference recipe as it is; the injection settings switch it on).
    fn default() -> Self {
        Self {
            lora: LoraConfig::default(),
            train: TrainConfig {
                length: Length::Epochs(20),
                ..TrainConfig::default()
            },
            batching: Batching::default(),
            guard: Guard::off(),
        }
    }
}

impl FineTuneSettings {
    /// The settings as JSON (the LoRA part in PEFT's `adapter_config.json` vocabulary), for run manifests.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "lora": self.lora.to_peft_json(),
            "train": self.train,
            "batching": self.batching,
            "guard": self.guard.to_json(),
        })
    }

    /// The same settings training for `length` instead.
    pub fn with_length(&self, length: Length) -> Self {
        let mut s = self.clone();
        s.train.length = length;
        s
    }

    /// The same settings for `epochs` passes over a method's data, unless they set a step count: that one
    /// wins (a curriculum gives each stage's method its step budget this way; `--steps` does too).
    pub fn for_epochs(&self, epochs: usize) -> Self {
        match self.train.length {
            Length::Steps(_) => self.clone(),
            Length::Epochs(_) => self.with_length(Length::Epochs(epochs)),
        }
    }

    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        self.batching.validate()?;
        self.guard.validate()?;
        self.lora.validate()?;
        self.train.validate()
    }
}

/// The file in an adapter folder that holds the training examples (for inspection and reruns).
pub const TRAIN_DATA_FILE: &str = "train.jsonl";

/// Examples tokenized and batched for training.
pub struct Prepared {
    /// The batches.
    pub batcher: Batcher,
    /// Examples longer than `max_len`, truncated.
    pub truncated: usize,
}

/// Tokenizes `examples` with the model's tokenizer and chat template, and batches them.
pub fn prepare(
    lm: &LoadedModel,
    examples: &[Example],
    settings: &FineTuneSettings,
) -> Result<Prepared, TrainError> {
    let b = settings.batching;
    let tokenized = tokenize_examples(&lm.tokenizer, &lm.chat_template, examples, b.max_len)?;
    let batcher = Batcher::new(
        tokenized.examples,
        BatchConfig {
            batch_size: b.batch_size,
            max_len: b.max_len,
            packing: b.packing,
            seed: settings.train.seed,
            pad_id: lm.tokenizer.padding_id(),
        },
    )?;
    Ok(Prepared {
        batcher,
        truncated: tokenized.truncated,
    })
}

/// One training run of a named adapter on a loaded model.
pub struct Job<'a> {
    /// The adapter's name while it trains.
    pub adapter: &'a str,
    /// Continue from this adapter folder (its LoRA settings win) instead of a fresh adapter.
    pub previous: Option<&'a Path>,
    /// The adapter folder to write (PEFT files, `metrics.jsonl`, `checkpoint/`).
    pub out: &'a Path,
    /// Continue from `out/checkpoint`.
    pub resume: bool,
    /// Identifies the data: a resumed run is refused if it changed.
    pub data_id: String,
    /// Further devices for data parallelism (empty: the model's device only).
    pub replicas: Vec<Device>,
    /// Leave the trained adapter attached to the model (otherwise it is removed, whatever happened).
    pub keep_attached: bool,
}

impl<'a> Job<'a> {
    /// A job that continues `previous` (or starts a fresh adapter), resumes a checkpoint found in `out`, and
    /// leaves the model as it found it: how a method trains.
    pub fn in_folder(out: &'a Path, previous: Option<&'a Path>, data_id: String) -> Self {
        Self {
            adapter: "inject",
            previous,
            out,
            resume: out.join("checkpoint").is_dir(),
            data_id,
            replicas: Vec::new(),
            keep_attached: false,
        }
    }
}

/// Attaches the job's adapter (fresh, seeded by `train.seed`, or loaded from `previous`), trains it on
/// `source` under `objective` into `job.out`, and — unless `keep_attached` — removes it again whatever
/// happened.
pub fn train_objective<O, S>(
    lm: &mut LoadedModel,
    settings: &FineTuneSettings,
    job: Job<'_>,
    objective: &O,
    source: &S,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<TrainSummary, TrainError>
where
    O: Objective,
    S: BatchSource<Batch = O::Batch>,
{
    settings.validate()?;
    let lora = match job.previous {
        Some(dir) => load_adapter(&mut lm.model, dir, job.adapter)?,
        None => {
            let mut lora = settings.lora.clone();
            lora.base_model = Some(
                lm.path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            );
            lm.model
                .add_adapter(job.adapter, &lora, settings.train.seed)?;
            lora
        }
    };
    let result = Trainer {
        model: &mut lm.model,
        adapter: job.adapter.into(),
        lora,
        config: settings.train.clone(),
        out: job.out.to_path_buf(),
        data_id: job.data_id,
        replicas: job.replicas,
    }
    .run(objective, source, job.resume, on_step);
    if !job.keep_attached {
        lm.model.remove_adapter(job.adapter)?;
    }
    result
}

/// A data id for `examples`: the hash of their JSONL and what continues.
pub fn data_id(jsonl: &str, examples: usize, previous: Option<&Path>) -> String {
    format!(
        "sha256:{:x} ({examples} examples), previous {previous:?}",
        Sha256::digest(jsonl.as_bytes()),
    )
}

/// Fine-tunes an adapter on `examples` into `out` (PEFT files, `metrics.jsonl`, and the examples as
/// `train.jsonl`), continuing `previous` when given and resuming a checkpoint found in `out`; the model is
/// left as it was. The guard's rehearsal rows are mixed in (they are in `train.jsonl` too, and `guard.json`
/// says how many): with the guard on, the epochs are spelled out in one pass ([`Guard::passes`]) so that
/// each meets other rehearsal rows. Returns the adapter folder.
pub fn fine_tune(
    lm: &mut LoadedModel,
    examples: &[Example],
    settings: &FineTuneSettings,
    previous: Option<&Path>,
    out: &Path,
    on_step: &mut dyn FnMut(&StepMetrics),
) -> Result<PathBuf, TrainError> {
    settings.validate()?;
    if examples.is_empty() {
        return Err(TrainError::invalid(
            "training data",
            "0 examples",
            "no training example was built",
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| TrainError::from((out.to_path_buf(), e)))?;
    let (passes, length) = settings.guard.passes(settings.train.length);
    let settings = &settings.with_length(length);
    let repeated: Vec<Example> = (0..passes).flat_map(|_| examples.iter().cloned()).collect();
    let (examples, guard) = with_rehearsal(lm, &repeated, &settings.guard, settings.train.seed)?;
    let examples = &examples;
    let jsonl = engram_model::formats::jsonl::to_jsonl(examples);
    let data_path = out.join(TRAIN_DATA_FILE);
    engram_model::formats::atomic::write_file_atomically(&data_path, jsonl.as_bytes())
        .map_err(|e| TrainError::from((data_path.clone(), e)))?;
    let prepared = prepare(lm, examples, settings)?;
    guard.write(out)?;
    let source = DeviceBatches {
        batcher: &prepared.batcher,
        device: lm.model.device(),
    };
    let job = Job::in_folder(out, previous, data_id(&jsonl, examples.len(), previous));
    train_objective(lm, settings, job, &CrossEntropy, &source, on_step)?;
    Ok(out.to_path_buf())
}

/// `examples` and the guard's rehearsal rows for them (none when it is off) after them, with the report
/// to write as `guard.json` once the rows are known to train (a run that fails on its data writes nothing).
pub fn with_rehearsal(
    lm: &LoadedModel,
    examples: &[Example],
    guard: &Guard,
    seed: u64,
) -> Result<(Vec<Example>, GuardReport), TrainError> {
    let mut all = examples.to_vec();
    let mut report = GuardReport {
        share: guard.share,
        task_rows: examples.len(),
        ..GuardReport::default()
    };
    if guard.is_on() {
        let (pool, seconds) = guard.pool(lm)?;
        let rows = guard.draw(&pool, examples.len(), seed);
        report.rehearsal_rows = rows.len();
        report.pool = pool.len();
        report.pool_seconds = seconds;
        all.extend(rows.iter().map(|r| r.example()));
    }
    Ok((all, report))
}
