//! # engram
//!
//! Write new knowledge into a language model's weights, so that it answers from memory what it could before
//! only answer with the text in its prompt. This umbrella crate re-exports engram's libraries so that a
//! downstream project needs one dependency:
//!
//! | module | crate | concern |
//! |---|---|---|
//! | [`formats`] | `engram-formats` | GGUF and Hugging Face model files → config + named f32 tensors |
//! | [`tokenizer`] | `engram-tokenizer` | tokenizers and chat templates |
//! | [`fetch`] | `engram-fetch` | the default model's download cache |
//! | [`model`] | `engram-model` | the llama-family decoder on Burn, KV cache, generation |
//!
//! ```no_run
//! use engram::model::{Device, GenerationConfig, generate, load_model};
//! use engram::tokenizer::Message;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let path = engram::fetch::ensure_model(&engram::fetch::DEFAULT_MODEL, &mut |_| {})?;
//! let m = load_model(&path, &Device::flex(), &mut |_, _| {})?;
//! let prompt = m.chat_template.render(&[Message::user("What is the capital of France?")], true)?;
//! let ids = m.tokenizer.encode(&prompt)?;
//! let out = generate(&m.model, &m.tokenizer, &[ids], &GenerationConfig::greedy(32), &mut |_, _| {})?;
//! println!("{}", out[0].text);
//! # Ok(())
//! # }
//! ```

pub use engram_fetch as fetch;
pub use engram_formats as formats;
pub use engram_model as model;
pub use engram_tokenizer as tokenizer;
