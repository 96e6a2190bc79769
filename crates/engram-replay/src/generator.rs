//! The [`Generator`] seam: chat prompts in, text out. [`ModelGenerator`] runs an engram model (with whatever
//! adapters are attached to it); [`crate::HttpGenerator`] asks any OpenAI-compatible server, so a stronger
//! model can write the replay data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use engram_model::{FinishReason, GenerationConfig, LoadedModel, generate};
use engram_tokenizer::Message;
use serde::{Deserialize, Serialize};

use crate::ReplayError;

/// How to sample a batch of completions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// Nucleus sampling (1 = off).
    pub top_p: f32,
    /// CTRL-style repetition penalty (1 = off): what keeps a small model from looping.
    pub repetition_penalty: f32,
    /// Upper bound on the tokens generated per completion.
    pub max_new_tokens: usize,
    /// Prompt `i` of a call is sampled with a stream derived from `seed` and `i`.
    pub seed: u64,
}

impl Sampling {
    /// Greedy decoding of up to `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            max_new_tokens,
            seed: 0,
        }
    }

    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), ReplayError> {
        let bad =
            |name: &str, value: String, reason: &str| Err(ReplayError::option(name, value, reason));
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", self.temperature.to_string(), "must be ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top-p", self.top_p.to_string(), "must be in (0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty >= 1.0) {
            return bad(
                "repetition-penalty",
                self.repetition_penalty.to_string(),
                "must be ≥ 1",
            );
        }
        if self.max_new_tokens == 0 {
            return bad("max-new-tokens", "0".into(), "must be at least 1");
        }
        Ok(())
    }
}

/// One generated text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The generated text.
    pub text: String,
    /// Tokens generated (the compute spent).
    pub tokens: usize,
    /// Whether it ended by itself (end of turn) rather than at the token limit.
    pub finished: bool,
}

/// Writes completions of chat prompts.
pub trait Generator {
    /// Who wrote the data, for provenance (`SmolLM2-135M-Instruct.Q4_1.gguf`, `http://host/v1 gpt-x`).
    fn name(&self) -> String;
    /// One completion (the assistant's next turn) per prompt, in order.
    fn complete(
        &mut self,
        prompts: &[Vec<Message>],
        sampling: &Sampling,
    ) -> Result<Vec<Completion>, ReplayError>;
}

/// An engram model as a [`Generator`]: prompts rendered with its chat template, generated in batches.
pub struct ModelGenerator<'a> {
    /// The model that generates.
    pub model: &'a LoadedModel,
    /// Prompts per forward batch.
    pub batch_size: usize,
    /// Shown in provenance (the model file and any adapter).
    pub label: String,
}

impl<'a> ModelGenerator<'a> {
    /// A generator over `model`, 8 prompts per batch, labelled with the model's file name.
    pub fn new(model: &'a LoadedModel) -> Self {
        let label = model
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| model.path.display().to_string());
        Self {
            model,
            batch_size: 8,
            label,
        }
    }
}

impl Generator for ModelGenerator<'_> {
    fn name(&self) -> String {
        self.label.clone()
    }

    fn complete(
        &mut self,
        prompts: &[Vec<Message>],
        sampling: &Sampling,
    ) -> Result<Vec<Completion>, ReplayError> {
        sampling.validate()?;
        let lm = self.model;
        let mut encoded = Vec::with_capacity(prompts.len());
        for p in prompts {
            let text = lm.chat_template.render(p, true)?;
            encoded.push(lm.tokenizer.encode(&text)?);
        }
        // Similar lengths together: less padding. The order back is restored below.
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut out: Vec<Option<Completion>> = vec![None; prompts.len()];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            // Sampled rows draw from streams derived from the seed, the chunk's first prompt and the row: the
            // same prompts with the same seed give the same data.
            let cfg = GenerationConfig {
                max_new_tokens: sampling.max_new_tokens,
                temperature: sampling.temperature,
                top_p: (sampling.top_p < 1.0).then_some(sampling.top_p),
                repetition_penalty: sampling.repetition_penalty,
                seed: engram_model::splitmix64(sampling.seed ^ chunk[0] as u64),
                stop_strings: lm.chat_template.stop_strings(),
                ..GenerationConfig::default()
            };
            let gens = generate(&lm.model, &lm.tokenizer, &batch, &cfg, &mut |_, _| {})?;
            for (&i, g) in chunk.iter().zip(gens) {
                out[i] = Some(Completion {
                    tokens: g.tokens.len(),
                    finished: g.finish != FinishReason::Length,
                    text: g.text,
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

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
    ) -> Result<Vec<Completion>, ReplayError> {
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
