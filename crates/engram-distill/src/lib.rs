//! # engram-distill
//!
//! SELF-PARAM (Wang et al., "Self-Updatable Large Language Models by Integrating Context into Model
//! Parameters", ICLR 2025): the frozen model reading the context is the teacher, the LoRA model reading the
//! target alone is the student, and the student is trained to match the teacher's next-token distributions.
//!
//! - [`kl`]: the loss, KL(teacher ‖ student) · T² with two reductions ([`KlReduction::PerToken`] and
//!   [`KlReduction::TorchMean`], the authors' PyTorch `kl_div(reduction="mean")`), as a plain function over
//!   logits ([`kl_divergence_logits`], [`kl_divergence`] on Burn tensors) and over cached top-k teacher
//!   distributions ([`TeacherDist`], [`kl_loss`]).
//! - [`target`]: the target sentences, plain serde data (`targets.jsonl`): QA pairs from the replay crate's
//!   `self-qa`, context continuations, unrelated regulariser text.
//! - [`teacher`]: tokenizes both readers' sequences, aligns them on their shared ending, and runs the teacher —
//!   the same weights with adapters switched off — once per target, caching its distributions.
//! - [`objective`]: [`Distill`], an [`engram_train::Objective`], so training, checkpoints and adapter files
//!   are the engine's.
//! - [`method`]: `self-param`, an [`engram_inject::Method`] built by the [`SelfParams`] family (single, batch
//!   and sequential modes; `engram inject --method self-param`).
//! - [`on_policy`]: `self-distill`, on-policy context distillation (SDFT): the student answers the item's
//!   questions itself, the teacher reading the context scores those tokens, the loss is the divergence there
//!   (forward/reverse KL or JSD, [`divergence_loss`]); generation repeats every round and stops once the
//!   adapter's greedy answers to the item's own text questions carry their facts.
#![warn(missing_docs)]

mod error;
pub mod kl;
pub mod method;
pub mod objective;
pub mod on_policy;
pub mod target;
pub mod teacher;

pub use error::DistillError;
pub use kl::{
    KlOutput, KlReduction, TeacherDist, divergence_loss, kl_divergence, kl_divergence_logits,
    kl_loss,
};
pub use method::{
    DistillReport, DistillSettings, QaAnswers, SelfParam, SelfParams, teacher_answers,
};
pub use objective::{Distill, DistillBatch, DistillBatches};
pub use on_policy::{OnPolicySettings, SelfDistill, SelfDistillReport};
pub use target::{Target, TargetKind};
pub use teacher::{Prepared, TeacherConfig, align, prepare};
