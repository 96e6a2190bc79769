//! The `reasoning-trace` protocol.

use super::{
    Checker, QualityConfig, Records, Replay, ReplayProtocol, ask, on_topic, sampled, topic_of,
    topic_turn,
};
use crate::record::{Format, Source, Yield};
use crate::text::{self, FactKind, clean_generation, mentions, near_duplicate};
use crate::{Generator, ReplayError, Sampling};

/// `reasoning-trace`, the augmentation of Lampinen et al.: *local* traces — each sentence rephrased, and
/// reversed (rewritten to begin with its last name or term, and keyed by it, so the fact is reachable from
/// either end) — and *global* ones: sentences linking the source to `links` other sources of its dataset
/// (sharing a word, else its group), written with both in context. The source itself is kept as one record.
#[derive(Clone, Debug)]
pub struct ReasoningTrace {
    /// Make a rephrased record of each sentence.
    pub rephrase: bool,
    /// Make a reversed record of each sentence that has a second name or term to begin with.
    pub reverse: bool,
    /// Other sources of the dataset to write a linking sentence with.
    pub links: usize,
    /// Keep the source itself as one record.
    pub include_source: bool,
    /// How traces are sampled.
    pub sampling: Sampling,
    /// The checks a trace must pass.
    pub quality: QualityConfig,
}

impl ReasoningTrace {
    /// Rephrase, reverse and `links` links, sampled at `temperature` (top-p 0.9, up to 64 new tokens), the source kept.
    pub fn new(links: usize, temperature: f32, seed: u64) -> Self {
        Self {
            rephrase: true,
            reverse: true,
            links,
            include_source: true,
            sampling: sampled(temperature, 64, seed),
            quality: QualityConfig {
                max_sentences: 2,
                ..QualityConfig::default()
            },
        }
    }
}

/// The other sources to link with: those sharing a name or term with `source` first, then its group, in a
/// seeded order.
fn link_candidates<'a>(
    source: &Source,
    others: &'a [Source],
    n: usize,
    seed: u64,
) -> Vec<&'a Source> {
    let mine: Vec<String> = text::facts(&source.context)
        .into_iter()
        .filter(|f| matches!(f.kind, FactKind::Name | FactKind::Term))
        .map(|f| f.text.to_lowercase())
        .collect();
    let mut scored: Vec<(usize, u64, &Source)> = others
        .iter()
        .filter(|o| o.id != source.id)
        .map(|o| {
            let shared = mine.iter().filter(|m| mentions(&o.context, m)).count();
            let rank = if shared > 0 {
                0
            } else if o.group == source.group {
                1
            } else {
                2
            };
            let h = engram_model::splitmix64(seed ^ text_hash(&o.id) ^ text_hash(&source.id));
            (rank, h, o)
        })
        .filter(|(rank, _, _)| *rank < 2)
        .collect();
    scored.sort_by_key(|&(r, h, _)| (r, h));
    scored.into_iter().take(n).map(|(_, _, o)| o).collect()
}

fn text_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl ReplayProtocol for ReasoningTrace {
    fn name(&self) -> &str {
        "reasoning-trace"
    }

    fn replay(
        &self,
        source: &Source,
        others: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let out = Records::new(format, source, self.name(), self.sampling.seed, generator);
        let ctx = source.context.as_str();
        let topics = text::topics(ctx);
        let mut check = Checker::new(self.name(), ctx);
        let mut records = Vec::new();
        let seed = self.sampling.seed;
        if self.include_source {
            check.yields.rule_made += 1;
            let user = topic_turn(&topic_of(ctx, &topics), 1);
            records.push(out.record("source", "", &user, ctx));
        }
        // (prompt, part, sentence, the fact it is keyed by)
        let mut jobs: Vec<(String, &str, String, String)> = Vec::new();
        for s in text::sentences(ctx) {
            let fs: Vec<String> = text::facts(s).into_iter().map(|f| f.text).collect();
            let Some(first) = fs.first() else { continue };
            if self.rephrase {
                jobs.push((
                    format!("{ctx}\n\nRewrite this sentence in other words, keeping every name and number: {s}"),
                    "rephrase",
                    s.to_owned(),
                    first.clone(),
                ));
            }
            // The reversal is keyed by the sentence's last name or term (not a number: "What do you know
            // about 2029?" retrieves nothing), when there is one besides the first fact.
            let keys: Vec<String> = text::facts(s)
                .into_iter()
                .filter(|f| matches!(f.kind, FactKind::Name | FactKind::Term))
                .map(|f| f.text)
                .collect();
            if self.reverse && fs.len() >= 2 && keys.last().is_some_and(|k| k != first) {
                let last = keys.last().cloned().unwrap_or_default();
                if !s
                    .trim_start()
                    .to_lowercase()
                    .starts_with(&last.to_lowercase())
                    && !s
                        .to_lowercase()
                        .starts_with(&format!("the {}", last.to_lowercase()))
                {
                    jobs.push((
                        format!(
                            "{ctx}\n\nRewrite this sentence so that it begins with \"{last}\": {s}"
                        ),
                        "reversal",
                        s.to_owned(),
                        last,
                    ));
                }
            }
        }
        let prompts: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
        let outs = ask(generator, &prompts, &self.sampling, &mut check.yields)?;
        for ((prompt, part, sentence, key), c) in jobs.iter().zip(outs) {
            let content = clean_generation(&c.text, self.quality.max_sentences, c.finished);
            // Names, numbers and dates must all survive; terms may be reworded.
            let needed: Vec<String> = text::facts(sentence)
                .into_iter()
                .filter(|f| f.kind != FactKind::Term)
                .map(|f| f.text)
                .collect();
            let kept = check.check(&content, None, |t| {
                if !needed.iter().all(|f| mentions(t, f)) {
                    Some("drops facts")
                } else if *part == "reversal" {
                    let head: String = t.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
                    (!mentions(&head, key)).then_some("not reversed")
                } else {
                    near_duplicate(t, sentence, 0.9).then_some("copy of the source")
                }
            });
            if kept {
                let user = topic_turn(key, records.len());
                records.push(out.record(part, prompt, &user, &content));
            }
        }
        // Global traces.
        let partners = link_candidates(source, others, self.links, seed);
        if !partners.is_empty() {
            let prompts: Vec<String> = partners
                .iter()
                .map(|o| format!("Text 1: {ctx}\n\nText 2: {}\n\nWrite one sentence that connects a fact from Text 1 with a fact from Text 2.", o.context))
                .collect();
            let outs = ask(generator, &prompts, &self.sampling, &mut check.yields)?;
            for ((o, prompt), c) in partners.iter().zip(&prompts).zip(outs) {
                let content = clean_generation(&c.text, self.quality.max_sentences, c.finished);
                let both = format!("{ctx} {}", o.context);
                // Checked against both sources: names from either are supported.
                let mut link_check = Checker::new(self.name(), &both);
                let kept = link_check.check(&content, None, |t| {
                    (!(on_topic(t, ctx) && on_topic(t, &o.context))).then_some("does not link")
                });
                check.yields.add(&Yield {
                    protocol: String::new(),
                    ..link_check.yields
                });
                if kept {
                    let other_topics = text::topics(&o.context);
                    let user = format!(
                        "How is {} related to {}?",
                        topic_of(&content, &topics),
                        topic_of(&content, &other_topics)
                    );
                    records.push(out.record("link", prompt, &user, &content));
                }
            }
        }
        Ok(Replay {
            records,
            yields: vec![check.yields],
        })
    }
}
