//! The one generation seam: chat prompts in, `n` completions per prompt out. [`ModelGenerator`] runs an engram
//! model (with whatever adapters are attached to it), batching prompts of similar length and sharing each
//! prompt's prefill among its `n` samples; [`HttpGenerator`](crate::HttpGenerator) asks any OpenAI-compatible
//! server. Replay protocols write their data through it, and the curriculum's knowledge probe asks through it.

use serde::{Deserialize, Serialize};

use crate::tokenizer::Message;
use crate::{FinishReason, GenerationConfig, LoadedModel, ModelError, generate, splitmix64};

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
    /// Completions per prompt (they share the prompt's prefill).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub n: usize,
    /// Generation also stops at these strings (the chat template's end-of-turn strings always stop it);
    /// `"\n"` keeps an answer to its first line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stop: Vec<String>,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

impl Sampling {
    /// Greedy decoding of up to `max_new_tokens` tokens, one completion per prompt.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            max_new_tokens,
            seed: 0,
            n: 1,
            stop: Vec::new(),
        }
    }

    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |name: &str, value: String, reason: &str| {
            Err(ModelError::InvalidOption {
                name: name.into(),
                value,
                reason: reason.into(),
            })
        };
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
        if self.n == 0 {
            return bad("n", "0".into(), "must be at least 1");
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
    /// Whether it ended by itself (end of turn, a stop string) rather than at the token limit.
    pub finished: bool,
}

/// Writes completions of chat prompts.
pub trait Generator {
    /// Who writes, for provenance (`SmolLM2-135M-Instruct.Q4_1.gguf`, `http://host/v1 gpt-x`).
    fn name(&self) -> String;
    /// `sampling.n` completions (the assistant's next turn) per prompt: prompt `p`'s `j`-th is at
    /// `p * n + j`.
    fn complete(
        &mut self,
        prompts: &[Vec<Message>],
        sampling: &Sampling,
    ) -> Result<Vec<Completion>, ModelError>;
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
    ) -> Result<Vec<Completion>, ModelError> {
        sampling.validate()?;
        let lm = self.model;
        let mut encoded = Vec::with_capacity(prompts.len());
        for p in prompts {
            let text = lm.chat_template.render(p, true)?;
            encoded.push(lm.tokenizer.encode(&text)?);
        }
        let mut stops = lm.chat_template.stop_strings();
        stops.extend(sampling.stop.iter().cloned());
        let n = sampling.n;
        // Similar lengths together: less padding. The order back is restored below.
        let mut order: Vec<usize> = (0..prompts.len()).collect();
        order.sort_by_key(|&i| encoded[i].len());
        let mut out: Vec<Option<Completion>> = vec![None; prompts.len() * n];
        for chunk in order.chunks(self.batch_size.max(1)) {
            let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| encoded[i].clone()).collect();
            // Sampled rows draw from streams derived from the seed, the chunk's first prompt and the row: the
            // same prompts with the same seed give the same data.
            let cfg = GenerationConfig {
                max_new_tokens: sampling.max_new_tokens,
                temperature: sampling.temperature,
                top_p: (sampling.top_p < 1.0).then_some(sampling.top_p),
                repetition_penalty: sampling.repetition_penalty,
                seed: splitmix64(sampling.seed ^ chunk[0] as u64),
                stop_strings: stops.clone(),
                num_return_sequences: n,
                ..GenerationConfig::default()
            };
            let gens = generate(&lm.model, &lm.tokenizer, &batch, &cfg, &mut |_, _| {})?;
            for (k, g) in gens.into_iter().enumerate() {
                out[chunk[k / n] * n + k % n] = Some(Completion {
                    tokens: g.tokens.len(),
                    finished: g.finish != FinishReason::Length,
                    text: g.text,
                });
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}
