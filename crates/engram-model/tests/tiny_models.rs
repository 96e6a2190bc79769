//! The Burn `Llama` against an independent plain-Rust f32 forward pass, for the architectures the SmolLM2
//! reference figures do not cover: Qwen2 (q/k/v biases, untied `lm_head`, GQA) and an untied llama with Llama-3
//! RoPE scaling. No reference numbers exist for those, so tiny random models are written as Hugging Face folders,
//! loaded back, and compared with a forward pass written here straight from the transformers definitions
//! (RMSNorm, rotate-half RoPE with `_compute_llama3_parameters`, GQA by repeating kv heads, causal softmax
//! attention, SwiGLU, final norm, `lm_head` or tied embedding). Also checks that left padding changes no row.

use std::collections::HashMap;

use engram_formats::hf::{HfWeights, write_hf_folder};
use engram_formats::{Architecture, Llama3RopeScaling, ModelConfig, TensorF32};
use engram_model::{Device, Llama, Logits, left_padded_batch};

/// splitmix64 with Box-Muller normals: deterministic weights without depending on a `rand` version.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in (0, 1].
    fn uniform(&mut self) -> f64 {
        ((self.next_u64() >> 11) + 1) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self, mean: f32, std: f32) -> f32 {
        let (u1, u2) = (self.uniform(), self.uniform());
        let z = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        mean + std * z as f32
    }

    fn tensor(&mut self, shape: &[usize], mean: f32, std: f32) -> TensorF32 {
        let n = shape.iter().product();
        let data = (0..n).map(|_| self.normal(mean, std)).collect();
        TensorF32::new(shape.to_vec(), data).unwrap()
    }
}

fn tiny_config(architecture: Architecture) -> ModelConfig {
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

/// The untied llama with Llama-3 RoPE scaling. `rope_theta` 100 and an original context of 32 put the four
/// frequencies (wavelengths 6.3, 19.9, 62.8, 199) in all three bands of the scaling: kept (< 8), smoothed
/// (8..32) and divided by `factor` (> 32).
fn llama3_config() -> ModelConfig {
    ModelConfig {
        rope_theta: 100.0,
        rope_scaling: Some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 32,
        }),
        ..tiny_config(Architecture::Llama)
    }
}

/// Every tensor of a model of shape `c`, in Hugging Face names, ~N(0, 0.2) (norm gains ~N(1, 0.1), biases
/// ~N(0, 0.5) so that they matter).
fn random_weights(c: &ModelConfig, seed: u64) -> Vec<(String, TensorF32)> {
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

/// A tiny model written as a Hugging Face folder and loaded back into Burn, with its weights kept for the
/// plain forward pass.
struct Tiny {
    config: ModelConfig,
    weights: HashMap<String, Vec<f32>>,
    model: Llama,
    device: Device,
    _dir: tempfile::TempDir,
}

impl Tiny {
    fn new(config: ModelConfig, seed: u64) -> Self {
        let tensors = random_weights(&config, seed);
        let dir = tempfile::tempdir().unwrap();
        write_hf_folder(
            dir.path(),
            &config,
            &mut tensors.clone().into_iter().map(Ok),
        )
        .unwrap();
        let source = HfWeights::open(dir.path()).unwrap();
        assert_eq!(
            engram_formats::WeightSource::config(&source),
            &config,
            "config round-trips"
        );
        let device = Device::flex();
        let model = Llama::load(&source, &device, &mut |_, _| {}).unwrap();
        let weights = tensors.into_iter().map(|(n, t)| (n, t.data)).collect();
        Self {
            config,
            weights,
            model,
            device,
            _dir: dir,
        }
    }

    /// Burn logits for a batch of sequences, left-padded with token 0: `[batch][seq * vocab]`.
    fn burn_logits(&self, seqs: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let batch = left_padded_batch(seqs, 0, &self.device).unwrap();
        let logits = self.model.forward(batch.input, None, Logits::All);
        let [b, s, v] = logits.dims();
        let longest = seqs.iter().map(Vec::len).max().unwrap();
        assert_eq!([b, s, v], [seqs.len(), longest, self.config.vocab_size]);
        let data = logits.try_into_vec_as::<f32>().unwrap();
        data.chunks_exact(s * v).map(<[f32]>::to_vec).collect()
    }

    fn plain_logits(&self, ids: &[u32]) -> Vec<f32> {
        plain_forward(&self.config, &self.weights, ids)
    }

    /// The plain forward pass with one tensor replaced by zeros (an ablation).
    fn plain_logits_without(&self, name: &str, ids: &[u32]) -> Vec<f32> {
        let mut weights = self.weights.clone();
        weights.get_mut(name).unwrap().fill(0.0);
        plain_forward(&self.config, &weights, ids)
    }
}

fn rms_norm(x: &[f32], w: &[f32], eps: f32) -> Vec<f32> {
    let ms = x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32;
    let r = 1.0 / (ms + eps).sqrt();
    x.iter().zip(w).map(|(v, g)| v * r * g).collect()
}

/// `x @ w.T (+ b)` for a row-major `w` of shape `[out, in]`.
fn linear(x: &[f32], w: &[f32], b: Option<&Vec<f32>>, out: usize) -> Vec<f32> {
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

/// transformers' `inv_freq`, rescaled as `_compute_llama3_parameters` does (written with its `torch.where`s).
fn inv_freq(c: &ModelConfig) -> Vec<f64> {
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

/// A plain Hugging Face llama / Qwen2 forward pass over one sequence: `[seq * vocab]` logits.
fn plain_forward(c: &ModelConfig, w: &HashMap<String, Vec<f32>>, ids: &[u32]) -> Vec<f32> {
    let (hd, nh, nkv, h) = (
        c.head_dim,
        c.num_attention_heads,
        c.num_key_value_heads,
        c.hidden_size,
    );
    let eps = c.rms_norm_eps as f32;
    let get = |n: &str| &w[n];
    let embed = get("model.embed_tokens.weight");
    let mut xs: Vec<Vec<f32>> = ids
        .iter()
        .map(|&t| embed[t as usize * h..(t as usize + 1) * h].to_vec())
        .collect();

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
        let p = |n: &str| get(&format!("model.layers.{layer}.{n}.weight"));
        let bias = |n: &str| w.get(&format!("model.layers.{layer}.{n}.bias"));
        let (wq, wk, wv, wo) = (
            p("self_attn.q_proj"),
            p("self_attn.k_proj"),
            p("self_attn.v_proj"),
            p("self_attn.o_proj"),
        );
        let (bq, bk, bv) = (
            bias("self_attn.q_proj"),
            bias("self_attn.k_proj"),
            bias("self_attn.v_proj"),
        );
        assert_eq!(bq.is_some(), c.attention_bias);
        let (ln1, ln2) = (p("input_layernorm"), p("post_attention_layernorm"));
        let (wg, wu, wd) = (p("mlp.gate_proj"), p("mlp.up_proj"), p("mlp.down_proj"));
        let mut qs = Vec::new();
        let mut ks = Vec::new();
        let mut vs = Vec::new();
        for (pos, x) in xs.iter().enumerate() {
            let n = rms_norm(x, ln1, eps);
            let mut q = linear(&n, wq, bq, nh * hd);
            let mut k = linear(&n, wk, bk, nkv * hd);
            rope(&mut q, pos);
            rope(&mut k, pos);
            qs.push(q);
            ks.push(k);
            vs.push(linear(&n, wv, bv, nkv * hd));
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
            for (xi, o) in x.iter_mut().zip(linear(&attn, wo, None, h)) {
                *xi += o;
            }
            let n = rms_norm(x, ln2, eps);
            let g = linear(&n, wg, None, c.intermediate_size);
            let u = linear(&n, wu, None, c.intermediate_size);
            let act: Vec<f32> = g
                .iter()
                .zip(&u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            for (xi, o) in x.iter_mut().zip(linear(&act, wd, None, h)) {
                *xi += o;
            }
        }
    }
    let head = if c.tie_word_embeddings {
        embed
    } else {
        get("lm_head.weight")
    };
    let norm = get("model.norm.weight");
    xs.iter()
        .flat_map(|x| linear(&rms_norm(x, norm, eps), head, None, c.vocab_size))
        .collect()
}

/// `max |a - b| / max |b|`.
fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let diff = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    let scale = b.iter().map(|y| y.abs()).fold(0f32, f32::max);
    assert!(scale > 0.0 && diff.is_finite(), "degenerate logits");
    diff / scale
}

fn ids(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng(seed);
    (0..n).map(|_| 1 + (rng.next_u64() % 63) as u32).collect()
}

#[test]
fn qwen2_matches_plain_forward_and_its_biases_matter() {
    let tiny = Tiny::new(tiny_config(Architecture::Qwen2), 7);
    let seq = ids(7, 1);
    let burn = &tiny.burn_logits(std::slice::from_ref(&seq))[0];
    let plain = tiny.plain_logits(&seq);
    let d = rel_diff(burn, &plain);
    assert!(d < 1e-4, "Qwen2: Burn vs plain relative difference {d}");

    // A model that dropped (or misplaced) any one of the biases would be caught by the check above.
    for proj in ["q_proj", "k_proj", "v_proj"] {
        for layer in 0..2 {
            let name = format!("model.layers.{layer}.self_attn.{proj}.bias");
            let without = tiny.plain_logits_without(&name, &seq);
            let d = rel_diff(burn, &without);
            assert!(d > 1e-2, "zeroing {name} moves the logits by only {d}");
        }
    }
    // And one whose lm_head were tied to the embedding.
    let mut tied_config = tiny.config.clone();
    tied_config.tie_word_embeddings = true;
    let tied = plain_forward(&tied_config, &tiny.weights, &seq);
    assert!(rel_diff(burn, &tied) > 1e-1, "untied lm_head matters");
}

#[test]
fn llama3_rope_scaling_matches_plain_forward() {
    let tiny = Tiny::new(llama3_config(), 11);
    // Positions up to 23, past the "original" context of 32 / 4 where frequencies start to be rescaled.
    let seq = ids(24, 2);
    let burn = &tiny.burn_logits(std::slice::from_ref(&seq))[0];
    let plain = tiny.plain_logits(&seq);
    let d = rel_diff(burn, &plain);
    assert!(
        d < 1e-4,
        "llama3 RoPE: Burn vs plain relative difference {d}"
    );

    // The scaling touches every band but the highest frequency, and it changes the result.
    let scaled = inv_freq(&tiny.config);
    let unscaled = inv_freq(&ModelConfig {
        rope_scaling: None,
        ..tiny.config.clone()
    });
    assert_eq!(scaled[0], unscaled[0], "high-frequency band kept");
    let smoothed = scaled[1] / unscaled[1];
    assert!(
        smoothed > 1.0 / 8.0 + 1e-3 && smoothed < 1.0 - 1e-3,
        "medium band smoothed ({smoothed})"
    );
    for (s, u) in scaled.iter().zip(&unscaled).skip(2) {
        assert!((s * 8.0 - u).abs() < 1e-12, "low band / 8");
    }
    let unscaled_logits = plain_forward(
        &ModelConfig {
            rope_scaling: None,
            ..tiny.config.clone()
        },
        &tiny.weights,
        &seq,
    );
    let d = rel_diff(burn, &unscaled_logits);
    assert!(d > 1e-2, "RoPE scaling moves the logits by only {d}");
}

#[test]
fn qwen2_left_padding_changes_no_row() {
    let tiny = Tiny::new(tiny_config(Architecture::Qwen2), 7);
    let seqs = [ids(7, 3), ids(4, 4)];
    let batched = tiny.burn_logits(&seqs);
    let v = tiny.config.vocab_size;
    for (row, seq) in batched.iter().zip(&seqs) {
        let alone = &tiny.burn_logits(std::slice::from_ref(seq))[0];
        let pad = 7 - seq.len();
        let d = rel_diff(&row[pad * v..], alone);
        assert!(
            d < 1e-5,
            "row of length {}: relative difference {d}",
            seq.len()
        );
        // And the batched row still agrees with the plain forward pass.
        let d = rel_diff(&row[pad * v..], &tiny.plain_logits(seq));
        assert!(d < 1e-4, "padded row vs plain: {d}");
    }
}
