//! `engram replay` (a protocol's training data from a text or a dataset) and `engram inject` (a method, from
//! text to adapter in one go): options and printing around `engram-replay` and `engram-eval`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use engram_eval::method::InjectEnv;
use engram_eval::shipped::load_dataset;
use engram_eval::{Injection, Item, select_items};
use engram_lora::write_file_atomically;
use engram_replay::method::{ReplayReport, replay_sources};
use engram_replay::{
    Format, Generator, HttpGenerator, ModelGenerator, Source, protocol_by_name, records_jsonl,
};

use crate::curriculum::CurriculumArgs;
use crate::eval::{DistillArgs, FineTuneArgs, ReplayArgs, registry};
use crate::{DeviceArgs, ModelArgs, Result, load, load_adapters};

/// Where the knowledge comes from: a text file or dataset items.
#[derive(Args, Debug)]
pub(crate) struct SourceArgs {
    /// A text file: the new knowledge.
    #[arg(long, conflicts_with = "dataset")]
    context: Option<PathBuf>,
    /// A shipped dataset (news, relations, trivia) or a JSONL file of items: their contexts.
    #[arg(long, required_unless_present = "context")]
    dataset: Option<String>,
    /// With --dataset: train, dev, test or all.
    #[arg(long, default_value = "all")]
    split: String,
    /// With --dataset: only these item ids (repeatable).
    #[arg(long)]
    item: Vec<String>,
    /// With --dataset: at most N items (round-robin over domains).
    #[arg(long)]
    limit: Option<usize>,
}

impl SourceArgs {
    /// The items to replay or inject, and every item of their dataset (for protocols linking items).
    fn items(&self) -> Result<(Vec<Item>, Vec<Item>)> {
        if let Some(path) = &self.context {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
            let text = text.trim();
            if text.is_empty() {
                return Err(format!("{}: the context file is empty", path.display()).into());
            }
            let item = Item {
                id: path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "context".into()),
                domain: "user".into(),
                context: text.to_owned(),
                questions: Vec::new(),
            };
            return Ok((vec![item.clone()], vec![item]));
        }
        let name = self.dataset.as_deref().unwrap_or_default();
        let dataset = load_dataset(name)?;
        let ids = dataset.split_ids(&self.split)?;
        let mut items = select_items(&dataset.items, ids, None);
        if !self.item.is_empty() {
            for id in &self.item {
                if !items.iter().any(|i| &i.id == id) {
                    return Err(format!(
                        "{}: no item `{id}` in split `{}`",
                        dataset.name, self.split
                    )
                    .into());
                }
            }
            items.retain(|i| self.item.contains(&i.id));
        }
        if let Some(n) = self.limit {
            items = select_items(&items, None, Some(n));
        }
        if items.is_empty() {
            return Err(format!("{}: no items selected", dataset.name).into());
        }
        Ok((items, dataset.items))
    }
}

/// A generator other than the local model.
#[derive(Args, Debug)]
pub(crate) struct EndpointArgs {
    /// An OpenAI-compatible API base (e.g. http://127.0.0.1:8080/v1) to write the data instead of the local
    /// model.
    #[arg(long)]
    endpoint: Option<String>,
    /// The `model` field sent to --endpoint.
    #[arg(long, default_value = "default", requires = "endpoint")]
    endpoint_model: String,
    /// Environment variable holding the endpoint's API key (sent as a bearer token).
    #[arg(long, requires = "endpoint")]
    api_key_env: Option<String>,
    /// Seconds allowed per request to --endpoint.
    #[arg(long, default_value_t = 120)]
    timeout: u64,
}

impl EndpointArgs {
    fn http(&self) -> Result<Option<HttpGenerator>> {
        let Some(url) = &self.endpoint else {
            return Ok(None);
        };
        let mut g = HttpGenerator::new(url, &self.endpoint_model);
        g.timeout = Duration::from_secs(self.timeout.max(1));
        if let Some(var) = &self.api_key_env {
            g.api_key =
                Some(std::env::var(var).map_err(|_| {
                    format!("--api-key-env: environment variable {var} is not set")
                })?);
        }
        Ok(Some(g))
    }
}

#[derive(Args, Debug)]
pub(crate) struct ReplayCmdArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// paraphrase, implication, self-qa or reasoning-trace.
    #[arg(long)]
    protocol: String,
    /// Generations per source (paraphrases, implications, model questions; links for reasoning-trace).
    #[arg(long, default_value_t = 8)]
    n: usize,
    /// Sampling temperature.
    #[arg(long, default_value_t = 0.7)]
    temperature: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Put the source text before each user turn (reproduces contextual shadowing; off by default).
    #[arg(long)]
    context_prefix: bool,
    /// The JSONL file to write (`engram train --data` reads it); its report goes beside it as
    /// `<name>.report.json`.
    #[arg(long)]
    out: PathBuf,
    /// A LoRA adapter on the generating model (repeatable).
    #[arg(long)]
    adapter: Vec<PathBuf>,
    #[command(flatten)]
    endpoint: EndpointArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub(crate) fn replay_cmd(args: ReplayCmdArgs) -> Result<()> {
    let protocol = protocol_by_name(&args.protocol, args.n, args.temperature, args.seed)?;
    let (items, all) = args.source.items()?;
    let sources: Vec<Source> = items.iter().map(Source::from).collect();
    let others: Vec<Source> = all.iter().map(Source::from).collect();
    let format = Format {
        context_prefix: args.context_prefix,
    };
    crate::check_adapter_dirs(&args.adapter)?;
    let mut progress = |done: usize, total: usize| eprintln!("[{done}/{total}] replayed");
    let mut http = args.endpoint.http()?;
    let lm = match http {
        Some(_) => None,
        None => {
            let mut lm = load(&args.model, &args.device)?;
            load_adapters(&mut lm.model, &args.adapter)?;
            Some(lm)
        }
    };
    let mut local = lm.as_ref().map(|lm| {
        let mut g = ModelGenerator::new(lm);
        if !args.adapter.is_empty() {
            g.label = format!("{} + {:?}", g.name(), args.adapter);
        }
        g
    });
    let generator: &mut dyn Generator = match (&mut http, &mut local) {
        (Some(h), _) => h,
        (None, Some(m)) => m,
        (None, None) => return Err("no generator".into()),
    };
    let (records, report) = replay_sources(
        protocol.as_ref(),
        generator,
        &format,
        &sources,
        &others,
        &mut progress,
    )?;
    let io = |p: &Path| {
        let p = p.display().to_string();
        move |e: std::io::Error| format!("{p}: {e}")
    };
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    write_file_atomically(&args.out, records_jsonl(&records).as_bytes()).map_err(io(&args.out))?;
    let report_path = args.out.with_extension("report.json");
    let json = serde_json::to_string_pretty(&report)? + "\n";
    write_file_atomically(&report_path, json.as_bytes()).map_err(io(&report_path))?;
    print_report(&report);
    println!(
        "{} records → {} (report: {})",
        records.len(),
        args.out.display(),
        report_path.display()
    );
    Ok(())
}

fn print_report(r: &ReplayReport) {
    println!(
        "{:<18} {:>9} {:>6} {:>7} {:>9} {:>9}  dropped",
        "protocol", "generated", "kept", "yield", "rule-made", "tokens"
    );
    for y in &r.yields {
        let dropped: Vec<String> = y.dropped.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!(
            "{:<18} {:>9} {:>6} {:>6.0}% {:>9} {:>9}  {}",
            y.protocol,
            y.generated,
            y.kept,
            100.0 * y.rate(),
            y.rule_made,
            y.tokens_generated,
            dropped.join(", ")
        );
    }
    println!(
        "generator {}: {} sources in {:.0} s",
        r.generator, r.sources, r.seconds
    );
}

#[derive(Args, Debug)]
pub(crate) struct InjectArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// The method: naive-ft, prefix-ft, qa-ft, sys2-paraphrase, sys2-implication, sys2-self-qa,
    /// sys2-self-qa-prefix, sys2-mix, aug-ft or self-param.
    #[arg(long)]
    method: String,
    /// The adapter folder to write (PEFT files, the training data and metrics beside them). Rerunning
    /// resumes an interrupted injection.
    #[arg(long)]
    out: PathBuf,
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

pub(crate) fn inject_cmd(args: InjectArgs) -> Result<()> {
    let start = Instant::now();
    let settings = args.finetune.settings()?;
    let replay = args.replay.settings(&settings)?;
    let distill = args.distill.settings(&replay)?;
    let (items, all) = args.source.items()?;
    let mut registry = registry(&settings, &replay, &distill, &all);
    if args.method.starts_with("gradual") {
        // A curriculum chooses its rounds on the dataset's dev facts.
        let Some(name) = &args.source.dataset else {
            return Err(format!(
                "--method {}: needs --dataset (its dev split chooses each stage's round)",
                args.method
            )
            .into());
        };
        let dataset = load_dataset(name)?;
        let gradual = args
            .curriculum
            .gradual(&dataset, &items, &settings, &replay, &distill)?;
        crate::curriculum::register(&mut registry, &gradual);
    }
    let method = registry.select(std::slice::from_ref(&args.method))?[0];
    if !method.trains() {
        return Err(format!(
            "--method {}: writes nothing into weights; pick one of {}",
            args.method,
            registry
                .names()
                .into_iter()
                .filter(|n| registry.get(n).is_some_and(|m| m.trains()))
                .collect::<Vec<_>>()
                .join(", ")
        )
        .into());
    }
    let mut lm = load(&args.model, &args.device)?;
    eprintln!(
        "{}: {} item(s), {}",
        method.name(),
        items.len(),
        method.description()
    );
    let mut on_step = |m: &engram_train::StepMetrics| {
        if m.step.is_multiple_of(10) || m.step == m.total_steps {
            eprintln!("step {}/{} loss {:.4}", m.step, m.total_steps, m.loss);
        }
    };
    let mut env = InjectEnv {
        model: &mut lm,
        on_step: &mut on_step,
    };
    let injection = method.inject(&mut env, &items, None, &args.out)?;
    if let Some((_, report)) = engram_replay::method::read_replay(&args.out)? {
        print_report(&report);
    }
    if let Some(r) = engram_curriculum::method::read_report(&args.out)? {
        println!("{}", engram_curriculum::report::render_markdown(&[r]));
    }
    let distilled = args.out.join(engram_distill::method::DISTILL_REPORT_FILE);
    if let Ok(text) = std::fs::read_to_string(&distilled) {
        let r: engram_distill::DistillReport =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", distilled.display()))?;
        let kinds: Vec<String> = r.targets.iter().map(|(k, n)| format!("{n} {k}")).collect();
        println!(
            "distillation targets: {} ({} target tokens, {} dropped); teacher cache {:.1} MB in {:.1} s; {} epochs",
            kinds.join(", "),
            r.target_tokens,
            r.dropped,
            r.cache_bytes as f64 / 1e6,
            r.teacher_seconds,
            r.epochs
        );
    }
    match injection {
        Injection::Adapter(dir) => println!(
            "adapter: {} ({:.0} s); ask it with `engram ask --adapter {} --question ...`",
            dir.display(),
            start.elapsed().as_secs_f64(),
            dir.display()
        ),
        Injection::Prompt { .. } => return Err("the method wrote no adapter".into()),
    }
    Ok(())
}
