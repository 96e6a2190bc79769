//! # engram-model
//!
//! The model every engram method writes knowledge into: a llama-family decoder (Llama, SmolLM, Qwen2) on
//! [Burn](https://burn.dev), with the device chosen at run time (`flex` CPU by default; `wgpu` and `cuda`
//! behind cargo features).
//!
//! - [`load_model`] opens a GGUF file or a Hugging Face folder (through `engram-formats`) with its tokenizer
//!   and chat template (through `engram-tokenizer`), after checking it fits in memory ([`check_memory`]).
//! - [`Llama`] is the model, its modules named like Hugging Face's (`model.layers.N.self_attn.q_proj`) so
//!   LoRA targets and PEFT adapter files line up; [`Llama::forward`] takes a left-padded batch and an optional
//!   [`KvCache`].
//! - [`generate`] decodes (greedy, temperature, top-k, top-p, seeded) a batch of prompts with stop strings
//!   and streaming; [`generate_cancellable`] stops it early when its caller no longer wants the answer.
//! - [`Generator`] is the one seam for chat completions — `n` samples per prompt, sharing its prefill — that
//!   replay protocols write data through and the knowledge probe asks through: [`ModelGenerator`] (this
//!   model, batched) or [`HttpGenerator`] (any OpenAI-compatible endpoint).
//! - [`BaseWeights`]: the frozen linear weights dense or as 8-bit blocks ([`Q8Weight`]), and [`Dtype`]: f32,
//!   bf16 or f16 weights and activations (adapters, norms and logits stay f32); both chosen at load
//!   ([`LoadOptions`]).
//! - [`export_hf_folder`] writes the (dequantised) model as a Hugging Face folder for other tools.
//!
//! - [`Projection`] is every linear layer: a frozen weight plus slots for low-rank adapters ([`LowRank`]),
//!   which `engram-lora` fills, saves and loads.
//!
//! The model crate knows nothing of training: adapter management and objectives live in their own crates.
#![warn(missing_docs)]

mod chat;
mod device;
mod error;
mod export;
mod generate;
mod http;
mod llama;
mod load;
mod memory;
mod precision;
mod projection;

pub use burn::tensor::Device;
pub use chat::{Completion, Generator, ModelGenerator, Sampling};
pub use device::{DeviceSpec, TEST_DEVICE_ENV, tune_allocator};
pub use error::ModelError;
pub use export::{export_gguf, export_hf_folder};
pub use generate::{
    FinishReason, Generation, GenerationConfig, PaddedBatch, argmax, generate,
    generate_cancellable, left_padded_batch,
};
pub use http::HttpGenerator;
pub use llama::{
    CheckpointSink, DecoderLayer, ForwardInput, ForwardOutput, KvCache, LayerCheckpoint, Llama,
    LlamaModel, Logits, Mlp, RopeTables, SelfAttention,
};
pub use load::{
    LoadedModel, ModelInfo, chat_template_for, gguf_vocab, load_model, load_model_with, model_info,
    open_model_files, open_tokenizer, open_weights,
};
pub use memory::{
    SKIP_MEMORY_CHECK_ENV, available_host_memory, check_fits, check_memory, staging_bytes,
    weight_bytes,
};
pub use precision::{Dtype, LoadOptions};
pub use projection::{
    AdapterState, BaseWeights, LowRank, Projection, Q8Weight, QUANT_BLOCK, splitmix64,
};

pub use engram_formats as formats;
pub use engram_tokenizer as tokenizer;
