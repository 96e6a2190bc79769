//! Opening a model from a path: a GGUF file (weights and tokenizer in one) or a Hugging Face folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use engram_formats::gguf::{GgufFile, GgufWeights};
use engram_formats::hf::{HfWeights, is_hf_folder};
use engram_formats::{ModelConfig, WeightSource};
use engram_tokenizer::{ChatTemplate, GgufVocab, Tokenizer};

use crate::llama::Llama;
use crate::{BaseWeights, LoadOptions, ModelError};

/// A model ready to run: weights on a device, its tokenizer and chat template.
#[derive(Debug)]
pub struct LoadedModel {
    /// The decoder, its weights on the device.
    pub model: Llama,
    /// The model's tokenizer.
    pub tokenizer: Tokenizer,
    /// The chat template used to format conversations for this model.
    pub chat_template: ChatTemplate,
    /// The file or folder it came from.
    pub path: PathBuf,
}

/// The weights of a GGUF file or Hugging Face folder, whichever `path` is.
pub fn open_weights(path: &Path) -> Result<Box<dyn WeightSource>, ModelError> {
    if path.is_dir() {
        if !is_hf_folder(path) {
            return Err(ModelError::Model {
                path: path.to_path_buf(),
                reason: "a model folder needs config.json and model.safetensors (or model.safetensors.index.json)"
                    .into(),
            });
        }
        Ok(Box::new(HfWeights::open(path)?))
    } else {
        Ok(Box::new(GgufWeights::open(path)?))
    }
}

/// The tokenizer that belongs to a model path: a folder's `tokenizer.json`, or the GGUF's own vocabulary.
pub fn open_tokenizer(path: &Path) -> Result<Tokenizer, ModelError> {
    if path.is_dir() {
        let file = path.join("tokenizer.json");
        if !file.is_file() {
            return Err(ModelError::Model {
                path: path.to_path_buf(),
                reason: "no tokenizer.json in the model folder".into(),
            });
        }
        return Ok(Tokenizer::from_file(&file)?);
    }
    let gguf = GgufFile::open(path)?;
    Ok(Tokenizer::from_gguf_vocab(&gguf_vocab(&gguf)?)?)
}

/// Weights and tokenizer of a model path together; a GGUF file is opened and its metadata parsed once.
pub fn open_model_files(path: &Path) -> Result<(Box<dyn WeightSource>, Tokenizer), ModelError> {
    if path.is_dir() {
        return Ok((open_weights(path)?, open_tokenizer(path)?));
    }
    let weights = GgufWeights::open(path)?;
    let tokenizer = Tokenizer::from_gguf_vocab(&gguf_vocab(weights.file())?)?;
    Ok((Box::new(weights), tokenizer))
}

/// Reads the `tokenizer.ggml.*` metadata of a GGUF file.
pub fn gguf_vocab(gguf: &GgufFile) -> Result<GgufVocab, ModelError> {
    // A special token's id, if the key is there; one past u32 is refused rather than wrapped to another id.
    let opt_u32 = |key: &str| match gguf.get_u64(key) {
        Ok(v) => u32::try_from(v).map(Some).map_err(|_| ModelError::Model {
            path: gguf.path().to_path_buf(),
            reason: format!("{key} is {v}, beyond any token id"),
        }),
        Err(_) => Ok(None),
    };
    Ok(GgufVocab {
        model: gguf.get_str("tokenizer.ggml.model")?.to_string(),
        pre: gguf.get_str("tokenizer.ggml.pre").ok().map(str::to_string),
        tokens: gguf.get_str_array("tokenizer.ggml.tokens")?,
        token_types: gguf
            .get_i64_array("tokenizer.ggml.token_type")
            .map(|v| v.into_iter().map(|t| t as i32).collect())
            .unwrap_or_default(),
        merges: gguf
            .get_str_array("tokenizer.ggml.merges")
            .unwrap_or_default(),
        bos_id: opt_u32("tokenizer.ggml.bos_token_id")?,
        eos_id: opt_u32("tokenizer.ggml.eos_token_id")?,
        pad_id: opt_u32("tokenizer.ggml.padding_token_id")?,
        unk_id: opt_u32("tokenizer.ggml.unknown_token_id")?,
        add_bos: gguf
            .get_bool("tokenizer.ggml.add_bos_token")
            .unwrap_or(false),
        chat_template: gguf
            .get_str("tokenizer.chat_template")
            .ok()
            .map(str::to_string),
    })
}

/// The chat template to use with a tokenizer: its own (from the GGUF or `tokenizer_config.json`), else
/// the one that fits the architecture.
pub fn chat_template_for(tokenizer: &Tokenizer, config: &ModelConfig) -> ChatTemplate {
    tokenizer
        .chat_template()
        .cloned()
        .unwrap_or_else(|| match config.architecture {
            engram_formats::Architecture::Qwen2 => ChatTemplate::qwen2(),
            engram_formats::Architecture::Llama => ChatTemplate::chatml(),
        })
}

/// Loads weights, tokenizer and chat template from `path` onto `device`.
///
/// Refuses with [`ModelError::OutOfMemory`] a model that would not fit in the host memory left (see
/// [`check_memory`](crate::check_memory)). `progress(done, total)` is called as layers are loaded.
pub fn load_model(
    path: &Path,
    device: &Device,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LoadedModel, ModelError> {
    load_model_with(path, device, BaseWeights::F32, progress)
}

/// [`load_model`] with the model held as `options` say: the linear layers' frozen weights (e.g.
/// [`BaseWeights::Q8`]: about a quarter of the memory) and the compute [`Dtype`](crate::Dtype) (see
/// [`Llama::load_with`]).
pub fn load_model_with(
    path: &Path,
    device: &Device,
    options: impl Into<LoadOptions>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<LoadedModel, ModelError> {
    let options = options.into();
    let (weights, tokenizer) = open_model_files(path)?;
    crate::check_memory(path, weights.config(), options, device)?;
    let model = Llama::load_with(weights.as_ref(), device, options, progress)?;
    let chat_template = chat_template_for(&tokenizer, model.config());
    Ok(LoadedModel {
        model,
        tokenizer,
        chat_template,
        path: path.to_path_buf(),
    })
}

/// What `engram info` shows about a model file without loading it onto a device.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ModelInfo {
    /// The file or folder described.
    pub path: PathBuf,
    /// `GGUF` or `Hugging Face folder`.
    pub format: String,
    /// The model's hyper-parameters.
    pub config: ModelConfig,
    /// Parameter count implied by the config (tied embeddings counted once).
    pub parameters: usize,
    /// Bytes of host memory loading it on the CPU takes ([`weight_bytes`](crate::weight_bytes) plus
    /// [`staging_bytes`](crate::staging_bytes)).
    pub load_bytes: u64,
    /// Storage type → number of tensors.
    pub tensor_types: BTreeMap<String, usize>,
    /// Number of tensors in the file(s).
    pub tensor_count: usize,
    /// A one-line summary of the tokenizer (kind and vocabulary size).
    pub tokenizer: String,
    /// Name of the chat template that would be used.
    pub chat_template: String,
}

/// Describes the model at `path` (reads metadata, not weights).
pub fn model_info(path: &Path) -> Result<ModelInfo, ModelError> {
    let (weights, tokenizer) = open_model_files(path)?;
    let names = weights.tensor_names();
    let mut tensor_types = BTreeMap::new();
    for n in &names {
        let t = weights.stored_dtype(n).unwrap_or_else(|| "?".into());
        *tensor_types.entry(t).or_insert(0) += 1;
    }
    let config = weights.config().clone();
    Ok(ModelInfo {
        path: path.to_path_buf(),
        format: if path.is_dir() {
            "Hugging Face folder"
        } else {
            "GGUF"
        }
        .into(),
        parameters: config.parameter_count(),
        load_bytes: crate::weight_bytes(&config, BaseWeights::F32) + crate::staging_bytes(&config),
        chat_template: chat_template_for(&tokenizer, &config).name().to_string(),
        config,
        tensor_types,
        tensor_count: names.len(),
        tokenizer: tokenizer.kind_summary(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GGUF v3 file with no tensors and a BPE vocabulary whose BOS id is `bos`.
    fn vocab_file(bos: u64) -> tempfile::NamedTempFile {
        let mut b = b"GGUF".to_vec();
        let str_ = |b: &mut Vec<u8>, s: &str| {
            b.extend((s.len() as u64).to_le_bytes());
            b.extend(s.as_bytes());
        };
        b.extend(3u32.to_le_bytes());
        b.extend(0u64.to_le_bytes()); // tensors
        b.extend(3u64.to_le_bytes()); // key/value pairs
        str_(&mut b, "tokenizer.ggml.model");
        b.extend(8u32.to_le_bytes()); // string
        str_(&mut b, "gpt2");
        str_(&mut b, "tokenizer.ggml.tokens");
        b.extend(9u32.to_le_bytes()); // array
        b.extend(8u32.to_le_bytes()); // of strings
        b.extend(2u64.to_le_bytes());
        str_(&mut b, "a");
        str_(&mut b, "b");
        str_(&mut b, "tokenizer.ggml.bos_token_id");
        b.extend(10u32.to_le_bytes()); // u64
        b.extend(bos.to_le_bytes());
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), b).unwrap();
        f
    }

    #[test]
    fn a_special_token_id_past_u32_is_refused_not_wrapped() {
        let ok = GgufFile::open(vocab_file(1).path()).unwrap();
        assert_eq!(gguf_vocab(&ok).unwrap().bos_id, Some(1));
        // 2^32 + 1 used to wrap to 1: another token, silently.
        let file = vocab_file((1 << 32) + 1);
        let err = gguf_vocab(&GgufFile::open(file.path()).unwrap())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("tokenizer.ggml.bos_token_id is 4294967297") && err.contains("token id"),
            "{err}"
        );
    }
}
