//! The [`ReplayProtocol`] seam and the protocols: [`Paraphrase`], [`Implication`], [`SelfQa`] (Sys2-FT, Park
//! et al. 2025), [`ReasoningTrace`] (Lampinen et al. 2025), and [`Mix`] of several.
//!
//! Every candidate passes the [`Checker`] before it becomes a record: the names, numbers and dates it states
//! must be in the source, and duplicates, loops, unfinished text and echoed questions are dropped. What was
//! kept of what was generated is the protocol's [`Yield`].

mod checker;
mod implication;
mod mix;
mod paraphrase;
mod reasoning_trace;
mod self_qa;

use engram_tokenizer::Message;

use crate::record::{Format, Origin, Provenance, Record, Source, Yield};
use crate::text::{self, clean_generation, mentions};
use crate::{Generator, ReplayError, Sampling};

pub use checker::{Checker, QualityConfig};
pub use implication::Implication;
pub use mix::Mix;
pub use paraphrase::Paraphrase;
pub use reasoning_trace::ReasoningTrace;
pub use self_qa::SelfQa;

/// What a protocol made of one source.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// The training records kept, in the order they were made.
    pub records: Vec<Record>,
    /// One per protocol (a [`Mix`] gives several).
    pub yields: Vec<Yield>,
}

/// Turns a source into training records, with the generator's help.
pub trait ReplayProtocol: Send + Sync {
    /// `paraphrase`, `implication`, `self-qa`, `reasoning-trace`, or a mix's name.
    fn name(&self) -> &str;
    /// The records for `source`. `others` are the other sources of its dataset, for protocols that link
    /// items (they may be empty).
    fn replay(
        &self,
        source: &Source,
        others: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError>;
}

/// Sends prompts to the generator, counting prompts and tokens in `y`.
fn ask(
    generator: &mut dyn Generator,
    prompts: &[String],
    sampling: &Sampling,
    y: &mut Yield,
) -> Result<Vec<crate::Completion>, ReplayError> {
    let chats: Vec<Vec<Message>> = prompts.iter().map(|p| vec![Message::user(p)]).collect();
    let out = generator.complete(&chats, sampling)?;
    y.prompts += prompts.len();
    y.tokens_generated += out.iter().map(|c| c.tokens).sum::<usize>();
    Ok(out)
}

/// Makes one protocol's records for one source.
struct Records<'a> {
    format: &'a Format,
    source: &'a Source,
    protocol: &'a str,
    seed: u64,
    generator: String,
}

impl<'a> Records<'a> {
    /// `protocol`'s records of `source`, sampled with `seed` by `generator`.
    fn new(
        format: &'a Format,
        source: &'a Source,
        protocol: &'a str,
        seed: u64,
        generator: &dyn Generator,
    ) -> Self {
        Self {
            format,
            source,
            protocol,
            seed,
            generator: generator.name(),
        }
    }

    /// A record of `part`; an empty `prompt` marks content made by rule, not by the generator.
    fn record(&self, part: &str, prompt: &str, user: &str, assistant: &str) -> Record {
        let by_rule = prompt.is_empty();
        Record {
            messages: self.format.turns(&self.source.context, user, assistant),
            provenance: Provenance {
                protocol: self.protocol.into(),
                part: part.into(),
                source: self.source.id.clone(),
                seed: self.seed,
                origin: if by_rule { Origin::Text } else { Origin::Model },
                generator: if by_rule {
                    String::new()
                } else {
                    self.generator.clone()
                },
                prompt: prompt.into(),
            },
        }
    }
}

/// Topic-keyed user turns for content that answers no particular question; `k` rotates through them.
fn topic_turn(topic: &str, k: usize) -> String {
    const TURNS: [&str; 4] = [
        "What do you know about {}?",
        "Tell me about {}.",
        "What is new about {}?",
        "What have you learned about {}?",
    ];
    TURNS[k % TURNS.len()].replace("{}", topic)
}

/// The first of `source`'s topics that `content` mentions, else the source's first topic.
fn topic_of(content: &str, topics: &[String]) -> String {
    topics
        .iter()
        .find(|t| mentions(content, t))
        .or(topics.first())
        .cloned()
        .unwrap_or_else(|| "this".into())
}

fn sampled(temperature: f32, max_new_tokens: usize, seed: u64) -> Sampling {
    Sampling {
        temperature,
        top_p: 0.9,
        repetition_penalty: 1.2,
        max_new_tokens,
        seed,
        ..Sampling::greedy(max_new_tokens)
    }
}

/// The shape paraphrase and implication share: `n` samples of `instruction` after the source, cleaned to
/// `max_sentences`, checked with `extra`, each kept one a record of `part` answering `user(content, k)`.
#[allow(clippy::too_many_arguments)]
fn sample_rewrites(
    protocol: &str,
    source: &Source,
    generator: &mut dyn Generator,
    format: &Format,
    instruction: &str,
    n: usize,
    sampling: &Sampling,
    max_sentences: usize,
    extra: &dyn Fn(&str) -> Option<&'static str>,
    user: &dyn Fn(&str, usize) -> String,
) -> Result<Replay, ReplayError> {
    let out = Records::new(format, source, protocol, sampling.seed, generator);
    let prompt = format!("{}\n\n{instruction}", source.context);
    let mut check = Checker::new(protocol, &source.context);
    let outs = ask(
        generator,
        &vec![prompt.clone(); n],
        sampling,
        &mut check.yields,
    )?;
    let mut records = Vec::new();
    for c in outs {
        let content = clean_generation(&c.text, max_sentences, c.finished);
        if check.check(&content, None, extra) {
            let turn = user(&content, records.len());
            records.push(out.record(protocol, &prompt, &turn, &content));
        }
    }
    Ok(Replay {
        records,
        yields: vec![check.yields],
    })
}

/// Whether `content` mentions one of the facts (names, numbers, years or terms) of `source`.
fn on_topic(content: &str, source: &str) -> bool {
    text::facts(source)
        .iter()
        .any(|f| mentions(content, &f.text))
}

/// The protocol names [`protocol_by_name`] knows.
pub const PROTOCOLS: [&str; 4] = ["paraphrase", "implication", "self-qa", "reasoning-trace"];

/// A protocol by name with `n` generations (model questions for `self-qa`, links for `reasoning-trace`),
/// sampling temperature and seed; an unknown name is an error listing the known ones.
pub fn protocol_by_name(
    name: &str,
    n: usize,
    temperature: f32,
    seed: u64,
) -> Result<Box<dyn ReplayProtocol>, ReplayError> {
    let sampling = sampled(temperature, 1, seed);
    sampling.validate()?;
    Ok(match name {
        "paraphrase" => Box::new(Paraphrase::new(n, temperature, seed)),
        "implication" => Box::new(Implication::new(n, temperature, seed)),
        "self-qa" => Box::new(SelfQa::new(n, temperature, seed)),
        "reasoning-trace" => Box::new(ReasoningTrace::new(n, temperature, seed)),
        other => {
            return Err(ReplayError::option(
                "protocol",
                other,
                &format!("unknown protocol; known: {}", PROTOCOLS.join(", ")),
            ));
        }
    })
}
