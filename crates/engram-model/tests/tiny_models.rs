//! The Burn `Llama` against an independent plain-Rust f32 forward pass, for the architectures the SmolLM2
//! reference figures do not cover: Qwen2 (q/k/v biases, untied `lm_head`, GQA) and an untied llama with Llama-3
//! RoPE scaling. No reference numbers exist for those, so tiny random models are written as Hugging Face folders,
//! loaded back, and compared with `engram_formats::reference`, a forward pass written straight from the
//! transformers definitions (RMSNorm, rotate-half RoPE with `_compute_llama3_parameters`, GQA by repeating kv
//! heads, causal softmax attention, SwiGLU, final norm, `lm_head` or tied embedding), run over the random tensors
//! kept in memory. Also checks that left padding changes no row.

use engram_formats::hf::{HfWeights, write_hf_folder};
use engram_formats::reference::{self, inv_freq};
use engram_formats::testing::{Memory, Rng, random_weights, tiny_config};
use engram_formats::{Architecture, Llama3RopeScaling, ModelConfig, WeightSource};
use engram_model::{BaseWeights, Device, Llama, Logits, left_padded_batch};

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

/// A tiny model written as a Hugging Face folder and loaded back into Burn, with its weights kept in memory for
/// the plain forward pass.
struct Tiny {
    config: ModelConfig,
    weights: Memory,
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
        let weights = Memory {
            config: config.clone(),
            tensors: tensors.into_iter().collect(),
        };
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
        plain_forward(&self.weights, ids)
    }

    /// The plain forward pass with one tensor replaced by zeros (an ablation).
    fn plain_logits_without(&self, name: &str, ids: &[u32]) -> Vec<f32> {
        let mut weights = self.weights.clone();
        weights.tensors.get_mut(name).unwrap().data.fill(0.0);
        plain_forward(&weights, ids)
    }

    /// The plain forward pass over the same weights with another config (an ablation).
    fn plain_logits_with(&self, config: ModelConfig, ids: &[u32]) -> Vec<f32> {
        let weights = Memory {
            config,
            ..self.weights.clone()
        };
        plain_forward(&weights, ids)
    }
}

/// The plain Hugging Face llama / Qwen2 forward pass over one sequence: `[seq * vocab]` logits.
fn plain_forward(source: &dyn WeightSource, ids: &[u32]) -> Vec<f32> {
    reference::forward_logits(source, ids).unwrap().concat()
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
    let tied = tiny.plain_logits_with(tied_config, &seq);
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
    let unscaled_logits = tiny.plain_logits_with(
        ModelConfig {
            rope_scaling: None,
            ..tiny.config.clone()
        },
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

#[test]
fn a_model_too_big_for_memory_is_refused_before_loading() {
    // A tiny folder whose config.json claims a 2-trillion-parameter shape: the check reads only the config, so
    // it refuses before a single tensor is read (the tensors themselves would not match).
    let config = tiny_config(Architecture::Llama);
    let dir = tempfile::tempdir().unwrap();
    let tensors = random_weights(&config, 3);
    write_hf_folder(dir.path(), &config, &mut tensors.into_iter().map(Ok)).unwrap();
    let tokenizer = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../engram-tokenizer/tests/fixtures/tokenizer.json"
    );
    std::fs::copy(tokenizer, dir.path().join("tokenizer.json")).unwrap();
    let path = dir.path().join("config.json");
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    json["hidden_size"] = 65536.into();
    json["intermediate_size"] = 262144.into();
    json["num_attention_heads"] = 512.into();
    json["num_key_value_heads"] = 512.into();
    json["head_dim"] = 128.into();
    json["num_hidden_layers"] = 40.into();
    std::fs::write(&path, serde_json::to_vec(&json).unwrap()).unwrap();

    let err = engram_model::load_model(dir.path(), &Device::flex(), &mut |_, _| {}).unwrap_err();
    assert!(
        matches!(err, engram_model::ModelError::OutOfMemory { .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(msg.starts_with(&dir.path().display().to_string()), "{msg}");
    assert!(
        msg.contains("GiB of host memory") && msg.contains("ENGRAM_SKIP_MEMORY_CHECK"),
        "{msg}"
    );
}

/// `Llama::replicate` (data-parallel training's copy of the model) computes what the model computes: Qwen2
/// (biases, untied head) on a left-padded batch, dense and with 8-bit base weights. The copy goes to the CPU, or
/// to the device `ENGRAM_TEST_DEVICE` names (dense only there: wgpu has no 8-bit integers), e.g.
/// `ENGRAM_TEST_DEVICE=wgpu cargo test -p engram-model --features wgpu --test tiny_models replica`.
#[test]
fn a_replica_computes_what_the_model_computes() {
    let mut tiny = Tiny::new(tiny_config(Architecture::Qwen2), 7);
    let seqs = vec![ids(7, 1), ids(4, 2)];
    let other = engram_model::DeviceSpec::from_test_env().unwrap();
    let on_cpu = other.is_none();
    let device = other.unwrap_or_else(Device::flex);
    let bases: &[BaseWeights] = if on_cpu {
        &[BaseWeights::F32, BaseWeights::Q8]
    } else {
        &[BaseWeights::F32]
    };
    for &base in bases {
        tiny.model.set_base_weights(base);
        let quantized = |m: &Llama| {
            (m.projections().iter())
                .filter(|(_, p)| p.is_quantized())
                .count()
        };
        let held = quantized(&tiny.model);
        assert_eq!(held > 0, base == BaseWeights::Q8, "{base}");
        let expected = tiny.burn_logits(&seqs);

        let replica = tiny.model.replicate(&device);
        assert_eq!(
            quantized(&replica),
            held,
            "{base}: the 8-bit blocks go along"
        );
        let batch = left_padded_batch(&seqs, 0, &device).unwrap();
        let got = replica
            .forward(batch.input, None, Logits::All)
            .try_into_vec_as::<f32>()
            .unwrap();
        let expected: Vec<f32> = expected.concat();
        if on_cpu {
            assert!(got == expected, "{base}: the replica's logits differ");
        } else {
            let d = rel_diff(&got, &expected);
            assert!(d < 1e-4, "{base}: replica vs model relative difference {d}");
        }
    }
}
