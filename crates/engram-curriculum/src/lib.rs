//! # engram-curriculum
//!
//! Gradual Learning ("Gradual Learning: Optimizing Fine-Tuning with Partially Mastered Knowledge in Large
//! Language Models", 2024): sort each fact by how well the model knows it, train the partly known first, sort
//! again, then train what moved up while replaying what is mastered.
//!
//! - [`category`]: SliCK's four [`Category`]s as a pure function of right-answer counts ([`categorize`]) and
//!   the [`Transitions`] between two probes.
//! - [`probe`]: the knowledge probe — few-shot prompts from other facts, greedy and sampled answers through
//!   `engram-model`'s one generation seam (`Generator`: the local model or an OpenAI-compatible endpoint) —
//!   cached on disk per model + adapter ([`ProbeCache`]); results are plain [`Knowledge`] rows (JSONL).
//! - [`schedule`]: the [`Curriculum`] seam — which facts each stage trains — with [`TwoStage`] and the
//!   one-stage baselines ([`OneStage`]).
//! - [`method`]: a curriculum as an [`engram_inject::Method`] (`gradual`, `gradual-all`,
//!   `gradual-maybe`) whose stages run any registered training method, choosing rounds on dev facts only.
//! - [`report`]: the curriculum table with paired bootstrap intervals.
#![warn(missing_docs)]

pub mod category;
mod error;
pub mod method;
pub mod probe;
pub mod report;
pub mod schedule;

pub use category::{Category, Transitions, categorize};
pub use error::CurriculumError;
pub use method::{Curricula, Gradual, GradualReport, GradualSettings};
pub use probe::{Fact, Knowledge, ProbeCache, ProbeSettings, facts, model_identity, probe_facts};
pub use schedule::{Curriculum, OneStage, Selection, StagePlan, TwoStage};
