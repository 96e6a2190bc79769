//! # engram-curriculum
//!
//! Gradual Learning ("Gradual Learning: Optimizing Fine-Tuning with Partially Mastered Knowledge in Large
//! Language Models", 2024): sort each fact by how well the model knows it, train the partly known first, sort
//! again, then train what moved up while replaying what is mastered.
//!
//! - [`category`]: SliCK's four [`Category`]s as a pure function of right-answer counts ([`categorize`]) and
//!   the [`Transitions`] between two probes.
//! - [`probe`]: the knowledge probe — few-shot prompts from other facts, greedy and sampled answers through
//!   the [`Answerer`] seam ([`ModelAnswerer`] for an engram model) — cached on disk per model + adapter
//!   ([`ProbeCache`]); results are plain [`Knowledge`] rows (JSONL).
//! - [`schedule`]: the [`Curriculum`] seam — which facts each stage trains — with [`TwoStage`] and the
//!   one-stage baselines ([`OneStage`]).
//! - [`method`]: a curriculum as an evaluation [`engram_eval::Method`] (`gradual`, `gradual-all`,
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
pub use method::{Gradual, GradualReport, GradualSettings, MethodFactory, register};
pub use probe::{
    Answerer, Ask, Fact, Knowledge, ModelAnswerer, ProbeCache, ProbeSettings, facts, probe_facts,
};
pub use schedule::{Curriculum, OneStage, Selection, StagePlan, TwoStage};
