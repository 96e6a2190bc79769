//! The replay crate generates through `engram-model`'s one seam ([`Generator`]: [`engram_model::ModelGenerator`]
//! or [`engram_model::HttpGenerator`]); this module adds the cache that lets methods replaying the same
//! sources generate once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use engram_model::{Completion, Generator, ModelError, Sampling};
use engram_tokenizer::Message;

/// Completions already generated, by generator, prompts and sampling: methods that replay the same sources
/// with the same protocols (`sys2-mix` and the single protocols, `sys2-self-qa` with and without the prefix)
/// generate once.
pub type GenerationCache = Arc<Mutex<HashMap<String, Vec<Completion>>>>;

/// A [`Generator`] that answers repeated calls from a [`GenerationCache`].
pub struct Cached<'a> {
    /// The generator asked on a cache miss.
    pub inner: &'a mut dyn Generator,
    /// Completions by generator, prompts and sampling settings.
    pub cache: GenerationCache,
}

impl Generator for Cached<'_> {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn complete(
        &mut self,
        prompts: &[Vec<Message>],
        sampling: &Sampling,
    ) -> Result<Vec<Completion>, ModelError> {
        let key = serde_json::json!([self.inner.name(), prompts, sampling]).to_string();
        let hit = self.cache.lock().ok().and_then(|c| c.get(&key).cloned());
        if let Some(done) = hit {
            return Ok(done);
        }
        let out = self.inner.complete(prompts, sampling)?;
        if let Ok(mut c) = self.cache.lock() {
            c.insert(key, out.clone());
        }
        Ok(out)
    }
}
