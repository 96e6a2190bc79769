//! `engram eval` and `engram ask`: options, progress and printing around `engram-eval`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use engram::MethodSettings;
use engram_eval::locality::LocalitySet;
use engram_eval::report::{MEASURES, summarize, write_report_with_notes};
use engram_eval::shipped::{Dataset, load_dataset};
use engram_eval::{
    Item, Mode, ProbeConfig, Progress, RunManifest, RunSpec, method_notes, select_items,
};
use engram_model::{GenerationConfig, generate};

use crate::curriculum::CurriculumArgs;
use crate::settings::{MethodArgs, inject_defaults, method_names};
use crate::{DeviceArgs, ModelArgs, Result, load, load_adapters};

#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    /// A shipped dataset (news, relations, trivia) or a JSONL file of items (splits.json beside it).
    #[arg(long)]
    dataset: String,
    /// train, dev, test or all.
    #[arg(long, default_value = "test")]
    split: String,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "base,icl,naive-ft,prefix-ft",
        help = format!("Conditions to compare, comma-separated: {}", method_names(false))
    )]
    methods: Vec<String>,
    /// single (an adapter per item), batch (one for all) or sequential (one after another: retention).
    #[arg(long, default_value = "batch")]
    mode: String,
    /// Evaluate at most N items of the split (taken round-robin over domains).
    #[arg(long)]
    limit: Option<usize>,
    /// Folder for results.jsonl, summary.json, report.md, the charts and the adapters. Rerun the same
    /// command to resume an interrupted run.
    #[arg(long)]
    out: PathBuf,
    /// Unrelated trivia questions (test split) for locality; 0 = no locality.
    #[arg(long, default_value_t = 48)]
    locality: usize,
    /// Single mode: measure locality on the first N adapters only (each costs the trivia questions again).
    #[arg(long, default_value_t = 4)]
    locality_adapters: usize,
    /// Random option orders for the option-letter score.
    #[arg(long, default_value_t = ProbeConfig::default().letter_orders)]
    letter_orders: usize,
    /// Upper bound on a greedy answer's tokens.
    #[arg(long, default_value_t = ProbeConfig::default().max_new_tokens)]
    max_new_tokens: usize,

    #[command(flatten)]
    methods_args: MethodArgs,
    #[command(flatten)]
    curriculum: CurriculumArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The settings of every method from the shared option groups, with the curricula on `dataset` when it has
/// a dev split to choose their rounds on. `base`: the defaults under the flags ([`MethodSettings::default`]
/// for batch runs, [`MethodSettings::one_text`] for one text).
pub(crate) fn method_settings(
    methods: &MethodArgs,
    curriculum: &CurriculumArgs,
    dataset: Option<(&Dataset, &[Item])>,
    base: MethodSettings,
) -> Result<MethodSettings> {
    let mut base = base;
    let defaults = inject_defaults();
    base.finetune.train.checkpoint_every = defaults.train.checkpoint_every;
    base.finetune.guard.cache = defaults.guard.cache;
    let mut settings = methods.settings(base)?;
    if let Some((dataset, injected)) = dataset {
        let seed = settings.finetune.train.seed;
        settings.curricula = Some(curriculum.curricula(dataset, injected, seed)?);
    }
    Ok(settings)
}

pub(crate) fn eval_cmd(args: EvalArgs) -> Result<()> {
    let start = Instant::now();
    let mode: Mode = args.mode.parse()?;
    let dataset = load_dataset(&args.dataset)?;
    let ids = dataset.split_ids(&args.split)?;
    let items = select_items(&dataset.items, ids, args.limit);
    if items.is_empty() {
        return Err(format!("{}: split `{}` has no items", dataset.name, args.split).into());
    }
    let settings = method_settings(
        &args.methods_args,
        &args.curriculum,
        Some((&dataset, &items)),
        MethodSettings::default(),
    )?;
    let methods = engram::registry(&settings, &dataset.items).select(&args.methods)?;
    let probe = ProbeConfig {
        letter_orders: args.letter_orders,
        max_new_tokens: args.max_new_tokens,
        seed: settings.finetune.train.seed,
        ..ProbeConfig::default()
    };
    let locality = (args.locality > 0)
        .then(|| LocalitySet::shipped(args.locality))
        .transpose()?;

    let mut lm = load(&args.model, &args.device)?;
    let spec = RunSpec {
        manifest: RunManifest::new(
            &dataset.name,
            &args.split,
            mode,
            &items,
            &methods,
            probe,
            locality.as_ref().map_or(0, |l| l.questions.len()),
            &lm.path,
        ),
        items,
        locality,
        locality_units: match mode {
            Mode::Single => args.locality_adapters,
            _ => 1,
        },
        out: args.out.clone(),
    };
    eprintln!(
        "{}: {} items ({} split), {} mode, conditions {}",
        dataset.name,
        spec.items.len(),
        args.split,
        mode.name(),
        args.methods.join(", ")
    );
    let mut bar = EvalProgress::new();
    let result = engram_eval::run_eval(&mut lm, &methods, &spec, &mut |p| bar.update(p));
    bar.finish();
    let (rows, loc) = result?;
    let seconds = engram_eval::harness::elapsed_seconds(&args.out);
    let summary = summarize(&spec.manifest, &rows, &loc, seconds);
    let notes = method_notes(&args.out, &methods, mode, spec.items.len())?;
    write_report_with_notes(&args.out, &summary, &notes)?;

    // The overall table, as in report.md.
    print!("{:<12}", "condition");
    for (_, h) in MEASURES {
        print!(" {h:>14}");
    }
    println!();
    for c in &summary.conditions {
        print!("{c:<12}");
        for (k, _) in MEASURES {
            match summary.overall[c].get(k) {
                Some(e) => print!(" {:>14}", format!("{:.1}%", e.mean * 100.0)),
                None => print!(" {:>14}", "–"),
            }
        }
        println!();
    }
    println!(
        "report: {} ({:.0} s this invocation, {:.0} s on the run in all)",
        args.out.join("report.md").display(),
        start.elapsed().as_secs_f64(),
        summary.seconds
    );
    Ok(())
}

/// A progress bar over questions asked, with the current injection's training step in its message.
struct EvalProgress {
    bar: Option<ProgressBar>,
    lines: bool,
    done: usize,
    total: usize,
    unit: String,
}

impl EvalProgress {
    fn new() -> Self {
        Self {
            bar: None,
            lines: !std::io::stderr().is_terminal(),
            done: 0,
            total: 0,
            unit: String::new(),
        }
    }

    fn update(&mut self, p: Progress<'_>) {
        match p {
            Progress::Planned { questions, resumed } => {
                self.total = questions;
                self.done = resumed;
                if resumed > 0 {
                    eprintln!("resuming: {resumed} of {questions} questions already asked");
                }
                if !self.lines {
                    let bar = ProgressBar::new(questions as u64);
                    if let Ok(style) = ProgressStyle::with_template(
                        "eval [{bar:20}] {pos}/{len} questions  {msg}  ETA {eta}",
                    ) {
                        bar.set_style(style.progress_chars("=> "));
                    }
                    bar.set_position(resumed as u64);
                    bar.enable_steady_tick(std::time::Duration::from_millis(200));
                    self.bar = Some(bar);
                }
            }
            Progress::Injecting { method, unit } => {
                self.unit = if unit == "-" {
                    method.to_owned()
                } else {
                    format!("{method} {unit}")
                };
                self.message(format!("{}: asking/injecting", self.unit));
            }
            Progress::Step(m) => {
                // In a log, every 25th step is enough; a bar shows every one.
                if self.bar.is_some() || m.step % 25 == 0 || m.step == m.total_steps {
                    self.message(format!(
                        "{}: training step {}/{} loss {:.3}",
                        self.unit, m.step, m.total_steps, m.loss
                    ));
                }
            }
            Progress::Asked { questions } => {
                self.done += questions;
                match &self.bar {
                    Some(b) => {
                        b.set_position(self.done as u64);
                        b.set_message(format!("{}: asking", self.unit));
                    }
                    None if self.lines && self.done.is_multiple_of(50) => {
                        eprintln!("[{}/{}] asked", self.done, self.total);
                    }
                    None => {}
                }
            }
            Progress::Locality { method, unit } => {
                self.message(format!("{method} {unit}: locality"));
            }
        }
    }

    fn message(&self, m: String) {
        match &self.bar {
            Some(b) => b.set_message(m),
            None if self.lines => eprintln!("[{}/{}] {m}", self.done, self.total),
            None => {}
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[derive(Args, Debug)]
pub(crate) struct AskArgs {
    /// The question.
    #[arg(long)]
    question: String,
    /// A LoRA adapter: a PEFT folder or a llama.cpp GGUF adapter; repeat to apply several.
    #[arg(long)]
    adapter: Vec<PathBuf>,
    /// A text file put before the question in the prompt (in-context learning).
    #[arg(long)]
    context: Option<PathBuf>,
    /// Upper bound on the answer's tokens.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// Asks one question the way `engram eval` does (same prompt), greedy, and prints the answer.
pub(crate) fn ask_cmd(args: AskArgs) -> Result<()> {
    crate::check_adapter_dirs(&args.adapter)?;
    let context = match &args.context {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("{}: cannot read: {e}", p.display()))?
                .trim()
                .to_owned(),
        ),
        None => None,
    };
    let mut lm = load(&args.model, &args.device)?;
    load_adapters(&mut lm.model, &args.adapter)?;
    let prompt =
        engram_eval::probe::chat_prompt(&lm.chat_template, context.as_deref(), &args.question)?;
    let ids = lm.tokenizer.encode(&prompt)?;
    let cfg = GenerationConfig::greedy(args.max_new_tokens);
    lm.model.ensure_positions(ids.len() + cfg.max_new_tokens)?;
    let out = generate(&lm.model, &lm.tokenizer, &[ids], &cfg, &mut |_, _| {})?;
    println!("{}", out[0].text.trim());
    Ok(())
}
