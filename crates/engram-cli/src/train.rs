//! `engram train`: options, progress and summary around `engram-data` → `engram-lora` → `engram-train`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};

use engram_data::{DataError, line_of_example, read_jsonl};
use engram_lora::Adapters;
use engram_train::{
    Batching, CrossEntropy, DeviceBatches, FineTuneSettings, Length, RunDir, StepMetrics,
    TrainConfig, TrainError, sft,
};

use engram_model::DeviceSpec;

use crate::settings::FineTuneArgs;
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

    #[command(flatten)]
    finetune: FineTuneArgs,
    /// Continue the run in --out from its checkpoint (same data and settings).
    #[arg(long)]
    resume: bool,
    /// Replace an earlier run in --out (without it, a folder holding one is refused, untouched).
    #[arg(long, conflicts_with = "resume")]
    overwrite: bool,
    /// Name of the adapter inside the model.
    #[arg(long, default_value = "default")]
    adapter_name: String,
    /// No progress output (the summary is still printed).
    #[arg(long)]
    quiet: bool,
}

pub(crate) fn train_cmd(args: TrainArgs) -> Result<()> {
    // Everything that can be checked without the model is checked first.
    let base = FineTuneSettings {
        train: TrainConfig {
            length: Length::Epochs(1),
            ..TrainConfig::default()
        },
        batching: Batching {
            batch_size: 8,
            ..Batching::default()
        },
        // Plain training on the user's file: no rows of ours unless --rehearsal asks.
        guard: engram_train::Guard {
            cache: crate::settings::inject_defaults().guard.cache,
            ..engram_train::Guard::off()
        },
        ..FineTuneSettings::default()
    };
    let mut settings = args.finetune.settings(&base)?;
    let config = &settings.train;
    config.validate_devices(DeviceSpec::parse_list(&args.device.device)?.len())?;
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
    if !args.resume
        && !args.overwrite
        && let Some(found) = dirs.earlier_run()
    {
        return Err(format!(
            "{} holds an earlier run ({}): --resume continues it, --overwrite replaces it",
            args.out.display(),
            found.display()
        )
        .into());
    }
    let examples = read_jsonl(&args.data)?;
    let data_bytes = std::fs::read(&args.data)
        .map_err(|e| format!("{}: cannot read: {e}", args.data.display()))?;
    let b = settings.batching;
    let mut data_id = format!(
        "sha256:{:x} max_len={} packing={} batch_size={}",
        Sha256::digest(&data_bytes),
        b.max_len,
        b.packing,
        b.batch_size
    );
    if settings.guard.is_on() {
        data_id.push_str(&format!(" rehearsal={}", settings.guard.share));
    }

    let (mut loaded, replicas) = load_with_replicas(&args.model, &args.device)?;
    if loaded
        .model
        .projections()
        .iter()
        .any(|(_, p)| p.is_quantized())
        && !config.checkpoint_layers
    {
        eprintln!(
            "note: an 8-bit base saves training memory only with --checkpoint-layers (without it the backward \
             pass keeps every layer's expanded weights: more memory than --base-weights f32)"
        );
    }
    let path = loaded.path.clone();
    let max_positions = loaded.model.config().max_position_embeddings;
    if b.max_len > max_positions {
        return Err(format!(
            "invalid option `--max-len` = {}: {} supports at most {max_positions} positions",
            b.max_len,
            display_name(&path)
        )
        .into());
    }
    loaded.model.ensure_positions(b.max_len)?;

    // The guard's rows (with --rehearsal) come after the file's, so an example's index still names its line.
    let (examples, guard) =
        sft::with_rehearsal(&loaded, &examples, &settings.guard, settings.train.seed)?;
    let prepared = sft::prepare(&loaded, &examples, &settings).map_err(|e| match &e {
        // Name the file line, not the example's position among the non-blank lines.
        TrainError::Data(DataError::Example { index, source }) => {
            let text = std::fs::read_to_string(&args.data).unwrap_or_default();
            match line_of_example(&text, *index) {
                Some(line) => format!("{}:{line}: {source}", args.data.display()),
                None => format!("{}: {e}", args.data.display()),
            }
        }
        _ => format!("{}: {e}", args.data.display()),
    })?;
    if prepared.truncated > 0 {
        eprintln!(
            "{} of {} examples are longer than --max-len {} and were truncated",
            prepared.truncated,
            examples.len(),
            b.max_len
        );
    }
    let batcher = &prepared.batcher;
    let total = config.total_steps(batcher.batches_per_epoch());
    eprintln!(
        "data: {} examples in {} rows, {} target tokens; {} batch(es) of up to {} rows per epoch; {total} steps",
        batcher.num_examples(),
        batcher.num_rows(),
        batcher.total_target_tokens(),
        batcher.batches_per_epoch(),
        b.batch_size
    );
    if !replicas.is_empty() {
        eprintln!(
            "data parallel on {} devices ({}): {} micro-batch(es) per step dealt round-robin, gradients summed on the first",
            replicas.len() + 1,
            args.device.device,
            config.grad_accum
        );
    }

    settings.lora.base_model = Some(display_name(&path));
    let name = args.adapter_name.clone();
    let source = DeviceBatches {
        batcher,
        device: loaded.model.device(),
    };
    let mut progress = StepProgress::new(total, args.quiet)?;
    let start = Instant::now();
    let job = sft::Job {
        adapter: &name,
        previous: None,
        out: &args.out,
        resume: args.resume,
        data_id,
        replicas,
        keep_attached: true,
    };
    let result = sft::train_objective(
        &mut loaded,
        &settings,
        job,
        &CrossEntropy,
        &source,
        &mut |m| progress.step(m),
    );
    progress.finish();
    let summary = result?;
    for w in &summary.warnings {
        eprintln!("warning: {w}");
    }
    // Written once the run has trained, so a run that fails on its data or options leaves `--out` as it was.
    guard.write(&args.out)?;
    let adapter = loaded.model.adapter_summary(&name)?;
    eprintln!(
        "adapter `{name}`: r {}, alpha {}, {} layers, {:.2} M trainable parameters",
        settings.lora.r,
        settings.lora.lora_alpha,
        adapter.modules.len(),
        adapter.parameters as f64 / 1e6
    );

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
