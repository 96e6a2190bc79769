//! GGUF files (llama.cpp's model format): header, metadata, tensor infos, memory-mapped tensor data, and
//! dequantisation to f32.
//!
//! - [`GgufFile`]: one parsed file. Every malformed input ends in a [`FormatError`] naming the file (and key or
//!   tensor); no input makes it panic or allocate more than the file's own size suggests.
//! - [`write_gguf`] and [`encode`]: GGUF files written (f32, f16, bf16 and the legacy 32-weight block types),
//!   streamed one tensor at a time and renamed into place when complete.
//! - [`GgufWeights`]: a file seen as a [`WeightSource`](crate::WeightSource) in Hugging Face names and layout
//!   (llama q/k rows un-permuted for rotate-half RoPE).
//!
//! The header parser is our own (see `parse.rs` for the panics and undefined behaviour found in `ggus` 0.5.1);
//! legacy block types decode through `ggml-quants`, K-quants through our port of ggml's reference code (see
//! `dequant.rs`: `ggml-quants` 0.1.0 leaves them `todo!()`).

mod dequant;
mod meta;
mod parse;
mod types;
mod weights;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

pub use meta::MetaValue;
pub use types::GgmlType;
pub use weights::{GgufWeights, gguf_name, hf_name, permute_qk_rows, qk_heads, unpermute_qk_rows};
pub use write::{DEFAULT_ALIGNMENT, ENCODABLE, TensorSpec, encode, write_gguf};

use crate::{Architecture, FormatError, ModelConfig, TensorF32};

/// Where one tensor's data is and how it is stored, as the file's tensor info says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` (ne0) is the contiguous one, so a `[out, in]` matrix is `[in, out]`.
    pub dims: Vec<u64>,
    /// Storage type.
    pub ggml_type: GgmlType,
    /// Byte offset of the data, relative to the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// Dimensions in PyTorch order (ggml's reversed): `[out, in]` for a linear weight.
    pub fn shape(&self) -> Vec<usize> {
        self.dims
            .iter()
            .rev()
            .map(|&d| usize::try_from(d).unwrap_or(usize::MAX))
            .collect()
    }

    /// Element count (saturating; [`GgufFile`] only holds infos whose count fits in `i64`).
    pub fn numel(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Bytes of data; `None` when the type's size is unknown ([`GgmlType::Other`]), the first dimension is not a
    /// whole number of blocks, or the size overflows.
    pub fn nbytes(&self) -> Option<u64> {
        let (block, type_size) = self.ggml_type.block_geometry()?;
        let numel = self
            .dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        let block = block as u64;
        if self
            .dims
            .first()
            .is_some_and(|&ne0| !ne0.is_multiple_of(block))
            || !numel.is_multiple_of(block)
        {
            return None;
        }
        (numel / block).checked_mul(type_size as u64)
    }
}

/// The file's bytes: a read-only memory map, or an owned buffer for in-memory files.
enum Storage {
    Mmap(memmap2::Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Owned(v) => v,
        }
    }
}

/// A parsed GGUF file: metadata and tensor infos in memory, tensor data read on demand from the map.
pub struct GgufFile {
    path: PathBuf,
    storage: Storage,
    version: u32,
    alignment: usize,
    metadata: BTreeMap<String, MetaValue>,
    tensors: Vec<TensorInfo>,
    by_name: HashMap<String, usize>,
    data_start: usize,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata_keys", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish_non_exhaustive()
    }
}

impl GgufFile {
    /// Opens and parses a GGUF file, memory-mapping it so tensor data is paged in only when read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        let path = path.as_ref();
        let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
        let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
        if len == 0 {
            // Mapping an empty file fails on some platforms; an empty buffer gives the proper "truncated" error.
            return Self::from_storage(path.to_path_buf(), Storage::Owned(Vec::new()));
        }
        // SAFETY: the map is read-only and private to this value. As with every memory-mapped reader, another
        // process truncating or rewriting the file while it is mapped is outside what we can guard against; engram
        // never writes to a model file it has open.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?;
        Self::from_storage(path.to_path_buf(), Storage::Mmap(map))
    }

    /// Parses a GGUF file held in memory; `path_for_errors` only names it in errors.
    pub fn from_bytes(
        path_for_errors: impl Into<PathBuf>,
        bytes: Vec<u8>,
    ) -> Result<Self, FormatError> {
        Self::from_storage(path_for_errors.into(), Storage::Owned(bytes))
    }

    fn from_storage(path: PathBuf, storage: Storage) -> Result<Self, FormatError> {
        let parsed = parse::parse(&path, storage.bytes())?;
        let by_name = parsed
            .tensors
            .iter()
            .enumerate()
            .map(|(i, t)| (t.name.clone(), i))
            .collect();
        Ok(Self {
            path,
            storage,
            version: parsed.version,
            alignment: parsed.alignment,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            by_name,
            data_start: parsed.data_start,
        })
    }

    /// The path given when opening (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// GGUF format version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// Alignment of the data section and tensor offsets (`general.alignment`, default 32).
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// Absolute byte offset of the data section in the file.
    pub fn data_start(&self) -> usize {
        self.data_start
    }

    /// Every metadata entry, sorted by key.
    pub fn metadata(&self) -> &BTreeMap<String, MetaValue> {
        &self.metadata
    }

    /// One metadata value, if present.
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    fn require(&self, key: &str) -> Result<&MetaValue, FormatError> {
        self.metadata
            .get(key)
            .ok_or_else(|| FormatError::MissingKey {
                path: self.path.clone(),
                key: key.to_string(),
            })
    }

    fn wrong_type(&self, key: &str, expected: &str, found: String) -> FormatError {
        FormatError::WrongType {
            path: self.path.clone(),
            key: key.to_string(),
            expected: expected.to_string(),
            found,
        }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, FormatError> {
        let v = self.require(key)?;
        v.as_str()
            .ok_or_else(|| self.wrong_type(key, "str", v.type_name()))
    }

    /// A non-negative integer of any width.
    pub fn get_u64(&self, key: &str) -> Result<u64, FormatError> {
        let v = self.require(key)?;
        v.as_u64()
            .ok_or_else(|| self.wrong_type(key, "unsigned integer", describe(v)))
    }

    /// A float (f32 or f64) or an integer, as f64.
    pub fn get_f64(&self, key: &str) -> Result<f64, FormatError> {
        let v = self.require(key)?;
        v.as_f64()
            .ok_or_else(|| self.wrong_type(key, "number", v.type_name()))
    }

    /// A bool.
    pub fn get_bool(&self, key: &str) -> Result<bool, FormatError> {
        let v = self.require(key)?;
        v.as_bool()
            .ok_or_else(|| self.wrong_type(key, "bool", v.type_name()))
    }

    /// An array of strings (vocabularies, merges). An empty array is fine.
    pub fn get_str_array(&self, key: &str) -> Result<Vec<String>, FormatError> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "array of str", v.type_name()))?;
        items
            .iter()
            .map(|item| item.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.wrong_type(key, "array of str", v.type_name()))
    }

    /// An array of integers of any width (token types), as i64.
    pub fn get_i64_array(&self, key: &str) -> Result<Vec<i64>, FormatError> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "array of integers", v.type_name()))?;
        items
            .iter()
            .map(MetaValue::as_i64)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.wrong_type(key, "array of integers (fitting i64)", v.type_name()))
    }

    /// An array of floats or integers (token scores of SentencePiece vocabularies), as f64.
    pub fn get_f64_array(&self, key: &str) -> Result<Vec<f64>, FormatError> {
        let v = self.require(key)?;
        let items = v
            .as_array()
            .ok_or_else(|| self.wrong_type(key, "array of numbers", v.type_name()))?;
        items
            .iter()
            .map(MetaValue::as_f64)
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| self.wrong_type(key, "array of numbers", v.type_name()))
    }

    /// `general.architecture` (`llama`, `qwen2`, ...): the prefix of the model's hyper-parameter keys.
    pub fn architecture(&self) -> Result<&str, FormatError> {
        self.get_str("general.architecture")
    }

    /// Every tensor info, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The info of one tensor by GGUF name.
    pub fn tensor_info(&self, name: &str) -> Result<&TensorInfo, FormatError> {
        self.by_name
            .get(name)
            .and_then(|&i| self.tensors.get(i))
            .ok_or_else(|| FormatError::MissingTensor {
                path: self.path.clone(),
                tensor: name.to_string(),
            })
    }

    /// The stored bytes of one tensor (bounds-checked; an unknown type's size is unknown, so that is an error).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8], FormatError> {
        let info = self.tensor_info(name)?;
        let bytes = self.storage.bytes();
        let nbytes = info.nbytes().ok_or_else(|| self.unsupported(info))?;
        let start = (self.data_start as u64).checked_add(info.offset);
        let end = start.and_then(|s| s.checked_add(nbytes));
        let range = match (start, end) {
            (Some(s), Some(e)) => usize::try_from(s).ok().zip(usize::try_from(e).ok()),
            _ => None,
        };
        range
            .and_then(|(s, e)| bytes.get(s..e))
            .ok_or_else(|| FormatError::TensorOutOfBounds {
                path: self.path.clone(),
                tensor: name.to_string(),
                start: start.unwrap_or(u64::MAX),
                end: end.unwrap_or(u64::MAX),
                file_len: bytes.len() as u64,
            })
    }

    fn unsupported(&self, info: &TensorInfo) -> FormatError {
        FormatError::UnsupportedTensorType {
            path: self.path.clone(),
            tensor: info.name.clone(),
            ty: info.ggml_type.to_string(),
        }
    }

    /// One tensor as f32, shape in PyTorch order (ggml dims reversed), decoded in parallel over blocks.
    ///
    /// Supported: F32, F16, BF16, F64, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K,
    /// IQ4_NL, IQ4_XS; other types give [`FormatError::UnsupportedTensorType`].
    pub fn dequantize(&self, name: &str) -> Result<TensorF32, FormatError> {
        let info = self.tensor_info(name)?;
        if !info.ggml_type.can_dequantize() {
            return Err(self.unsupported(info));
        }
        let bytes = self.tensor_bytes(name)?;
        let numel = usize::try_from(info.numel()).map_err(|_| FormatError::Malformed {
            path: self.path.clone(),
            what: format!("tensor `{name}` has too many elements"),
        })?;
        let mut data = vec![0f32; numel];
        dequant::dequantize_into(info.ggml_type, bytes, &mut data).map_err(|e| match e {
            dequant::DequantError::Unsupported => self.unsupported(info),
            dequant::DequantError::SizeMismatch => FormatError::Malformed {
                path: self.path.clone(),
                what: format!(
                    "tensor `{name}`: {} bytes of {} do not hold {numel} elements",
                    bytes.len(),
                    info.ggml_type
                ),
            },
        })?;
        TensorF32::new(info.shape(), data)
    }

    /// The model's hyper-parameters from the `{arch}.*` and `tokenizer.ggml.*` metadata (llama and qwen2).
    ///
    /// `head_dim` is `{arch}.attention.key_length`, else hidden / heads; `rope_theta` defaults to 10000 as in
    /// llama.cpp; the vocabulary size is the token list's length (else `{arch}.vocab_size`, else the embedding's
    /// rows); embeddings are tied when there is no `output.weight`. Scaled RoPE (`{arch}.rope.scaling.type`, or
    /// the `rope_freqs.weight` tensor llama.cpp stores Llama 3.1's scaling as) is refused with `BadConfig`
    /// rather than run with the wrong frequencies; such models load from their Hugging Face folders.
    pub fn model_config(&self) -> Result<ModelConfig, FormatError> {
        // A llama.cpp adapter names its base's architecture but holds no model: say so, not "key missing".
        if let Some(MetaValue::String(t)) = self.get("general.type")
            && t == "adapter"
        {
            return Err(self.bad_config(
                "general.type",
                "`adapter`: this is a LoRA adapter, not a model; pass it with --adapter".into(),
            ));
        }
        let arch_name = self.architecture()?;
        let architecture = match arch_name {
            "llama" => Architecture::Llama,
            "qwen2" => Architecture::Qwen2,
            other => {
                return Err(FormatError::UnknownArchitecture {
                    path: self.path.clone(),
                    name: other.to_string(),
                });
            }
        };
        let key = |k: &str| format!("{arch_name}.{k}");
        let usize_of = |k: &str| -> Result<usize, FormatError> {
            let full = key(k);
            let v = self.get_u64(&full)?;
            usize::try_from(v)
                .map_err(|_| self.bad_config(&full, format!("{v} does not fit in usize")))
        };
        // A size of 0 would only fail later, blamed on a field derived from it.
        let size_of = |k: &str| -> Result<usize, FormatError> {
            match usize_of(k)? {
                0 => Err(self.bad_config(&key(k), "0: must be at least 1".into())),
                v => Ok(v),
            }
        };

        let hidden_size = size_of("embedding_length")?;
        let num_attention_heads = usize_of("attention.head_count")?;
        let num_key_value_heads = if self.get(&key("attention.head_count_kv")).is_some() {
            usize_of("attention.head_count_kv")?
        } else {
            num_attention_heads
        };
        if num_attention_heads == 0
            || num_key_value_heads == 0
            || !num_attention_heads.is_multiple_of(num_key_value_heads)
        {
            return Err(self.bad_config(
                &key("attention.head_count_kv"),
                format!("{num_key_value_heads} kv heads for {num_attention_heads} attention heads"),
            ));
        }
        let head_dim = if self.get(&key("attention.key_length")).is_some() {
            usize_of("attention.key_length")?
        } else if hidden_size.is_multiple_of(num_attention_heads) {
            hidden_size / num_attention_heads
        } else {
            return Err(self.bad_config(
                &key("attention.head_count"),
                format!("{num_attention_heads} heads do not divide embedding length {hidden_size}"),
            ));
        };
        if head_dim == 0 || !head_dim.is_multiple_of(2) {
            return Err(self.bad_config(
                &key("attention.key_length"),
                format!("head dim {head_dim} is not even"),
            ));
        }

        let vocab_size = if let Some(MetaValue::Array(tokens)) = self.get("tokenizer.ggml.tokens") {
            tokens.len()
        } else if self.get(&key("vocab_size")).is_some() {
            usize_of("vocab_size")?
        } else {
            let embd = self.tensor_info("token_embd.weight")?;
            embd.shape().first().copied().unwrap_or(0)
        };

        let rope_theta = match self.get(&key("rope.freq_base")) {
            Some(_) => self.get_f64(&key("rope.freq_base"))?,
            None => 10_000.0,
        };
        // Scaled RoPE would run silently wrong with plain frequencies: refuse it until it is implemented.
        if let Some(kind) = self
            .get(&key("rope.scaling.type"))
            .and_then(MetaValue::as_str)
            && kind != "none"
        {
            return Err(FormatError::BadConfig {
                path: self.path.clone(),
                field: key("rope.scaling.type"),
                message: format!(
                    "RoPE scaling `{kind}` is not supported from GGUF yet; load the model's Hugging Face folder"
                ),
            });
        }
        if self.tensor_info("rope_freqs.weight").is_ok() {
            return Err(FormatError::BadConfig {
                path: self.path.clone(),
                field: "rope_freqs.weight".into(),
                message: "per-frequency RoPE factors (Llama 3.1 style) are not supported from GGUF yet; load \
                          the model's Hugging Face folder"
                    .into(),
            });
        }
        let token_id = |k: &str| -> Result<Option<u32>, FormatError> {
            let full = format!("tokenizer.ggml.{k}");
            if self.get(&full).is_none() {
                return Ok(None);
            }
            let v = self.get_u64(&full)?;
            u32::try_from(v)
                .map(Some)
                .map_err(|_| self.bad_config(&full, format!("token id {v} does not fit in u32")))
        };
        let attention_bias = match architecture {
            Architecture::Qwen2 => true,
            Architecture::Llama => self.by_name.contains_key("blk.0.attn_q.bias"),
        };

        Ok(ModelConfig {
            architecture,
            vocab_size,
            hidden_size,
            intermediate_size: size_of("feed_forward_length")?,
            num_hidden_layers: self.block_count(&key("block_count"), size_of("block_count")?)?,
            num_attention_heads,
            num_key_value_heads,
            head_dim,
            rms_norm_eps: self.get_f64(&key("attention.layer_norm_rms_epsilon"))?,
            rope_theta,
            rope_scaling: None,
            max_position_embeddings: size_of("context_length")?,
            tie_word_embeddings: !self.by_name.contains_key("output.weight"),
            attention_bias,
            bos_token_id: token_id("bos_token_id")?,
            eos_token_ids: token_id("eos_token_id")?.into_iter().collect(),
            pad_token_id: token_id("padding_token_id")?,
        })
    }

    /// `blocks` from the metadata, checked against the `blk.N.*` tensors the file holds (when it holds any):
    /// a count that disagrees would otherwise be believed by everything that sizes memory or loops by it.
    fn block_count(&self, field: &str, blocks: usize) -> Result<usize, FormatError> {
        let held = self
            .tensors
            .iter()
            .filter_map(|t| {
                t.name
                    .strip_prefix("blk.")?
                    .split_once('.')?
                    .0
                    .parse::<usize>()
                    .ok()
            })
            .max()
            .map_or(0, |last| last + 1);
        if held > 0 && held != blocks {
            return Err(self.bad_config(
                field,
                format!(
                    "{blocks} blocks, but the file holds the tensors of {held} (blk.0 to blk.{})",
                    held - 1
                ),
            ));
        }
        Ok(blocks)
    }

    fn bad_config(&self, field: &str, message: String) -> FormatError {
        FormatError::BadConfig {
            path: self.path.clone(),
            field: field.to_string(),
            message,
        }
    }
}

/// A value's type, and for a negative integer the value too (why it is not a valid unsigned).
fn describe(v: &MetaValue) -> String {
    match v.as_i64() {
        Some(i) if i < 0 => format!("{} {i}", v.type_name()),
        _ => v.type_name(),
    }
}
