//! # engram-eval
//!
//! How much of what the model can do with a text in its prompt can it do from its weights, and at what cost?
//! This crate measures it, the same way for every method.
//!
//! - **Datasets** ([`dataset`]): [`Item`]s — one piece of new knowledge (`context`) with questions of four
//!   [`QuestionKind`]s (direct, paraphrase, reversal, implication), each with a short answer and four options —
//!   read from JSONL with errors naming file, line and field; [`Splits`] by item id. The shipped datasets
//!   (`news`, `trivia`, `relations`, `general` text) are embedded ([`shipped`]); `relations` is generated from a
//!   seed by [`relations`].
//! - **Metrics**: answer strings ([`exact_match`], [`contains_answer`], [`token_f1`]), multiple choice by
//!   likelihood ([`score_options`]) and by option letter, teacher-forced token accuracy ([`probe`]), locality
//!   on unrelated questions and general-text perplexity ([`locality`]), [`bootstrap_mean`] intervals and
//!   [`gap_recovery`].
//! - **Conditions** ([`method`]): the [`Method`] seam — a method turns items into a prompt strategy or a LoRA
//!   adapter — with the baselines `base`, `icl`, `naive-ft`, `prefix-ft`, `qa-ft`, registered by name in a
//!   [`Registry`] that later crates extend.
//! - **Runs** ([`harness`]): single / batch / sequential injection, one JSONL row per question per condition,
//!   resumable; [`report`] turns the rows into `summary.json`, `report.md` and SVG charts.
#![warn(missing_docs)]

pub mod dataset;
mod error;
pub mod harness;
mod likelihood;
pub mod locality;
pub mod method;
mod metrics;
pub mod probe;
pub mod relations;
pub mod report;
pub mod shipped;

pub use dataset::{Item, Question, QuestionKind, Splits, parse_items, read_items, read_splits};
pub use error::EvalError;
pub use harness::{Mode, Progress, ResultRow, RunManifest, RunSpec, run_eval, select_items};
pub use likelihood::{
    Continuation, OptionScore, best_option, continuation, score_continuations, score_options,
};
pub use method::{FineTune, FineTuneSettings, Injection, Method, Registry};
pub use metrics::{
    Estimate, bootstrap_mean, contains_answer, exact_match, gap_recovery, normalize_answer,
    token_f1,
};
pub use probe::{Asker, ProbeConfig, QuestionScores, probe_questions};
