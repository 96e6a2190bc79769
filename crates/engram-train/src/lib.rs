//! # engram-train
//!
//! The training engine every engram method uses: it trains the LoRA adapter factors of a frozen model
//! (`engram-lora`) on batches from `engram-data`, minimising an [`Objective`].
//!
//! - [`Objective`]: a batch in, a scalar loss and its token count out. [`CrossEntropy`] (next-token,
//!   masked to assistant turns or whole texts) is the first; SELF-PARAM's KL distillation is another.
//! - [`BatchSource`]: batches by (epoch, index), so a run can restart at any step on the same data.
//! - [`Trainer`]: gradient accumulation weighted by tokens, global gradient-norm clipping, [`AdamW`]
//!   (PyTorch semantics), warm-up + constant/cosine/linear schedules ([`LrSchedule`]), per-step metrics as
//!   JSONL, atomic checkpoints (adapter + optimizer state + step), bit-identical `--resume`, a clear stop
//!   on a NaN or infinite loss, gradient or adapter update that keeps only a checkpoint whose weights were
//!   checked, the adapter written before the end-of-run checkpoint, a memory check before training, and
//!   data parallelism over several devices (`Trainer::replicas`; the result does not depend on the devices).
//!
//! - [`sft`]: the one supervised fine-tuning pipeline — examples → batches → adapter → [`Trainer`] → PEFT
//!   files — run by `engram train` and by every injection method, with its settings in one flat value per
//!   concern ([`FineTuneSettings`]: LoRA, optimiser and schedule, [`Batching`], the locality [`Guard`]).
//! - [`guard`]: the locality guard every method composes with: the base model's own answers to a pool of
//!   general prompts, mixed into the training rows (self-rehearsal; a KL to the base for distillation).
//!
//! Only the adapter factors take part in autodiff: the base weights stay plain tensors, so they get no
//! gradient, no optimizer state and no autodiff bookkeeping.
#![warn(missing_docs)]

mod error;
pub mod guard;
mod objective;
mod optim;
pub mod sft;
mod trainer;

pub use error::TrainError;
pub use guard::{Guard, GuardReport, Rehearsal};
pub use objective::{
    BatchSource, CrossEntropy, DeviceBatches, LossOutput, Objective, ToDevice, TokenBatch,
    cross_entropy, cross_entropy_host, host_softmax_enabled,
};
pub use optim::{AdamW, AdamWConfig, Decay, LrSchedule, Moments, global_norm};
pub use sft::{Batching, FineTuneSettings, fine_tune, train_objective};
pub use trainer::{Length, RunDir, StepMetrics, TrainConfig, TrainSummary, Trainer};
