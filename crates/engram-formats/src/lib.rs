//! # engram-formats
//!
//! Model files, read without any tensor library so that every later stage (and other tools) can use them:
//!
//! - [`gguf`]: GGUF files — header, metadata, tensor infos, memory-mapped data and dequantisation to f32
//!   (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K, Q6_K and more), with typed errors that name the file and tensor.
//! - [`hf`]: Hugging Face folders — `config.json`, `model.safetensors` (single or sharded) — read and written.
//! - [`ModelConfig`] and the [`WeightSource`] trait: whichever file a model came from, the model crate sees one
//!   config type and named f32 tensors in Hugging Face naming and layout.
//! - [`reference`](mod@reference): a plain, slow f32 llama/qwen2 forward pass over any [`WeightSource`], straight
//!   from the Hugging Face definition, to check the Burn model and the loaders independently (tests, debugging).
//! - [`testing`]: random tiny models in memory, for the tests of the crates built on this one.
//! - [`atomic`] and [`jsonl`]: the plumbing every later crate writes with — files and folders replaced
//!   atomically (nothing already written is ever half overwritten) and JSON Lines read, written and appended
//!   with errors naming file and line.
#![warn(missing_docs)]

pub mod atomic;
mod config;
mod error;
pub mod gguf;
pub mod hf;
pub mod jsonl;
pub mod reference;
mod staging;
pub mod testing;
mod weights;

pub use config::{Architecture, Llama3RopeScaling, ModelConfig};
pub use error::FormatError;
pub use staging::{make_readable, staged_dir, staged_file};
pub use weights::{LAYER_LINEARS, TensorF32, WeightSource};
