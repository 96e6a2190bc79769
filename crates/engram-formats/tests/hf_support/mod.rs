//! Helpers shared by the `hf_*` tests: tiny random models and hand-made safetensors files.
#![allow(dead_code)]

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use engram_formats::{Architecture, LAYER_LINEARS, ModelConfig, TensorF32};
use safetensors::{Dtype, View};

/// A two-layer model small enough to check element by element.
pub fn tiny_config(architecture: Architecture) -> ModelConfig {
    ModelConfig {
        architecture,
        vocab_size: 32,
        hidden_size: 16,
        intermediate_size: 24,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 4,
        rms_norm_eps: 1e-5,
        rope_theta: 10000.0,
        rope_scaling: None,
        max_position_embeddings: 128,
        tie_word_embeddings: false,
        attention_bias: architecture == Architecture::Qwen2,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: None,
    }
}

/// Deterministic xorshift values in [-1, 1), with a few awkward f32s mixed in (±0, ±inf, subnormals, extremes).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn next_f32(&mut self) -> f32 {
        let r = self.next_u64();
        match r % 97 {
            0 => -0.0,
            1 => f32::INFINITY,
            2 => f32::MIN_POSITIVE / 8.0,
            3 => f32::MAX,
            _ => ((r >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0,
        }
    }

    pub fn tensor(&mut self, shape: &[usize]) -> TensorF32 {
        let n = shape.iter().product();
        TensorF32::new(shape.to_vec(), (0..n).map(|_| self.next_f32()).collect()).unwrap()
    }
}

/// Every tensor of `config`'s model, in Hugging Face names, with random values.
pub fn tiny_tensors(config: &ModelConfig, seed: u64) -> Vec<(String, TensorF32)> {
    let mut rng = Rng::new(seed);
    let h = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let ff = config.intermediate_size;
    let mut out = vec![(
        "model.embed_tokens.weight".to_string(),
        rng.tensor(&[config.vocab_size, h]),
    )];
    for layer in 0..config.num_hidden_layers {
        for linear in LAYER_LINEARS {
            let shape = match linear {
                "self_attn.q_proj" => [q, h],
                "self_attn.k_proj" | "self_attn.v_proj" => [kv, h],
                "self_attn.o_proj" => [h, q],
                "mlp.gate_proj" | "mlp.up_proj" => [ff, h],
                _ => [h, ff],
            };
            out.push((
                format!("model.layers.{layer}.{linear}.weight"),
                rng.tensor(&shape),
            ));
        }
        if config.attention_bias {
            for (name, n) in [("q_proj", q), ("k_proj", kv), ("v_proj", kv)] {
                out.push((
                    format!("model.layers.{layer}.self_attn.{name}.bias"),
                    rng.tensor(&[n]),
                ));
            }
        }
        for norm in ["input_layernorm", "post_attention_layernorm"] {
            out.push((
                format!("model.layers.{layer}.{norm}.weight"),
                rng.tensor(&[h]),
            ));
        }
    }
    out.push(("model.norm.weight".to_string(), rng.tensor(&[h])));
    if !config.tie_word_embeddings {
        out.push((
            "lm_head.weight".to_string(),
            rng.tensor(&[config.vocab_size, h]),
        ));
    }
    out
}

/// Bitwise equality of two tensors (so `-0.0` vs `0.0` or a changed NaN payload would show).
pub fn assert_same(name: &str, got: &TensorF32, want: &TensorF32) {
    assert_eq!(got.shape, want.shape, "shape of {name}");
    let got: Vec<u32> = got.data.iter().map(|x| x.to_bits()).collect();
    let want: Vec<u32> = want.data.iter().map(|x| x.to_bits()).collect();
    assert_eq!(got, want, "data of {name}");
}

/// Raw little-endian bytes of any dtype, for writing test files with `safetensors`.
pub struct Raw {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl Raw {
    pub fn f32(t: &TensorF32) -> Self {
        Raw {
            dtype: Dtype::F32,
            shape: t.shape.clone(),
            bytes: t.data.iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
}

impl View for &Raw {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.bytes)
    }
    fn data_len(&self) -> usize {
        self.bytes.len()
    }
}

/// Writes a safetensors file of the given tensors (as `transformers` does, with `format: pt`).
pub fn write_safetensors(path: &Path, tensors: &[(String, Raw)]) {
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let bytes =
        safetensors::serialize(tensors.iter().map(|(n, r)| (n, r)), Some(metadata)).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Writes `model.safetensors.index.json` with the given tensor→shard map.
pub fn write_index(dir: &Path, weight_map: &[(&str, &str)]) {
    let map: serde_json::Map<String, serde_json::Value> = weight_map
        .iter()
        .map(|(t, f)| (t.to_string(), serde_json::Value::from(*f)))
        .collect();
    let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string_pretty(&index).unwrap(),
    )
    .unwrap();
}

/// Writes `config.json` for `config` through the public writer (with no tensors), then removes the empty weights.
pub fn write_config_only(dir: &Path, config: &ModelConfig) {
    engram_formats::hf::write_hf_folder(dir, config, &mut std::iter::empty()).unwrap();
    std::fs::remove_file(dir.join("model.safetensors")).unwrap();
}
