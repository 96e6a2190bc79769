//! The training engine on a tiny random model: the loss goes down, gradient accumulation equals the larger
//! batch, a NaN loss stops the run keeping the last good checkpoint, and resuming from it ends bit-identical
//! to a run that was never interrupted.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};

use engram_data::{BatchConfig, Batcher, TokenizedExample};
use engram_formats::Architecture;
use engram_formats::testing::{Memory, tiny_config};
use engram_lora::{Adapters, LoraConfig};
use engram_model::{Device, Llama};
use engram_train::{
    CrossEntropy, Decay, DeviceBatches, Length, LossOutput, Objective, StepMetrics, TokenBatch,
    TrainConfig, TrainError, Trainer,
};

fn tiny_with_adapter(dropout: f64) -> (Llama, LoraConfig) {
    let mut m = Llama::load(
        &Memory::random(tiny_config(Architecture::Llama), 5),
        &Device::flex(),
        &mut |_, _| {},
    )
    .unwrap();
    let lora = LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        lora_dropout: dropout,
        ..LoraConfig::default()
    };
    m.add_adapter("t", &lora, 9).unwrap();
    (m, lora)
}

/// Six short "sentences" over the tiny vocabulary, each a fixed pattern the model can learn.
fn batcher(batch_size: usize) -> Batcher {
    sentences(|_| 10, batch_size)
}

/// [`batcher`]'s sentences cut to different lengths, two to a batch: every batch has padding.
fn ragged_batcher() -> Batcher {
    sentences(|i| 5 + i, 2)
}

/// Sentence `i` is `len(i)` tokens long.
fn sentences(len: impl Fn(u32) -> u32, batch_size: usize) -> Batcher {
    let examples = (0..6u32)
        .map(|i| {
            let ids: Vec<u32> = (0..len(i)).map(|t| (i * 7 + t * 3) % 60 + 2).collect();
            let mut loss_mask = vec![true; ids.len()];
            loss_mask[0] = false;
            TokenizedExample { ids, loss_mask }
        })
        .collect();
    Batcher::new(
        examples,
        BatchConfig {
            batch_size,
            max_len: 16,
            packing: false,
            seed: 3,
            pad_id: 0,
        },
    )
    .unwrap()
}

fn config(steps: usize) -> TrainConfig {
    TrainConfig {
        lr: 1e-2,
        warmup_steps: 2,
        schedule: Decay::Cosine,
        length: Length::Steps(steps),
        checkpoint_every: 2,
        seed: 1,
        adamw: engram_train::AdamWConfig {
            weight_decay: 0.01,
            ..Default::default()
        },
        ..TrainConfig::default()
    }
}

fn run<O: Objective<Batch = TokenBatch>>(
    model: &mut Llama,
    lora: &LoraConfig,
    cfg: TrainConfig,
    objective: &O,
    data: &Batcher,
    out: &Path,
    resume: bool,
) -> (
    Result<engram_train::TrainSummary, TrainError>,
    Vec<StepMetrics>,
) {
    let mut seen = Vec::new();
    let mut trainer = Trainer {
        model,
        adapter: "t".into(),
        lora: lora.clone(),
        config: cfg,
        out: out.to_path_buf(),
        data_id: "tiny".into(),
        replicas: Vec::new(),
    };
    let source = DeviceBatches {
        batcher: data,
        device: Device::flex(),
    };
    let r = trainer.run(objective, &source, resume, &mut |m| seen.push(m.clone()));
    (r, seen)
}

/// [`run`] with cross-entropy on a fresh run (no resume).
fn train_ce(
    model: &mut Llama,
    lora: &LoraConfig,
    cfg: TrainConfig,
    batch_size: usize,
    out: &Path,
) -> (
    Result<engram_train::TrainSummary, TrainError>,
    Vec<StepMetrics>,
) {
    run(
        model,
        lora,
        cfg,
        &CrossEntropy,
        &batcher(batch_size),
        out,
        false,
    )
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn loss_decreases_and_metrics_are_written() {
    let (mut m, lora) = tiny_with_adapter(0.0);
    let dir = tempfile::tempdir().unwrap();
    let (r, seen) = train_ce(&mut m, &lora, config(12), 3, dir.path());
    let summary = r.unwrap();
    assert_eq!(summary.steps, 12);
    assert_eq!(seen.len(), 12);
    let first = (seen[0].loss + seen[1].loss) / 2.0;
    let last = (seen[10].loss + seen[11].loss) / 2.0;
    assert!(last < first * 0.8, "loss {first} -> {last}");
    assert!(
        seen.iter()
            .all(|s| s.grad_norm.is_finite() && s.tokens == 27)
    );
    assert!(seen[0].lr < seen[2].lr, "warm-up");
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let parsed: Vec<StepMetrics> = lines
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(parsed.len(), seen.len(), "metrics.jsonl holds every step");
    for (p, s) in parsed.iter().zip(&seen) {
        assert_eq!((p.step, p.tokens), (s.step, s.tokens));
        assert!(
            (p.loss - s.loss).abs() <= 1e-12 * s.loss.abs(),
            "{} vs {}",
            p.loss,
            s.loss
        );
    }
    // The output folder is a PEFT adapter that loads back onto the base model.
    let (mut fresh, _) = tiny_with_adapter(0.0);
    fresh.remove_adapter("t").unwrap();
    engram_lora::load_adapter(&mut fresh, dir.path(), "t").unwrap();
    for ((k, _, a), (_, _, b)) in m
        .adapter_factors("t")
        .unwrap()
        .into_iter()
        .zip(fresh.adapter_factors("t").unwrap())
    {
        assert_eq!(
            a.into_data().try_to_vec::<f32>().unwrap(),
            b.into_data().try_to_vec::<f32>().unwrap(),
            "{k}"
        );
    }
}

#[test]
fn gradient_accumulation_equals_the_larger_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (mut a, lora) = tiny_with_adapter(0.0);
    let (mut b, _) = tiny_with_adapter(0.0);
    let cfg = TrainConfig {
        checkpoint_every: 0,
        ..config(3)
    };
    let (r1, s1) = train_ce(&mut a, &lora, cfg.clone(), 6, &dir.path().join("a"));
    let cfg2 = TrainConfig {
        grad_accum: 2,
        ..cfg
    };
    let (r2, s2) = train_ce(&mut b, &lora, cfg2, 3, &dir.path().join("b"));
    r1.unwrap();
    r2.unwrap();
    for (x, y) in s1.iter().zip(&s2) {
        assert!(
            (x.loss - y.loss).abs() < 1e-4 * x.loss,
            "{} vs {}",
            x.loss,
            y.loss
        );
        assert!((x.grad_norm - y.grad_norm).abs() < 1e-3 * x.grad_norm);
    }
}

/// Cross-entropy that returns NaN from its `fail_at`-th call on: a run blowing up mid-way.
struct Failing {
    calls: AtomicUsize,
    fail_at: usize,
}

impl Objective for Failing {
    type Batch = TokenBatch;
    fn name(&self) -> &str {
        "failing"
    }
    fn loss(&self, model: &Llama, batch: &TokenBatch) -> LossOutput {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let out = CrossEntropy.loss(model, batch);
        if n >= self.fail_at {
            LossOutput {
                loss: out.loss.mul_scalar(f64::NAN),
                tokens: out.tokens,
            }
        } else {
            out
        }
    }
}

#[test]
fn nan_stops_the_run_and_resume_is_bit_identical() {
    let root = tempfile::tempdir().unwrap();
    let data = batcher(3);
    // Dropout on: resuming must also replay the same dropout masks.
    let (mut whole, lora) = tiny_with_adapter(0.1);
    let (r, _) = run(
        &mut whole,
        &lora,
        config(7),
        &CrossEntropy,
        &data,
        &root.path().join("whole"),
        false,
    );
    r.unwrap();

    let out = root.path().join("broken");
    let (mut m, _) = tiny_with_adapter(0.1);
    let failing = Failing {
        calls: AtomicUsize::new(0),
        fail_at: 6,
    };
    let (r, seen) = run(&mut m, &lora, config(7), &failing, &data, &out, false);
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::NonFinite {
                step: 6,
                last_good: 4,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("step 6") && msg.contains("NaN") && msg.contains("checkpoint"),
        "{msg}"
    );
    assert_eq!(seen.len(), 5, "five good steps before the NaN");
    let ckpt = out.join("checkpoint");
    let state: serde_json::Value =
        serde_json::from_slice(&read(&ckpt.join("trainer_state.json"))).unwrap();
    assert_eq!(state["step"], 4, "the last good checkpoint is kept");
    assert!(
        !out.join("adapter_model.safetensors").exists(),
        "no final adapter from a failed run"
    );

    // Changed settings are refused by name.
    let (mut other, _) = tiny_with_adapter(0.1);
    let changed = TrainConfig {
        lr: 2e-2,
        ..config(7)
    };
    let (r, _) = run(&mut other, &lora, changed, &CrossEntropy, &data, &out, true);
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("train.lr") && msg.contains("0.01"), "{msg}");

    let (mut resumed, _) = tiny_with_adapter(0.1);
    let (r, seen) = run(
        &mut resumed,
        &lora,
        config(7),
        &CrossEntropy,
        &data,
        &out,
        true,
    );
    let summary = r.unwrap();
    assert_eq!(summary.resumed_from, 4);
    assert_eq!(seen.first().map(|s| s.step), Some(5));
    let whole_dir = root.path().join("whole");
    for f in [
        "adapter_model.safetensors",
        "adapter_config.json",
        "checkpoint/optimizer.safetensors",
    ] {
        assert!(
            read(&whole_dir.join(f)) == read(&out.join(f)),
            "{f} differs after resume"
        );
    }
    let lines = |p: &Path| std::fs::read_to_string(p.join("metrics.jsonl")).unwrap();
    let strip = |s: String| -> Vec<(u64, String)> {
        s.lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                (
                    v["step"].as_u64().unwrap(),
                    format!("{}/{}", v["loss"], v["grad_norm"]),
                )
            })
            .collect()
    };
    assert_eq!(
        strip(lines(&whole_dir)),
        strip(lines(&out)),
        "same losses, one line per step"
    );
}

#[test]
fn bad_options_are_refused() {
    let (mut m, lora) = tiny_with_adapter(0.0);
    let dir = tempfile::tempdir().unwrap();
    for (cfg, needle) in [
        (
            TrainConfig {
                lr: -1.0,
                ..config(2)
            },
            "lr",
        ),
        (
            TrainConfig {
                grad_accum: 0,
                ..config(2)
            },
            "grad-accum",
        ),
        (
            TrainConfig {
                length: Length::Steps(0),
                ..config(2)
            },
            "steps",
        ),
        (
            TrainConfig {
                max_grad_norm: Some(f64::NAN),
                ..config(2)
            },
            "max-grad-norm",
        ),
    ] {
        let (r, _) = train_ce(&mut m, &lora, cfg, 2, dir.path());
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains(needle), "{msg}");
    }
    let (r, _) = run(
        &mut m,
        &lora,
        config(2),
        &CrossEntropy,
        &batcher(2),
        &dir.path().join("fresh"),
        true,
    );
    assert!(r.unwrap_err().to_string().contains("no checkpoint"));
}

#[test]
fn epochs_end_with_the_data_when_accumulation_does_not_divide_it() {
    let (mut m, lora) = tiny_with_adapter(0.0);
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        grad_accum: 2,
        length: Length::Epochs(1),
        checkpoint_every: 0,
        ..config(1)
    };
    // 6 examples of 9 targets in batches of 2: 3 micro-batches, so steps of 2 + 1.
    let (r, seen) = train_ce(&mut m, &lora, cfg, 2, dir.path());
    r.unwrap();
    let tokens: Vec<usize> = seen.iter().map(|s| s.tokens).collect();
    assert_eq!(tokens, vec![36, 18]);
}

/// The trainer's seed drives the dropout masks: with dropout, another seed trains another adapter; without,
/// the seed changes nothing (the data order and initialisation have seeds of their own).
#[test]
fn the_seed_drives_dropout() {
    let dir = tempfile::tempdir().unwrap();
    let mut adapters = Vec::new();
    for (i, (dropout, seed)) in [(0.2, 1), (0.2, 2), (0.0, 1), (0.0, 2)]
        .into_iter()
        .enumerate()
    {
        let (mut m, lora) = tiny_with_adapter(dropout);
        let cfg = TrainConfig {
            seed,
            checkpoint_every: 0,
            ..config(2)
        };
        let out = dir.path().join(i.to_string());
        train_ce(&mut m, &lora, cfg, 3, &out).0.unwrap();
        adapters.push(read(&out.join("adapter_model.safetensors")));
    }
    assert!(adapters[0] != adapters[1], "dropout masks follow the seed");
    assert!(
        adapters[2] == adapters[3],
        "no dropout, no dependence on the seed"
    );
}

/// Micro-batches on parallel threads give the same bits as one after the other.
#[test]
fn parallel_micro_batches_are_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut outs = Vec::new();
    for parallel in [1, 2] {
        let (mut m, lora) = tiny_with_adapter(0.1);
        let cfg = TrainConfig {
            grad_accum: 2,
            parallel_micro_batches: parallel,
            checkpoint_every: 0,
            ..config(3)
        };
        let out = dir.path().join(parallel.to_string());
        let (r, seen) = train_ce(&mut m, &lora, cfg, 2, &out);
        r.unwrap();
        assert_eq!(seen.len(), 3);
        outs.push(read(&out.join("adapter_model.safetensors")));
    }
    assert!(
        outs[0] == outs[1],
        "parallel and sequential accumulation differ"
    );
}

/// Data parallel: a step's micro-batches dealt over the model's device and a replica train the adapter one
/// device trains, dropout and padded batches included (the masks follow the micro-batch, not the device; the
/// padding mask is a bool tensor, which crosses backends differently). On the CPU the replica
/// is a second copy on the same device, so the bits must match; on another device its kernels round
/// differently, so the losses must track within 1e-4 relative.
#[test]
fn data_parallel_replicas_train_like_one_device() {
    let dir = tempfile::tempdir().unwrap();
    // A second copy on the CPU, or one on the device ENGRAM_TEST_DEVICE names (`wgpu`, `cuda:0`; build with
    // `--features engram-model/wgpu` or `/cuda`).
    let other = engram_model::DeviceSpec::from_test_env().unwrap();
    let same_kernels = other.is_none();
    let replica = other.unwrap_or_else(Device::flex);
    let mut adapters = Vec::new();
    let mut losses = Vec::new();
    for replicas in [vec![], vec![replica]] {
        let (mut m, lora) = tiny_with_adapter(0.1);
        let out = dir.path().join(replicas.len().to_string());
        let mut seen = Vec::new();
        let mut trainer = Trainer {
            model: &mut m,
            adapter: "t".into(),
            lora: lora.clone(),
            config: TrainConfig {
                grad_accum: 4,
                checkpoint_every: 0,
                ..config(3)
            },
            out: out.clone(),
            data_id: "tiny".into(),
            replicas,
        };
        let source = DeviceBatches {
            batcher: &ragged_batcher(),
            device: Device::flex(),
        };
        trainer
            .run(&CrossEntropy, &source, false, &mut |m| seen.push(m.loss))
            .unwrap();
        assert_eq!(seen.len(), 3);
        adapters.push(read(&out.join("adapter_model.safetensors")));
        losses.push(seen);
    }
    if same_kernels {
        assert!(
            adapters[0] == adapters[1],
            "data-parallel training on two copies differs from one device: {losses:?}"
        );
    } else {
        for (a, b) in losses[0].iter().zip(&losses[1]) {
            assert!((a - b).abs() <= 1e-4 * a.abs(), "losses {losses:?}");
        }
    }
}

/// Every device needs a micro-batch per step: fewer is refused by name before anything is written.
#[test]
fn data_parallel_needs_a_micro_batch_per_device() {
    let (mut m, lora) = tiny_with_adapter(0.0);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let err = Trainer {
        model: &mut m,
        adapter: "t".into(),
        lora,
        config: config(2),
        out: out.clone(),
        data_id: "tiny".into(),
        replicas: vec![Device::flex()],
    }
    .run(
        &CrossEntropy,
        &DeviceBatches {
            batcher: &batcher(2),
            device: Device::flex(),
        },
        false,
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("grad-accum") && err.contains("2 devices"),
        "{err}"
    );
    assert!(!out.exists(), "nothing is written for a refused run");
}

/// Layer checkpointing computes the gradients of an ordinary pass, up to rounding (its first pass runs the
/// layers outside autodiff, where attention takes another kernel), with dropout and padding: on a dense and an
/// 8-bit base in f32, and in bf16 and f16. A checkpointed pass that lost a layer's gradient, or drew other
/// dropout masks in its second pass, would not track.
#[test]
fn layer_checkpointing_trains_like_an_ordinary_pass() {
    let dir = tempfile::tempdir().unwrap();
    use engram_model::{BaseWeights, Dtype};
    for (base, dtype) in [
        (BaseWeights::F32, Dtype::F32),
        (BaseWeights::Q8, Dtype::F32),
        (BaseWeights::F32, Dtype::Bf16),
        (BaseWeights::F32, Dtype::F16),
    ] {
        let mut losses = Vec::new();
        let mut norms = Vec::new();
        for checkpoint_layers in [false, true] {
            let (mut m, lora) = tiny_with_adapter(0.1);
            m.set_dtype(dtype);
            m.set_base_weights(base);
            let cfg = TrainConfig {
                checkpoint_layers,
                checkpoint_every: 0,
                ..config(4)
            };
            let out = dir
                .path()
                .join(format!("{base}-{dtype}-{checkpoint_layers}"));
            let (r, seen) = run(
                &mut m,
                &lora,
                cfg,
                &CrossEntropy,
                &ragged_batcher(),
                &out,
                false,
            );
            r.unwrap();
            losses.push(seen.iter().map(|m| m.loss).collect::<Vec<_>>());
            norms.push(seen.iter().map(|m| m.grad_norm).collect::<Vec<_>>());
        }
        for (what, pair) in [("loss", &losses), ("gradient norm", &norms)] {
            for (a, b) in pair[0].iter().zip(&pair[1]) {
                assert!(
                    (a - b).abs() <= 1e-4 * a.abs(),
                    "{base} {dtype}: {what} {:?} vs checkpointed {:?}",
                    pair[0],
                    pair[1]
                );
            }
        }
        // Not a run that learned nothing: the loss moved.
        assert!(
            losses[1][3] < losses[1][0],
            "{base} {dtype}: {:?}",
            losses[1]
        );
    }
}

/// lr 1e30 makes finite factors whose product overflows: the step's loss was finite, but the weights are not
/// usable, so no checkpoint may be written or called good (issue 22: it used to keep step 1's and say so).
#[test]
fn an_overflowing_update_is_never_kept_as_a_good_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("run");
    let (mut m, lora) = tiny_with_adapter(0.0);
    let cfg = TrainConfig {
        lr: 1e30,
        warmup_steps: 0,
        checkpoint_every: 1,
        ..config(4)
    };
    let (r, seen) = run(&mut m, &lora, cfg, &CrossEntropy, &batcher(3), &out, false);
    let e = r.unwrap_err();
    assert!(
        matches!(
            e,
            TrainError::NonFinite {
                last_good: 0,
                checkpoint: None,
                ..
            }
        ),
        "{e}"
    );
    let msg = e.to_string();
    assert!(
        msg.contains("no checkpoint is kept") && !msg.contains("step 0"),
        "{msg}"
    );
    assert!(seen.len() <= 1, "it stops at the first bad state: {seen:?}");
    assert!(!out.join("checkpoint").exists(), "nothing called good");
    assert!(!out.join("adapter_model.safetensors").exists());
}

/// A full disk or a blocked path loses the end-of-run checkpoint, never the adapter: the adapter is written
/// first and the run reports the lost checkpoint as a warning. Stale staging folders from a killed run go.
#[test]
fn the_adapter_is_written_before_the_end_of_run_checkpoint() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    // A file where the checkpoint folder goes: writing it fails, as on a full disk.
    std::fs::write(out.join("checkpoint"), b"in the way").unwrap();
    let stale = out.join(".checkpoint.tmpAbC123");
    std::fs::create_dir_all(stale.join("adapter")).unwrap();
    let (mut m, lora) = tiny_with_adapter(0.0);
    let cfg = TrainConfig {
        checkpoint_every: 0,
        ..config(2)
    };
    let (r, seen) = train_ce(&mut m, &lora, cfg, 3, &out);
    let summary = r.unwrap();
    assert_eq!(seen.len(), 2);
    assert!(out.join("adapter_model.safetensors").exists());
    assert!(out.join("adapter_config.json").exists());
    assert_eq!(summary.warnings.len(), 1, "{:?}", summary.warnings);
    assert!(
        summary.warnings[0].contains("checkpoint"),
        "{:?}",
        summary.warnings
    );
    assert!(!stale.exists(), "a killed run's staging folder is removed");
}

/// A fresh run into a folder with an earlier run's metrics leaves them whole until it has a step of its own.
#[test]
fn a_fresh_run_keeps_old_metrics_until_its_first_step() {
    let root = tempfile::tempdir().unwrap();
    let out = root.path().join("run");
    let (mut m, lora) = tiny_with_adapter(0.0);
    let (r, _) = train_ce(&mut m, &lora, config(2), 3, &out);
    r.unwrap();
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics.lines().count(), 2);
    let dirs = engram_train::RunDir { out: out.clone() };
    assert!(dirs.earlier_run().is_some(), "a finished run is seen");
    // A second run that fails at its first step (a NaN loss).
    let failing = Failing {
        calls: AtomicUsize::new(0),
        fail_at: 0,
    };
    let (mut m, _) = tiny_with_adapter(0.0);
    let (r, seen) = run(&mut m, &lora, config(2), &failing, &batcher(3), &out, false);
    assert!(r.is_err() && seen.is_empty(), "{r:?}");
    assert_eq!(
        std::fs::read_to_string(out.join("metrics.jsonl")).unwrap(),
        metrics,
        "the old metrics are whole"
    );
    assert!(
        engram_train::RunDir {
            out: root.path().join("nothing")
        }
        .earlier_run()
        .is_none()
    );
}
