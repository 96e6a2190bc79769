//! # engram-replay
//!
//! The model turns new knowledge into its own training data, and engram fine-tunes on that: the replay
//! protocols of Sys2-FT (Park et al., "New News", 2025) and the reasoning-trace augmentation of Lampinen et
//! al. (2025).
//!
//! - **Generators** ([`Generator`], `engram-model`'s one generation seam, re-exported): chat prompts in, text
//!   out — an engram model ([`ModelGenerator`], with whatever adapters are attached) or any OpenAI-compatible
//!   endpoint ([`HttpGenerator`]), so a stronger model can write the data; [`Cached`] generates each once.
//! - **Protocols** ([`ReplayProtocol`]): a [`Source`] text in, [`Record`]s out — chat examples with their
//!   [`Provenance`] (protocol, seed, generator, prompt). [`Paraphrase`], [`Implication`], [`SelfQa`] (questions
//!   from the text and the model, answered with the text in view), [`ReasoningTrace`] (sentence rephrasings
//!   and reversals, links to other items), and a [`Mix`].
//! - **Formatting** ([`Format`]): a user turn and an assistant turn, *without* the source as a prefix; the
//!   `context_prefix` switch puts it there to reproduce contextual shadowing.
//! - **Quality control** ([`Checker`], [`text`]): a small model's generations drop and invent facts, loop and
//!   echo. Names, numbers and dates must be in the source; duplicates, loops, unfinished text, echoed
//!   questions and off-topic filler are dropped; what survives is each protocol's [`Yield`].
//! - **Methods** ([`method`]): each protocol followed by LoRA fine-tuning, an `engram_inject::Method`; the
//!   [`Replays`] family builds them for the registry (`sys2-paraphrase`, `sys2-implication`, `sys2-self-qa`,
//!   `sys2-self-qa-prefix`, `sys2-mix`, `aug-ft`).
//!
//! Records are JSONL lines `{"messages": [...], "provenance": {...}}` that `engram train` reads as they are.
#![warn(missing_docs)]

mod error;
mod generator;
pub mod method;
mod protocol;
mod record;
pub mod text;

pub use engram_model::{Completion, Generator, HttpGenerator, ModelGenerator, Sampling};
pub use error::ReplayError;
pub use generator::{Cached, GenerationCache};
pub use method::{
    ReplayMethod, ReplayReport, ReplaySettings, Replays, replay_once, replay_sources,
};
pub use protocol::{
    Checker, Implication, Mix, PROTOCOLS, Paraphrase, QualityConfig, ReasoningTrace, Replay,
    ReplayProtocol, SelfQa, protocol_by_name,
};
pub use record::{
    Format, Origin, Provenance, Record, Source, Yield, read_records, records_jsonl, total_yields,
};
