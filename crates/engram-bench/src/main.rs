//! `engram-bench`: load time, prefill and decode throughput and peak memory of engram on the default model,
//! printed as a table beside the same measurements from PyTorch + transformers (run in the same go, same
//! thread count) when `--compare` is given: on the same device (a GPU given as `wgpu` or `cuda:N` is measured
//! by PyTorch as CUDA device 0 or N), in the same `--dtype`, on the same `--random-shape`.
//!
//! Definitions (shared with `benches/compare/torch_bench.py`):
//! - load: seconds from file to a model ready on the device (median of `--load-reps`).
//! - prefill tok/s: `batch * 128 / median seconds` of one forward pass over a 128-token prompt, computing the
//!   last position's logits (what generation needs).
//! - decode tok/s: `64 / seconds` for 64 greedy decode steps with the KV cache after a 16-token prompt, batch
//!   1 (the prefill is not timed).
//! - train step: median seconds of one LoRA optimizer step (r 8, alpha 16, all seven projections, AdamW lr 1e-4
//!   weight decay 0.01, clip 1.0, f32) on a `[4, 128]` batch of the prompt's ids (row r = ids[(r*16 + j) %
//!   len]), next-token cross-entropy over all 4 x 127 targets, through `engram_train::Trainer`; tokens/s =
//!   512 / that. The PyTorch + PEFT side is `benches/compare/peft_train_bench.py`.
//!   Also measured: the same step as four micro-batches of 1 row run on four threads
//!   (`TrainConfig::parallel_micro_batches`; same result bit for bit).
//! - KL step: SELF-PARAM's distillation step (`engram_distill::Distill`, T 1, per-token KL) on the same
//!   `[4, 128]` student batch, the teacher's top-64 distributions cached beforehand (the base model reading a
//!   128-token context before each row); its ratio to the train step is measured in the same run.
//! - peak RSS: the process's high-water resident set (`VmHWM`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use clap::Parser;
use engram_data::HostBatch;
use engram_lora::{Adapters, LoraConfig};
use engram_model::{
    DeviceSpec, ForwardInput, GenerationConfig, LoadedModel, Logits, argmax, generate,
    left_padded_batch,
};
use engram_train::{
    AdamWConfig, BatchSource, CrossEntropy, Length, TokenBatch, TrainConfig, Trainer,
};
use serde::{Deserialize, Serialize};

/// The benchmark prompt: English prose, tokenized and cut (or repeated) to the needed length. `prompt.txt` in
/// this crate is a link to `benches/compare/prompt.txt` (the PyTorch side reads the same file), so that the
/// packaged crate carries it.
pub const BENCH_TEXT: &str = include_str!("../prompt.txt");

#[derive(Parser, Debug)]
#[command(
    name = "engram-bench",
    about = "Speed and memory of engram, beside PyTorch"
)]
struct Args {
    /// Model (GGUF file or HF folder); default: the cached SmolLM2-135M-Instruct.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Threads for both engram (rayon) and PyTorch.
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Repetitions per measurement (the median is reported).
    #[arg(long, default_value_t = 5)]
    reps: usize,
    #[arg(long, default_value_t = 3)]
    load_reps: usize,
    /// Also run benches/compare/torch_bench.py and peft_train_bench.py (need benches/compare/setup.sh to have run).
    #[arg(long)]
    compare: bool,
    /// Python of the comparison venv.
    #[arg(long, default_value = "benches/compare/.venv/bin/python")]
    python: PathBuf,
    #[arg(long, default_value = "cpu")]
    device: String,
    /// How engram holds the frozen linear weights: f32 (dense, in the --dtype), or q8 (8-bit blocks
    /// dequantised at each pass).
    #[arg(long, default_value = "f32")]
    base_weights: String,
    /// The compute dtype: f32, bf16 or f16 (engram keeps adapters, norms and losses f32; with --compare PyTorch
    /// loads the model in it, PEFT keeping its adapter f32).
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Instead of the model file's weights, a model of this shape with random weights (its tokenizer is the
    /// model file's): `llama-1b` (Llama 3.2 1B: 1.24 B parameters, 16 layers, hidden 2048); with --compare
    /// PyTorch builds the same shape.
    #[arg(long)]
    random_shape: Option<String>,
    /// The device's peak FLOP/s in TFLOP/s (e.g. an H100's dense bf16, 989), to report model FLOP
    /// utilisation; without it MFU is not printed.
    #[arg(long)]
    peak_tflops: Option<f64>,
    /// Train with activation checkpointing per decoder layer (`TrainConfig::checkpoint_layers`): less memory,
    /// one more forward pass of compute.
    #[arg(long)]
    checkpoint_layers: bool,
    /// Measure only this part (for profiling): load, prefill, decode, sample or train.
    #[arg(long)]
    only: Option<String>,
    /// Write the figures as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// One implementation's figures.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Figures {
    load_s: f64,
    prefill_b1_tok_s: f64,
    prefill_b4_tok_s: f64,
    decode_b1_tok_s: f64,
    peak_rss_mb: f64,
    #[serde(default = "nan")]
    train_step_s: f64,
    /// The same step as four micro-batches of 1 row on parallel threads (engram only).
    #[serde(default = "nan")]
    train_split_step_s: f64,
    #[serde(default = "nan")]
    train_tok_s: f64,
    /// The first step's loss (B = 0, so the base model's): both sides must agree.
    #[serde(default = "nan", alias = "loss_first")]
    train_loss_first: f64,
    /// Peak RSS of the training run (PyTorch: its own process).
    #[serde(default = "nan")]
    train_peak_rss_mb: f64,
    /// Peak RSS once the `[4, 128]` steps have run, before the split and KL steps (engram only).
    #[serde(default = "nan")]
    train_b4_peak_rss_mb: f64,
    /// SELF-PARAM's KL-distillation step on the same batch, teacher cached (engram only).
    #[serde(default = "nan")]
    kl_step_s: f64,
    #[serde(default = "nan")]
    kl_loss_first: f64,
    /// The knowledge probe's sampling: 4 prompts x 16 samples of 8 tokens, the prompts prefilled once and
    /// their KV cache repeated (`num_return_sequences`), and as 64 repeated prompts (engram only).
    #[serde(default = "nan")]
    sample_shared_s: f64,
    #[serde(default = "nan")]
    sample_repeated_s: f64,
    /// [`forward_flops_per_token`] of the model measured (engram's side; the same model for PyTorch).
    #[serde(default = "nan")]
    forward_flops_per_token: f64,
}

fn nan() -> f64 {
    f64::NAN
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn tokens_of_len(m: &LoadedModel, n: usize) -> Vec<u32> {
    let ids = m.tokenizer.encode(BENCH_TEXT).expect("bench text encodes");
    ids.iter().copied().cycle().take(n).collect()
}

fn time_prefill(m: &LoadedModel, batch: usize, reps: usize) -> f64 {
    let device = m.model.device();
    let prompt = tokens_of_len(m, 128);
    let prompts = vec![prompt; batch];
    let run = || {
        let b = left_padded_batch(&prompts, 2, &device).expect("batch");
        let start = Instant::now();
        let logits = m.model.forward(b.input, None, Logits::Last);
        let _ = logits.into_data();
        start.elapsed().as_secs_f64()
    };
    run(); // warm-up
    let t = median((0..reps).map(|_| run()).collect());
    (batch * 128) as f64 / t
}

fn time_decode(m: &LoadedModel, reps: usize) -> f64 {
    let device = m.model.device();
    let prompt = tokens_of_len(m, 16);
    let run = || {
        let mut cache = m.model.new_cache();
        let b = left_padded_batch(std::slice::from_ref(&prompt), 2, &device).expect("batch");
        let logits = m.model.forward(b.input, Some(&mut cache), Logits::Last);
        let mut next = argmax(&logits.try_into_vec_as::<f32>().expect("f32"));
        let start = Instant::now();
        for step in 0..64 {
            let input = ForwardInput {
                tokens: Tensor::<2, Int>::from_data(
                    TensorData::new(vec![next as i64], [1, 1]),
                    &device,
                ),
                positions: Tensor::<2, Int>::from_data(
                    TensorData::new(vec![(16 + step) as i64], [1, 1]),
                    &device,
                ),
                key_padding: None,
                segments: None,
            };
            let logits = m.model.forward(input, Some(&mut cache), Logits::Last);
            next = argmax(&logits.try_into_vec_as::<f32>().expect("f32"));
        }
        start.elapsed().as_secs_f64()
    };
    run();
    let t = median((0..reps).map(|_| run()).collect());
    64.0 / t
}

/// Seconds to draw 16 samples of 8 tokens for each of 4 prompts of 96 tokens: with one prefill per prompt
/// (`shared`) or with every sample's prompt prefilled (`repeated`, what generation did before).
fn time_sampling(
    m: &LoadedModel,
    reps: usize,
    shared: bool,
) -> Result<f64, engram_model::ModelError> {
    let prompts: Vec<Vec<u32>> = (0..4)
        .map(|i| tokens_of_len(m, 96 + i)) // different lengths: padded, as in the probe
        .collect();
    let (rows, n) = if shared {
        (prompts, 16)
    } else {
        let rows = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p.clone(), 16))
            .collect();
        (rows, 1)
    };
    let cfg = GenerationConfig {
        temperature: 0.5,
        stop_at_eos: false,
        num_return_sequences: n,
        ..GenerationConfig::greedy(8)
    };
    let run = || -> Result<f64, engram_model::ModelError> {
        let start = Instant::now();
        generate(&m.model, &m.tokenizer, &rows, &cfg, &mut |_, _| {})?;
        Ok(start.elapsed().as_secs_f64())
    };
    run()?;
    let mut times = Vec::new();
    for _ in 0..reps {
        times.push(run()?);
    }
    Ok(median(times))
}

/// The same batches at every step (the benchmark measures a step, not a data pipeline): the whole `[4, 128]`
/// batch, or its rows as micro-batches.
struct FixedBatches(Vec<TokenBatch>);

impl BatchSource for FixedBatches {
    type Batch = TokenBatch;
    fn batches_per_epoch(&self) -> usize {
        self.0.len()
    }
    fn batch(&self, _: usize, index: usize) -> TokenBatch {
        self.0[index].clone()
    }
}

/// Rows `rows` of a host batch.
fn host_rows(h: &HostBatch, rows: std::ops::Range<usize>) -> HostBatch {
    let r = rows.start * h.seq..rows.end * h.seq;
    HostBatch {
        batch: rows.len(),
        seq: h.seq,
        tokens: h.tokens[r.clone()].to_vec(),
        positions: h.positions[r.clone()].to_vec(),
        key_padding: h.key_padding[r.clone()].to_vec(),
        segments: None,
        targets: h.targets[r.clone()].to_vec(),
        target_mask: h.target_mask[r].to_vec(),
    }
}

/// (median step seconds, first loss) of `warmup + reps` LoRA training steps; with `split`, each step is the
/// same 4 rows as four micro-batches of 1 row on four threads (`parallel_micro_batches`; measured best of
/// 2x2/2, 4x1/2 and 4x1/4 on 2 cores: element-wise work of one thread overlaps the others' matrix products).
fn time_train(
    m: &LoadedModel,
    reps: usize,
    warmup: usize,
    split: bool,
    checkpoint_layers: bool,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let (host, device) = bench_batch(m)?;
    let source = if split {
        FixedBatches(
            (0..4)
                .map(|r| TokenBatch::from_host(&host_rows(&host, r..r + 1), &device))
                .collect(),
        )
    } else {
        FixedBatches(vec![TokenBatch::from_host(&host, &device)])
    };
    run_steps(
        m,
        reps,
        warmup,
        if split { 4 } else { 1 },
        checkpoint_layers,
        &CrossEntropy,
        &source,
    )
}

/// The benchmark's `[4, 128]` batch: row r is ids[(r*16 + j) % len], every next token a target.
fn bench_batch(
    m: &LoadedModel,
) -> Result<(HostBatch, burn::tensor::Device), Box<dyn std::error::Error>> {
    let device = m.model.device();
    let ids = m.tokenizer.encode(BENCH_TEXT)?;
    let (rows, seq) = (4usize, 128usize);
    let mut tokens = Vec::with_capacity(rows * seq);
    for r in 0..rows {
        tokens.extend((0..seq).map(|j| ids[(r * 16 + j) % ids.len()]));
    }
    let targets: Vec<u32> = (0..rows * seq)
        .map(|i| if i % seq + 1 < seq { tokens[i + 1] } else { 0 })
        .collect();
    let host = HostBatch {
        batch: rows,
        seq,
        positions: (0..rows * seq).map(|i| (i % seq) as u32).collect(),
        key_padding: vec![false; rows * seq],
        segments: None,
        target_mask: (0..rows * seq).map(|i| i % seq + 1 < seq).collect(),
        targets,
        tokens,
    };
    Ok((host, device))
}

/// The KL-distillation step (`engram_distill::Distill`, teacher cached): the same `[4, 128]` student batch,
/// with the teacher's top-64 distributions computed once, before timing, by the base model reading a
/// 128-token context (the prompt's ids from 512 on) before each row. (median seconds, first loss).
fn time_kl(
    m: &LoadedModel,
    reps: usize,
    warmup: usize,
    checkpoint_layers: bool,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    use std::sync::Arc;
    let (host, device) = bench_batch(m)?;
    let ids = m.tokenizer.encode(BENCH_TEXT)?;
    let context: Vec<u32> = (0..128).map(|j| ids[(512 + j) % ids.len()]).collect();
    let (rows, seq) = (host.batch, host.seq);
    let mut teacher = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut t: Vec<i64> = context.iter().map(|&x| x as i64).collect();
        t.extend(
            host.tokens[r * seq..(r + 1) * seq]
                .iter()
                .map(|&x| x as i64),
        );
        let n = t.len();
        let input = ForwardInput::new(
            Tensor::<2, Int>::from_data(TensorData::new(t, [1, n]), &device),
            Tensor::<2, Int>::from_data(
                TensorData::new((0..n as i64).collect::<Vec<_>>(), [1, n]),
                &device,
            ),
            None,
        );
        let hidden = m.model.final_hidden(input, None);
        // Positions 128..255 predict the row's tokens 1..128; the last predicts nothing the student targets.
        let picked = hidden
            .reshape([n, hidden_size(m)])
            .narrow(0, 128, n - 1 - 128);
        let logits = m.model.project_logits(picked);
        let vocab = logits.dims()[1];
        let values = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| format!("{e:?}"))?;
        teacher.push(Arc::new(
            values
                .chunks(vocab)
                .map(|row| engram_distill::TeacherDist::from_logits(row, 1.0, Some(64)))
                .collect::<Vec<_>>(),
        ));
    }
    let source = FixedKl(vec![engram_distill::DistillBatch {
        tokens: TokenBatch::from_host(&host, &device),
        teacher,
    }]);
    run_steps(
        m,
        reps,
        warmup,
        1,
        checkpoint_layers,
        &engram_distill::Distill::default(),
        &source,
    )
}

fn hidden_size(m: &LoadedModel) -> usize {
    m.model.config().hidden_size
}

struct FixedKl(Vec<engram_distill::DistillBatch>);

impl BatchSource for FixedKl {
    type Batch = engram_distill::DistillBatch;
    fn batches_per_epoch(&self) -> usize {
        self.0.len()
    }
    fn batch(&self, _: usize, index: usize) -> engram_distill::DistillBatch {
        self.0[index].clone()
    }
}

/// (median step seconds, first loss) of `warmup + reps` LoRA steps of `objective` over `source`'s batches,
/// `micro` micro-batches per step run on as many threads.
fn run_steps<O, S>(
    m: &LoadedModel,
    reps: usize,
    warmup: usize,
    micro: usize,
    checkpoint_layers: bool,
    objective: &O,
    source: &S,
) -> Result<(f64, f64), Box<dyn std::error::Error>>
where
    O: engram_train::Objective,
    S: BatchSource<Batch = O::Batch>,
{
    let mut model = m.model.clone();
    let lora = LoraConfig::default();
    model.add_adapter("bench", &lora, 0)?;
    let out = tempfile::tempdir()?;
    let mut steps = Vec::new();
    let mut first_loss = f64::NAN;
    let mut trainer = Trainer {
        model: &mut model,
        adapter: "bench".into(),
        lora,
        config: TrainConfig {
            lr: 1e-4,
            adamw: AdamWConfig {
                weight_decay: 0.01,
                ..AdamWConfig::default()
            },
            length: Length::Steps(warmup + reps),
            grad_accum: micro,
            parallel_micro_batches: micro,
            checkpoint_layers,
            ..TrainConfig::default()
        },
        out: out.path().to_path_buf(),
        data_id: "bench".into(),
        replicas: Vec::new(),
    };
    trainer.run(objective, source, false, &mut |s| {
        if s.step == 1 {
            first_loss = s.loss;
        }
        if s.step > warmup {
            steps.push(s.step_s);
        }
        eprintln!(
            "  train step {}: {:.3} s, loss {:.5}",
            s.step, s.step_s, s.loss
        );
    })?;
    Ok((median(steps), first_loss))
}

fn run_engram(args: &Args, path: &Path) -> Result<Figures, Box<dyn std::error::Error>> {
    let base = engram_model::LoadOptions::new(
        args.base_weights.parse::<engram_model::BaseWeights>()?,
        args.dtype.parse::<engram_model::Dtype>()?,
    );
    let device = args.device.parse::<DeviceSpec>()?.device_for(base)?;
    let mut loads = Vec::new();
    let mut model = None;
    for _ in 0..args.load_reps.max(1) {
        drop(model.take());
        let start = Instant::now();
        let m = match &args.random_shape {
            None => engram_model::load_model_with(path, &device, base, &mut |_, _| {})?,
            Some(shape) => random_model(shape, path, &device, base)?,
        };
        loads.push(start.elapsed().as_secs_f64());
        model = Some(m);
    }
    let m = model.expect("loaded at least once");
    let want = |part: &str| args.only.as_deref().is_none_or(|o| o == part);
    let nan = f64::NAN;
    // Training first: its peak RSS is then the process's, not inflated by nothing else.
    let train = if want("train") {
        let ckpt = args.checkpoint_layers;
        let (step_s, loss) = time_train(&m, args.reps, 2, false, ckpt)?;
        let b4_rss = peak_rss_mb();
        let (split_s, _) = time_train(&m, args.reps, 2, true, ckpt)?;
        let (kl_s, kl_loss) = time_kl(&m, args.reps, 2, ckpt)?;
        Figures {
            kl_step_s: kl_s,
            kl_loss_first: kl_loss,
            train_step_s: step_s,
            train_split_step_s: split_s,
            train_tok_s: 512.0 / step_s,
            train_loss_first: loss,
            train_peak_rss_mb: peak_rss_mb(),
            train_b4_peak_rss_mb: b4_rss,
            ..Figures::default()
        }
    } else {
        Figures {
            kl_step_s: nan,
            kl_loss_first: nan,
            train_step_s: nan,
            train_split_step_s: nan,
            train_tok_s: nan,
            train_loss_first: nan,
            train_peak_rss_mb: nan,
            train_b4_peak_rss_mb: nan,
            ..Figures::default()
        }
    };
    Ok(Figures {
        load_s: median(loads),
        prefill_b1_tok_s: if want("prefill") {
            time_prefill(&m, 1, args.reps)
        } else {
            nan
        },
        prefill_b4_tok_s: if want("prefill") {
            time_prefill(&m, 4, args.reps)
        } else {
            nan
        },
        decode_b1_tok_s: if want("decode") {
            time_decode(&m, args.reps)
        } else {
            nan
        },
        sample_shared_s: if want("sample") {
            time_sampling(&m, args.reps, true)?
        } else {
            nan
        },
        sample_repeated_s: if want("sample") {
            time_sampling(&m, args.reps, false)?
        } else {
            nan
        },
        peak_rss_mb: peak_rss_mb(),
        forward_flops_per_token: forward_flops_per_token(m.model.config()),
        ..train
    })
}

/// A model of a named shape with random weights (normal, std 0.02), with the model file's tokenizer.
fn random_model(
    shape: &str,
    path: &Path,
    device: &burn::tensor::Device,
    base: engram_model::LoadOptions,
) -> Result<LoadedModel, Box<dyn std::error::Error>> {
    use engram_model::formats::{Architecture, ModelConfig};
    let config = match shape {
        // Llama 3.2 1B's config.json.
        "llama-1b" => ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: 128_256,
            hidden_size: 2048,
            intermediate_size: 8192,
            num_hidden_layers: 16,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: None,
            max_position_embeddings: 131_072,
            tie_word_embeddings: true,
            attention_bias: false,
            bos_token_id: Some(128_000),
            eos_token_ids: vec![128_001],
            pad_token_id: None,
        },
        other => return Err(format!("unknown --random-shape `{other}`: expected llama-1b").into()),
    };
    engram_model::check_memory(Path::new(shape), &config, base, device)?;
    let source = engram_model::formats::testing::Memory::random(config, 1);
    let model = engram_model::Llama::load_with(&source, device, base, &mut |_, _| {})?;
    drop(source);
    let tokenizer = engram_model::open_tokenizer(path)?;
    let chat_template = engram_model::chat_template_for(&tokenizer, model.config());
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        path: PathBuf::from(shape),
    })
}

/// Matrix-multiply FLOPs of one token's forward pass: 2 per weight of the linear layers and the output head
/// (attention's score and value products, which grow with the context, are left out, as in the usual 6N rule).
fn forward_flops_per_token(c: &engram_model::formats::ModelConfig) -> f64 {
    2.0 * (c.linear_weight_count() + c.vocab_size * c.hidden_size) as f64
}

/// The device PyTorch measures on for engram's `--device`: the same card (`wgpu` is taken to be CUDA device 0,
/// the one GPU of the machines this is run on).
fn torch_device(device: &str) -> Result<String, String> {
    match device.parse::<DeviceSpec>().map_err(|e| e.to_string())? {
        DeviceSpec::Cpu => Ok("cpu".into()),
        DeviceSpec::Wgpu => Ok("cuda:0".into()),
        DeviceSpec::Cuda(n) => Ok(format!("cuda:{n}")),
    }
}

/// Runs `benches/compare/SCRIPT` with the model (or random shape), device, dtype, threads and reps; its stdout
/// (one JSON object).
fn run_script(args: &Args, path: &Path, script: &str, extra: &[&str]) -> Result<Vec<u8>, String> {
    let mut cmd = Command::new(&args.python);
    cmd.arg(Path::new("benches/compare").join(script))
        .args(extra)
        .arg("--model")
        .arg(path)
        .arg("--threads")
        .arg(args.threads.to_string())
        .arg("--reps")
        .arg(args.reps.to_string())
        .arg("--device")
        .arg(torch_device(&args.device)?)
        .arg("--dtype")
        .arg(&args.dtype);
    if let Some(shape) = &args.random_shape {
        cmd.arg("--random-shape").arg(shape);
    }
    let out = cmd
        .output()
        .map_err(|e| format!("running {}: {e}", args.python.display()))?;
    if !out.status.success() {
        return Err(format!(
            "{script} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(out.stdout)
}

fn run_torch(args: &Args, path: &Path) -> Result<Figures, String> {
    if !args.python.exists() {
        return Err(format!(
            "{} not found: run `bash benches/compare/setup.sh` first",
            args.python.display()
        ));
    }
    let mut figures: Figures =
        serde_json::from_slice(&run_script(args, path, "torch_bench.py", &[])?)
            .map_err(|e| format!("torch_bench.py output: {e}"))?;
    let t: serde_json::Value =
        serde_json::from_slice(&run_script(args, path, "peft_train_bench.py", &["--kl"])?)
            .map_err(|e| format!("peft_train_bench.py output: {e}"))?;
    let get = |k: &str| t[k].as_f64().unwrap_or(f64::NAN);
    figures.train_step_s = get("train_step_s");
    figures.train_tok_s = get("train_tok_s");
    figures.train_loss_first = get("loss_first");
    figures.train_peak_rss_mb = get("peak_rss_mb");
    figures.kl_step_s = get("kl_step_s");
    figures.kl_loss_first = t["kl_losses"][0].as_f64().unwrap_or(f64::NAN);
    Ok(figures)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let tuned = engram_model::tune_allocator();
    rayon::ThreadPoolBuilder::new()
        .num_threads(args.threads)
        .build_global()?;
    let path = match &args.model {
        Some(p) => p.clone(),
        None => engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})?,
    };
    eprintln!("engram: measuring on {} thread(s)...", args.threads);
    let ours = run_engram(&args, &path)?;
    let torch = if args.compare {
        eprintln!("pytorch: measuring on {} thread(s)...", args.threads);
        // The same model, so the same FLOPs per token.
        Some(run_torch(&args, &path).map(|t| Figures {
            forward_flops_per_token: ours.forward_flops_per_token,
            ..t
        }))
    } else {
        None
    };
    println!(
        "model: {}  threads: {}  reps: {} (medians)  allocator tuning: {}  engram base weights: {}  dtype: {}  \
         checkpoint layers: {}",
        match &args.random_shape {
            Some(shape) => format!("{shape} (random weights)"),
            None => path.display().to_string(),
        },
        args.threads,
        args.reps,
        if tuned { "on" } else { "off" },
        args.base_weights,
        args.dtype,
        if args.checkpoint_layers { "on" } else { "off" }
    );
    println!("| metric | engram | pytorch | engram / pytorch |");
    println!("|---|---:|---:|---:|");
    type Row = (&'static str, fn(&Figures) -> f64);
    let rows: [Row; 20] = [
        ("load (s)", |f| f.load_s),
        ("prefill tok/s, 128 tokens, batch 1", |f| f.prefill_b1_tok_s),
        ("prefill tok/s, 128 tokens, batch 4", |f| f.prefill_b4_tok_s),
        ("decode tok/s, 64 tokens, batch 1", |f| f.decode_b1_tok_s),
        ("peak RSS (MB)", |f| f.peak_rss_mb),
        ("LoRA train step (s), 4x128, r8 all-linear", |f| {
            f.train_step_s
        }),
        ("LoRA train step (s), as 4x1 rows on 4 threads", |f| {
            f.train_split_step_s
        }),
        ("LoRA train tok/s", |f| f.train_tok_s),
        ("train loss, first step", |f| f.train_loss_first),
        ("peak RSS of training (MB)", |f| f.train_peak_rss_mb),
        ("peak RSS after the 4x128 steps (MB)", |f| {
            f.train_b4_peak_rss_mb
        }),
        (
            "KL distillation step (s), 4x128, teacher top-64 cached",
            |f| f.kl_step_s,
        ),
        ("KL step / LoRA train step (same run)", |f| {
            f.kl_step_s / f.train_step_s
        }),
        ("KL loss, first step", |f| f.kl_loss_first),
        (
            "probe sampling (s), 4 prompts x 16 samples, shared prefill",
            |f| f.sample_shared_s,
        ),
        ("probe sampling (s), the same as 64 prefilled rows", |f| {
            f.sample_repeated_s
        }),
        ("shared / repeated prefill (same run)", |f| {
            f.sample_shared_s / f.sample_repeated_s
        }),
        ("decode model GFLOP/s (2N per token), batch 1", |f| {
            f.decode_b1_tok_s * f.forward_flops_per_token / 1e9
        }),
        ("prefill model GFLOP/s (2N per token), batch 4", |f| {
            f.prefill_b4_tok_s * f.forward_flops_per_token / 1e9
        }),
        ("LoRA step model GFLOP/s (4N per token)", |f| {
            // Forward and the input gradients; a frozen base computes no weight gradients.
            f.train_tok_s * 2.0 * f.forward_flops_per_token / 1e9
        }),
    ];
    for (name, get) in rows {
        let ours_v = get(&ours);
        match &torch {
            Some(Ok(t)) => {
                let tv = get(t);
                if tv.is_nan() {
                    // Measured on the engram side only.
                    println!("| {name} | {ours_v:.2} | - | - |");
                } else {
                    println!("| {name} | {ours_v:.2} | {tv:.2} | {:.2}x |", ours_v / tv);
                }
            }
            _ => println!("| {name} | {ours_v:.2} | - | - |"),
        }
    }
    if let Some(peak) = args.peak_tflops {
        let mfu = |gflops: f64| 100.0 * gflops / (peak * 1e3);
        let f = ours.forward_flops_per_token / 1e9;
        println!(
            "MFU against {peak} TFLOP/s (engram): decode {:.2}%, prefill batch 4 {:.2}%, LoRA step {:.2}%",
            mfu(ours.decode_b1_tok_s * f),
            mfu(ours.prefill_b4_tok_s * f),
            mfu(ours.train_tok_s * 2.0 * f)
        );
    }
    if let Some(Err(e)) = &torch {
        eprintln!("pytorch comparison skipped: {e}");
    }
    if let Some(p) = &args.json {
        let j = serde_json::json!({ "engram": ours, "pytorch": torch.and_then(|t| t.ok()) });
        std::fs::write(p, serde_json::to_string_pretty(&j)?)?;
    }
    Ok(())
}
