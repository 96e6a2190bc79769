//! The `implication` protocol.

use super::{QualityConfig, Replay, ReplayProtocol, on_topic, sample_rewrites, sampled, topic_of};
use crate::record::{Format, Source};
use crate::text::{self, containment};
use crate::{Generator, ReplayError, Sampling};

/// `implication`: `n` consequences or inferences drawn from the source, each answering "What follows from
/// what you know about X?". Generic filler (no name, number or term of the source) is dropped.
#[derive(Clone, Debug)]
pub struct Implication {
    /// Implications sampled per source.
    pub n: usize,
    /// How implications are sampled.
    pub sampling: Sampling,
    /// The checks an implication must pass.
    pub quality: QualityConfig,
}

impl Implication {
    /// `n` implications sampled at `temperature` (top-p 0.9, repetition penalty 1.2, ≤ 96 new tokens, ≤ 3 sentences).
    pub fn new(n: usize, temperature: f32, seed: u64) -> Self {
        Self {
            n,
            sampling: sampled(temperature, 96, seed),
            quality: QualityConfig {
                max_sentences: 3,
                ..QualityConfig::default()
            },
        }
    }
}

const IMPLICATION_PROMPT: &str = "What follows from the text above? State one consequence or inference that it does not say in so many words, in one or two sentences.";

impl ReplayProtocol for Implication {
    fn name(&self) -> &str {
        "implication"
    }

    fn replay(
        &self,
        source: &Source,
        _: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let ctx = source.context.as_str();
        let topics = text::topics(ctx);
        sample_rewrites(
            self.name(),
            source,
            generator,
            format,
            IMPLICATION_PROMPT,
            self.n,
            &self.sampling,
            self.quality.max_sentences,
            &|t| {
                if !on_topic(t, ctx) {
                    Some("off topic")
                } else if text::sentences(t)
                    .iter()
                    .all(|s| containment(s, ctx, 3) >= 0.8)
                {
                    Some("restates the source")
                } else {
                    None
                }
            },
            &|content, _| {
                format!(
                    "What follows from what you know about {}?",
                    topic_of(content, &topics)
                )
            },
        )
    }
}
