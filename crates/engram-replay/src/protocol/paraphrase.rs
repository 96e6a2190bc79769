//! The `paraphrase` protocol.

use super::{
    QualityConfig, Replay, ReplayProtocol, sample_rewrites, sampled, topic_of, topic_turn,
};
use crate::record::{Format, Source};
use crate::text::{self, containment, fact_coverage};
use crate::{Generator, ReplayError, Sampling};

/// `paraphrase`: `n` rewrites of the whole source, each answering a topic question ("Tell me about X").
#[derive(Clone, Debug)]
pub struct Paraphrase {
    /// Rewrites sampled per source.
    pub n: usize,
    /// How rewrites are sampled.
    pub sampling: Sampling,
    /// The checks a rewrite must pass.
    pub quality: QualityConfig,
}

impl Paraphrase {
    /// `n` rewrites sampled at `temperature` (top-p 0.9, repetition penalty 1.2, up to 160 new tokens).
    pub fn new(n: usize, temperature: f32, seed: u64) -> Self {
        Self {
            n,
            sampling: sampled(temperature, 160, seed),
            quality: QualityConfig::default(),
        }
    }
}

const PARAPHRASE_PROMPT: &str =
    "Rewrite the text above in your own words. Keep every name, number and date.";

impl ReplayProtocol for Paraphrase {
    fn name(&self) -> &str {
        "paraphrase"
    }

    fn replay(
        &self,
        source: &Source,
        _: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let ctx = source.context.as_str();
        let min = self.quality.min_coverage;
        let topics = text::topics(ctx);
        sample_rewrites(
            self.name(),
            source,
            generator,
            format,
            PARAPHRASE_PROMPT,
            self.n,
            &self.sampling,
            self.quality.max_sentences,
            &|t| {
                if fact_coverage(t, ctx) < min {
                    Some("drops facts")
                } else if containment(t, ctx, 3) >= 0.9 {
                    Some("copy of the source")
                } else {
                    None
                }
            },
            &|content, k| topic_turn(&topic_of(content, &topics), k),
        )
    }
}
