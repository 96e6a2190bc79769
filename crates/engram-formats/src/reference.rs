//! A deliberately plain, dependency-free f32 llama/qwen2 forward pass straight from the Hugging Face definition,
//! used to check the Burn model and file loaders independently; slow, for tests and debugging.
//!
//! It follows transformers' `LlamaForCausalLM` / `Qwen2ForCausalLM` step by step over the tensors a
//! [`WeightSource`] returns: token embedding, then per layer RMSNorm, q/k/v projections (with their biases when
//! `attention_bias` is set), rotate-half RoPE (with `_compute_llama3_parameters` rescaling when
//! `rope_scaling` is set, see [`inv_freq`]), causal softmax attention with grouped-query kv heads, `o_proj`,
//! RMSNorm and SwiGLU, each added to the residual; then the final norm and `lm_head` (or the tied embedding).
//! No batching, no cache, no threads: one sequence, every position recomputed, loops a reader can check by eye.
//!
//! To see what a tensor contributes, wrap the source in one that returns that tensor zeroed, or a changed config.

use crate::{FormatError, ModelConfig, WeightSource};

/// What [`forward`] computes for one sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Forward {
    /// Logits at every position: `tokens.len()` rows of `vocab_size`.
    pub logits: Vec<Vec<f32>>,
    /// The last position's hidden state (the residual stream, before the final norm): after the embedding, then
    /// after each layer, so `num_hidden_layers + 1` rows of `hidden_size`; empty when `tokens` is.
    pub last_hidden: Vec<Vec<f32>>,
}

/// Logits at every position of `tokens` (`tokens.len()` rows of `vocab_size`); see [`forward`].
pub fn forward_logits(
    source: &dyn WeightSource,
    tokens: &[u32],
) -> Result<Vec<Vec<f32>>, FormatError> {
    Ok(forward(source, tokens)?.logits)
}

/// The forward pass over one sequence of `tokens`, from position 0, with the model `source.config()` describes.
///
/// Errors when a tensor is missing or has the wrong number of elements for the config, and when the config says
/// `attention_bias` is false but the source holds a projection bias (which the pass would silently ignore).
///
/// # Panics
///
/// When a token is not below `vocab_size`.
pub fn forward(source: &dyn WeightSource, tokens: &[u32]) -> Result<Forward, FormatError> {
    let c = source.config();
    let (hd, nh, nkv, h, inter, vocab) = (
        c.head_dim,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.hidden_size,
        c.intermediate_size,
        c.vocab_size,
    );
    let eps = c.rms_norm_eps as f32;
    if !c.attention_bias
        && let Some(name) = source
            .tensor_names()
            .into_iter()
            .find(|n| n.ends_with("_proj.bias"))
    {
        return Err(FormatError::BadConfig {
            path: source.path().to_path_buf(),
            field: "attention_bias".into(),
            message: format!("is false, but the weights hold `{name}`"),
        });
    }

    let embed = read(source, "model.embed_tokens.weight", vocab * h)?;
    let mut xs: Vec<Vec<f32>> = tokens
        .iter()
        .map(|&t| {
            let t = t as usize;
            assert!(t < vocab, "token {t} is not below vocab_size {vocab}");
            embed[t * h..(t + 1) * h].to_vec()
        })
        .collect();
    let mut last_hidden = Vec::new();
    last_hidden.extend(xs.last().cloned());

    let inv_freq = inv_freq(c);
    let rope = |v: &mut [f32], pos: usize| {
        for head in v.chunks_exact_mut(hd) {
            let (a, b) = head.split_at_mut(hd / 2);
            for (i, f) in inv_freq.iter().enumerate() {
                let (s, co) = (pos as f64 * f).sin_cos();
                let (s, co) = (s as f32, co as f32);
                let (x1, x2) = (a[i], b[i]);
                a[i] = x1 * co - x2 * s;
                b[i] = x2 * co + x1 * s;
            }
        }
    };

    for layer in 0..c.num_hidden_layers {
        let p = |n: &str, len: usize| read(source, &format!("model.layers.{layer}.{n}"), len);
        let bias = |n: &str, len: usize| {
            if c.attention_bias {
                p(&format!("self_attn.{n}.bias"), len).map(Some)
            } else {
                Ok(None)
            }
        };
        let (wq, wk, wv, wo) = (
            p("self_attn.q_proj.weight", nh * hd * h)?,
            p("self_attn.k_proj.weight", nkv * hd * h)?,
            p("self_attn.v_proj.weight", nkv * hd * h)?,
            p("self_attn.o_proj.weight", h * nh * hd)?,
        );
        let (bq, bk, bv) = (
            bias("q_proj", nh * hd)?,
            bias("k_proj", nkv * hd)?,
            bias("v_proj", nkv * hd)?,
        );
        let (ln1, ln2) = (
            p("input_layernorm.weight", h)?,
            p("post_attention_layernorm.weight", h)?,
        );
        let (wg, wu, wd) = (
            p("mlp.gate_proj.weight", inter * h)?,
            p("mlp.up_proj.weight", inter * h)?,
            p("mlp.down_proj.weight", h * inter)?,
        );
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let n = rms_norm(x, &ln1, eps);
            let mut q = linear(&n, &wq, bq.as_deref(), nh * hd);
            let mut k = linear(&n, &wk, bk.as_deref(), nkv * hd);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(linear(&n, &wv, bv.as_deref(), nkv * hd));
        }
        for (pos, x) in xs.iter_mut().enumerate() {
            let mut attn = vec![0f32; nh * hd];
            for head in 0..nh {
                // repeat_kv: query head `head` reads kv head `head / (nh / nkv)`.
                let kv = head / (nh / nkv);
                let q = &qs[pos][head * hd..(head + 1) * hd];
                let scores: Vec<f32> = (0..=pos)
                    .map(|t| {
                        q.iter()
                            .zip(&ks[t][kv * hd..(kv + 1) * hd])
                            .map(|(a, b)| a * b)
                            .sum::<f32>()
                            / (hd as f32).sqrt()
                    })
                    .collect();
                let max = scores.iter().copied().fold(f32::MIN, f32::max);
                let exps: Vec<f32> = scores.iter().map(|s| (s - max).exp()).collect();
                let total: f32 = exps.iter().sum();
                for (t, e) in exps.iter().enumerate() {
                    for d in 0..hd {
                        attn[head * hd + d] += e / total * vs[t][kv * hd + d];
                    }
                }
            }
            for (xi, o) in x.iter_mut().zip(linear(&attn, &wo, None, h)) {
                *xi += o;
            }
            let n = rms_norm(x, &ln2, eps);
            let g = linear(&n, &wg, None, inter);
            let u = linear(&n, &wu, None, inter);
            let act: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            for (xi, o) in x.iter_mut().zip(linear(&act, &wd, None, h)) {
                *xi += o;
            }
        }
        last_hidden.extend(xs.last().cloned());
    }

    let lm_head;
    let head = if c.tie_word_embeddings {
        &embed
    } else {
        lm_head = read(source, "lm_head.weight", vocab * h)?;
        &lm_head
    };
    let norm = read(source, "model.norm.weight", h)?;
    let logits = xs
        .iter()
        .map(|x| linear(&rms_norm(x, &norm, eps), head, None, vocab))
        .collect();
    Ok(Forward {
        logits,
        last_hidden,
    })
}

/// transformers' RoPE `inv_freq` (`head_dim / 2` frequencies), rescaled as `_compute_llama3_parameters` does when
/// the config has Llama-3 `rope_scaling` (written with its `torch.where`s), in f64.
pub fn inv_freq(c: &ModelConfig) -> Vec<f64> {
    let d = c.head_dim;
    let base: Vec<f64> = (0..d)
        .step_by(2)
        .map(|i| 1.0 / c.rope_theta.powf(i as f64 / d as f64))
        .collect();
    let Some(s) = &c.rope_scaling else {
        return base;
    };
    let old = s.original_max_position_embeddings as f64;
    let low_freq_wavelen = old / s.low_freq_factor;
    let high_freq_wavelen = old / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            let llama = if wavelen > low_freq_wavelen {
                f / s.factor
            } else {
                f
            };
            let smooth =
                (old / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
            let smoothed = (1.0 - smooth) * llama / s.factor + smooth * llama;
            // `~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)`
            let medium = (high_freq_wavelen..=low_freq_wavelen).contains(&wavelen);
            if medium { smoothed } else { llama }
        })
        .collect()
}

/// One tensor's data, checked to hold `len` elements.
fn read(source: &dyn WeightSource, name: &str, len: usize) -> Result<Vec<f32>, FormatError> {
    let t = source.tensor(name)?;
    if t.numel() != len {
        return Err(FormatError::ShapeMismatch {
            what: format!("{}: tensor `{name}`", source.path().display()),
            expected: len,
            found: t.numel(),
        });
    }
    Ok(t.data)
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * r * g).collect()
}

/// `x @ w.T (+ b)` for a row-major `w` of shape `[out, in]`.
fn linear(x: &[f32], w: &[f32], b: Option<&[f32]>, out: usize) -> Vec<f32> {
    let inn = x.len();
    (0..out)
        .map(|o| {
            let dot: f32 = w[o * inn..(o + 1) * inn]
                .iter()
                .zip(x)
                .map(|(a, b)| a * b)
                .sum();
            dot + b.map_or(0.0, |b| b[o])
        })
        .collect()
}
