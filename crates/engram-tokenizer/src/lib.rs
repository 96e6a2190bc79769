//! Tokenizers and chat templates for engram.
//!
//! This crate turns text into the token ids a model was trained on and back, and turns a
//! conversation into the exact prompt text the model expects:
//!
//! - [`Tokenizer`] loads a Hugging Face `tokenizer.json` ([`Tokenizer::from_file`]) or builds the
//!   same byte-level BPE from the vocabulary vectors of a GGUF file ([`Tokenizer::from_gguf_vocab`]
//!   with a [`GgufVocab`]: the model crate reads the GGUF, this crate never depends on GGUF or
//!   tensor code). Both routes give identical ids. It also knows the model's BOS/EOS/PAD ids.
//! - [`DecodeStream`] decodes generated ids one at a time without ever splitting a UTF-8 character.
//! - [`ChatTemplate`] renders [`Message`]s with the model's own Jinja template (as
//!   `transformers`' `apply_chat_template` does) or a built-in ChatML / Llama 3 / Qwen2.5 format.
//!
//! ```no_run
//! use engram_tokenizer::{Message, Tokenizer};
//! # fn main() -> Result<(), engram_tokenizer::TokenizerError> {
//! let tokenizer = Tokenizer::from_file("model/tokenizer.json")?;
//! let template = tokenizer.chat_template().expect("the model ships a chat template");
//! let prompt = template.render(&[Message::user("Hello!")], true)?;
//! let ids = tokenizer.encode(&prompt)?;
//! assert_eq!(tokenizer.decode(&ids, false)?, prompt);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod byte_level;
mod chat;
mod error;
mod gguf;
mod hf_config;
mod jinja;
mod stream;
mod tokenizer;

pub use chat::{ChatTemplate, Message};
pub use error::TokenizerError;
pub use gguf::GgufVocab;
pub use stream::DecodeStream;
pub use tokenizer::Tokenizer;
