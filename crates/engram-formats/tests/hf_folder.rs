//! Hugging Face folders end to end: write a tiny random model, read it back (single file and sharded), F16/BF16
//! conversion, and the writer's atomicity.

mod hf_support;

use std::collections::BTreeMap;
use std::path::Path;

use engram_formats::hf::{HfWeights, is_hf_folder, read_config, write_hf_folder};
use engram_formats::{Architecture, FormatError, ModelConfig, TensorF32, WeightSource};
use hf_support::{Raw, assert_same, tiny_config, tiny_tensors, write_index, write_safetensors};
use safetensors::Dtype;

fn write(dir: &Path, config: &ModelConfig, tensors: &[(String, TensorF32)]) {
    let mut it = tensors.iter().cloned().map(Ok);
    write_hf_folder(dir, config, &mut it).unwrap();
}

fn assert_holds(w: &HfWeights, tensors: &[(String, TensorF32)]) {
    let mut want: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    want.sort_unstable();
    assert_eq!(w.tensor_names(), want, "tensor names, sorted");
    for (name, t) in tensors {
        assert_same(name, &w.tensor(name).unwrap(), t);
    }
}

#[test]
fn round_trip_llama_and_qwen2() {
    for (architecture, tie) in [
        (Architecture::Llama, false),
        (Architecture::Llama, true),
        (Architecture::Qwen2, true),
        (Architecture::Qwen2, false),
    ] {
        let mut config = tiny_config(architecture);
        config.tie_word_embeddings = tie;
        let tensors = tiny_tensors(&config, 42);
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("model");
        write(&folder, &config, &tensors);

        assert!(is_hf_folder(&folder));
        let w = HfWeights::open(&folder).unwrap();
        assert_eq!(w.config(), &config);
        assert_eq!(w.dir(), folder);
        assert_eq!(WeightSource::path(&w), folder);
        assert_holds(&w, &tensors);
        // The same files held in memory read the same (the fuzz targets parse this way).
        let in_memory = HfWeights::from_bytes(
            "in-memory",
            &std::fs::read_to_string(folder.join("config.json")).unwrap(),
            std::fs::read(folder.join("model.safetensors")).unwrap(),
        )
        .unwrap();
        assert_eq!(in_memory.config(), &config);
        assert_holds(&in_memory, &tensors);
        assert_eq!(
            w.stored_dtype("model.embed_tokens.weight").as_deref(),
            Some("F32")
        );
        assert_eq!(w.stored_dtype("no.such.tensor"), None);
        assert_eq!(w.tokenizer_path(), None);
        let n: usize = tensors.iter().map(|(_, t)| t.numel()).sum();
        assert_eq!(n, config.parameter_count(), "{architecture:?} tie={tie}");
        #[cfg(unix)]
        for file in ["model.safetensors", "config.json"] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(folder.join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o044, 0o044, "{file} is readable by all: {mode:o}");
        }

        // Exactly the three files, nothing staged left behind.
        let mut files: Vec<String> = std::fs::read_dir(&folder)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        files.sort();
        assert_eq!(
            files,
            ["config.json", "generation_config.json", "model.safetensors"]
        );
    }
}

#[test]
fn written_safetensors_is_what_transformers_expects() {
    let config = tiny_config(Architecture::Llama);
    let tensors = tiny_tensors(&config, 1);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &tensors);
    let bytes = std::fs::read(dir.path().join("model.safetensors")).unwrap();
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    assert_eq!(
        metadata.metadata().as_ref().and_then(|m| m.get("format")),
        Some(&"pt".to_string()),
        "transformers refuses safetensors without format metadata"
    );
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (name, t) in &tensors {
        let view = st.tensor(name).unwrap();
        assert_eq!(view.dtype(), Dtype::F32);
        assert_eq!(view.shape(), t.shape.as_slice());
    }
}

#[test]
fn tokenizer_path_when_present() {
    let config = tiny_config(Architecture::Llama);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &tiny_tensors(&config, 3));
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    let w = HfWeights::open(dir.path()).unwrap();
    assert_eq!(w.tokenizer_path(), Some(dir.path().join("tokenizer.json")));
}

#[test]
fn sharded_folder_loads_the_same_tensors() {
    let config = tiny_config(Architecture::Qwen2);
    let tensors = tiny_tensors(&config, 9);

    let single = tempfile::tempdir().unwrap();
    write(single.path(), &config, &tensors);

    // Same config, tensors split over two shards by hand, as transformers' save_pretrained(max_shard_size) does.
    let sharded = tempfile::tempdir().unwrap();
    std::fs::copy(
        single.path().join("config.json"),
        sharded.path().join("config.json"),
    )
    .unwrap();
    let (first, second) = tensors.split_at(tensors.len() / 2);
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut weight_map = Vec::new();
    for (part, file) in [first, second].into_iter().zip(names) {
        let raw: Vec<(String, Raw)> = part.iter().map(|(n, t)| (n.clone(), Raw::f32(t))).collect();
        write_safetensors(&sharded.path().join(file), &raw);
        weight_map.extend(part.iter().map(|(n, _)| (n.as_str(), file)));
    }
    write_index(sharded.path(), &weight_map);

    assert!(is_hf_folder(sharded.path()));
    let a = HfWeights::open(single.path()).unwrap();
    let b = HfWeights::open(sharded.path()).unwrap();
    assert_eq!(a.config(), b.config());
    assert_eq!(a.tensor_names(), b.tensor_names());
    assert_holds(&b, &tensors);
}

#[test]
fn index_lists_only_the_tensors_it_maps() {
    // A shard may hold tensors the index does not list (transformers ignores them); they are not served.
    let config = tiny_config(Architecture::Llama);
    let tensors = tiny_tensors(&config, 4);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &[]);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let raw: Vec<(String, Raw)> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), Raw::f32(t)))
        .collect();
    write_safetensors(&dir.path().join("shard.safetensors"), &raw);
    write_index(dir.path(), &[("model.norm.weight", "shard.safetensors")]);
    let w = HfWeights::open(dir.path()).unwrap();
    assert_eq!(w.tensor_names(), ["model.norm.weight"]);
    assert!(matches!(
        w.tensor("lm_head.weight"),
        Err(FormatError::MissingTensor { .. })
    ));
}

/// Every 16-bit pattern, stored as F16 and as BF16, converts exactly as the `half` crate defines it.
#[test]
fn f16_and_bf16_convert_exactly() {
    let bits: Vec<u16> = (0..=u16::MAX).collect();
    let bytes: Vec<u8> = bits.iter().flat_map(|b| b.to_le_bytes()).collect();
    let config = tiny_config(Architecture::Llama);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &[]);
    let raw = |dtype| Raw {
        dtype,
        shape: vec![256, 256],
        bytes: bytes.clone(),
    };
    write_safetensors(
        &dir.path().join("model.safetensors"),
        &[
            ("all.f16".to_string(), raw(Dtype::F16)),
            ("all.bf16".to_string(), raw(Dtype::BF16)),
        ],
    );
    let w = HfWeights::open(dir.path()).unwrap();
    assert_eq!(w.stored_dtype("all.f16").as_deref(), Some("F16"));
    assert_eq!(w.stored_dtype("all.bf16").as_deref(), Some("BF16"));

    let f16 = w.tensor("all.f16").unwrap();
    let bf16 = w.tensor("all.bf16").unwrap();
    assert_eq!(f16.shape, [256, 256]);
    assert_eq!(bf16.shape, [256, 256]);
    for (i, &b) in bits.iter().enumerate() {
        let want = half::f16::from_bits(b).to_f32();
        let got = f16.data[i];
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "f16 {b:#06x}: {got} vs {want}"
        );
        let want = half::bf16::from_bits(b).to_f32();
        let got = bf16.data[i];
        assert!(
            got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
            "bf16 {b:#06x}: {got} vs {want}"
        );
    }
    // Spot checks independent of `half`.
    let at = |b: u16| usize::from(b);
    assert_eq!(f16.data[at(0x3C00)], 1.0);
    assert_eq!(f16.data[at(0xC000)], -2.0);
    assert_eq!(f16.data[at(0x7BFF)], 65504.0);
    assert_eq!(f16.data[at(0x0001)], 2f32.powi(-24));
    assert_eq!(bf16.data[at(0x3F80)], 1.0);
    assert_eq!(bf16.data[at(0x4049)], 3.140625);
    assert_eq!(bf16.data[at(0x7F80)], f32::INFINITY);
}

/// A big tensor goes through the parallel conversion path; every element must land in its place.
#[test]
fn large_bf16_tensor_in_a_shard_next_to_f32() {
    let config = tiny_config(Architecture::Llama);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &[]);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let n = 300_001;
    let want: Vec<f32> = (0..n).map(|i| (i as f32 - 150_000.0).trunc()).collect();
    let bf16: Vec<u8> = want
        .iter()
        .flat_map(|x| half::bf16::from_f32(*x).to_le_bytes())
        .collect();
    let small = TensorF32::new(vec![3], vec![0.5, -0.25, 8.0]).unwrap();
    write_safetensors(
        &dir.path().join("model-00001-of-00001.safetensors"),
        &[
            (
                "big".to_string(),
                Raw {
                    dtype: Dtype::BF16,
                    shape: vec![n],
                    bytes: bf16,
                },
            ),
            ("small".to_string(), Raw::f32(&small)),
        ],
    );
    write_index(
        dir.path(),
        &[
            ("big", "model-00001-of-00001.safetensors"),
            ("small", "model-00001-of-00001.safetensors"),
        ],
    );
    let w = HfWeights::open(dir.path()).unwrap();
    let got = w.tensor("big").unwrap();
    let want: Vec<f32> = want
        .iter()
        .map(|x| half::bf16::from_f32(*x).to_f32())
        .collect();
    assert_eq!(got.data, want);
    assert_same("small", &w.tensor("small").unwrap(), &small);
}

#[test]
fn single_file_is_preferred_over_an_index() {
    // As transformers does: model.safetensors wins when both exist.
    let config = tiny_config(Architecture::Llama);
    let tensors = tiny_tensors(&config, 5);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &tensors);
    write_index(dir.path(), &[("x", "missing.safetensors")]);
    let w = HfWeights::open(dir.path()).unwrap();
    assert_holds(&w, &tensors);
}

/// An iterator that yields `good` tensors and then an error.
fn failing_after(
    tensors: &[(String, TensorF32)],
    good: usize,
) -> impl Iterator<Item = Result<(String, TensorF32), FormatError>> + '_ {
    tensors
        .iter()
        .take(good)
        .cloned()
        .map(Ok)
        .chain(std::iter::once(Err(FormatError::MissingTensor {
            path: "source.gguf".into(),
            tensor: "blk.1.ffn_down.weight".into(),
        })))
}

fn folder_contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

#[test]
fn failed_write_leaves_the_previous_model_intact() {
    let old_config = tiny_config(Architecture::Llama);
    let old = tiny_tensors(&old_config, 10);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &old_config, &old);
    let before = folder_contents(dir.path());

    let mut new_config = tiny_config(Architecture::Qwen2);
    new_config.num_hidden_layers = 3;
    let new = tiny_tensors(&new_config, 11);
    for good in [0, 1, new.len() / 2, new.len()] {
        let err =
            write_hf_folder(dir.path(), &new_config, &mut failing_after(&new, good)).unwrap_err();
        assert!(
            err.to_string().contains("blk.1.ffn_down.weight"),
            "the iterator's error comes back: {err}"
        );
        assert_eq!(
            folder_contents(dir.path()),
            before,
            "after an error at tensor {good}"
        );
    }
    let w = HfWeights::open(dir.path()).unwrap();
    assert_eq!(w.config(), &old_config);
    assert_holds(&w, &old);

    // A valid write over it then replaces everything.
    write(dir.path(), &new_config, &new);
    let w = HfWeights::open(dir.path()).unwrap();
    assert_eq!(w.config(), &new_config);
    assert_holds(&w, &new);
}

#[test]
fn open_weights_survive_the_folder_being_rewritten() {
    // The writer renames new files into place, so a reader's memory map still sees the old file.
    let config = tiny_config(Architecture::Llama);
    let old = tiny_tensors(&config, 20);
    let new = tiny_tensors(&config, 21);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &old);
    let reader = HfWeights::open(dir.path()).unwrap();
    write(dir.path(), &config, &new);
    assert_holds(&reader, &old);
    assert_holds(&HfWeights::open(dir.path()).unwrap(), &new);
}

#[test]
fn rewriting_a_folder_in_place_from_its_own_weights() {
    let config = tiny_config(Architecture::Llama);
    let tensors = tiny_tensors(&config, 30);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &tensors);
    let source = HfWeights::open(dir.path()).unwrap();
    let mut it = source
        .tensor_names()
        .into_iter()
        .map(|n| source.tensor(&n).map(|t| (n, t)));
    write_hf_folder(dir.path(), source.config(), &mut it).unwrap();
    assert_holds(&HfWeights::open(dir.path()).unwrap(), &tensors);
}

#[test]
fn writing_over_a_sharded_folder_removes_the_stale_shards() {
    let config = tiny_config(Architecture::Llama);
    let old = tiny_tensors(&config, 40);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &[]);
    std::fs::remove_file(dir.path().join("model.safetensors")).unwrap();
    let raw: Vec<(String, Raw)> = old.iter().map(|(n, t)| (n.clone(), Raw::f32(t))).collect();
    let shard = "model-00001-of-00001.safetensors";
    write_safetensors(&dir.path().join(shard), &raw);
    let map: Vec<(&str, &str)> = old.iter().map(|(n, _)| (n.as_str(), shard)).collect();
    write_index(dir.path(), &map);
    std::fs::write(dir.path().join("tokenizer.json"), "{}").unwrap();
    assert_holds(&HfWeights::open(dir.path()).unwrap(), &old);

    let new = tiny_tensors(&config, 41);
    write(dir.path(), &config, &new);
    let files: Vec<String> = folder_contents(dir.path()).into_keys().collect();
    assert_eq!(
        files,
        [
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "tokenizer.json"
        ],
        "the index and its shard are gone, other files kept"
    );
    assert_holds(&HfWeights::open(dir.path()).unwrap(), &new);
}

#[test]
fn is_hf_folder_needs_config_and_weights() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    assert!(!is_hf_folder(p));
    assert!(!is_hf_folder(&p.join("absent")));
    std::fs::write(p.join("config.json"), "{}").unwrap();
    assert!(!is_hf_folder(p));
    std::fs::write(p.join("model.safetensors.index.json"), "{}").unwrap();
    assert!(is_hf_folder(p));
    assert!(
        !is_hf_folder(&p.join("config.json")),
        "a file is not a folder"
    );
}

#[test]
fn generation_config_carries_the_token_ids() {
    let mut config = tiny_config(Architecture::Llama);
    config.eos_token_ids = vec![2, 7];
    config.pad_token_id = Some(0);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), &config, &[]);
    let g: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("generation_config.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(g["bos_token_id"], 1);
    assert_eq!(g["eos_token_id"], serde_json::json!([2, 7]));
    assert_eq!(g["pad_token_id"], 0);
    assert_eq!(read_config(dir.path().join("config.json")).unwrap(), config);
}
