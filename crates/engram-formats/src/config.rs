//! One description of a llama-family model, whichever file it came from.

use serde::{Deserialize, Serialize};

/// The decoder families engram runs. Both are the llama block; Qwen2 adds biases to q/k/v.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Architecture {
    /// `LlamaForCausalLM` (SmolLM, Llama 2/3, TinyLlama, ...).
    Llama,
    /// `Qwen2ForCausalLM` (Qwen2, Qwen2.5): q/k/v projections carry biases.
    Qwen2,
}

impl Architecture {
    /// The Hugging Face `architectures[0]` name.
    pub fn hf_name(self) -> &'static str {
        match self {
            Architecture::Llama => "LlamaForCausalLM",
            Architecture::Qwen2 => "Qwen2ForCausalLM",
        }
    }

    /// The Hugging Face `model_type`.
    pub fn model_type(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Qwen2 => "qwen2",
        }
    }
}

/// Llama 3.x frequency-dependent RoPE scaling (`rope_type: "llama3"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Llama3RopeScaling {
    /// How much the lowest frequencies are slowed down (the context extension factor, 8 for Llama 3.1).
    pub factor: f64,
    /// Wavelengths longer than `original_max_position_embeddings / low_freq_factor` are divided by `factor` in full.
    pub low_freq_factor: f64,
    /// Wavelengths shorter than `original_max_position_embeddings / high_freq_factor` are left unscaled.
    pub high_freq_factor: f64,
    /// The context length the model was pre-trained with before scaling.
    pub original_max_position_embeddings: usize,
}

/// Hyper-parameters of a llama-family decoder, in Hugging Face vocabulary.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Which decoder family (llama or qwen2).
    pub architecture: Architecture,
    /// Number of token ids the embedding and output head cover.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Width of the MLP's hidden layer (gate/up projection outputs).
    pub intermediate_size: usize,
    /// Number of decoder blocks.
    pub num_hidden_layers: usize,
    /// Number of query heads.
    pub num_attention_heads: usize,
    /// Number of key/value heads (fewer than query heads under grouped-query attention).
    pub num_key_value_heads: usize,
    /// Width of one attention head.
    pub head_dim: usize,
    /// Epsilon added to the mean square in RMSNorm.
    pub rms_norm_eps: f64,
    /// RoPE base frequency.
    pub rope_theta: f64,
    /// Llama 3 RoPE scaling, if the model uses it; `None` is plain RoPE.
    pub rope_scaling: Option<Llama3RopeScaling>,
    /// Longest context the model supports, in tokens.
    pub max_position_embeddings: usize,
    /// The output projection reuses the token embedding (no `lm_head.weight`).
    pub tie_word_embeddings: bool,
    /// q/k/v projections have biases (Qwen2).
    pub attention_bias: bool,
    /// Beginning-of-sequence token id, if the model has one.
    pub bos_token_id: Option<u32>,
    /// Token ids that end generation (several for chat models); may be empty.
    pub eos_token_ids: Vec<u32>,
    /// Padding token id, if the model defines one.
    pub pad_token_id: Option<u32>,
}

impl ModelConfig {
    /// Parameter count implied by the shapes (embeddings counted once when tied).
    pub fn parameter_count(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        let bias = if self.attention_bias { q + 2 * kv } else { 0 };
        let embed = self.vocab_size * h;
        let head = if self.tie_word_embeddings { 0 } else { embed };
        embed
            + head
            + self.linear_weight_count()
            + self.num_hidden_layers * bias
            + self.norm_weight_count()
    }

    /// Scales of the RMSNorms: two per block and the final one (what stays f32 in half precision).
    pub fn norm_weight_count(&self) -> usize {
        (2 * self.num_hidden_layers + 1) * self.hidden_size
    }

    /// Weights of the seven linear layers (q, k, v, o, gate, up, down) of every block, biases not counted:
    /// what most of the compute multiplies by, and what a quantised base holds in fewer bits.
    pub fn linear_weight_count(&self) -> usize {
        let h = self.hidden_size;
        let q = self.num_attention_heads * self.head_dim;
        let kv = self.num_key_value_heads * self.head_dim;
        self.num_hidden_layers * (2 * h * q + 2 * h * kv + 3 * h * self.intermediate_size)
    }
}
