//! Every way a Hugging Face folder can be wrong gives a typed error whose message names the file and the field or
//! tensor.

mod hf_support;

use std::path::{Path, PathBuf};

use engram_formats::hf::{HfWeights, parse_config, read_config, write_hf_folder};
use engram_formats::{Architecture, FormatError, ModelConfig, TensorF32, WeightSource};
use hf_support::{Raw, tiny_config, tiny_tensors, write_index, write_safetensors};
use safetensors::Dtype;
use serde_json::{Value, json};

/// A valid llama config (SmolLM2-135M's shape, transformers-4 style) to break one field at a time.
fn base() -> Value {
    json!({
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 49152,
        "hidden_size": 576,
        "intermediate_size": 1536,
        "num_hidden_layers": 30,
        "num_attention_heads": 9,
        "num_key_value_heads": 3,
        "head_dim": 64,
        "hidden_act": "silu",
        "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0,
        "max_position_embeddings": 8192,
        "tie_word_embeddings": true,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 2
    })
}

fn config_path() -> PathBuf {
    Path::new("models").join("smol").join("config.json")
}

fn parse(v: &Value) -> Result<ModelConfig, FormatError> {
    parse_config(&config_path(), &v.to_string())
}

/// Sets (or, with `None`, removes) one field of the base config.
fn with(field: &str, value: Option<Value>) -> Value {
    let mut v = base();
    let obj = v.as_object_mut().unwrap();
    match value {
        Some(x) => obj.insert(field.to_string(), x),
        None => obj.remove(field),
    };
    v
}

/// Expects `BadConfig` about `field` whose message contains `needle`, naming config.json in its Display.
#[track_caller]
fn expect_bad(result: Result<ModelConfig, FormatError>, field: &str, needle: &str) {
    let err = result.expect_err("should fail");
    let shown = err.to_string();
    match &err {
        FormatError::BadConfig {
            path,
            field: f,
            message,
        } => {
            assert_eq!(path, &config_path(), "{shown}");
            assert_eq!(f, field, "{shown}");
            assert!(message.contains(needle), "{shown:?} lacks {needle:?}");
        }
        other => panic!("expected BadConfig about `{field}`, got {other:?}"),
    }
    assert!(shown.contains("config.json"), "{shown}");
    assert!(shown.contains(field), "{shown}");
}

#[test]
fn base_config_is_valid() {
    let c = parse(&base()).unwrap();
    assert_eq!((c.hidden_size, c.head_dim), (576, 64));
}

#[test]
fn missing_config_json() {
    let dir = tempfile::tempdir().unwrap();
    let err = HfWeights::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, FormatError::Io { path, source } if path.ends_with("config.json") && source.kind() == std::io::ErrorKind::NotFound),
        "{err:?}"
    );
    assert!(err.to_string().contains("config.json"), "{err}");
    let err = read_config(dir.path().join("config.json")).unwrap_err();
    assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
}

#[test]
fn invalid_json_reports_line_and_column() {
    let text = "{\n  \"hidden_size\": 576,\n  \"vocab_size\": 49152,,\n}";
    let err = parse_config(&config_path(), text).unwrap_err();
    let shown = err.to_string();
    assert!(
        matches!(&err, FormatError::Json { path, .. } if *path == config_path()),
        "{err:?}"
    );
    assert!(shown.contains("config.json"), "{shown}");
    assert!(shown.contains("line 3 column"), "{shown}");

    let err = parse_config(&config_path(), "").unwrap_err();
    assert!(matches!(err, FormatError::Json { .. }), "{err:?}");
    expect_bad(parse(&json!([1, 2])), "(top level)", "JSON object");
}

#[test]
fn missing_required_fields() {
    for field in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
    ] {
        expect_bad(parse(&with(field, None)), field, "missing required field");
        // `null` is as good as absent.
        expect_bad(
            parse(&with(field, Some(Value::Null))),
            field,
            "missing required field",
        );
    }
    let mut v = base();
    v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "original_max_position_embeddings": 8192});
    expect_bad(
        parse(&v),
        "rope_scaling.high_freq_factor",
        "missing required field",
    );
}

#[test]
fn fields_of_the_wrong_type() {
    let cases: &[(&str, Value, &str)] = &[
        (
            "hidden_size",
            json!("576"),
            "expected a positive integer, found string \"576\"",
        ),
        ("num_hidden_layers", json!(true), "found boolean true"),
        ("vocab_size", json!([49152]), "found an array"),
        ("intermediate_size", json!(1536.5), "found number 1536.5"),
        ("head_dim", json!({"x": 1}), "found an object"),
        ("rms_norm_eps", json!("1e-5"), "expected a number"),
        ("rope_theta", json!(false), "expected a number"),
        (
            "tie_word_embeddings",
            json!("true"),
            "expected true or false",
        ),
        ("hidden_act", json!(1), "expected a string"),
        ("eos_token_id", json!("2"), "expected a token id"),
        ("bos_token_id", json!(1.5), "expected a token id"),
        ("pad_token_id", json!([2]), "expected a token id"),
        (
            "architectures",
            json!("LlamaForCausalLM"),
            "expected a list of strings",
        ),
        ("rope_scaling", json!("llama3"), "expected an object"),
        ("rope_parameters", json!(100000.0), "expected an object"),
        ("model_type", json!(7), "expected a string"),
    ];
    for (field, value, needle) in cases {
        let mut v = with(field, Some(value.clone()));
        if *field == "model_type" {
            v.as_object_mut().unwrap().remove("architectures");
        }
        expect_bad(parse(&v), field, needle);
    }
    expect_bad(
        parse(&with("eos_token_id", Some(json!([2, "3"])))),
        "eos_token_id[1]",
        "expected a token id",
    );
    expect_bad(
        parse(&with("architectures", Some(json!([3])))),
        "architectures",
        "expected a list of strings",
    );
}

#[test]
fn zero_and_negative_sizes() {
    for field in [
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
        "head_dim",
        "max_position_embeddings",
    ] {
        expect_bad(
            parse(&with(field, Some(json!(0)))),
            field,
            "must be positive, found 0",
        );
        expect_bad(
            parse(&with(field, Some(json!(-3)))),
            field,
            "must be positive, found -3",
        );
    }
    expect_bad(
        parse(&with("hidden_size", Some(json!(-576.0)))),
        "hidden_size",
        "must be positive",
    );
    for field in ["rms_norm_eps", "rope_theta"] {
        expect_bad(
            parse(&with(field, Some(json!(0.0)))),
            field,
            "must be positive",
        );
        expect_bad(
            parse(&with(field, Some(json!(-1e-5)))),
            field,
            "must be positive",
        );
    }
    expect_bad(
        parse(&with("bos_token_id", Some(json!(-1)))),
        "bos_token_id",
        "cannot be negative",
    );
    expect_bad(
        parse(&with("eos_token_id", Some(json!(5_000_000_000u64)))),
        "eos_token_id",
        "does not fit",
    );
}

#[test]
fn heads_must_divide_hidden_when_head_dim_is_absent() {
    let mut v = with("head_dim", None);
    v["hidden_size"] = json!(577);
    expect_bad(
        parse(&v),
        "head_dim",
        "hidden_size (577) is not divisible by num_attention_heads (9)",
    );
    // With head_dim given, hidden need not be heads * head_dim (transformers allows it).
    let mut v = base();
    v["hidden_size"] = json!(577);
    assert_eq!(parse(&v).unwrap().head_dim, 64);
}

#[test]
fn heads_must_be_a_multiple_of_kv_heads() {
    expect_bad(
        parse(&with("num_key_value_heads", Some(json!(4)))),
        "num_key_value_heads",
        "num_attention_heads (9) is not a multiple of num_key_value_heads (4)",
    );
}

#[test]
fn unknown_architectures() {
    for (v, name) in [
        (
            with("architectures", Some(json!(["MistralForCausalLM"]))),
            "MistralForCausalLM",
        ),
        (
            {
                let mut v = with("architectures", None);
                v["model_type"] = json!("gpt2");
                v
            },
            "gpt2",
        ),
    ] {
        let err = parse(&v).unwrap_err();
        let shown = err.to_string();
        assert!(
            matches!(&err, FormatError::UnknownArchitecture { name: n, path } if n == name && *path == config_path()),
            "{err:?}"
        );
        assert!(
            shown.contains("config.json") && shown.contains(name),
            "{shown}"
        );
    }
    let mut v = with("architectures", None);
    v.as_object_mut().unwrap().remove("model_type");
    expect_bad(parse(&v), "architectures", "cannot tell");
}

#[test]
fn unsupported_rope() {
    let mut v = base();
    v["rope_scaling"] =
        json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768});
    expect_bad(
        parse(&v),
        "rope_scaling.rope_type",
        "RoPE type `yarn` is not supported",
    );

    let mut v = base();
    v["rope_scaling"] = json!({"type": "linear", "factor": 2.0});
    expect_bad(
        parse(&v),
        "rope_scaling.type",
        "RoPE type `linear` is not supported",
    );

    let mut v = base();
    v["rope_parameters"] = json!({"rope_type": "dynamic", "rope_theta": 100000.0, "factor": 2.0});
    expect_bad(parse(&v), "rope_parameters.rope_type", "`dynamic`");

    let mut v = base();
    v["rope_scaling"] = json!({"rope_type": "llama3", "factor": -8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    expect_bad(parse(&v), "rope_scaling.factor", "must be positive");

    let mut v = base();
    v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 10000.0});
    expect_bad(
        parse(&v),
        "rope_theta",
        "disagrees with rope_parameters.rope_theta",
    );

    let mut v = base();
    v["rope_parameters"] = json!({"rope_type": "default", "rope_theta": 100000.0});
    v["rope_scaling"] = json!({"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                               "high_freq_factor": 4.0, "original_max_position_embeddings": 8192});
    expect_bad(parse(&v), "rope_scaling", "disagrees with rope_parameters");
}

#[test]
fn features_engram_cannot_run() {
    expect_bad(
        parse(&with("hidden_act", Some(json!("gelu")))),
        "hidden_act",
        "`gelu` is not supported",
    );
    expect_bad(
        parse(&with("mlp_bias", Some(json!(true)))),
        "mlp_bias",
        "not supported",
    );
    expect_bad(
        parse(&with("attention_bias", Some(json!(true)))),
        "attention_bias",
        "o_proj",
    );
    let mut v = with("architectures", Some(json!(["Qwen2ForCausalLM"])));
    v["use_sliding_window"] = json!(true);
    expect_bad(parse(&v), "use_sliding_window", "not supported");
}

/// A folder with a valid config.json (tiny llama) and nothing else.
fn folder_with_config() -> (tempfile::TempDir, ModelConfig) {
    let config = tiny_config(Architecture::Llama);
    let dir = tempfile::tempdir().unwrap();
    hf_support::write_config_only(dir.path(), &config);
    (dir, config)
}

#[test]
fn no_weights_in_the_folder() {
    let (dir, _) = folder_with_config();
    let err = HfWeights::open(dir.path()).unwrap_err();
    assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("model.safetensors") && shown.contains("model.safetensors.index.json"),
        "{shown}"
    );
}

#[test]
fn index_naming_a_missing_shard() {
    let (dir, config) = folder_with_config();
    let tensors = tiny_tensors(&config, 1);
    let raw: Vec<(String, Raw)> = tensors[..3]
        .iter()
        .map(|(n, t)| (n.clone(), Raw::f32(t)))
        .collect();
    write_safetensors(&dir.path().join("model-00001-of-00002.safetensors"), &raw);
    write_index(
        dir.path(),
        &[
            (&tensors[0].0, "model-00001-of-00002.safetensors"),
            ("model.norm.weight", "model-00002-of-00002.safetensors"),
        ],
    );
    let err = HfWeights::open(dir.path()).unwrap_err();
    let shown = err.to_string();
    match &err {
        FormatError::MissingShard {
            index,
            shard,
            tensor,
        } => {
            assert_eq!(index, &dir.path().join("model.safetensors.index.json"));
            assert_eq!(shard, "model-00002-of-00002.safetensors");
            assert_eq!(tensor, "model.norm.weight");
        }
        other => panic!("expected MissingShard, got {other:?}"),
    }
    for needle in [
        "model.safetensors.index.json",
        "model-00002-of-00002.safetensors",
        "model.norm.weight",
    ] {
        assert!(shown.contains(needle), "{shown}");
    }
}

#[test]
fn index_listing_a_tensor_its_shard_lacks() {
    let (dir, config) = folder_with_config();
    let tensors = tiny_tensors(&config, 2);
    let raw: Vec<(String, Raw)> = tensors[..2]
        .iter()
        .map(|(n, t)| (n.clone(), Raw::f32(t)))
        .collect();
    let shard = dir.path().join("model-00001-of-00001.safetensors");
    write_safetensors(&shard, &raw);
    write_index(
        dir.path(),
        &[
            (&tensors[0].0, "model-00001-of-00001.safetensors"),
            (&tensors[1].0, "model-00001-of-00001.safetensors"),
            ("lm_head.weight", "model-00001-of-00001.safetensors"),
        ],
    );
    let err = HfWeights::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, FormatError::MissingTensor { path, tensor } if *path == shard && tensor == "lm_head.weight"),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("model-00001-of-00001.safetensors") && shown.contains("lm_head.weight"),
        "{shown}"
    );
}

#[test]
fn malformed_index() {
    let (dir, _) = folder_with_config();
    let index = dir.path().join("model.safetensors.index.json");
    let check = |text: &str, what: &dyn Fn(&FormatError) -> bool, needle: &str| {
        std::fs::write(&index, text).unwrap();
        let err = HfWeights::open(dir.path()).unwrap_err();
        assert!(what(&err), "{err:?}");
        let shown = err.to_string();
        assert!(shown.contains("model.safetensors.index.json"), "{shown}");
        assert!(shown.contains(needle), "{shown} lacks {needle}");
    };
    check(
        "{\"weight_map\": {\n\"a\": }",
        &|e| matches!(e, FormatError::Json { .. }),
        "line 2 column",
    );
    check(
        "{\"metadata\": {}}",
        &|e| matches!(e, FormatError::BadConfig { field, .. } if field == "weight_map"),
        "missing",
    );
    check(
        "{\"weight_map\": []}",
        &|e| matches!(e, FormatError::BadConfig { field, .. } if field == "weight_map"),
        "expected an object",
    );
    check(
        "{\"weight_map\": {\"model.norm.weight\": 3}}",
        &|e| matches!(e, FormatError::BadConfig { field, .. } if field == "weight_map.model.norm.weight"),
        "expected a shard file name",
    );
    check(
        "{\"weight_map\": {\"model.norm.weight\": \"../elsewhere.safetensors\"}}",
        &|e| matches!(e, FormatError::BadConfig { .. }),
        "../elsewhere.safetensors",
    );
    check(
        "{\"weight_map\": {\"model.norm.weight\": \"/etc/passwd\"}}",
        &|e| matches!(e, FormatError::BadConfig { .. }),
        "is not a file name in the model folder",
    );
}

/// Writes a valid single-file model and returns its folder and the safetensors bytes.
fn written_model() -> (tempfile::TempDir, Vec<u8>) {
    let config = tiny_config(Architecture::Llama);
    let dir = tempfile::tempdir().unwrap();
    let mut it = tiny_tensors(&config, 7).into_iter().map(Ok);
    write_hf_folder(dir.path(), &config, &mut it).unwrap();
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    (dir, bytes)
}

#[test]
fn truncated_safetensors() {
    let (dir, bytes) = written_model();
    let file = dir.path().join("model.safetensors");
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    for len in [
        bytes.len() - 10,
        8 + header_len + 3,
        8 + header_len / 2,
        5,
        0,
    ] {
        std::fs::write(&file, &bytes[..len]).unwrap();
        let err = HfWeights::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, FormatError::Safetensors { path, .. } if *path == file),
            "cut to {len} bytes: {err:?}"
        );
        let shown = err.to_string();
        assert!(shown.contains("model.safetensors"), "{shown}");
        assert!(
            std::error::Error::source(&err).is_some(),
            "safetensors' error is kept as the source"
        );
    }
}

#[test]
fn truncated_shard_names_the_shard() {
    let (dir, bytes) = written_model();
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let shard = dir.path().join("model-00001-of-00001.safetensors");
    std::fs::write(&shard, &bytes[..bytes.len() - 1]).unwrap();
    write_index(
        dir.path(),
        &[("model.norm.weight", "model-00001-of-00001.safetensors")],
    );
    let err = HfWeights::open(dir.path()).unwrap_err();
    assert!(
        matches!(&err, FormatError::Safetensors { path, .. } if *path == shard),
        "{err:?}"
    );
    assert!(err.to_string().contains("model-00001-of-00001.safetensors"));
}

#[test]
fn unsupported_tensor_types() {
    let (dir, _) = folder_with_config();
    let file = dir.path().join("model.safetensors");
    let f32 = TensorF32::new(vec![2], vec![1.0, 2.0]).unwrap();
    write_safetensors(
        &file,
        &[
            (
                "model.position_ids".to_string(),
                Raw {
                    dtype: Dtype::I64,
                    shape: vec![2],
                    bytes: [0i64, 1].iter().flat_map(|x| x.to_le_bytes()).collect(),
                },
            ),
            (
                "model.layers.0.mlp.up_proj.weight".to_string(),
                Raw {
                    dtype: Dtype::F8_E4M3,
                    shape: vec![2, 2],
                    bytes: vec![0x38, 0x40, 0xB8, 0x00],
                },
            ),
            ("model.norm.weight".to_string(), Raw::f32(&f32)),
        ],
    );
    // Opening succeeds: a tensor of another type is only an error when it is read.
    let w = HfWeights::open(dir.path()).unwrap();
    assert_eq!(w.tensor("model.norm.weight").unwrap(), f32);
    for (tensor, ty) in [
        ("model.position_ids", "I64"),
        ("model.layers.0.mlp.up_proj.weight", "F8_E4M3"),
    ] {
        assert_eq!(w.stored_dtype(tensor).as_deref(), Some(ty));
        let err = w.tensor(tensor).unwrap_err();
        assert!(
            matches!(&err, FormatError::UnsupportedTensorType { path, tensor: t, ty: found }
                if *path == file && t == tensor && found == ty),
            "{err:?}"
        );
        let shown = err.to_string();
        assert!(
            shown.contains("model.safetensors") && shown.contains(tensor) && shown.contains(ty),
            "{shown}"
        );
    }
}

#[test]
fn asking_for_an_absent_tensor() {
    let (dir, _) = written_model();
    let w = HfWeights::open(dir.path()).unwrap();
    let err = w.tensor("model.layers.9.mlp.up_proj.weight").unwrap_err();
    assert!(matches!(err, FormatError::MissingTensor { .. }), "{err:?}");
    let shown = err.to_string();
    assert!(
        shown.contains("model.safetensors") && shown.contains("model.layers.9.mlp.up_proj.weight"),
        "{shown}"
    );
}

#[test]
fn writing_an_invalid_config_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("out");
    let cases: Vec<(ModelConfig, &str)> = vec![
        (
            ModelConfig {
                num_attention_heads: 0,
                ..tiny_config(Architecture::Llama)
            },
            "num_attention_heads",
        ),
        (
            ModelConfig {
                num_key_value_heads: 3,
                ..tiny_config(Architecture::Llama)
            },
            "num_key_value_heads",
        ),
        (
            ModelConfig {
                rms_norm_eps: f64::NAN,
                ..tiny_config(Architecture::Llama)
            },
            "rms_norm_eps",
        ),
        (
            ModelConfig {
                attention_bias: true,
                ..tiny_config(Architecture::Llama)
            },
            "attention_bias",
        ),
        (
            ModelConfig {
                attention_bias: false,
                ..tiny_config(Architecture::Qwen2)
            },
            "attention_bias",
        ),
    ];
    for (config, field) in cases {
        let mut it = tiny_tensors(&tiny_config(Architecture::Llama), 1)
            .into_iter()
            .map(Ok);
        let err = write_hf_folder(&folder, &config, &mut it).unwrap_err();
        assert!(
            matches!(&err, FormatError::BadConfig { field: f, .. } if f == field),
            "{err:?}"
        );
        let shown = err.to_string();
        assert!(
            shown.contains("config.json") && shown.contains(field),
            "{shown}"
        );
        assert!(!folder.exists(), "nothing is written for an invalid config");
    }
}

#[test]
fn writing_bad_tensors() {
    let config = tiny_config(Architecture::Llama);
    let dir = tempfile::tempdir().unwrap();
    let bad_shape = TensorF32 {
        shape: vec![4, 4],
        data: vec![0.0; 15],
    };
    let mut it = [Ok(("model.norm.weight".to_string(), bad_shape))].into_iter();
    let err = write_hf_folder(dir.path(), &config, &mut it).unwrap_err();
    assert!(
        matches!(
            err,
            FormatError::ShapeMismatch {
                expected: 16,
                found: 15,
                ..
            }
        ),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(
        shown.contains("model.safetensors") && shown.contains("model.norm.weight"),
        "{shown}"
    );

    let t = TensorF32::new(vec![1], vec![1.0]).unwrap();
    let mut it = [
        Ok(("model.norm.weight".to_string(), t.clone())),
        Ok(("model.norm.weight".to_string(), t)),
    ]
    .into_iter();
    let err = write_hf_folder(dir.path(), &config, &mut it).unwrap_err();
    assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
    assert!(err.to_string().contains("model.norm.weight"), "{err}");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn writing_into_a_path_that_is_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-folder");
    std::fs::write(&file, "x").unwrap();
    let config = tiny_config(Architecture::Llama);
    let err = write_hf_folder(&file, &config, &mut std::iter::empty()).unwrap_err();
    assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-folder"), "{err}");
}
