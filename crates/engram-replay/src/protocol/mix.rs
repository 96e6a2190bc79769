//! [`Mix`]: several protocols together.

use super::{Replay, ReplayProtocol};
use crate::record::{Format, Source};
use crate::{Generator, ReplayError};

/// Several protocols' records together (`sys2-mix`: paraphrase + implication + self-QA).
pub struct Mix {
    /// The mix's name (`sys2-mix`).
    pub name: String,
    /// The protocols whose records are put together, in order.
    pub protocols: Vec<Box<dyn ReplayProtocol>>,
}

impl ReplayProtocol for Mix {
    fn name(&self) -> &str {
        &self.name
    }

    fn replay(
        &self,
        source: &Source,
        others: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let mut all = Replay::default();
        for p in &self.protocols {
            let r = p.replay(source, others, generator, format)?;
            all.records.extend(r.records);
            all.yields.extend(r.yields);
        }
        Ok(all)
    }
}
