//! `engram eval` and `engram ask`: options, progress and printing around `engram-eval`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use engram_distill::{DistillSettings, KlReduction, QaAnswers};
use engram_eval::harness::RunManifest;
use engram_eval::locality::LocalitySet;
use engram_eval::report::{MEASURES, summarize, write_report};
use engram_eval::shipped::{general_texts, load_dataset, regulariser_texts, trivia};
use engram_eval::{FineTuneSettings, Mode, ProbeConfig, Progress, Registry, RunSpec, select_items};
use engram_lora::{LoraConfig, TargetModules};
use engram_model::{GenerationConfig, generate};
use engram_replay::ReplaySettings;
use engram_train::TrainConfig;

use crate::curriculum::{CurriculumArgs, curriculum_section};
use crate::{DeviceArgs, ModelArgs, Result, display_name, load, load_adapters};

#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    /// A shipped dataset (news, relations, trivia) or a JSONL file of items (splits.json beside it).
    #[arg(long)]
    dataset: String,
    /// train, dev, test or all.
    #[arg(long, default_value = "test")]
    split: String,
    /// Conditions to compare, comma-separated: base, icl, naive-ft, prefix-ft, qa-ft, sys2-paraphrase,
    /// sys2-implication, sys2-self-qa, sys2-self-qa-prefix, sys2-mix, aug-ft, self-param.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "base,icl,naive-ft,prefix-ft"
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
    finetune: FineTuneArgs,
    #[command(flatten)]
    replay: ReplayArgs,
    #[command(flatten)]
    distill: DistillArgs,
    #[command(flatten)]
    curriculum: CurriculumArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

/// The options of LoRA fine-tuning, shared by `eval` and `inject`.
#[derive(Args, Debug)]
pub(crate) struct FineTuneArgs {
    /// Fine-tuning: passes over the examples built from the items.
    #[arg(long, default_value_t = FineTuneSettings::default().epochs)]
    epochs: usize,
    /// Fine-tuning: peak learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    lr: f64,
    /// Fine-tuning: rows per batch.
    #[arg(long, default_value_t = FineTuneSettings::default().batch_size)]
    batch_size: usize,
    /// Fine-tuning: LoRA rank.
    #[arg(long, default_value_t = LoraConfig::default().r)]
    r: usize,
    /// Fine-tuning: LoRA alpha.
    #[arg(long, default_value_t = LoraConfig::default().lora_alpha)]
    lora_alpha: f64,
    /// Fine-tuning: adapted layers (q_proj,v_proj,... or all-linear).
    #[arg(long, default_value = "all-linear")]
    target_modules: String,
    /// Seed of adapters, data order and option orders.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl FineTuneArgs {
    pub(crate) fn settings(&self) -> Result<FineTuneSettings> {
        let settings = FineTuneSettings {
            lora: LoraConfig {
                r: self.r,
                lora_alpha: self.lora_alpha,
                target_modules: TargetModules::parse(&self.target_modules)?,
                ..LoraConfig::default()
            },
            train: TrainConfig {
                lr: self.lr,
                checkpoint_every: 50,
                ..TrainConfig::default()
            },
            epochs: self.epochs,
            batch_size: self.batch_size,
            seed: self.seed,
            ..FineTuneSettings::default()
        };
        settings.validate()?;
        Ok(settings)
    }
}

/// The options of the replay methods (`sys2-*`, `aug-ft`), shared by `eval` and `inject`.
#[derive(Args, Debug)]
pub(crate) struct ReplayArgs {
    /// Replay methods: generations per protocol and item (paraphrases, implications; half as many model
    /// questions for self-QA).
    #[arg(long = "replay-n", default_value_t = ReplaySettings::default().n)]
    n: usize,
    /// Replay methods: sampling temperature of the generations.
    #[arg(long = "replay-temperature", default_value_t = ReplaySettings::default().temperature)]
    temperature: f32,
    /// Replay methods: training examples per item (passes over the replayed records are set to reach it,
    /// so every method trains about as long whatever its yield).
    #[arg(long, default_value_t = ReplaySettings::default().examples_per_item)]
    examples_per_item: usize,
}

impl ReplayArgs {
    pub(crate) fn settings(&self, finetune: &FineTuneSettings) -> Result<ReplaySettings> {
        let s = ReplaySettings {
            finetune: finetune.clone(),
            examples_per_item: self.examples_per_item,
            n: self.n,
            temperature: self.temperature,
            seed: finetune.seed,
        };
        s.validate()?;
        Ok(s)
    }
}

/// The options of `self-param`, shared by `eval` and `inject`.
#[derive(Args, Debug)]
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
}

impl DistillArgs {
    pub(crate) fn settings(&self, replay: &ReplaySettings) -> Result<DistillSettings> {
        let top_k =
            match self.kl_top_k.as_str() {
                "full" => None,
                k => Some(k.parse::<usize>().map_err(|_| {
                    format!("--kl-top-k {k}: expected a number of tokens or `full`")
                })?),
            };
        let texts = regulariser_texts();
        let s = DistillSettings {
            replay: replay.clone(),
            continuations: self.continuations,
            regulariser: self.regulariser,
            regulariser_with_context: !self.regulariser_without_context,
            regulariser_texts: texts,
            replay_previous: self.replay_previous,
            qa_answers: QaAnswers::parse(&self.qa_answers)?,
            temperature: self.kl_temperature,
            top_k,
            reduction: KlReduction::parse(&self.kl_reduction)?,
            ..DistillSettings::default()
        };
        s.validate()?;
        Ok(s)
    }
}

/// Every method by name: the baselines, the replay methods (`dataset` for the methods linking items) and
/// `self-param`, generating through one cache.
pub(crate) fn registry(
    settings: &FineTuneSettings,
    replay: &ReplaySettings,
    distill: &DistillSettings,
    dataset: &[engram_eval::Item],
) -> Registry {
    let mut r = Registry::with_baselines(settings);
    let cache = engram_replay::GenerationCache::default();
    engram_replay::register(&mut r, replay, dataset, &cache);
    engram_distill::register(&mut r, distill, dataset, &cache);
    r
}

pub(crate) fn eval_cmd(args: EvalArgs) -> Result<()> {
    let start = Instant::now();
    let mode: Mode = args.mode.parse()?;
    let settings = args.finetune.settings()?;
    let dataset = load_dataset(&args.dataset)?;
    let replay = args.replay.settings(&settings)?;
    let distill = args.distill.settings(&replay)?;
    let ids = dataset.split_ids(&args.split)?;
    let items = select_items(&dataset.items, ids, args.limit);
    if items.is_empty() {
        return Err(format!("{}: split `{}` has no items", dataset.name, args.split).into());
    }
    let mut registry = registry(&settings, &replay, &distill, &dataset.items);
    let gradual = args
        .curriculum
        .gradual(&dataset, &items, &settings, &replay, &distill)?;
    crate::curriculum::register(&mut registry, &gradual);
    let methods = registry.select(&args.methods)?;
    let probe = ProbeConfig {
        letter_orders: args.letter_orders,
        max_new_tokens: args.max_new_tokens,
        seed: args.finetune.seed,
        ..ProbeConfig::default()
    };
    let locality = (args.locality > 0)
        .then(|| -> Result<LocalitySet> {
            let t = trivia()?;
            let test = t.split_ids("test")?;
            let qs = select_items(&t.items, test, Some(args.locality));
            Ok(LocalitySet {
                questions: qs
                    .into_iter()
                    .map(|i| {
                        let q = i.questions[0].clone();
                        (i, q)
                    })
                    .collect(),
                texts: general_texts(),
                window: 256,
            })
        })
        .transpose()?;

    let mut lm = load(&args.model, &args.device)?;
    let spec = RunSpec {
        manifest: RunManifest {
            dataset: dataset.name.clone(),
            split: args.split.clone(),
            mode,
            item_ids: items.iter().map(|i| i.id.clone()).collect(),
            methods: args.methods.clone(),
            probe,
            // Only the settings the chosen methods use, so that adding a method's options does not stop
            // older runs from resuming.
            settings: if args.methods.iter().any(|m| m.starts_with("gradual")) {
                serde_json::json!({"finetune": settings.to_json(), "replay": replay.to_json(), "distill": distill.to_json(), "gradual": args.curriculum.to_json(&gradual)})
            } else if args.methods.iter().any(|m| m == "self-param") {
                serde_json::json!({"finetune": settings.to_json(), "replay": replay.to_json(), "distill": distill.to_json()})
            } else if args
                .methods
                .iter()
                .any(|m| engram_replay::method::METHODS.contains(&m.as_str()))
            {
                serde_json::json!({"finetune": settings.to_json(), "replay": replay.to_json()})
            } else {
                settings.to_json()
            },
            locality_questions: locality.as_ref().map_or(0, |l| l.questions.len()),
            model: display_name(&lm.path),
        },
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
    write_report(&args.out, &summary)?;
    if let Some(section) = curriculum_section(&args.out, &args.methods)? {
        // The category transitions belong with the rest of the evaluation.
        let path = args.out.join("report.md");
        let mut text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        text.push_str("\n## Curriculum\n\n");
        text.push_str(&section);
        engram_lora::write_file_atomically(&path, text.as_bytes())
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }

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
    /// A LoRA adapter folder (PEFT format); repeat to apply several.
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
    let out = generate(&lm.model, &lm.tokenizer, &[ids], &cfg, &mut |_, _| {})?;
    println!("{}", out[0].text.trim());
    Ok(())
}
