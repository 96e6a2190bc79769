//! `engram train`: options, progress and summary around `engram-data` → `engram-lora` → `engram-train`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use engram_data::{
    BatchConfig, Batcher, DataError, line_of_example, read_jsonl, tokenize_examples,
};
use engram_lora::{Adapters, LoraConfig, TargetModules};
use engram_train::{
    AdamWConfig, CrossEntropy, Decay, DeviceBatches, Length, RunDir, StepMetrics, TrainConfig,
    Trainer,
};

use engram_model::DeviceSpec;

use crate::{DeviceArgs, ModelArgs, Result, display_name, load_with_replicas, shell_quote};

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    /// Training data: a JSONL file, one `{"messages": [...]}` chat or `{"text": "..."}` per line.
    #[arg(long)]
    data: PathBuf,
    /// Folder for the adapter (PEFT files), `metrics.jsonl` and `checkpoint/`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,

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

    /// Peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr, allow_negative_numbers = true)]
    lr: f64,
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
    /// Passes over the data [default: 1].
    #[arg(long, conflicts_with = "steps")]
    epochs: Option<usize>,
    /// Optimizer steps (the data repeats as needed); instead of --epochs.
    #[arg(long)]
    steps: Option<usize>,
    /// Rows per micro-batch.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
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
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    /// Pack several examples into each row.
    #[arg(long)]
    packing: bool,
    /// Seed of the data order, the adapter's initialisation and dropout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Write a checkpoint every N steps (0: only at the end).
    #[arg(long, default_value_t = TrainConfig::default().checkpoint_every)]
    checkpoint_every: usize,
    /// Continue the run in --out from its checkpoint (same data and settings).
    #[arg(long)]
    resume: bool,
    /// Name of the adapter inside the model.
    #[arg(long, default_value = "default")]
    adapter_name: String,
    /// No progress output (the summary is still printed).
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn train_cmd(args: TrainArgs) -> Result<()> {
    // Everything that can be checked without the model is checked first.
    let mut lora = LoraConfig {
        r: args.r,
        lora_alpha: args.lora_alpha,
        lora_dropout: args.lora_dropout,
        use_rslora: args.use_rslora,
        target_modules: TargetModules::parse(&args.target_modules)?,
        layers_to_transform: (!args.layers_to_transform.is_empty())
            .then(|| args.layers_to_transform.clone()),
        base_model: None,
    };
    lora.validate()?;
    let config = TrainConfig {
        lr: args.lr,
        warmup_steps: args.warmup_steps,
        schedule: args.schedule.parse::<Decay>()?,
        adamw: AdamWConfig {
            weight_decay: args.weight_decay,
            ..AdamWConfig::default()
        },
        max_grad_norm: (args.max_grad_norm != 0.0).then_some(args.max_grad_norm),
        grad_accum: args.grad_accum,
        length: match (args.steps, args.epochs) {
            (Some(s), _) => Length::Steps(s),
            (None, e) => Length::Epochs(e.unwrap_or(1)),
        },
        seed: args.seed,
        checkpoint_every: args.checkpoint_every,
        parallel_micro_batches: args.parallel_micro_batches,
        checkpoint_layers: args.checkpoint_layers,
    };
    config.validate()?;
    config.validate_devices(DeviceSpec::parse_list(&args.device.device)?.len())?;
    if args.batch_size == 0 {
        return Err("invalid option `--batch-size` = 0: must be at least 1".into());
    }
    if args.max_len < 2 {
        return Err(format!(
            "invalid option `--max-len` = {}: must be at least 2 (a target needs a token before it)",
            args.max_len
        )
        .into());
    }
    let dirs = RunDir {
        out: args.out.clone(),
    };
    if args.resume && !dirs.checkpoint().is_dir() {
        return Err(format!(
            "cannot resume: {} has no checkpoint (no run to resume there; drop --resume to start one)",
            args.out.display()
        )
        .into());
    }
    if !args.resume && dirs.checkpoint().is_dir() {
        eprintln!(
            "note: {} holds an earlier run; starting afresh (use --resume to continue it instead)",
            args.out.display()
        );
    }
    let examples = read_jsonl(&args.data)?;
    let data_bytes = std::fs::read(&args.data)
        .map_err(|e| format!("{}: cannot read: {e}", args.data.display()))?;
    let data_id = format!(
        "sha256:{:x} max_len={} packing={} batch_size={}",
        Sha256::digest(&data_bytes),
        args.max_len,
        args.packing,
        args.batch_size
    );

    let (mut loaded, replicas) = load_with_replicas(&args.model, &args.device)?;
    if loaded
        .model
        .projections()
        .iter()
        .any(|(_, p)| p.is_quantized())
        && !args.checkpoint_layers
    {
        eprintln!(
            "note: an 8-bit base saves training memory only with --checkpoint-layers (without it the backward \
             pass keeps every layer's expanded weights: more memory than --base-weights f32)"
        );
    }
    let path = loaded.path.clone();
    let max_positions = loaded.model.config().max_position_embeddings;
    if args.max_len > max_positions {
        return Err(format!(
            "invalid option `--max-len` = {}: {} supports at most {max_positions} positions",
            args.max_len,
            display_name(&path)
        )
        .into());
    }
    loaded.model.ensure_positions(args.max_len)?;

    let tokenized = tokenize_examples(
        &loaded.tokenizer,
        &loaded.chat_template,
        &examples,
        args.max_len,
    )
    .map_err(|e| match &e {
        // Name the file line, not the example's position among the non-blank lines.
        DataError::Example { index, source } => {
            let text = std::fs::read_to_string(&args.data).unwrap_or_default();
            match line_of_example(&text, *index) {
                Some(line) => format!("{}:{line}: {source}", args.data.display()),
                None => format!("{}: {e}", args.data.display()),
            }
        }
        _ => format!("{}: {e}", args.data.display()),
    })?;
    if tokenized.truncated > 0 {
        eprintln!(
            "{} of {} examples are longer than --max-len {} and were truncated",
            tokenized.truncated,
            examples.len(),
            args.max_len
        );
    }
    let pad_id = loaded.tokenizer.padding_id();
    let batcher = Batcher::new(
        tokenized.examples,
        BatchConfig {
            batch_size: args.batch_size,
            max_len: args.max_len,
            packing: args.packing,
            seed: args.seed,
            pad_id,
        },
    )?;

    lora.base_model = Some(display_name(&path));
    let name = args.adapter_name.clone();
    loaded.model.add_adapter(&name, &lora, args.seed)?;
    let adapter = loaded.model.adapter_summary(&name)?;
    let total = config.total_steps(batcher.batches_per_epoch());
    eprintln!(
        "adapter `{name}`: r {}, alpha {}, {} layers, {:.2} M trainable parameters",
        lora.r,
        lora.lora_alpha,
        adapter.modules.len(),
        adapter.parameters as f64 / 1e6
    );
    eprintln!(
        "data: {} examples in {} rows, {} target tokens; {} batch(es) of up to {} rows per epoch; {total} steps",
        batcher.num_examples(),
        batcher.num_rows(),
        batcher.total_target_tokens(),
        batcher.batches_per_epoch(),
        args.batch_size
    );
    if !replicas.is_empty() {
        eprintln!(
            "data parallel on {} devices ({}): {} micro-batch(es) per step dealt round-robin, gradients summed on the first",
            replicas.len() + 1,
            args.device.device,
            config.grad_accum
        );
    }

    let device = loaded.model.device();
    let source = DeviceBatches {
        batcher: &batcher,
        device,
    };
    let mut progress = StepProgress::new(total, args.quiet)?;
    let start = Instant::now();
    let mut trainer = Trainer {
        model: &mut loaded.model,
        adapter: name,
        lora,
        config,
        out: args.out.clone(),
        data_id,
        replicas,
    };
    let result = trainer.run(&CrossEntropy, &source, args.resume, &mut |m| {
        progress.step(m)
    });
    progress.finish();
    let summary = result?;

    let elapsed = start.elapsed().as_secs_f64();
    let ran = summary.steps - summary.resumed_from;
    let resumed = if summary.resumed_from > 0 {
        format!(" (resumed at step {})", summary.resumed_from)
    } else {
        String::new()
    };
    let loss = summary
        .final_loss
        .map(|l| format!("{l:.4}"))
        .unwrap_or_else(|| "n/a (no step left to run)".into());
    println!(
        "trained {} steps{resumed} in {elapsed:.1}s ({ran} this run); final loss {loss}",
        summary.steps
    );
    println!(
        "adapter: {} (metrics: {})",
        summary.adapter_dir.display(),
        dirs.metrics().display()
    );
    let model_flag = match &args.model.model {
        Some(p) => format!(" --model {}", shell_quote(&p.display().to_string())),
        None => String::new(),
    };
    println!(
        "use it:  engram generate{model_flag} --adapter {} --chat --prompt \"...\"",
        shell_quote(&summary.adapter_dir.display().to_string())
    );
    Ok(())
}

/// A progress bar on a terminal; a line every few steps otherwise; nothing with `--quiet`.
struct StepProgress {
    bar: Option<ProgressBar>,
    lines: bool,
    every: usize,
    first: bool,
}

impl StepProgress {
    fn new(total: usize, quiet: bool) -> Result<Self> {
        let terminal = std::io::stderr().is_terminal();
        let bar = if !quiet && terminal {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix} [{bar:20}] {pos}/{len} steps  {msg}  ETA {eta}",
                )?
                .progress_chars("=> "),
            );
            bar.set_prefix("training");
            bar.set_message("first step...");
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            Some(bar)
        } else {
            None
        };
        Ok(Self {
            bar,
            lines: !quiet && !terminal,
            every: (total / 100).max(10),
            first: true,
        })
    }

    fn step(&mut self, m: &StepMetrics) {
        let figures = format!("loss {:.4}  lr {:.2e}", m.loss, m.lr);
        if let Some(bar) = &self.bar {
            bar.set_position(m.step as u64);
            if self.first {
                // A resumed run starts part-way: the rate (and ETA) counts from here.
                bar.reset_eta();
            }
            bar.set_message(figures);
        } else if self.lines
            && (self.first || m.step.is_multiple_of(self.every) || m.step == m.total_steps)
        {
            eprintln!(
                "step {}/{}  {figures}  grad-norm {:.3}  {:.0} tokens/s  epoch {:.2}",
                m.step, m.total_steps, m.grad_norm, m.tokens_per_s, m.epoch
            );
        }
        self.first = false;
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
