//! A GGUF file as a [`WeightSource`]: Hugging Face names, Hugging Face layout.

use std::collections::HashMap;
use std::path::Path;

use super::GgufFile;
use crate::{Architecture, FormatError, ModelConfig, TensorF32, WeightSource};

/// The tensors of one decoder block: (GGUF name, Hugging Face name), as llama.cpp's converter maps them.
const BLOCK_MODULES: [(&str, &str); 9] = [
    ("attn_norm", "input_layernorm"),
    ("attn_q", "self_attn.q_proj"),
    ("attn_k", "self_attn.k_proj"),
    ("attn_v", "self_attn.v_proj"),
    ("attn_output", "self_attn.o_proj"),
    ("ffn_norm", "post_attention_layernorm"),
    ("ffn_gate", "mlp.gate_proj"),
    ("ffn_up", "mlp.up_proj"),
    ("ffn_down", "mlp.down_proj"),
];

/// The Hugging Face name of a GGUF tensor name, or `None` for names outside the llama/qwen2 layout (those pass
/// through [`GgufWeights`] under their GGUF names).
pub fn hf_name(gguf_name: &str) -> Option<String> {
    match gguf_name {
        "token_embd.weight" => return Some("model.embed_tokens.weight".into()),
        "output_norm.weight" => return Some("model.norm.weight".into()),
        "output.weight" => return Some("lm_head.weight".into()),
        _ => {}
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (module, param) = rest.split_once('.')?;
    if param != "weight" && param != "bias" {
        return None;
    }
    let hf_module = BLOCK_MODULES
        .iter()
        .find(|(g, _)| *g == module)
        .map(|(_, h)| h)?;
    Some(format!("model.layers.{layer}.{hf_module}.{param}"))
}

/// The GGUF name of a Hugging Face tensor name (the inverse of [`hf_name`]), or `None` outside the llama/qwen2
/// layout: `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`.
pub fn gguf_name(hf_name: &str) -> Option<String> {
    match hf_name {
        "model.embed_tokens.weight" => return Some("token_embd.weight".into()),
        "model.norm.weight" => return Some("output_norm.weight".into()),
        "lm_head.weight" => return Some("output.weight".into()),
        _ => {}
    }
    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (module, param) = rest.rsplit_once('.')?;
    if param != "weight" && param != "bias" {
        return None;
    }
    let gguf_module = BLOCK_MODULES
        .iter()
        .find(|(_, h)| *h == module)
        .map(|(g, _)| g)?;
    Some(format!("blk.{layer}.{gguf_module}.{param}"))
}

/// Reorders the rows of a q/k projection (weight `[rows, cols]` or bias `[rows]`) between the two RoPE layouts.
/// Per head, `halves` is Hugging Face's rotate-half order (the head's first half, then its second half) and
/// interleaved is llama.cpp's (pairs `(i, i + half)` adjacent).
fn reorder_rows(t: &TensorF32, n_head: usize, to_interleaved: bool) -> Option<TensorF32> {
    let rows = *t.shape.first()?;
    if n_head == 0
        || rows == 0
        || !rows.is_multiple_of(2 * n_head)
        || !t.data.len().is_multiple_of(rows)
    {
        return None;
    }
    let cols = t.data.len() / rows;
    let half = rows / n_head / 2;
    let mut out = vec![0f32; t.data.len()];
    for h in 0..n_head {
        let base = h * 2 * half;
        for i in 0..half {
            for j in 0..2 {
                let interleaved = base + 2 * i + j;
                let halves = base + j * half + i;
                let (dst, src) = if to_interleaved {
                    (interleaved, halves)
                } else {
                    (halves, interleaved)
                };
                let src = t.data.get(src * cols..(src + 1) * cols)?;
                out.get_mut(dst * cols..(dst + 1) * cols)?
                    .copy_from_slice(src);
            }
        }
    }
    Some(TensorF32 {
        shape: t.shape.clone(),
        data: out,
    })
}

/// llama.cpp's converter permutation of q/k rows (`convert_hf_to_gguf.py`, `LlamaModel.permute`):
/// `w.reshape(n_head, 2, rows / n_head / 2, cols).swapaxes(1, 2).reshape(rows, cols)`.
///
/// `None` if the first dimension is not a multiple of `2 * n_head`. Used to write GGUF files and, in tests, to check
/// [`unpermute_qk_rows`].
pub fn permute_qk_rows(t: &TensorF32, n_head: usize) -> Option<TensorF32> {
    reorder_rows(t, n_head, true)
}

/// Undoes [`permute_qk_rows`]: `w.reshape(n_head, rows / n_head / 2, 2, cols).swapaxes(1, 2).reshape(rows, cols)`,
/// giving back the Hugging Face row order that rotate-half RoPE expects.
///
/// `None` if the first dimension is not a multiple of `2 * n_head`.
pub fn unpermute_qk_rows(t: &TensorF32, n_head: usize) -> Option<TensorF32> {
    reorder_rows(t, n_head, false)
}

/// How to produce one Hugging Face tensor.
#[derive(Clone, Debug)]
struct Entry {
    /// The GGUF tensor name.
    gguf: String,
    /// `Some(n_head)` when the rows must be un-permuted (llama q/k).
    unpermute_heads: Option<usize>,
}

/// A GGUF file as a [`WeightSource`] in Hugging Face names and layout.
///
/// Names map as llama.cpp's converter maps them, in reverse (`blk.N.attn_q.weight` →
/// `model.layers.N.self_attn.q_proj.weight`, ...); unknown tensors keep their GGUF names. For the llama
/// architecture, q and k rows are un-permuted (llama.cpp permutes them for its interleaved RoPE); qwen2 files are
/// not permuted by the converter and are returned as stored.
#[derive(Debug)]
pub struct GgufWeights {
    file: GgufFile,
    config: ModelConfig,
    names: Vec<String>,
    entries: HashMap<String, Entry>,
}

impl GgufWeights {
    /// Opens a GGUF file (memory-mapped) and reads its [`ModelConfig`].
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        Self::from_file(GgufFile::open(path)?)
    }

    /// Wraps an already-parsed file; fails if its metadata does not describe a llama or qwen2 model.
    pub fn from_file(file: GgufFile) -> Result<Self, FormatError> {
        let config = file.model_config()?;
        let mut names = Vec::with_capacity(file.tensors().len());
        let mut entries = HashMap::with_capacity(file.tensors().len());
        for info in file.tensors() {
            // A model tensor engram cannot decode fails here, named, rather than midway through a load (or
            // never, for `engram info`).
            if hf_name(&info.name).is_some() && !super::dequant::decodable(info.ggml_type) {
                return Err(FormatError::UnsupportedTensorType {
                    path: file.path().to_path_buf(),
                    tensor: info.name.clone(),
                    ty: info.ggml_type.to_string(),
                });
            }
            let hf = hf_name(&info.name).unwrap_or_else(|| info.name.clone());
            let entry = Entry {
                gguf: info.name.clone(),
                unpermute_heads: qk_heads(&config, &info.name),
            };
            if entries.insert(hf.clone(), entry).is_some() {
                return Err(FormatError::Malformed {
                    path: file.path().to_path_buf(),
                    what: format!("two tensors map to the Hugging Face name `{hf}`"),
                });
            }
            names.push(hf);
        }
        Ok(Self {
            file,
            config,
            names,
            entries,
        })
    }

    /// The underlying file (metadata, tokenizer keys, raw tensors).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The GGUF name behind a Hugging Face name.
    pub fn gguf_name(&self, hf_name: &str) -> Option<&str> {
        self.entries.get(hf_name).map(|e| e.gguf.as_str())
    }
}

/// The heads by which the rows of the GGUF tensor `gguf_name` are stored permuted ([`permute_qk_rows`]): llama
/// q (attention heads) and k (kv heads) weights and biases, and the LoRA factors that adapt them
/// (`blk.N.attn_q.weight.lora_b`; `lora_a` is `[r, in]`, its rows are not the model's). `None` for every other
/// tensor and every other architecture (llama.cpp's converter permutes llama only).
pub fn qk_heads(config: &ModelConfig, gguf_name: &str) -> Option<usize> {
    if config.architecture != Architecture::Llama {
        return None;
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (_, module) = rest.split_once('.')?;
    let module = module.strip_suffix(".lora_b").unwrap_or(module);
    match module {
        "attn_q.weight" | "attn_q.bias" => Some(config.num_attention_heads),
        "attn_k.weight" | "attn_k.bias" => Some(config.num_key_value_heads),
        _ => None,
    }
}

impl WeightSource for GgufWeights {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn path(&self) -> &Path {
        self.file.path()
    }

    fn tensor_names(&self) -> Vec<String> {
        self.names.clone()
    }

    fn tensor(&self, name: &str) -> Result<TensorF32, FormatError> {
        let entry = self
            .entries
            .get(name)
            .ok_or_else(|| FormatError::MissingTensor {
                path: self.file.path().to_path_buf(),
                tensor: name.to_string(),
            })?;
        let t = self.file.dequantize(&entry.gguf)?;
        match entry.unpermute_heads {
            None => Ok(t),
            Some(n_head) => unpermute_qk_rows(&t, n_head).ok_or_else(|| FormatError::BadConfig {
                path: self.file.path().to_path_buf(),
                field: entry.gguf.clone(),
                message: format!(
                    "shape {:?} cannot be split into {n_head} heads for RoPE un-permutation",
                    t.shape
                ),
            }),
        }
    }

    fn stored_dtype(&self, name: &str) -> Option<String> {
        let entry = self.entries.get(name)?;
        let info = self.file.tensor_info(&entry.gguf).ok()?;
        Some(info.ggml_type.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert_eq!(
            hf_name("blk.12.attn_q.bias").as_deref(),
            Some("model.layers.12.self_attn.q_proj.bias")
        );
        assert_eq!(
            hf_name("blk.0.ffn_norm.weight").as_deref(),
            Some("model.layers.0.post_attention_layernorm.weight")
        );
        assert_eq!(
            hf_name("token_embd.weight").as_deref(),
            Some("model.embed_tokens.weight")
        );
        assert_eq!(hf_name("rope_freqs.weight"), None);
        assert_eq!(hf_name("blk.x.attn_q.weight"), None);
        assert_eq!(hf_name("blk.1.attn_q.scale"), None);
    }

    #[test]
    fn qk_heads_names_the_permuted_llama_rows_only() {
        let llama = crate::testing::tiny_config(Architecture::Llama);
        assert_eq!(qk_heads(&llama, "blk.3.attn_q.weight"), Some(4));
        assert_eq!(qk_heads(&llama, "blk.3.attn_k.bias"), Some(2));
        assert_eq!(qk_heads(&llama, "blk.3.attn_k.weight.lora_b"), Some(2));
        assert_eq!(qk_heads(&llama, "blk.3.attn_q.weight.lora_a"), None);
        assert_eq!(qk_heads(&llama, "blk.3.attn_v.weight"), None);
        let qwen = crate::testing::tiny_config(Architecture::Qwen2);
        assert_eq!(qk_heads(&qwen, "blk.3.attn_q.weight"), None);
    }

    #[test]
    fn permutation_matches_reshape_definition() {
        // 2 heads, head dim 4 (half 2), 1 column: rows are [h0: a0 a1 b0 b1, h1: c0 c1 d0 d1] in HF order.
        let t = TensorF32::new(vec![8], (0..8).map(|x| x as f32).collect()).unwrap();
        let p = permute_qk_rows(&t, 2).unwrap();
        // reshape(2, 2, 2).swapaxes(1, 2): per head, pairs (a_i, b_i) become adjacent.
        assert_eq!(p.data, vec![0., 2., 1., 3., 4., 6., 5., 7.]);
        assert_eq!(unpermute_qk_rows(&p, 2).unwrap(), t);
        assert!(permute_qk_rows(&t, 3).is_none());
    }

    #[test]
    fn gguf_and_hf_names_are_inverse() {
        for module in [
            "input_layernorm",
            "self_attn.q_proj",
            "self_attn.k_proj",
            "self_attn.v_proj",
            "self_attn.o_proj",
            "post_attention_layernorm",
            "mlp.gate_proj",
            "mlp.up_proj",
            "mlp.down_proj",
        ] {
            let hf = format!("model.layers.12.{module}.weight");
            let g = gguf_name(&hf).unwrap();
            assert_eq!(hf_name(&g).as_deref(), Some(hf.as_str()), "{g}");
        }
        for hf in [
            "model.embed_tokens.weight",
            "model.norm.weight",
            "lm_head.weight",
        ] {
            assert_eq!(hf_name(&gguf_name(hf).unwrap()).as_deref(), Some(hf));
        }
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        assert_eq!(gguf_name("model.layers.0.mlp.up_proj.lora_A"), None);
    }
}
