//! The option groups shared by `train`, `inject` and `eval`: one flag per setting of the LoRA adapter, the
//! optimiser and schedule, and the batches (`FineTuneArgs`), and each method family's own (`ReplayArgs`,
//! `DistillArgs`). They only turn flags into the library's settings types.

use clap::Args;

use engram::MethodSettings;
use engram_distill::{DistillSettings, KlReduction, OnPolicySettings, QaAnswers};
use engram_lora::{LoraConfig, TargetModules};
use engram_replay::ReplaySettings;
use engram_train::{AdamWConfig, Batching, Decay, FineTuneSettings, Guard, Length, TrainConfig};

use crate::Result;

/// LoRA, optimiser and schedule, batches: the `FineTuneSettings` of every command that trains.
#[derive(Args, Debug, Clone)]
pub(crate) struct FineTuneArgs {
    /// Layers that get an adapter: a comma-separated list (q_proj,v_proj) or all-linear.
    #[arg(long, default_value = "all-linear")]
    target_modules: String,
    /// LoRA rank.
    #[arg(long, default_value_t = LoraConfig::default().r)]
    r: usize,
    /// LoRA scale numerator: the update is scaled by lora_alpha / r.
    #[arg(long, default_value_t = LoraConfig::default().lora_alpha, allow_negative_numbers = true)]
    lora_alpha: f64,
    /// Dropout on the adapters' input during training, in [0, 1).
    #[arg(long, default_value_t = LoraConfig::default().lora_dropout, allow_negative_numbers = true)]
    lora_dropout: f64,
    /// Rank-stabilised scaling: lora_alpha / sqrt(r).
    #[arg(long)]
    use_rslora: bool,
    /// Only these layer indices get adapters (comma-separated; default: all layers).
    #[arg(long, value_delimiter = ',')]
    layers_to_transform: Vec<usize>,

    /// Peak learning rate [default: 3e-4].
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f64>,
    /// Steps of linear warm-up from 0 to the peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().warmup_steps)]
    warmup_steps: usize,
    /// Learning rate after warm-up.
    #[arg(long, default_value = "constant", value_parser = ["constant", "cosine", "linear"])]
    schedule: String,
    /// AdamW decoupled weight decay.
    #[arg(long, default_value_t = AdamWConfig::default().weight_decay, allow_negative_numbers = true)]
    weight_decay: f64,
    /// Clip the global gradient norm to this; 0 = no clipping.
    #[arg(long, default_value_t = TrainConfig::default().max_grad_norm.unwrap_or(0.0), allow_negative_numbers = true)]
    max_grad_norm: f64,
    /// Passes over the data [default: `train` 1; `eval`/`inject` 20]. The replay methods and self-param
    /// train for --examples-per-item instead (--steps applies to every method).
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Optimizer steps (the data repeats as needed); instead of --epochs.
    #[arg(long)]
    steps: Option<usize>,
    /// Rows per micro-batch [default: `train` 8; `eval`/`inject` 4].
    #[arg(long)]
    batch_size: Option<usize>,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = TrainConfig::default().grad_accum)]
    grad_accum: usize,
    /// Run up to N of a step's micro-batches at once, one thread each (same result bit for bit). On a 2-core
    /// CPU, `--batch-size 1 --grad-accum 4 --parallel-micro-batches 4` trained like batch 4 ~15-25% faster.
    #[arg(long, default_value_t = 1)]
    parallel_micro_batches: usize,
    /// Activation checkpointing per decoder layer: each layer runs again in the backward pass, so only one
    /// layer's activations (and, with --base-weights q8, expanded weights) are held at a time; the same training
    /// up to rounding. SmolLM2, 4x128 batch, CPU: peak memory 1965 -> 1086 MB (819 MB with q8), steps 1.4x as
    /// long.
    #[arg(long)]
    checkpoint_layers: bool,
    /// Tokens per example (longer ones are truncated) and per packed row.
    #[arg(long, default_value_t = Batching::default().max_len)]
    max_len: usize,
    /// Pack several examples into each row.
    #[arg(long)]
    packing: bool,
    /// Seed of the data order, the adapter's initialisation and dropout (and of the generations and option
    /// orders where a command has them).
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Write a checkpoint every N steps (0: only at the end) [default: `train` 0; `eval`/`inject` 50].
    #[arg(long)]
    checkpoint_every: Option<usize>,
    /// Locality guard: share of the training rows that are the base model's own answers to general prompts
    /// (self-rehearsal; a KL to the base for the distillation methods), in [0, 1); 0 switches it off
    /// [default: `train` 0; `eval`/`inject` 0.5].
    #[arg(long, allow_negative_numbers = true)]
    rehearsal: Option<f64>,
}

impl FineTuneArgs {
    /// The settings: these flags over `base`, the command's defaults for what no flag sets.
    pub(crate) fn settings(&self, base: &FineTuneSettings) -> Result<FineTuneSettings> {
        let lora = LoraConfig {
            r: self.r,
            lora_alpha: self.lora_alpha,
            lora_dropout: self.lora_dropout,
            use_rslora: self.use_rslora,
            target_modules: TargetModules::parse(&self.target_modules)?,
            layers_to_transform: (!self.layers_to_transform.is_empty())
                .then(|| self.layers_to_transform.clone()),
            base_model: None,
        };
        let b = &base.train;
        let train = TrainConfig {
            lr: self.lr.unwrap_or(b.lr),
            warmup_steps: self.warmup_steps,
            schedule: self.schedule.parse::<Decay>()?,
            adamw: AdamWConfig {
                weight_decay: self.weight_decay,
                ..b.adamw.clone()
            },
            max_grad_norm: (self.max_grad_norm != 0.0).then_some(self.max_grad_norm),
            grad_accum: self.grad_accum,
            length: match (self.steps, self.epochs) {
                (Some(s), _) => Length::Steps(s),
                (None, Some(e)) => Length::Epochs(e),
                (None, None) => b.length,
            },
            seed: self.seed,
            checkpoint_every: self.checkpoint_every.unwrap_or(b.checkpoint_every),
            parallel_micro_batches: self.parallel_micro_batches,
            checkpoint_layers: self.checkpoint_layers,
        };
        let settings = FineTuneSettings {
            lora,
            train,
            batching: Batching {
                batch_size: self.batch_size.unwrap_or(base.batching.batch_size),
                max_len: self.max_len,
                packing: self.packing,
            },
            guard: Guard {
                share: self.rehearsal.unwrap_or(base.guard.share),
                ..base.guard.clone()
            },
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// The methods' names for `--help`, from the one list (`engram_inject::METHODS`); `training`: only those
/// that write into weights.
pub(crate) fn method_names(training: bool) -> String {
    engram_inject::METHODS
        .iter()
        .filter(|m| !training || m.recipe.trains())
        .map(|m| m.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The defaults of the commands that inject (`eval`, `inject`): 20 epochs for the fine-tuning baselines,
/// batch 4, a checkpoint every 50 steps, the locality guard on with its base answers kept in engram's cache
/// folder (made once per model).
pub(crate) fn inject_defaults() -> FineTuneSettings {
    let mut s = FineTuneSettings::default();
    s.train.checkpoint_every = 50;
    s.guard = Guard {
        cache: engram_fetch::cache_dir().ok().map(|d| d.join("rehearsal")),
        ..Guard::default()
    };
    s
}

/// The options of the replay methods (`sys2-*`, `aug-ft`).
#[derive(Args, Debug, Clone)]
pub(crate) struct ReplayArgs {
    /// Replay methods: generations per protocol and item (paraphrases, implications; half as many model
    /// questions for self-QA).
    #[arg(long = "replay-n", default_value_t = ReplaySettings::default().n)]
    n: usize,
    /// Replay methods: sampling temperature of the generations.
    #[arg(long = "replay-temperature", default_value_t = ReplaySettings::default().temperature)]
    temperature: f32,
    /// Replay methods and self-param: training examples per item (passes over the replayed records are set
    /// to reach it, so every method trains about as long whatever its yield) [default: 48].
    #[arg(long)]
    examples_per_item: Option<usize>,
}

/// The options of `self-param`.
#[derive(Args, Debug, Clone)]
pub(crate) struct DistillArgs {
    /// self-param: distillation temperature (the loss is scaled by T²).
    #[arg(long, default_value_t = DistillSettings::default().temperature)]
    kl_temperature: f32,
    /// self-param: teacher tokens cached per position, or `full` for the whole vocabulary.
    #[arg(long, default_value = "64")]
    kl_top_k: String,
    /// self-param: per-token (sum over the vocabulary, mean over tokens) or torch-mean (PyTorch's
    /// kl_div(reduction="mean"), also divided by the vocabulary size, as SELF-PARAM's code).
    #[arg(long, default_value = "per-token")]
    kl_reduction: String,
    /// self-param: context continuations per item.
    #[arg(long, default_value_t = DistillSettings::default().continuations)]
    continuations: usize,
    /// self-param: unrelated regulariser windows per item (from datasets/general, texts 01-04).
    #[arg(long, default_value_t = DistillSettings::default().regulariser)]
    regulariser: usize,
    /// self-param: the teacher reads the regulariser text alone (by default after the context).
    #[arg(long)]
    regulariser_without_context: bool,
    /// self-param: the QA targets' answers: teacher (the model's own greedy answer with the context in view)
    /// or replay (the self-QA records' checked answers and text spans).
    #[arg(long, default_value = "teacher")]
    qa_answers: String,
    /// self-param, sequential mode: QA targets of earlier injections carried into each later one.
    #[arg(long, default_value_t = DistillSettings::default().replay_previous)]
    replay_previous: usize,
    /// self-distill: at most this many rounds of student answers → teacher scores → training.
    #[arg(long, default_value_t = OnPolicySettings::default().rounds)]
    distill_rounds: usize,
    /// self-distill: sampled student answers per question and round, besides the greedy one.
    #[arg(long, default_value_t = OnPolicySettings::default().samples)]
    samples: usize,
    /// self-distill: temperature of the sampled answers.
    #[arg(long, default_value_t = OnPolicySettings::default().temperature)]
    sample_temperature: f32,
    /// self-distill: 0 forward KL, 1 reverse KL, between them the generalised JSD (TRL's distillation_alpha).
    #[arg(long, default_value_t = OnPolicySettings::default().alpha, allow_negative_numbers = true)]
    distillation_alpha: f32,
    /// self-distill: target sequences per item trained on in each round.
    #[arg(long, default_value_t = OnPolicySettings::default().examples_per_round)]
    examples_per_round: usize,
    /// self-distill: stop once this share of the item's own text questions are answered greedily with their
    /// fact (1: never stop early, every round runs).
    #[arg(long, default_value_t = OnPolicySettings::default().stop_at, allow_negative_numbers = true)]
    stop_at: f64,
}

/// Every method's settings: the fine-tuning group and each family's.
#[derive(Args, Debug, Clone)]
pub(crate) struct MethodArgs {
    #[command(flatten)]
    pub(crate) finetune: FineTuneArgs,
    #[command(flatten)]
    replay: ReplayArgs,
    #[command(flatten)]
    distill: DistillArgs,
}

impl MethodArgs {
    /// The settings of every method (no curricula: those need a dataset), these flags over `base`.
    pub(crate) fn settings(&self, base: MethodSettings) -> Result<MethodSettings> {
        let finetune = self.finetune.settings(&base.finetune)?;
        let replay = ReplaySettings {
            examples_per_item: self
                .replay
                .examples_per_item
                .unwrap_or(base.replay.examples_per_item),
            n: self.replay.n,
            temperature: self.replay.temperature,
            seed: finetune.train.seed,
        };
        replay.validate()?;
        let d = &self.distill;
        let top_k =
            match d.kl_top_k.as_str() {
                "full" => None,
                k => Some(k.parse::<usize>().map_err(|_| {
                    format!("--kl-top-k {k}: expected a number of tokens or `full`")
                })?),
            };
        let distill = DistillSettings {
            continuations: d.continuations,
            regulariser: d.regulariser,
            regulariser_with_context: !d.regulariser_without_context,
            replay_previous: d.replay_previous,
            qa_answers: QaAnswers::parse(&d.qa_answers)?,
            temperature: d.kl_temperature,
            top_k,
            reduction: KlReduction::parse(&d.kl_reduction)?,
            on_policy: OnPolicySettings {
                rounds: d.distill_rounds,
                samples: d.samples,
                temperature: d.sample_temperature,
                alpha: d.distillation_alpha,
                examples_per_round: d.examples_per_round,
                stop_at: d.stop_at,
                ..base.distill.on_policy.clone()
            },
            ..base.distill
        };
        distill.validate()?;
        Ok(MethodSettings {
            finetune,
            replay,
            distill,
            curricula: None,
        })
    }
}
