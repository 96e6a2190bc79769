//! Hugging Face model folders: `config.json` plus `model.safetensors` (or shards listed in
//! `model.safetensors.index.json`), read memory-mapped and written atomically.
//!
//! Hugging Face names and layout are engram's native convention, so tensors pass through unrenamed;
//! reading converts F32, F16 and BF16 to f32, writing stores f32.
//!
//! - [`parse_config`] / [`read_config`]: `config.json` (Llama and Qwen2; transformers 4 and 5 styles) to [`ModelConfig`](crate::ModelConfig).
//! - [`HfWeights`]: a folder opened as a [`WeightSource`](crate::WeightSource).
//! - [`write_hf_folder`]: a folder transformers and llama.cpp's converter can load.

mod config;
mod read;
mod write;

use std::path::Path;

pub use config::{parse_config, read_config};
pub use read::{HfWeights, decode_f32, parse_weight_map};
pub use write::{f32_safetensors, write_hf_folder};

/// The model configuration file of a Hugging Face folder.
pub const CONFIG_FILE: &str = "config.json";
/// The single-file weights of a Hugging Face folder.
pub const WEIGHTS_FILE: &str = "model.safetensors";
/// The index of sharded weights: `weight_map` maps each tensor name to its shard file.
pub const WEIGHTS_INDEX_FILE: &str = "model.safetensors.index.json";
/// The generation defaults (`bos_token_id`, `eos_token_id`, ...) of a Hugging Face folder.
pub const GENERATION_CONFIG_FILE: &str = "generation_config.json";
/// The tokenizers-library tokenizer of a Hugging Face folder.
pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// Whether `path` looks like a Hugging Face model folder: a directory holding `config.json` and either
/// `model.safetensors` or `model.safetensors.index.json`. Checks only that the files exist, not their contents.
pub fn is_hf_folder(path: &Path) -> bool {
    path.is_dir()
        && path.join(CONFIG_FILE).is_file()
        && (path.join(WEIGHTS_FILE).is_file() || path.join(WEIGHTS_INDEX_FILE).is_file())
}
