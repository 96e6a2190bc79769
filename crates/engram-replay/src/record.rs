//! The data a protocol produces: [`Record`]s (a chat example and its [`Provenance`]), the [`Format`] that
//! turns replayed content into chat turns, and the [`Yield`] of the quality checks.

use std::collections::BTreeMap;
use std::path::Path;

use engram_data::Example;
use engram_tokenizer::Message;
use serde::{Deserialize, Serialize};

use crate::ReplayError;

/// A piece of new knowledge to replay: a dataset item's context, or a user's text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// Identifies the source in provenance (a dataset item's id).
    pub id: String,
    /// The text of the new knowledge.
    pub context: String,
    /// Items of the same group (the dataset's domain) are candidates for linking inferences.
    #[serde(default)]
    pub group: String,
}

impl From<&engram_inject::Item> for Source {
    fn from(item: &engram_inject::Item) -> Self {
        Self {
            id: item.id.clone(),
            context: item.context.clone(),
            group: item.domain.clone(),
        }
    }
}

/// Whether a record's content was written by the generator or taken from the source by rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// Written by the generator.
    Model,
    /// Taken from the source by rule (the source itself, a text question's span).
    Text,
}

/// Where a training example came from: enough to audit it and to regenerate it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provenance {
    /// The protocol (`self-qa`) and its part (`text-question`, `model-question`, `reversal`, ...).
    pub protocol: String,
    /// The part of the protocol that made it.
    pub part: String,
    /// The source's id.
    pub source: String,
    /// Seed of the sampling that produced the content.
    pub seed: u64,
    /// Who wrote the content (`SmolLM2-135M-Instruct.Q4_1.gguf`), empty for rule-made content.
    pub generator: String,
    /// The user turn sent to the generator for the content, empty for rule-made content.
    pub prompt: String,
    /// Whether the generator wrote the content or a rule took it from the source.
    pub origin: Origin,
}

/// One training example with its provenance. As a JSONL line it is `{"messages": [...], "provenance": {...}}`,
/// which `engram train` reads as a chat example (other keys are ignored).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The chat turns: a user turn and the assistant's replayed content.
    pub messages: Vec<Message>,
    /// Where the example came from.
    pub provenance: Provenance,
}

impl Record {
    /// The training example.
    pub fn example(&self) -> Example {
        Example::chat(self.messages.clone())
    }
}

/// How replayed content becomes chat turns.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Format {
    /// Put the source text before the user turn. This reproduces contextual shadowing on purpose: with the
    /// answer in the prompt the model copies it and its weights learn next to nothing. Off by default.
    pub context_prefix: bool,
}

impl Format {
    /// A user turn (an instruction or question, with the source before it only under `context_prefix`) and
    /// an assistant turn (the replayed content).
    pub fn turns(&self, context: &str, user: &str, assistant: &str) -> Vec<Message> {
        let user = if self.context_prefix {
            engram_inject::user_turn(Some(context), user)
        } else {
            user.to_owned()
        };
        vec![Message::user(user), Message::assistant(assistant)]
    }
}

/// What the quality checks kept of one protocol's generations, and what it cost.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Yield {
    /// The protocol's name.
    pub protocol: String,
    /// Candidates examined (generated or made by rule).
    pub generated: usize,
    /// Candidates that passed the checks and became records.
    pub kept: usize,
    /// Dropped candidates by reason (`unsupported fact`, `loop`, `duplicate`, ...).
    pub dropped: BTreeMap<String, usize>,
    /// Records made by rule rather than generated (the source itself, a text question answered with its own
    /// span after the generator's answer failed the checks): not part of `generated`/`kept`.
    pub rule_made: usize,
    /// Prompts sent to the generator and the tokens it wrote.
    pub prompts: usize,
    /// Tokens the generator wrote for those prompts.
    pub tokens_generated: usize,
}

impl Yield {
    /// An empty yield for `protocol`.
    pub fn new(protocol: &str) -> Self {
        Self {
            protocol: protocol.into(),
            ..Self::default()
        }
    }

    /// kept / generated (0 when nothing was generated).
    pub fn rate(&self) -> f64 {
        if self.generated == 0 {
            0.0
        } else {
            self.kept as f64 / self.generated as f64
        }
    }

    pub(crate) fn drop(&mut self, reason: &str) {
        *self.dropped.entry(reason.into()).or_insert(0) += 1;
    }

    /// Adds another count of the same protocol.
    pub fn add(&mut self, other: &Yield) {
        self.generated += other.generated;
        self.kept += other.kept;
        self.rule_made += other.rule_made;
        self.prompts += other.prompts;
        self.tokens_generated += other.tokens_generated;
        for (k, v) in &other.dropped {
            *self.dropped.entry(k.clone()).or_insert(0) += v;
        }
    }
}

/// Sums yields by protocol, in first-seen order.
pub fn total_yields(yields: &[Yield]) -> Vec<Yield> {
    let mut out: Vec<Yield> = Vec::new();
    for y in yields {
        match out.iter_mut().find(|o| o.protocol == y.protocol) {
            Some(o) => o.add(y),
            None => out.push(y.clone()),
        }
    }
    out
}

/// Records as JSONL text, one per line.
pub fn records_jsonl(records: &[Record]) -> String {
    engram_model::formats::jsonl::to_jsonl(records)
}

/// Reads records written by [`records_jsonl`], naming the line of a malformed one.
pub fn read_records(path: &Path) -> Result<Vec<Record>, ReplayError> {
    Ok(engram_model::formats::jsonl::read_jsonl_strict(path)?)
}
