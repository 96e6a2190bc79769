//! The training loop: micro-batches → loss → gradients of the adapter factors only → accumulation → global
//! clipping → AdamW, with per-step metrics, atomic checkpoints and exact resume.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Param;
use burn::tensor::{Device, Tensor, TensorData};
use engram_lora::{Adapters, LoraConfig, load_adapter, save_adapter};
use engram_model::formats::TensorF32;
use engram_model::formats::atomic::{write_dir_atomically, write_file_atomically};
use engram_model::formats::hf::{decode_f32, f32_safetensors};
use engram_model::{CheckpointSink, Llama};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::optim::{AdamW, AdamWConfig, Decay, LrSchedule, Moments, global_norm};
use crate::{BatchSource, Objective, ToDevice, TrainError};

/// How long to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Length {
    /// This many optimizer steps (the data repeats as needed).
    Steps(usize),
    /// This many passes over the data.
    Epochs(usize),
}

/// Everything that shapes a run besides the data, the model and the adapter's own configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Peak learning rate.
    pub lr: f64,
    /// Optimizer steps of linear warm-up up to `lr` (0: none).
    pub warmup_steps: usize,
    /// The learning-rate curve after warm-up.
    pub schedule: Decay,
    /// AdamW's hyper-parameters.
    pub adamw: AdamWConfig,
    /// Clip the global gradient norm to this (PyTorch's `clip_grad_norm_`); `None`: no clipping.
    pub max_grad_norm: Option<f64>,
    /// Micro-batches per optimizer step.
    pub grad_accum: usize,
    /// How long to train: a number of steps or of epochs.
    pub length: Length,
    /// Seeds dropout (the data order and the adapter's initialisation are seeded by their owners).
    pub seed: u64,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Run up to this many of a step's micro-batches at once, one thread each (1: one after the other). The
    /// result is bit-identical either way; on the CPU backend 2 keeps both cores busy (see docs/benchmarks.md).
    #[serde(default = "one")]
    pub parallel_micro_batches: usize,
    /// Activation checkpointing per decoder layer ([`engram_model::LayerCheckpoint`]): the layers run twice
    /// (once outside autodiff, once per layer in the backward pass), so only one layer's activations and
    /// expanded weights are held at a time. Less memory for one more forward pass of compute (1.4x the step
    /// time on the CPU, docs/benchmarks.md); the same gradients up to rounding. Left out of the run's
    /// fingerprint when off, so older checkpoints still resume.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub checkpoint_layers: bool,
}

fn one() -> usize {
    1
}

impl Default for TrainConfig {
    /// lr 3e-4 (the PyTorch reference's setting for SmolLM2), constant, clip at 1.0, one epoch.
    fn default() -> Self {
        Self {
            lr: 3e-4,
            warmup_steps: 0,
            schedule: Decay::Constant,
            adamw: AdamWConfig::default(),
            max_grad_norm: Some(1.0),
            grad_accum: 1,
            length: Length::Epochs(1),
            seed: 0,
            checkpoint_every: 0,
            parallel_micro_batches: 1,
            checkpoint_layers: false,
        }
    }
}

impl TrainConfig {
    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.lr > 0.0 && self.lr.is_finite()) {
            return Err(TrainError::invalid(
                "lr",
                self.lr,
                "must be a positive number",
            ));
        }
        if self.grad_accum == 0 {
            return Err(TrainError::invalid("grad-accum", 0, "must be at least 1"));
        }
        if self.parallel_micro_batches == 0 {
            return Err(TrainError::invalid(
                "parallel-micro-batches",
                0,
                "must be at least 1",
            ));
        }
        match self.length {
            Length::Steps(0) => return Err(TrainError::invalid("steps", 0, "must be at least 1")),
            Length::Epochs(0) => {
                return Err(TrainError::invalid("epochs", 0, "must be at least 1"));
            }
            _ => {}
        }
        if let Some(c) = self.max_grad_norm
            && !(c > 0.0 && c.is_finite())
        {
            return Err(TrainError::invalid("max-grad-norm", c, "must be positive"));
        }
        self.adamw.validate()
    }

    /// Checks that a step has a micro-batch for each of `devices` devices (data parallelism, see
    /// [`Trainer::replicas`]): with fewer, a device would sit idle.
    pub fn validate_devices(&self, devices: usize) -> Result<(), TrainError> {
        if devices > self.grad_accum {
            return Err(TrainError::invalid(
                "grad-accum",
                self.grad_accum,
                format!(
                    "training on {devices} devices needs at least {devices} micro-batches per step \
                     (--grad-accum), one per device"
                ),
            ));
        }
        Ok(())
    }

    /// Optimizer steps for data of `batches_per_epoch` micro-batches.
    pub fn total_steps(&self, batches_per_epoch: usize) -> usize {
        match self.length {
            Length::Steps(s) => s,
            Length::Epochs(e) => (e * batches_per_epoch).div_ceil(self.grad_accum),
        }
    }
}

/// One optimizer step's figures, as written to `metrics.jsonl`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// 1-based: steps completed.
    pub step: usize,
    /// Optimizer steps in the whole run.
    pub total_steps: usize,
    /// Passes over the data so far (fractional).
    pub epoch: f64,
    /// Mean loss over the step's target tokens.
    pub loss: f64,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Target tokens in the step.
    pub tokens: usize,
    /// Target tokens per second of this step.
    pub tokens_per_s: f64,
    /// Seconds of this step.
    pub step_s: f64,
}

/// What a finished run reports.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Optimizer steps in the whole run (including those done before a resume).
    pub steps: usize,
    /// The step a resumed run started from (0 for a fresh run).
    pub resumed_from: usize,
    /// Mean loss of the last step this invocation ran (`None` when a resumed run had no steps left).
    pub final_loss: Option<f64>,
    /// Folder holding the final adapter (`OUT/`).
    pub adapter_dir: PathBuf,
    /// What went wrong without costing the adapter (e.g. the end-of-run checkpoint could not be written).
    pub warnings: Vec<String>,
}

/// Where a run keeps its files: `OUT/` holds the final adapter (PEFT files, loadable by PEFT and engram) and
/// `metrics.jsonl`; `OUT/checkpoint/` the latest checkpoint.
pub struct RunDir {
    /// The run's output folder (`OUT/`).
    pub out: PathBuf,
}

impl RunDir {
    /// `OUT/checkpoint`: the latest checkpoint.
    pub fn checkpoint(&self) -> PathBuf {
        self.out.join("checkpoint")
    }
    /// `OUT/metrics.jsonl`: one [`StepMetrics`] line per step.
    pub fn metrics(&self) -> PathBuf {
        self.out.join("metrics.jsonl")
    }
    /// A file or folder showing that a run was already made in `OUT` (its adapter, checkpoint or a step of
    /// metrics), so that starting another there would replace it.
    pub fn earlier_run(&self) -> Option<PathBuf> {
        let adapter = self.out.join(engram_lora::CONFIG_FILE);
        let metrics = self.metrics();
        [adapter, self.checkpoint()]
            .into_iter()
            .find(|p| p.exists())
            .or_else(|| {
                let len = std::fs::metadata(&metrics).map(|m| m.len()).unwrap_or(0);
                (len > 0).then_some(metrics)
            })
    }
}

/// The identity of a run: resuming checks that nothing in it changed.
fn fingerprint(
    config: &TrainConfig,
    lora: &LoraConfig,
    adapter: &str,
    data_id: &str,
    batches_per_epoch: usize,
) -> Value {
    json!({
        "train": config,
        "lora": lora.to_peft_json(),
        "adapter": adapter,
        "data": data_id,
        "batches_per_epoch": batches_per_epoch,
    })
}

/// A training run of adapter `adapter` (already attached to `model`, e.g. with [`Adapters::add_adapter`]).
pub struct Trainer<'a> {
    /// The model the adapter is attached to; its adapter factors are updated in place.
    pub model: &'a mut Llama,
    /// Name of the adapter to train.
    pub adapter: String,
    /// The adapter's LoRA configuration, saved with it.
    pub lora: LoraConfig,
    /// Optimizer, schedule and length settings.
    pub config: TrainConfig,
    /// Output folder: final adapter, `metrics.jsonl` and `checkpoint/`.
    pub out: PathBuf,
    /// Identifies the training data (e.g. a hash of the file): a resumed run must see the same data.
    pub data_id: String,
    /// Further devices to train on, data parallel, besides the model's own (empty: the model's device only).
    /// Each gets a copy of the model once per run ([`Llama::replicate`]); a step's micro-batches are dealt
    /// round-robin to the devices (`parallel_micro_batches` threads each), their gradients summed on the
    /// model's device in micro-batch order, and the updated adapter factors copied back out before the next
    /// step. The global batch is `grad_accum` micro-batches whatever the devices, so a run's result does not
    /// depend on them: bit for bit where the devices compute alike.
    pub replicas: Vec<Device>,
}

impl Trainer<'_> {
    /// Trains for the configured length, calling `observer` after every step. With `resume`, continues from
    /// `OUT/checkpoint` and ends exactly where an uninterrupted run would have.
    pub fn run<O, S>(
        &mut self,
        objective: &O,
        data: &S,
        resume: bool,
        observer: &mut dyn FnMut(&StepMetrics),
    ) -> Result<TrainSummary, TrainError>
    where
        O: Objective,
        S: BatchSource<Batch = O::Batch>,
    {
        self.config.validate()?;
        let devices = 1 + self.replicas.len();
        self.config.validate_devices(devices)?;
        let bpe = data.batches_per_epoch();
        if bpe == 0 {
            return Err(TrainError::invalid("data", 0, "no batches"));
        }
        let total = self.config.total_steps(bpe);
        // The adapter is already held; training adds its gradient and AdamW's two moments.
        let parameters = self.model.adapter_summary(&self.adapter)?.parameters as u128;
        engram_lora::check_adapter_memory(
            self.lora.r,
            parameters,
            3,
            engram_lora::available_for_adapters(),
        )?;
        let dirs = RunDir {
            out: self.out.clone(),
        };
        let print = fingerprint(&self.config, &self.lora, &self.adapter, &self.data_id, bpe);
        std::fs::create_dir_all(&dirs.out).map_err(|e| TrainError::from((dirs.out.clone(), e)))?;

        remove_stale_staging(&dirs.out);
        let (mut opt, start) = if resume {
            self.restore(&dirs, &print)?
        } else {
            (AdamW::new(self.config.adamw.clone()), 0)
        };
        let schedule = LrSchedule {
            peak: self.config.lr,
            warmup_steps: self.config.warmup_steps,
            decay: self.config.schedule,
            total_steps: total,
        };
        // Opened at the first step: a fresh run that fails before it leaves an earlier run's metrics whole.
        let mut metrics_file: Option<std::fs::File> = None;
        set_trainable(self.model, &self.adapter, true)?;
        // After a resume's reload, so the copies carry the restored adapter.
        let mut replicas: Vec<Llama> = self
            .replicas
            .iter()
            .map(|d| self.model.replicate(d))
            .collect();
        let mut last_good = start;
        let mut final_loss = None;
        let result = (|| -> Result<(), TrainError> {
            for step in start..total {
                let t0 = Instant::now();
                let micros: Vec<usize> = (0..self.config.grad_accum)
                    .map(|k| step * self.config.grad_accum + k)
                    // With --epochs, the last step stops at the end of the data rather than spilling into
                    // the next epoch when grad_accum does not divide the batches.
                    .take_while(|&m| match self.config.length {
                        Length::Epochs(e) => m < e * bpe,
                        Length::Steps(_) => true,
                    })
                    .collect();
                let mut acc: Vec<Option<Tensor<2>>> = Vec::new();
                let mut tokens = 0usize;
                let mut loss_sum = 0f64;
                self.sync_replicas(&mut replicas)?;
                let parallel = self.config.parallel_micro_batches.max(1) * devices;
                for group in micros.chunks(parallel) {
                    let outcomes = self.micro_batches(objective, data, bpe, group, &replicas)?;
                    // Summed in micro-batch order whatever the threads did: the result does not depend on
                    // the parallelism.
                    for outcome in outcomes.into_iter().flatten() {
                        if !outcome.loss.is_finite() {
                            return Err(self.non_finite(
                                &dirs,
                                step + 1,
                                "loss",
                                outcome.loss as f64,
                                last_good,
                            ));
                        }
                        for (i, g) in outcome.grads.into_iter().enumerate() {
                            if acc.len() <= i {
                                acc.push(None);
                            }
                            acc[i] = match (acc[i].take(), g) {
                                (Some(a), Some(g)) => Some(a + g),
                                (a, g) => a.or(g),
                            };
                        }
                        tokens += outcome.tokens;
                        loss_sum += outcome.loss as f64 * outcome.tokens as f64;
                    }
                }
                if tokens == 0 {
                    return Err(TrainError::invalid(
                        "data",
                        format!("step {}", step + 1),
                        "a step had no target tokens",
                    ));
                }
                let grads: Vec<Option<Tensor<2>>> = acc
                    .into_iter()
                    .map(|g| g.map(|g| g.div_scalar(tokens as f64)))
                    .collect();
                let present: Vec<Tensor<2>> = grads.iter().flatten().cloned().collect();
                let norm = global_norm(&present);
                if !norm.is_finite() {
                    return Err(self.non_finite(&dirs, step + 1, "gradient norm", norm, last_good));
                }
                // torch.nn.utils.clip_grad_norm_: scale by max/(norm + 1e-6) when that is below 1.
                let clip = match self.config.max_grad_norm {
                    Some(max) if norm > max => max / (norm + 1e-6),
                    _ => 1.0,
                };
                let lr = schedule.lr(step);
                opt.begin_step();
                let mut i = 0;
                self.model
                    .visit_factors_mut(&self.adapter, &mut |key, _, p| {
                        let value = p.val().inner();
                        let g = grads
                            .get(i)
                            .cloned()
                            .flatten()
                            .unwrap_or_else(|| value.zeros_like());
                        let g = if clip < 1.0 { g.mul_scalar(clip) } else { g };
                        let new = opt.update(key, value, g, lr);
                        *p = Param::initialized(p.id, new.autodiff().require_grad());
                        i += 1;
                    })?;
                let loss = loss_sum / tokens as f64;
                let step_s = t0.elapsed().as_secs_f64();
                let m = StepMetrics {
                    step: step + 1,
                    total_steps: total,
                    epoch: ((step + 1) * self.config.grad_accum) as f64 / bpe as f64,
                    loss,
                    lr,
                    grad_norm: norm,
                    tokens,
                    tokens_per_s: tokens as f64 / step_s.max(1e-9),
                    step_s,
                };
                let line = serde_json::to_string(&m).expect("metrics serialise");
                if metrics_file.is_none() {
                    metrics_file = Some(open_metrics(&dirs.metrics(), start)?);
                }
                if let Some(f) = metrics_file.as_mut() {
                    writeln!(f, "{line}").map_err(|e| TrainError::from((dirs.metrics(), e)))?;
                }
                final_loss = Some(loss);
                observer(&m);
                let every = self.config.checkpoint_every;
                if every > 0 && (step + 1) % every == 0 && step + 1 < total {
                    // A finite loss does not make the updated weights usable (lr 1e30 gives finite
                    // factors whose product overflows): check them before calling them good.
                    self.check_update(&dirs, step + 1, last_good)?;
                    self.write_checkpoint(&dirs, &opt, step + 1, &print)?;
                    last_good = step + 1;
                }
            }
            Ok(())
        })();
        set_trainable(self.model, &self.adapter, false)?;
        self.model.set_dropout_seed(&self.adapter, None)?;
        result?;
        // (None: a resumed run with no step left to run.)
        let metrics = match metrics_file {
            Some(f) => f,
            None => open_metrics(&dirs.metrics(), start)?,
        };
        metrics
            .sync_all()
            .map_err(|e| TrainError::from((dirs.metrics(), e)))?;
        self.check_update(&dirs, total, last_good)?;
        // The adapter first: it is what the run is for, and on a full disk the (larger) end-of-run checkpoint
        // is the one to lose.
        save_adapter(self.model, &self.adapter, &self.lora, &dirs.out)?;
        let warnings = match self.write_checkpoint(&dirs, &opt, total, &print) {
            Ok(()) => Vec::new(),
            Err(e) => vec![format!(
                "the adapter is written, but the end-of-run checkpoint is not ({e}): a longer run cannot \
                 --resume from this one"
            )],
        };
        Ok(TrainSummary {
            steps: total,
            resumed_from: start,
            final_loss,
            adapter_dir: dirs.out.clone(),
            warnings,
        })
    }

    /// Copies the model's adapter factors to every replica (plain tensors: each micro-batch's thread makes
    /// its own autodiff leaves of them).
    fn sync_replicas(&mut self, replicas: &mut [Llama]) -> Result<(), TrainError> {
        if replicas.is_empty() {
            return Ok(());
        }
        let mut values = Vec::new();
        self.model
            .visit_factors_mut(&self.adapter, &mut |_, _, p| values.push(p.val().inner()))?;
        for replica in replicas {
            let device = replica.device();
            let mut values = values.iter();
            replica.visit_factors_mut(&self.adapter, &mut |_, _, p| {
                // Both sides visit the same adapter of the same architecture in the same order.
                let v = values.next().expect("a replica has the model's factors");
                *p = Param::initialized(p.id, v.clone().to_device(&device));
            })?;
        }
        Ok(())
    }

    /// Loss and gradients of the micro-batches `micros`, one thread each when there are several, the `k`-th
    /// on device `k % (1 + replicas)` (0: the model's own). Each thread gets a copy of its device's model
    /// (base tensors shared) with its own autodiff leaves for the adapter factors, so the graphs are
    /// independent and their backward passes run in parallel; Burn's element-wise CPU kernels are
    /// single-threaded, so this is what keeps both cores busy outside the matrix products. Gradients come back
    /// on the model's device.
    fn micro_batches<O, S>(
        &mut self,
        objective: &O,
        data: &S,
        bpe: usize,
        micros: &[usize],
        replicas: &[Llama],
    ) -> Result<Vec<Option<MicroOutcome>>, TrainError>
    where
        O: Objective,
        S: BatchSource<Batch = O::Batch>,
    {
        let seed = self.config.seed;
        if micros.len() == 1 {
            let micro = micros[0];
            // Dropout masks depend only on (seed, micro-batch): a resumed run draws the same ones, whatever
            // else runs in the process.
            self.model
                .set_dropout_seed(&self.adapter, Some(mix(seed, micro as u64)))?;
            let batch = data.batch(micro / bpe, micro % bpe);
            return Ok(vec![micro_step(
                self.model,
                &self.adapter,
                objective,
                &batch,
                self.config.checkpoint_layers,
            )?]);
        }
        let home = self.model.device();
        let mut jobs = Vec::with_capacity(micros.len());
        for (k, &micro) in micros.iter().enumerate() {
            let mut model = match k % (1 + replicas.len()) {
                0 => self.model.clone(),
                r => replicas[r - 1].clone(),
            };
            set_trainable(&mut model, &self.adapter, true)?;
            model.set_dropout_seed(&self.adapter, Some(mix(seed, micro as u64)))?;
            jobs.push((model, data.batch(micro / bpe, micro % bpe)));
        }
        let adapter = self.adapter.as_str();
        let home = &home;
        let checkpoint_layers = self.config.checkpoint_layers;
        std::thread::scope(|scope| {
            let handles: Vec<_> = jobs
                .into_iter()
                .map(|(mut model, batch)| {
                    scope.spawn(move || {
                        let batch = batch.to_device(&model.device());
                        let outcome =
                            micro_step(&mut model, adapter, objective, &batch, checkpoint_layers)?;
                        Ok(outcome.map(|o| MicroOutcome {
                            grads: (o.grads.into_iter())
                                .map(|g| g.map(|g| g.to_device(home)))
                                .collect(),
                            ..o
                        }))
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        })
    }

    fn non_finite(
        &self,
        dirs: &RunDir,
        step: usize,
        what: impl Into<String>,
        value: f64,
        last_good: usize,
    ) -> TrainError {
        let ckpt = dirs.checkpoint();
        TrainError::NonFinite {
            step,
            what: what.into(),
            value,
            // Only a checkpoint this run wrote or resumed from is vouched for, not one an earlier run left.
            last_good,
            checkpoint: (last_good > 0 && ckpt.join(STATE_FILE).exists()).then_some(ckpt),
        }
    }

    /// Fails when the adapter after `step` cannot be used: a non-finite factor, or a low-rank update `B·A·scale`
    /// that overflows f32 (checked exactly only when the cheap bound `r·max|B|·max|A|·scale` says it might).
    fn check_update(&self, dirs: &RunDir, step: usize, last_good: usize) -> Result<(), TrainError> {
        let scale = self.lora.scale();
        let factors = self.model.adapter_factors(&self.adapter)?;
        let max_abs = |t: &Tensor<2>| -> f64 {
            let v: f32 = t.clone().abs().max().into_scalar();
            // NaN compares false: max() may skip it, so look for it too.
            let nan: bool = t.clone().is_nan().any().into_scalar();
            if nan { f64::NAN } else { f64::from(v) }
        };
        for pair in factors.chunks(2) {
            let [(key, _, a), (_, _, b)] = pair else {
                continue;
            };
            let (ma, mb) = (max_abs(a), max_abs(b));
            // Stored as A: [in, r], B: [r, out] (the update is x·A·B).
            let rank = a.dims()[1] as f64;
            let bound = rank * ma * mb * scale.abs();
            let worst = if !ma.is_finite() || !mb.is_finite() {
                if ma.is_finite() { mb } else { ma }
            } else if bound <= f64::from(f32::MAX) {
                continue;
            } else {
                max_abs(&a.clone().matmul(b.clone()).mul_scalar(scale))
            };
            if !worst.is_finite() {
                let module = key.trim_end_matches(".lora_A.weight");
                let what = format!("adapter update of {module}");
                return Err(self.non_finite(dirs, step, what, worst, last_good));
            }
        }
        Ok(())
    }

    fn write_checkpoint(
        &self,
        dirs: &RunDir,
        opt: &AdamW,
        step: usize,
        print: &Value,
    ) -> Result<(), TrainError> {
        let mut tensors: Vec<(String, TensorF32)> = Vec::new();
        for (key, m) in &opt.state {
            for (suffix, t) in [("exp_avg", &m.exp_avg), ("exp_avg_sq", &m.exp_avg_sq)] {
                let shape = t.dims().to_vec();
                let data = t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .map_err(|e| TrainError::Checkpoint {
                        path: dirs.checkpoint(),
                        reason: format!("cannot read optimizer state {key}: {e:?}"),
                    })?;
                tensors.push((format!("{key}.{suffix}"), TensorF32 { shape, data }));
            }
        }
        let optimizer = f32_safetensors(&tensors, None).map_err(|e| TrainError::Checkpoint {
            path: dirs.checkpoint(),
            reason: e.to_string(),
        })?;
        let state = json!({
            "step": step,
            "optimizer_step": opt.step,
            "fingerprint": print,
            "engram_version": env!("CARGO_PKG_VERSION"),
        });
        let state = serde_json::to_vec_pretty(&state).expect("state serialises");
        let model = &*self.model;
        write_dir_atomically(&dirs.checkpoint(), |tmp| -> Result<(), TrainError> {
            save_adapter(model, &self.adapter, &self.lora, &tmp.join("adapter"))?;
            write_file_atomically(&tmp.join(OPTIMIZER_FILE), &optimizer)
                .map_err(|e| TrainError::from((tmp.join(OPTIMIZER_FILE), e)))?;
            write_file_atomically(&tmp.join(STATE_FILE), &state)
                .map_err(|e| TrainError::from((tmp.join(STATE_FILE), e)))
        })
    }

    fn restore(&mut self, dirs: &RunDir, print: &Value) -> Result<(AdamW, usize), TrainError> {
        let ckpt = dirs.checkpoint();
        let bad = |reason: String| TrainError::Resume {
            path: ckpt.clone(),
            reason,
        };
        let state_path = ckpt.join(STATE_FILE);
        let text = std::fs::read_to_string(&state_path).map_err(|e| {
            bad(format!(
                "no checkpoint to resume ({}: {e})",
                state_path.display()
            ))
        })?;
        let state: Value = serde_json::from_str(&text)
            .map_err(|e| bad(format!("{}: invalid JSON: {e}", state_path.display())))?;
        if state["fingerprint"] != *print {
            let diff = first_difference(&state["fingerprint"], print, "");
            return Err(bad(format!(
                "the run's settings changed since the checkpoint ({diff}); start afresh without --resume or use the original settings"
            )));
        }
        let step = state["step"]
            .as_u64()
            .ok_or_else(|| bad("trainer_state.json has no step".into()))?
            as usize;
        let opt_step = state["optimizer_step"]
            .as_u64()
            .ok_or_else(|| bad("trainer_state.json has no optimizer_step".into()))?;
        self.model.remove_adapter(&self.adapter)?;
        load_adapter(self.model, &ckpt.join("adapter"), &self.adapter)?;
        let path = ckpt.join(OPTIMIZER_FILE);
        let bytes = std::fs::read(&path).map_err(|e| TrainError::from((path.clone(), e)))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| bad(format!("{}: {e}", path.display())))?;
        let device = self.model.device();
        let mut loaded: HashMap<String, Tensor<2>> = HashMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape();
            let values = decode_f32(view.dtype(), view.data());
            let (Some(v), [rows, cols]) = (values, shape) else {
                return Err(bad(format!(
                    "{}: `{name}` is not a 2-D float tensor",
                    path.display()
                )));
            };
            loaded.insert(
                name,
                Tensor::from_data(TensorData::new(v, [*rows, *cols]), &device),
            );
        }
        let mut opt = AdamW::new(self.config.adamw.clone());
        opt.step = opt_step;
        let mut missing = None;
        self.model
            .visit_factors_mut(&self.adapter, &mut |key, _, _| match (
                loaded.remove(&format!("{key}.exp_avg")),
                loaded.remove(&format!("{key}.exp_avg_sq")),
            ) {
                (Some(exp_avg), Some(exp_avg_sq)) => {
                    opt.state.insert(
                        key.to_owned(),
                        Moments {
                            exp_avg,
                            exp_avg_sq,
                        },
                    );
                }
                _ if opt_step == 0 => {}
                _ => missing = missing.take().or(Some(key.to_owned())),
            })?;
        if let Some(key) = missing {
            return Err(bad(format!(
                "{}: no optimizer state for `{key}`",
                path.display()
            )));
        }
        reset_metrics(&dirs.metrics(), step)?;
        Ok((opt, step))
    }
}

const STATE_FILE: &str = "trainer_state.json";
const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// One micro-batch's mean loss, target tokens and token-weighted gradients (`mean · tokens`), per factor.
struct MicroOutcome {
    loss: f32,
    tokens: usize,
    grads: Vec<Option<Tensor<2>>>,
}

/// Forward and backward of one micro-batch on `model` (whose adapter factors are autodiff leaves), with the
/// decoder layers checkpointed when `checkpoint_layers`. `None` when the batch has no target; a non-finite loss
/// is returned without a backward pass.
fn micro_step<O: Objective>(
    model: &mut Llama,
    adapter: &str,
    objective: &O,
    batch: &O::Batch,
    checkpoint_layers: bool,
) -> Result<Option<MicroOutcome>, TrainError> {
    let sink = checkpoint_layers.then(CheckpointSink::default);
    model.checkpoints = sink.clone();
    let out = objective.loss(model, batch);
    model.checkpoints = None;
    if out.tokens == 0 {
        return Ok(None);
    }
    let loss: f32 = out.loss.clone().inner().into_scalar();
    if !loss.is_finite() {
        return Ok(Some(MicroOutcome {
            loss,
            tokens: out.tokens,
            grads: Vec::new(),
        }));
    }
    let grads = out.loss.mul_scalar(out.tokens as f64).backward();
    // With checkpointing, the factors' gradients come from re-running each layer (one pass per forward the
    // objective made through the decoder stack).
    let mut layer_grads = Vec::new();
    if let Some(sink) = sink {
        let passes = std::mem::take(&mut *sink.lock().unwrap_or_else(|e| e.into_inner()));
        for pass in passes {
            layer_grads.extend(model.backward_layers(pass, &grads));
        }
    }
    let mut collected = Vec::new();
    model.visit_factors_mut(adapter, &mut |_, _, p| {
        let factor = p.val();
        let grad = std::iter::once(&grads)
            .chain(&layer_grads)
            .filter_map(|g| factor.grad(g))
            .reduce(|a, b| a + b);
        collected.push(grad);
    })?;
    Ok(Some(MicroOutcome {
        loss,
        tokens: out.tokens,
        grads: collected,
    }))
}

/// Makes the adapter's factors leaves of the autodiff graph (or plain tensors again).
fn set_trainable(model: &mut Llama, adapter: &str, on: bool) -> Result<(), TrainError> {
    model.visit_factors_mut(adapter, &mut |_, _, p| {
        let v = p.val().inner();
        let v = if on { v.autodiff().require_grad() } else { v };
        *p = Param::initialized(p.id, v);
    })?;
    Ok(())
}

/// Keeps the first `steps` lines of the metrics file (a resumed run rewrites what came after its checkpoint).
/// `metrics.jsonl` for appending the run's steps after its first `start` lines (a fresh run: none).
fn open_metrics(path: &Path, start: usize) -> Result<std::fs::File, TrainError> {
    reset_metrics(path, start)?;
    std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(|e| TrainError::from((path.to_path_buf(), e)))
}

/// Removes the `.NAME.tmp*` folders that a run killed while writing a checkpoint or adapter left in `out`
/// (best effort: they hold nothing a later run reads).
fn remove_stale_staging(out: &Path) {
    let Ok(entries) = std::fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Not `.NAME.old*`: after a crash between a replacement's two renames it is the only copy.
        if name.starts_with('.') && name.contains(".tmp") {
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

fn reset_metrics(path: &Path, steps: usize) -> Result<(), TrainError> {
    let kept: Vec<String> = match std::fs::read_to_string(path) {
        Ok(text) => text.lines().take(steps).map(str::to_owned).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(TrainError::from((path.to_path_buf(), e))),
    };
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    write_file_atomically(path, body.as_bytes())
        .map_err(|e| TrainError::from((path.to_path_buf(), e)))
}

/// A well-mixed seed for (run seed, micro-batch).
fn mix(seed: u64, step: u64) -> u64 {
    engram_model::splitmix64(seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// The first JSON path where `a` and `b` differ, for resume errors.
fn first_difference(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for k in x.keys().chain(y.keys()) {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                if va != vb {
                    return first_difference(va, vb, &format!("{path}.{k}"));
                }
            }
            format!("{path}: differs")
        }
        _ => format!("{}: was {a}, now {b}", path.trim_start_matches('.')),
    }
}
