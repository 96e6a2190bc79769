//! # engram-eval
//!
//! How much of what the model can do with a text in its prompt can it do from its weights, and at what cost?
//! This crate measures it. So far it holds the dataset format every method is evaluated on:
//!
//! - [`Item`]: one piece of new knowledge (`context`) with questions of four [`QuestionKind`]s (direct,
//!   paraphrase, reversal, implication), each with a short answer and four options.
//! - [`read_items`] / [`parse_items`]: JSONL, one item per line, with errors that name the file, line and field;
//!   duplicate ids and answers missing from their options are refused.
//! - [`Splits`]: fixed train / dev / test item ids (`splits.json`), checked against the items.
//!
//! - Answer metrics on strings: SQuAD normalisation, [`exact_match`], [`contains_answer`], [`token_f1`];
//!   [`gap_recovery`]; [`bootstrap_mean`] confidence intervals.
//!
//! - [`score_options`]: multiple choice by likelihood (each option's log-probability as the answer, no options
//!   shown), [`best_option`] by length-normalised score.
//!
//! Conditions (base, in-context, fine-tuned), the remaining metrics and reports follow.

mod dataset;
mod error;
mod likelihood;
mod metrics;

pub use dataset::{Item, Question, QuestionKind, Splits, parse_items, read_items, read_splits};
pub use error::EvalError;
pub use likelihood::{OptionScore, best_option, score_options};
pub use metrics::{
    Estimate, bootstrap_mean, contains_answer, exact_match, gap_recovery, normalize_answer,
    token_f1,
};
