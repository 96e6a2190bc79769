//! The model side of the server: one loaded model, its adapters by name, and a request turned into tokens.

use std::path::Path;
use std::sync::atomic::AtomicBool;

use engram_lora::Adapters;
use engram_model::{FinishReason, GenerationConfig, LoadedModel, ModelError, generate_cancellable};

use crate::ServeError;
use crate::api::{ApiError, Prompt, Request};

/// The base model and the adapters a request may pick by name.
pub struct Engine {
    lm: LoadedModel,
    name: String,
    adapters: Vec<String>,
    seed: u64,
}

/// A request ready to run: its adapter, prompt tokens and generation settings.
#[derive(Clone, Debug)]
pub struct Job {
    /// The adapter to switch on, or none for the base model.
    pub adapter: Option<String>,
    /// The name echoed in the response's `model`.
    pub model: String,
    /// The prompt's token ids.
    pub prompt: Vec<u32>,
    /// Sampling, length and stop strings (the chat template's and the request's).
    pub config: GenerationConfig,
}

/// What a job produced.
#[derive(Clone, Debug)]
pub struct Output {
    /// The answer, cut before any stop string.
    pub text: String,
    /// Why it ended.
    pub finish: FinishReason,
    /// Tokens generated (the end-of-sequence token not counted).
    pub completion_tokens: usize,
}

impl Engine {
    /// Serves `lm` under `name` (what `model` must say to get the base model; `base` works too).
    pub fn new(lm: LoadedModel, name: impl Into<String>) -> Self {
        Self {
            lm,
            name: name.into(),
            adapters: Vec::new(),
            seed: 0,
        }
    }

    /// Loads the PEFT adapter folder `dir`, selectable as `model: "<name>"`.
    pub fn add_adapter(&mut self, name: &str, dir: &Path) -> Result<(), ServeError> {
        if name == self.name || name == "base" || self.adapters.iter().any(|a| a == name) {
            return Err(ServeError::Option(format!(
                "adapter name `{name}` ({}) is already taken",
                dir.display()
            )));
        }
        engram_lora::load_adapter(&mut self.lm.model, dir, name)?;
        self.adapters.push(name.to_owned());
        Ok(())
    }

    /// The names a request may give as `model`: the base model's first, then the adapters.
    pub fn model_names(&self) -> Vec<String> {
        std::iter::once(self.name.clone())
            .chain(self.adapters.iter().cloned())
            .collect()
    }

    /// Checks `req` against the model (name, prompt length) and tokenizes it.
    pub fn prepare(&mut self, req: &Request) -> Result<Job, ApiError> {
        let adapter = match req.model.as_deref() {
            None | Some("base") => None,
            Some(m) if m == self.name => None,
            Some(m) if self.adapters.iter().any(|a| a == m) => Some(m.to_owned()),
            Some(m) => {
                return Err(ApiError {
                    status: 404,
                    message: format!(
                        "the model `{m}` does not exist here; available: {}",
                        self.model_names().join(", ")
                    ),
                    param: Some("model".into()),
                    code: Some("model_not_found"),
                });
            }
        };
        let text = match &req.prompt {
            Prompt::Chat(messages) => {
                self.lm.chat_template.render(messages, true).map_err(|e| {
                    ApiError::invalid(
                        "messages",
                        format!("the chat template refused the messages: {e}"),
                    )
                })?
            }
            Prompt::Text(t) => t.clone(),
        };
        let prompt = self
            .lm
            .tokenizer
            .encode(&text)
            .map_err(|e| ApiError::status(500, format!("tokenizing the prompt: {e}")))?;
        if prompt.is_empty() {
            return Err(ApiError::invalid("prompt", "the prompt is empty"));
        }
        let max_positions = self.lm.model.config().max_position_embeddings;
        if prompt.len() + req.max_tokens > max_positions {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "the prompt is {} tokens; with max_tokens {} that exceeds the model's {max_positions} positions",
                    prompt.len(),
                    req.max_tokens
                ),
            )
            .with_code("context_length_exceeded"));
        }
        let mut stop_strings = self.lm.chat_template.stop_strings();
        stop_strings.extend(req.stop.iter().cloned());
        // Without a seed, each request samples differently (as OpenAI's do); with one, it is reproducible.
        let seed = req.seed.unwrap_or_else(|| {
            self.seed += 1;
            self.seed
        });
        let config = GenerationConfig {
            temperature: req.temperature,
            top_p: req.top_p,
            seed,
            stop_strings,
            repetition_penalty: req.repetition_penalty,
            ..GenerationConfig::greedy(req.max_tokens)
        };
        config
            .validate()
            .map_err(|e| ApiError::status(400, e.to_string()))?;
        Ok(Job {
            model: adapter.clone().unwrap_or_else(|| self.name.clone()),
            adapter,
            prompt,
            config,
        })
    }

    /// Runs `job`, passing the text to `on_text` as it grows.
    pub fn run(&mut self, job: &Job, on_text: &mut dyn FnMut(&str)) -> Result<Output, ApiError> {
        self.run_cancellable(job, &AtomicBool::new(false), on_text)
    }

    /// [`Engine::run`] that stops at the next token once `cancel` is set (the client went away, the server
    /// is shutting down): a 503 then, which nobody may be left to read.
    pub fn run_cancellable(
        &mut self,
        job: &Job,
        cancel: &AtomicBool,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Output, ApiError> {
        let internal = |e: String| ApiError::status(500, e);
        let active: Vec<&str> = job.adapter.as_deref().into_iter().collect();
        self.lm
            .model
            .set_active_adapters(&active)
            .map_err(|e| internal(e.to_string()))?;
        self.lm
            .model
            .ensure_positions(job.prompt.len() + job.config.max_new_tokens)
            .map_err(|e| ApiError::invalid("max_tokens", e.to_string()))?;
        let out = generate_cancellable(
            &self.lm.model,
            &self.lm.tokenizer,
            std::slice::from_ref(&job.prompt),
            &job.config,
            cancel,
            &mut |_, chunk| on_text(chunk),
        )
        .map_err(|e| match e {
            ModelError::InvalidOption { .. } => ApiError::status(400, e.to_string()),
            ModelError::Cancelled { .. } => ApiError::status(503, e.to_string()),
            e => internal(e.to_string()),
        })?;
        let g = out
            .into_iter()
            .next()
            .ok_or_else(|| internal("the model returned no generation".into()))?;
        let eos = usize::from(g.finish == FinishReason::Eos);
        Ok(Output {
            // The end-of-sequence token that stopped the row is in `tokens`; OpenAI does not count it.
            completion_tokens: g.tokens.len().saturating_sub(eos),
            text: g.text,
            finish: g.finish,
        })
    }
}
