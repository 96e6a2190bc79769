//! [`HttpGenerator`]: any OpenAI-compatible `/v1/chat/completions` endpoint as a [`Generator`], so a stronger
//! model (a local llama.cpp or vLLM server, a hosted API) can write replay data or answer a knowledge probe.

use std::time::Duration;

use serde_json::{Value, json};

use crate::tokenizer::Message;
use crate::{Completion, Generator, ModelError, Sampling};

/// A chat-completions client with timeouts and retries.
#[derive(Clone, Debug)]
pub struct HttpGenerator {
    /// The API base, e.g. `http://127.0.0.1:8080/v1` (`/chat/completions` is appended).
    pub base_url: String,
    /// The `model` field of each request.
    pub model: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub api_key: Option<String>,
    /// Limit on one whole request (connect, send, wait, read).
    pub timeout: Duration,
    /// Extra attempts after a connection failure, a timeout, a 429 or a 5xx; other errors fail at once.
    pub retries: usize,
    /// Wait before the first retry; doubled for each next one.
    pub backoff: Duration,
}

impl HttpGenerator {
    /// A client for `base_url` and `model`: 120 s per request, 3 retries from 1 s.
    pub fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            model: model.into(),
            api_key: None,
            timeout: Duration::from_secs(120),
            retries: 3,
            backoff: Duration::from_secs(1),
        }
    }

    fn url(&self) -> String {
        format!("{}/chat/completions", self.base_url)
    }

    fn agent(&self) -> ureq::Agent {
        ureq::Agent::config_builder()
            .timeout_global(Some(self.timeout))
            .http_status_as_error(false)
            .build()
            .into()
    }

    /// One request body, in the OpenAI chat-completions vocabulary.
    pub fn request_body(&self, messages: &[Message], sampling: &Sampling, seed: u64) -> Value {
        let mut body = json!({
            "model": self.model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_new_tokens,
            "seed": seed & 0x7fff_ffff, // servers read it as a 32-bit int
            // The OpenAI parameter closest to a repetition penalty; servers that know `repetition_penalty`
            // (vLLM, llama.cpp) read that one.
            "frequency_penalty": (sampling.repetition_penalty - 1.0).min(2.0),
            "repetition_penalty": sampling.repetition_penalty,
            "stream": false,
        });
        // Only when asked, so that plain requests stay what every server understands.
        if !sampling.stop.is_empty() {
            body["stop"] = json!(sampling.stop);
        }
        body
    }

    fn post_once(&self, agent: &ureq::Agent, body: &str) -> Result<(u16, String), Attempt> {
        let mut req = agent
            .post(self.url())
            .header("Content-Type", "application/json");
        if let Some(key) = &self.api_key {
            req = req.header("Authorization", format!("Bearer {key}"));
        }
        let mut resp = req.send(body).map_err(|e| Attempt::Retry(e.to_string()))?;
        let status = resp.status().as_u16();
        let text = resp
            .body_mut()
            .read_to_string()
            .map_err(|e| Attempt::Retry(format!("reading the response: {e}")))?;
        if status == 429 || status >= 500 {
            return Err(Attempt::Retry(format!("HTTP {status}: {}", snippet(&text))));
        }
        Ok((status, text))
    }

    fn complete_one(
        &self,
        agent: &ureq::Agent,
        messages: &[Message],
        sampling: &Sampling,
        seed: u64,
    ) -> Result<Completion, ModelError> {
        let body = self.request_body(messages, sampling, seed).to_string();
        let mut last = String::new();
        for attempt in 0..=self.retries {
            if attempt > 0 {
                std::thread::sleep(self.backoff * (1 << (attempt - 1).min(16)) as u32);
            }
            match self.post_once(agent, &body) {
                Ok((status, text)) => return self.parse(status, &text),
                Err(Attempt::Retry(why)) => last = why,
            }
        }
        Err(ModelError::Http {
            url: self.url(),
            message: format!("gave up after {} attempts: {last}", self.retries + 1),
        })
    }

    fn parse(&self, status: u16, text: &str) -> Result<Completion, ModelError> {
        let err = |message: String| ModelError::Http {
            url: self.url(),
            message,
        };
        if !(200..300).contains(&status) {
            return Err(err(format!("HTTP {status}: {}", snippet(text))));
        }
        let v: Value = serde_json::from_str(text)
            .map_err(|e| err(format!("response is not JSON ({e}): {}", snippet(text))))?;
        let choice = &v["choices"][0];
        let content = choice["message"]["content"].as_str().ok_or_else(|| {
            err(format!(
                "no `choices[0].message.content` string in the response: {}",
                snippet(text)
            ))
        })?;
        let tokens = v["usage"]["completion_tokens"]
            .as_u64()
            .map(|t| t as usize)
            .unwrap_or_else(|| content.split_whitespace().count());
        Ok(Completion {
            text: content.to_owned(),
            tokens,
            finished: choice["finish_reason"].as_str() != Some("length"),
        })
    }
}

enum Attempt {
    Retry(String),
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_owned(),
    }
}

impl Generator for HttpGenerator {
    fn name(&self) -> String {
        format!("{} {}", self.base_url, self.model)
    }

    fn complete(
        &mut self,
        prompts: &[Vec<Message>],
        sampling: &Sampling,
    ) -> Result<Vec<Completion>, ModelError> {
        sampling.validate()?;
        let agent = self.agent();
        let mut out = Vec::with_capacity(prompts.len() * sampling.n);
        for (i, p) in prompts.iter().enumerate() {
            let seed = crate::splitmix64(sampling.seed ^ i as u64);
            // One request per sample, each with its own seed: not every server takes OpenAI's `n`
            // (`engram serve` does not).
            for j in 0..sampling.n {
                let seed = if j == 0 {
                    seed
                } else {
                    crate::splitmix64(seed ^ ((j as u64) << 32))
                };
                out.push(self.complete_one(&agent, p, sampling, seed)?);
            }
        }
        Ok(out)
    }
}
