//! # engram-lora
//!
//! LoRA adapters on engram's frozen model, in PEFT's vocabulary and file format.
//!
//! - [`LoraConfig`]: `r`, `lora_alpha`, `lora_dropout`, `use_rslora`, `target_modules` (a list of module
//!   names or `all-linear`), `layers_to_transform`.
//! - [`Adapters`] (implemented for [`engram_model::Llama`]): attach several named adapters, activate one,
//!   several (summed) or none, run the base model without copying it ([`Adapters::without_adapters`]),
//!   merge and unmerge.
//! - [`save_adapter`] / [`load_adapter`]: `adapter_config.json` + `adapter_model.safetensors` with PEFT's keys
//!   (`base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight`, `[r, in]`; `lora_B` `[out, r]`),
//!   each file written atomically, and checked key by key when read.
//! - [`export_adapter_gguf`]: the same adapter as llama.cpp's GGUF LoRA adapter (for llama.cpp, Ollama,
//!   llama-server, LM Studio); [`load_adapter`] reads such files back as well as PEFT folders.
//!
//! The low-rank path itself, `y = x·W + s·(x·A)·B` with `W` frozen, is computed by
//! [`engram_model::Projection`]; this crate decides what goes into it.
#![warn(missing_docs)]

mod adapters;
mod config;
mod error;
mod files;
mod gguf;

pub use adapters::{
    AdapterSummary, Adapters, Factor, available_for_adapters, check_adapter_memory, peft_key,
};
pub use config::{LINEAR_MODULES, LoraConfig, TargetModules};
pub use error::LoraError;
pub use files::{
    CONFIG_FILE, Factors, WEIGHTS_FILE, load_adapter, parse_adapter_config, read_adapter_config,
    read_adapter_tensors, save_adapter,
};
pub use gguf::{
    ADAPTER_GGUF_TYPES, GgufAdapterSummary, export_adapter_gguf, linear_dims, read_gguf_adapter,
    read_gguf_adapter_config,
};
