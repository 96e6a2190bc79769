//! Random tiny models held in memory, for tests and examples of the crates above this one: a model's worth of
//! Hugging Face-named tensors drawn from a seed, served through [`WeightSource`] without touching the disk.

use std::collections::HashMap;
use std::path::Path;

use crate::{Architecture, FormatError, ModelConfig, TensorF32, WeightSource};

/// splitmix64 with Box-Muller normals: deterministic weights without depending on a `rand` version.
pub struct Rng(pub u64);

impl Rng {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    pub fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    /// One draw from a normal distribution with the given mean and standard deviation.
    pub fn normal(&mut self, mean: f32, std: f32) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        mean + std * z as f32
    }

    /// A tensor of `shape` filled with independent normal draws.
    pub fn tensor(&mut self, shape: &[usize], mean: f32, std: f32) -> TensorF32 {
        let n = shape.iter().product();
        let data = (0..n).map(|_| self.normal(mean, std)).collect();
        TensorF32::new(shape.to_vec(), data).unwrap()
    }
}

/// Every tensor of a model of shape `c`, in Hugging Face names, ~N(0, 0.2) (norm gains ~N(1, 0.1), biases
/// ~N(0, 0.5) so that they matter).
pub fn random_weights(c: &ModelConfig, seed: u64) -> Vec<(String, TensorF32)> {
    let mut rng = Rng(seed);
    let (h, q, kv, i) = (
        c.hidden_size,
        c.num_attention_heads * c.head_dim,
        c.num_key_value_heads * c.head_dim,
        c.intermediate_size,
    );
    let mut w = vec![(
        "model.embed_tokens.weight".to_string(),
        rng.tensor(&[c.vocab_size, h], 0.0, 0.5),
    )];
    for l in 0..c.num_hidden_layers {
        let p = |n: &str| format!("model.layers.{l}.{n}");
        let mut push = |name: String, shape: &[usize], mean: f32, std: f32| {
            w.push((name, rng.tensor(shape, mean, std)));
        };
        push(p("input_layernorm.weight"), &[h], 1.0, 0.1);
        push(p("self_attn.q_proj.weight"), &[q, h], 0.0, 0.2);
        push(p("self_attn.k_proj.weight"), &[kv, h], 0.0, 0.2);
        push(p("self_attn.v_proj.weight"), &[kv, h], 0.0, 0.2);
        if c.attention_bias {
            push(p("self_attn.q_proj.bias"), &[q], 0.0, 0.5);
            push(p("self_attn.k_proj.bias"), &[kv], 0.0, 0.5);
            push(p("self_attn.v_proj.bias"), &[kv], 0.0, 0.5);
        }
        push(p("self_attn.o_proj.weight"), &[h, q], 0.0, 0.2);
        push(p("post_attention_layernorm.weight"), &[h], 1.0, 0.1);
        push(p("mlp.gate_proj.weight"), &[i, h], 0.0, 0.2);
        push(p("mlp.up_proj.weight"), &[i, h], 0.0, 0.2);
        push(p("mlp.down_proj.weight"), &[h, i], 0.0, 0.2);
    }
    w.push(("model.norm.weight".to_string(), rng.tensor(&[h], 1.0, 0.1)));
    if !c.tie_word_embeddings {
        w.push((
            "lm_head.weight".to_string(),
            rng.tensor(&[c.vocab_size, h], 0.0, 0.2),
        ));
    }
    w
}

/// Tensors held in memory as a [`WeightSource`], for the plain forward pass: it sees the random weights
/// themselves, not what the safetensors writer and reader made of them. Change `config` or a tensor to ablate.
#[derive(Clone)]
pub struct Memory {
    /// The model's hyper-parameters.
    pub config: ModelConfig,
    /// The weights, by Hugging Face tensor name.
    pub tensors: HashMap<String, TensorF32>,
}

impl WeightSource for Memory {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn path(&self) -> &Path {
        Path::new("<memory>")
    }

    fn tensor_names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    fn tensor(&self, name: &str) -> Result<TensorF32, FormatError> {
        self.tensors
            .get(name)
            .cloned()
            .ok_or_else(|| FormatError::MissingTensor {
                path: self.path().to_path_buf(),
                tensor: name.to_string(),
            })
    }

    fn stored_dtype(&self, name: &str) -> Option<String> {
        self.tensors.contains_key(name).then(|| "F32".to_string())
    }
}

impl Memory {
    /// A model of shape `config` with [`random_weights`] drawn from `seed`.
    pub fn random(config: ModelConfig, seed: u64) -> Self {
        Self {
            tensors: random_weights(&config, seed).into_iter().collect(),
            config,
        }
    }
}

/// A 2-layer model with 32-wide hidden states, GQA (4 query heads, 2 kv heads), 64 tokens; Qwen2 gets q/k/v
/// biases. Untied output head.
pub fn tiny_config(architecture: Architecture) -> ModelConfig {
    let qwen = architecture == Architecture::Qwen2;
    ModelConfig {
        architecture,
        vocab_size: 64,
        hidden_size: 32,
        intermediate_size: 48,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        num_key_value_heads: 2,
        head_dim: 8,
        rms_norm_eps: 1e-6,
        rope_theta: 1e4,
        rope_scaling: None,
        max_position_embeddings: 64,
        tie_word_embeddings: false,
        attention_bias: qwen,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: Some(0),
    }
}
