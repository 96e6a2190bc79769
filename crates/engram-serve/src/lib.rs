//! # engram-serve
//!
//! An OpenAI-compatible HTTP server for an engram model: `POST /v1/chat/completions`, `POST /v1/completions`
//! and `GET /v1/models`, with the LoRA adapters that engram wrote selectable per request (`"model":
//! "<adapter name>"`; the base model's own name or `base` for none). Any OpenAI client — and the replay
//! crate's `HttpGenerator` — can then ask an injected model questions or have it write data.
//!
//! - [`api`]: the request and response vocabulary, checked field by field (a bad request is a 4xx naming the
//!   field, never a panic).
//! - [`Engine`]: the model, its adapters by name, a request turned into tokens and generated.
//! - [`Server`]: the HTTP side, on hyper through axum with tower-http's body limit. Bounded against hostile
//!   or careless clients: request bodies (413 by declared and by streamed length, never buffered past the
//!   limit), header and body reads ([`Timeouts`]: the connection closed, 408), `max_tokens` (400),
//!   completions answered or waiting at once (429; a client still sending its body holds no place).
//!   Streaming (`"stream": true`) sends server-sent events as the tokens are made. A client that goes away
//!   cancels its generation at the next token, streamed or not. SIGTERM/SIGINT stop it gracefully: no new
//!   connections, requests in flight finish within the shutdown timeout, the rest are cancelled.
//!
//! The model answers one request at a time on its own thread (a CPU forward pass already uses every core,
//! and it must not block the async executor); requests wait their turn in order, up to the concurrency
//! bound.
//!
//! ```no_run
//! use engram_serve::{Engine, Limits, Server};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})?;
//! let lm = engram_model::load_model(&path, &engram_model::Device::flex(), &mut |_, _| {})?;
//! let mut engine = Engine::new(lm, "SmolLM2-135M-Instruct");
//! engine.add_adapter("news", std::path::Path::new("runs/news-adapter"))?;
//! let server = Server::bind("127.0.0.1:8080", engine, Limits::default())?;
//! server.run()?;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod api;
mod engine;
mod server;

pub use api::{ApiError, Limits};
pub use engine::{Engine, Job, Output};
pub use server::{Log, Server, Timeouts};

/// Why the server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, not local, malformed).
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// What the system said.
        reason: String,
    },
    /// An option out of range or in conflict (an adapter name taken twice, a zero limit), named as the
    /// `engram serve` option it comes from.
    #[error("{0}")]
    Option(String),
    /// An adapter folder that could not be loaded.
    #[error(transparent)]
    Lora(#[from] engram_lora::LoraError),
    /// The listening socket failed.
    #[error("the server's socket failed: {0}")]
    Io(std::io::Error),
}
