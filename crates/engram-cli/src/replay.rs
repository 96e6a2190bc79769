//! `engram replay` (a protocol's training data from a text or a dataset) and `engram inject` (a method, from
//! text to adapter in one go): options and printing around `engram-replay` and `engram-eval`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Args;

use engram::MethodSettings;
use engram_eval::shipped::{Dataset, load_dataset};
use engram_eval::{Item, select_items};
use engram_inject::{FamilyKind, InjectEnv, Injection};
use engram_model::formats::atomic::write_file_atomically;
use engram_replay::method::replay_sources;
use engram_replay::{
    Format, Generator, HttpGenerator, ModelGenerator, Source, protocol_by_name, records_jsonl,
};

use crate::curriculum::CurriculumArgs;
use crate::eval::method_settings;
use crate::settings::{MethodArgs, method_names};
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
    /// The items to use, every item of their dataset, and the dataset when one was named.
    fn items(&self) -> Result<(Vec<Item>, Vec<Item>, Option<Dataset>)> {
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
            return Ok((vec![item.clone()], vec![item], None));
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
        let all = dataset.items.clone();
        Ok((items, all, Some(dataset)))
    }
}

/// A generator other than the local model.
#[derive(Args, Debug)]
pub(crate) struct EndpointArgs {
    /// An OpenAI-compatible API base (e.g. http://127.0.0.1:8080/v1) to generate with instead of the local
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
    pub(crate) fn http(&self) -> Result<Option<HttpGenerator>> {
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
    let (items, all, _) = args.source.items()?;
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
    print!("{}", report.table());
    println!(
        "{} records → {} (report: {})",
        records.len(),
        args.out.display(),
        report_path.display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub(crate) struct InjectArgs {
    #[command(flatten)]
    source: SourceArgs,
    #[arg(long, default_value = engram::DEFAULT_METHOD, help = format!("The method: {}", method_names(true)))]
    method: String,
    /// The adapter folder to write (PEFT files, the training data and metrics beside them). Rerunning
    /// resumes an interrupted injection.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    methods: MethodArgs,
    #[command(flatten)]
    curriculum: CurriculumArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

pub(crate) fn inject_cmd(args: InjectArgs) -> Result<()> {
    let start = Instant::now();
    let (items, all, dataset) = args.source.items()?;
    // One text trains one adapter on a handful of examples: the one-text recipe (lr 1e-3, 64 examples),
    // not the batch one, unless flags say otherwise.
    let base = if items.len() == 1 {
        MethodSettings::one_text()
    } else {
        MethodSettings::default()
    };
    let settings = method_settings(
        &args.methods,
        &args.curriculum,
        dataset.as_ref().map(|d| (d, items.as_slice())),
        base,
    )?;
    let mut registry = engram::registry(&settings, &all);
    if settings.curricula.is_none() {
        registry = registry.without(
            FamilyKind::Curriculum,
            "a curriculum chooses each stage's round on a dataset's dev facts: needs --dataset",
        );
    }
    let method = registry.build(&args.method)?;
    if !method.trains() {
        return Err(format!(
            "--method {}: writes nothing into weights; pick one of {}",
            args.method,
            registry.training_names().join(", ")
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
    if let Some(note) = method.notes(&args.out)? {
        println!("{}", note.trim_end());
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
