//! # engram-eval
//!
//! How much of what the model can do with a text in its prompt can it do from its weights, and at what cost?
//! This crate measures it, the same way for every method.
//!
//! - **Datasets**: the shipped datasets (`news`, `trivia`, `relations`, `general` text) are embedded
//!   ([`shipped`]); `relations` is generated from a seed by [`relations`]. Their [`Item`]s and the JSONL
//!   format come from `engram-inject`.
//! - **Metrics**: answer strings ([`exact_match`], [`contains_answer`], [`token_f1`]), multiple choice by
//!   likelihood ([`score_options`]) and by option letter, teacher-forced token accuracy ([`probe`]), locality
//!   on unrelated questions and general-text perplexity ([`locality`]), [`bootstrap_mean`] intervals and
//!   [`gap_recovery`].
//! - **Conditions**: whatever [`Method`]s it is given (the seam and the one registry of names live in
//!   `engram-inject`; this crate never names a method). The baselines `base` and `icl` bound each measure.
//! - **Runs** ([`harness`]): single / batch / sequential injection, one JSONL row per question per condition,
//!   resumable, the manifest built from the methods' own settings ([`RunManifest::new`]); [`report`] turns the
//!   rows into `summary.json`, `report.md` (with each method's notes) and SVG charts.
#![warn(missing_docs)]

mod error;
pub mod harness;
mod likelihood;
pub mod locality;
pub mod probe;
pub mod relations;
pub mod report;
pub mod shipped;

pub use engram_inject::{
    Estimate, FineTuneSettings, Injection, Item, Method, Question, QuestionKind, Registry, Splits,
    bootstrap_mean, contains_answer, exact_match, gap_recovery, normalize_answer, parse_items,
    read_items, read_splits, token_f1,
};
pub use error::EvalError;
pub use harness::{
    Mode, Progress, ResultRow, RunManifest, RunSpec, method_notes, run_eval, select_items,
};
pub use likelihood::{
    Continuation, OptionScore, best_option, continuation, score_continuations, score_options,
};
pub use probe::{Asker, ProbeConfig, QuestionScores, probe_questions};
