//! `config.json` parsing (public configs of the shapes transformers 4 and 5 write) and writing, round trips
//! included.

mod hf_support;

use std::path::Path;

use engram_formats::hf::{parse_config, read_config};
use engram_formats::{Architecture, FormatError, Llama3RopeScaling, ModelConfig};
use proptest::prelude::*;
use serde_json::Value;

/// `/work/shared/reference/config.json`: SmolLM2-135M-Instruct as transformers 5.23 writes it.
const SMOLLM2_135M: &str = r#"{
  "architectures": [
    "LlamaForCausalLM"
  ],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 1,
  "dtype": "float32",
  "eos_token_id": 2,
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 576,
  "initializer_range": 0.02,
  "intermediate_size": 1536,
  "max_position_embeddings": 8192,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 9,
  "num_hidden_layers": 30,
  "num_key_value_heads": 3,
  "pad_token_id": 2,
  "pretraining_tp": 1,
  "rms_norm_eps": 9.999999747378752e-06,
  "rope_parameters": {
    "rope_theta": 100000.0,
    "rope_type": "default"
  },
  "tie_word_embeddings": true,
  "transformers_version": "5.23.0",
  "unk_token_id": 0,
  "use_cache": true,
  "vocab_size": 49152
}"#;

/// Meta-Llama-3-8B-Instruct (transformers 4.40): top-level `rope_theta`, `rope_scaling: null`, eos list,
/// no `head_dim`.
const LLAMA3_8B: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 8192,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": null,
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.40.0.dev0",
  "use_cache": true,
  "vocab_size": 128256
}"#;

/// The first LLaMA conversion (transformers 4.27): no `num_key_value_heads`, `rope_theta`,
/// `max_position_embeddings` or `tie_word_embeddings`, and `pad_token_id: -1`.
const LLAMA1_7B: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "bos_token_id": 0,
  "eos_token_id": 1,
  "hidden_act": "silu",
  "hidden_size": 4096,
  "intermediate_size": 11008,
  "initializer_range": 0.02,
  "max_sequence_length": 2048,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "pad_token_id": -1,
  "rms_norm_eps": 1e-06,
  "torch_dtype": "float16",
  "transformers_version": "4.27.0.dev0",
  "use_cache": true,
  "vocab_size": 32000
}"#;

/// Llama-3.1-8B-Instruct (transformers 4.42): llama3 `rope_scaling`.
const LLAMA31_8B: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "eos_token_id": [128001, 128008, 128009],
  "hidden_act": "silu",
  "hidden_size": 4096,
  "initializer_range": 0.02,
  "intermediate_size": 14336,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 32,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_scaling": {
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
    "rope_type": "llama3"
  },
  "rope_theta": 500000.0,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.42.3",
  "use_cache": true,
  "vocab_size": 128256
}"#;

/// Llama-3.2-1B-Instruct as transformers 5 writes it: llama3 RoPE inside `rope_parameters`, tied embeddings.
const LLAMA32_1B_TF5: &str = r#"{
  "architectures": ["LlamaForCausalLM"],
  "attention_bias": false,
  "attention_dropout": 0.0,
  "bos_token_id": 128000,
  "dtype": "bfloat16",
  "eos_token_id": [128001, 128008, 128009],
  "head_dim": 64,
  "hidden_act": "silu",
  "hidden_size": 2048,
  "initializer_range": 0.02,
  "intermediate_size": 8192,
  "max_position_embeddings": 131072,
  "mlp_bias": false,
  "model_type": "llama",
  "num_attention_heads": 32,
  "num_hidden_layers": 16,
  "num_key_value_heads": 8,
  "pretraining_tp": 1,
  "rms_norm_eps": 1e-05,
  "rope_parameters": {
    "factor": 32.0,
    "high_freq_factor": 4.0,
    "low_freq_factor": 1.0,
    "original_max_position_embeddings": 8192,
    "rope_theta": 500000.0,
    "rope_type": "llama3"
  },
  "tie_word_embeddings": true,
  "transformers_version": "5.0.0",
  "use_cache": true,
  "vocab_size": 128256
}"#;

/// Qwen2.5-0.5B-Instruct (transformers 4.43).
const QWEN25_05B: &str = r#"{
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 896,
  "initializer_range": 0.02,
  "intermediate_size": 4864,
  "max_position_embeddings": 32768,
  "max_window_layers": 21,
  "model_type": "qwen2",
  "num_attention_heads": 14,
  "num_hidden_layers": 24,
  "num_key_value_heads": 2,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 32768,
  "tie_word_embeddings": true,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 151936
}"#;

/// Qwen2.5-7B-Instruct: untied, 28 heads over 4 KV heads.
const QWEN25_7B: &str = r#"{
  "architectures": ["Qwen2ForCausalLM"],
  "attention_dropout": 0.0,
  "bos_token_id": 151643,
  "eos_token_id": 151645,
  "hidden_act": "silu",
  "hidden_size": 3584,
  "initializer_range": 0.02,
  "intermediate_size": 18944,
  "max_position_embeddings": 32768,
  "max_window_layers": 28,
  "model_type": "qwen2",
  "num_attention_heads": 28,
  "num_hidden_layers": 28,
  "num_key_value_heads": 4,
  "rms_norm_eps": 1e-06,
  "rope_theta": 1000000.0,
  "sliding_window": 131072,
  "tie_word_embeddings": false,
  "torch_dtype": "bfloat16",
  "transformers_version": "4.43.1",
  "use_cache": true,
  "use_sliding_window": false,
  "vocab_size": 152064
}"#;

fn parse(json: &str) -> ModelConfig {
    parse_config(Path::new("config.json"), json).unwrap()
}

#[test]
fn reference_smollm2_config() {
    let c = parse(SMOLLM2_135M);
    assert_eq!(
        c,
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
    );
    // 134.5M parameters, as the model card says.
    assert_eq!(c.parameter_count(), 134_515_008);
}

#[test]
fn reference_config_file_on_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, SMOLLM2_135M).unwrap();
    assert_eq!(read_config(&path).unwrap(), parse(SMOLLM2_135M));
}

#[test]
fn old_style_llama3_config() {
    let c = parse(LLAMA3_8B);
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(c.head_dim, 128, "head_dim absent: hidden / heads");
    assert_eq!((c.num_attention_heads, c.num_key_value_heads), (32, 8));
    assert_eq!(c.rope_theta, 500000.0);
    assert_eq!(c.rope_scaling, None);
    assert_eq!(c.eos_token_ids, vec![128001, 128009]);
    assert_eq!(c.bos_token_id, Some(128000));
    assert_eq!(c.pad_token_id, None);
    assert_eq!(c.rms_norm_eps, 1e-5);
    assert!(!c.tie_word_embeddings && !c.attention_bias);
    assert_eq!(c.parameter_count(), 8_030_261_248);
}

#[test]
fn oldest_llama_config_takes_transformers_defaults() {
    let c = parse(LLAMA1_7B);
    assert_eq!(c.num_key_value_heads, 32, "defaults to num_attention_heads");
    assert_eq!(c.rope_theta, 10000.0);
    assert_eq!(c.max_position_embeddings, 2048);
    assert!(!c.tie_word_embeddings);
    assert_eq!(c.pad_token_id, None, "-1 means no padding token");
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.as_slice()),
        (Some(0), &[1][..])
    );
    assert_eq!(c.head_dim, 128);
}

#[test]
fn llama31_rope_scaling() {
    let c = parse(LLAMA31_8B);
    assert_eq!(
        c.rope_scaling,
        Some(Llama3RopeScaling {
            factor: 8.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        })
    );
    assert_eq!(c.rope_theta, 500000.0);
    assert_eq!(c.max_position_embeddings, 131072);
    assert_eq!(c.eos_token_ids, vec![128001, 128008, 128009]);
}

#[test]
fn llama32_transformers5_rope_parameters() {
    let c = parse(LLAMA32_1B_TF5);
    assert_eq!(c.rope_theta, 500000.0);
    assert_eq!(
        c.rope_scaling,
        Some(Llama3RopeScaling {
            factor: 32.0,
            low_freq_factor: 1.0,
            high_freq_factor: 4.0,
            original_max_position_embeddings: 8192,
        })
    );
    assert!(c.tie_word_embeddings);
    assert_eq!(c.head_dim, 64);
    assert_eq!(c.parameter_count(), 1_235_814_400);
}

#[test]
fn qwen25_configs() {
    let c = parse(QWEN25_05B);
    assert_eq!(c.architecture, Architecture::Qwen2);
    assert!(c.attention_bias, "Qwen2 always has q/k/v biases");
    assert!(c.tie_word_embeddings);
    assert_eq!(c.head_dim, 64);
    assert_eq!((c.num_attention_heads, c.num_key_value_heads), (14, 2));
    assert_eq!(c.rope_theta, 1_000_000.0);
    assert_eq!(c.rms_norm_eps, 1e-6);
    assert_eq!(c.bos_token_id, Some(151643));
    assert_eq!(c.eos_token_ids, vec![151645]);
    assert_eq!(c.pad_token_id, None);
    assert_eq!(
        c.parameter_count(),
        494_032_768,
        "Qwen2.5-0.5B's published count"
    );

    let c = parse(QWEN25_7B);
    assert!(!c.tie_word_embeddings && c.attention_bias);
    assert_eq!(c.head_dim, 128);
    assert_eq!(
        c.parameter_count(),
        7_615_616_512,
        "Qwen2.5-7B's published count"
    );
}

#[test]
fn architecture_from_model_type_when_architectures_absent() {
    let mut v: Value = serde_json::from_str(QWEN25_05B).unwrap();
    v.as_object_mut().unwrap().remove("architectures");
    let c = parse(&v.to_string());
    assert_eq!(c.architecture, Architecture::Qwen2);
}

#[test]
fn both_rope_styles_agreeing_are_accepted() {
    let mut v: Value = serde_json::from_str(LLAMA32_1B_TF5).unwrap();
    let params = v["rope_parameters"].clone();
    v["rope_scaling"] = params;
    v["rope_theta"] = 500000.0.into();
    assert_eq!(parse(&v.to_string()), parse(LLAMA32_1B_TF5));
}

#[test]
fn eos_null_and_float_sizes() {
    let mut v: Value = serde_json::from_str(LLAMA3_8B).unwrap();
    v["eos_token_id"] = Value::Null;
    v["bos_token_id"] = Value::Null;
    v["max_position_embeddings"] = 8192.0.into();
    let c = parse(&v.to_string());
    assert!(c.eos_token_ids.is_empty());
    assert_eq!(c.bos_token_id, None);
    assert_eq!(c.max_position_embeddings, 8192);
}

/// Writes `config` through `write_hf_folder` and returns the `config.json` and `generation_config.json` it wrote.
fn written(config: &ModelConfig) -> (tempfile::TempDir, Value, Value) {
    let dir = tempfile::tempdir().unwrap();
    hf_support::write_config_only(dir.path(), config);
    let read = |name: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir.path().join(name)).unwrap()).unwrap()
    };
    let (c, g) = (read("config.json"), read("generation_config.json"));
    (dir, c, g)
}

#[test]
fn written_config_is_transformers_style_and_round_trips() {
    for json in [
        SMOLLM2_135M,
        LLAMA3_8B,
        LLAMA1_7B,
        LLAMA31_8B,
        LLAMA32_1B_TF5,
        QWEN25_05B,
        QWEN25_7B,
    ] {
        let config = parse(json);
        let (dir, c, g) = written(&config);
        assert_eq!(read_config(dir.path().join("config.json")).unwrap(), config);

        let arch = config.architecture;
        assert_eq!(c["architectures"], serde_json::json!([arch.hf_name()]));
        assert_eq!(c["model_type"], arch.model_type());
        assert_eq!(c["hidden_act"], "silu");
        assert_eq!(c["torch_dtype"], "float32");
        assert_eq!(c["dtype"], "float32");
        assert_eq!(c["rope_theta"], config.rope_theta);
        assert_eq!(c["rms_norm_eps"], config.rms_norm_eps);
        assert_eq!(c["head_dim"], config.head_dim);
        assert_eq!(c["num_key_value_heads"], config.num_key_value_heads);
        assert_eq!(c["vocab_size"], config.vocab_size);
        assert_eq!(c["max_position_embeddings"], config.max_position_embeddings);
        assert_eq!(c["tie_word_embeddings"], config.tie_word_embeddings);
        assert_eq!(c["bos_token_id"], serde_json::json!(config.bos_token_id));
        assert_eq!(c["pad_token_id"], serde_json::json!(config.pad_token_id));
        match config.eos_token_ids.as_slice() {
            [one] => assert_eq!(c["eos_token_id"], *one),
            many => assert_eq!(c["eos_token_id"], serde_json::json!(many)),
        }
        match arch {
            Architecture::Llama => {
                assert_eq!(c["attention_bias"], false);
                assert_eq!(c["mlp_bias"], false);
            }
            Architecture::Qwen2 => assert_eq!(c["use_sliding_window"], false),
        }
        match &config.rope_scaling {
            None => {
                assert!(c.get("rope_scaling").is_none());
                assert_eq!(c["rope_parameters"]["rope_type"], "default");
            }
            Some(s) => {
                for key in ["rope_scaling", "rope_parameters"] {
                    assert_eq!(c[key]["rope_type"], "llama3");
                    assert_eq!(c[key]["factor"], s.factor);
                    assert_eq!(
                        c[key]["original_max_position_embeddings"],
                        s.original_max_position_embeddings
                    );
                }
            }
        }
        assert_eq!(c["rope_parameters"]["rope_theta"], config.rope_theta);

        assert_eq!(g["bos_token_id"], serde_json::json!(config.bos_token_id));
        assert_eq!(
            g.get("eos_token_id").is_some(),
            !config.eos_token_ids.is_empty()
        );
    }
}

/// Five floats near `around`, preferably ones serde_json's default parser (without its `float_roundtrip`
/// feature, which cargo may unify on) reads back 1 ULP off.
fn lossy_floats(around: f64) -> Vec<f64> {
    let mut rng = hf_support::Rng::new(7);
    let candidates: Vec<f64> = (0..10_000)
        .map(|_| around * (1.0 + (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64))
        .collect();
    let lossy: Vec<f64> = candidates
        .iter()
        .copied()
        .filter(|x| serde_json::from_str::<f64>(&serde_json::to_string(x).unwrap()).unwrap() != *x)
        .take(5)
        .collect();
    if lossy.len() == 5 {
        lossy
    } else {
        candidates[..5].to_vec()
    }
}

#[test]
fn written_floats_round_trip_exactly() {
    let mut config = hf_support::tiny_config(Architecture::Llama);
    for (eps, theta) in lossy_floats(1e-5).into_iter().zip(lossy_floats(5e5)) {
        config.rms_norm_eps = eps;
        config.rope_theta = theta;
        config.rope_scaling = Some(Llama3RopeScaling {
            factor: theta / 1e5,
            low_freq_factor: eps * 1e5,
            high_freq_factor: eps * 4e5,
            original_max_position_embeddings: 8192,
        });
        let (dir, ..) = written(&config);
        assert_eq!(read_config(dir.path().join("config.json")).unwrap(), config);
    }
}

fn any_config() -> impl Strategy<Value = ModelConfig> {
    let shape = (
        prop_oneof![Just(Architecture::Llama), Just(Architecture::Qwen2)],
        1usize..300_000,
        1usize..9000,
        1usize..40_000,
        1usize..100,
        (1usize..9, 1usize..9),
        1usize..300,
        1usize..1_000_000,
    );
    let numbers = (
        1e-12f64..1e-1,
        1.0f64..1e8,
        proptest::option::of((
            0.01f64..100.0,
            0.01f64..10.0,
            0.01f64..10.0,
            1usize..1_000_000,
        )),
        any::<bool>(),
        proptest::option::of(any::<u32>()),
        proptest::collection::vec(any::<u32>(), 0..4),
        proptest::option::of(any::<u32>()),
    );
    (shape, numbers).prop_map(
        |(
            (architecture, vocab, hidden, ff, layers, (kv, group), head_dim, max_pos),
            (eps, theta, scaling, tie, bos, eos, pad),
        )| ModelConfig {
            architecture,
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: ff,
            num_hidden_layers: layers,
            num_attention_heads: kv * group,
            num_key_value_heads: kv,
            head_dim,
            rms_norm_eps: eps,
            rope_theta: theta,
            rope_scaling: scaling.map(|(factor, low, high, orig)| Llama3RopeScaling {
                factor,
                low_freq_factor: low,
                high_freq_factor: high,
                original_max_position_embeddings: orig,
            }),
            max_position_embeddings: max_pos,
            tie_word_embeddings: tie,
            attention_bias: architecture == Architecture::Qwen2,
            bos_token_id: bos,
            eos_token_ids: eos,
            pad_token_id: pad,
        },
    )
}

/// A JSON value of any kind, to put where a config field should be.
fn any_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        "[a-z0-9 .]{0,12}".prop_map(Value::from),
        proptest::collection::vec(any::<i32>(), 0..4).prop_map(Value::from),
        Just(serde_json::json!({"rope_type": "llama3", "factor": 8.0})),
        Just(serde_json::json!({"rope_type": "yarn"})),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Every valid config survives write → read unchanged.
    #[test]
    fn config_round_trips(config in any_config()) {
        let (dir, ..) = written(&config);
        prop_assert_eq!(read_config(dir.path().join("config.json")).unwrap(), config);
    }

    /// Any field of the reference config replaced by any JSON value: a config or a typed error, never a panic;
    /// a `BadConfig` names a field.
    #[test]
    fn mangled_fields_never_panic(field_index in 0usize..40, value in any_json()) {
        let mut v: Value = serde_json::from_str(LLAMA31_8B).unwrap();
        let keys: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        let key = keys[field_index % keys.len()].clone();
        v[&key] = value;
        match parse_config(Path::new("config.json"), &v.to_string()) {
            Ok(c) => prop_assert!(c.hidden_size > 0 && c.head_dim > 0 && c.num_key_value_heads > 0),
            Err(FormatError::BadConfig { field, .. }) => prop_assert!(!field.is_empty()),
            Err(FormatError::UnknownArchitecture { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {e}"),
        }
    }
}
