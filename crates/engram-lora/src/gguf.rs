//! llama.cpp's LoRA adapter format: a PEFT adapter written as a GGUF file that llama.cpp, Ollama (`ADAPTER`),
//! llama-server (`--lora`) and LM Studio load beside the base model's GGUF, and such files read back.
//!
//! The format, as llama.cpp's `convert_lora_to_gguf.py` writes it and `llama_adapter_lora_init` reads it:
//! - metadata `general.type = "adapter"`, `adapter.type = "lora"`, `adapter.lora.alpha` (f32) and the base
//!   model's `general.architecture`;
//! - for each adapted linear layer, `blk.N.<tensor>.weight.lora_a` `[r, in]` and `.lora_b` `[out, r]` (PyTorch
//!   order; PEFT's `lora_A` and `lora_B` as they are);
//! - llama.cpp scales the update by `alpha / r`, with r read from the tensors, so rsLoRA's `alpha / sqrt(r)` is
//!   written as the alpha that gives the same scale;
//! - for llama models the rows of q and k are stored permuted for llama.cpp's interleaved RoPE, so the rows of
//!   their `lora_b` are permuted the same way (the update `B·A` then matches the permuted weight).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use engram_model::formats::gguf::{
    GgmlType, GgufFile, MetaValue, TensorSpec, encode, gguf_name, hf_name, permute_qk_rows,
    qk_heads, unpermute_qk_rows, write_gguf,
};
use engram_model::formats::{FormatError, ModelConfig, TensorF32};

use crate::adapters::{Factor, peft_key, split_module};
use crate::files::{Factors, StoredFactor, check_factors, read_peft_adapter};
use crate::{LINEAR_MODULES, LoraConfig, LoraError, TargetModules};

/// The types an exported adapter's factors can be stored as.
pub const ADAPTER_GGUF_TYPES: [GgmlType; 3] = [GgmlType::F32, GgmlType::F16, GgmlType::BF16];

/// What [`export_adapter_gguf`] wrote.
#[derive(Clone, Debug, PartialEq)]
pub struct GgufAdapterSummary {
    /// Linear layers adapted.
    pub modules: usize,
    /// The rank.
    pub r: usize,
    /// `adapter.lora.alpha` as written (`scale · r`).
    pub alpha: f32,
}

/// Each linear layer of a model of shape `config`, by Hugging Face module name, with its `[in, out]`
/// dimensions: what an adapter file is checked against before any weights are loaded.
pub fn linear_dims(config: &ModelConfig) -> BTreeMap<String, [usize; 2]> {
    let h = config.hidden_size;
    let q = config.num_attention_heads * config.head_dim;
    let kv = config.num_key_value_heads * config.head_dim;
    let i = config.intermediate_size;
    let mut dims = BTreeMap::new();
    for l in 0..config.num_hidden_layers {
        for (module, d) in [
            ("self_attn.q_proj", [h, q]),
            ("self_attn.k_proj", [h, kv]),
            ("self_attn.v_proj", [h, kv]),
            ("self_attn.o_proj", [q, h]),
            ("mlp.gate_proj", [h, i]),
            ("mlp.up_proj", [h, i]),
            ("mlp.down_proj", [i, h]),
        ] {
            dims.insert(format!("model.layers.{l}.{module}"), d);
        }
    }
    dims
}

/// Writes the PEFT adapter folder `dir` (engram's or PEFT's own) as a llama.cpp LoRA adapter at `out`, for a
/// base model of shape `model` (whose architecture the file names and whose q/k layout it follows), with the
/// factors stored as `ty` (f32, f16 or bf16). The adapter is checked against the model first, as
/// [`load_adapter`](crate::load_adapter) checks it; the file is written atomically.
pub fn export_adapter_gguf(
    dir: &Path,
    model: &ModelConfig,
    out: &Path,
    ty: GgmlType,
) -> Result<GgufAdapterSummary, LoraError> {
    if !ADAPTER_GGUF_TYPES.contains(&ty) {
        return Err(LoraError::invalid(
            "type",
            ty,
            "an adapter is written as f32, f16 or bf16",
        ));
    }
    let (config, found) = read_peft_adapter(dir, &linear_dims(model))?;

    let terr = |key: String, reason: String| LoraError::Tensor {
        path: out.to_path_buf(),
        key,
        reason,
    };
    let mut specs = Vec::with_capacity(2 * found.len());
    let mut data: Vec<TensorF32> = Vec::with_capacity(2 * found.len());
    // Layer by layer, as llama.cpp's converter orders them (a BTreeMap would put layer 10 before layer 2).
    let mut modules: Vec<(&String, &(TensorF32, TensorF32))> = found.iter().collect();
    modules.sort_by_key(|(m, _)| split_module(m).map(|(l, _)| l));
    for (module, (a, b)) in modules {
        let base = gguf_name(&format!("{module}.weight"))
            .ok_or_else(|| terr(module.clone(), "has no GGUF name".into()))?;
        // engram holds A as [in, r] and B as [r, out]; the file wants PEFT's [r, in] and [out, r].
        let a = a.transposed();
        let mut b = b.transposed();
        if let Some(heads) = qk_heads(model, &format!("{base}.lora_b")) {
            b = permute_qk_rows(&b, heads).ok_or_else(|| {
                terr(
                    peft_key(module, Factor::B),
                    format!("its rows do not split into {heads} heads"),
                )
            })?;
        }
        for (suffix, t) in [("lora_a", a), ("lora_b", b)] {
            specs.push(TensorSpec {
                name: format!("{base}.{suffix}"),
                shape: t.shape.clone(),
                ggml_type: ty,
            });
            data.push(t);
        }
    }
    let alpha = (config.scale() * config.r as f64) as f32;
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "adapter".into());
    let metadata = vec![
        (
            "general.architecture".to_string(),
            MetaValue::String(model.architecture.model_type().into()),
        ),
        ("general.type".into(), MetaValue::String("adapter".into())),
        ("general.name".into(), MetaValue::String(name)),
        ("adapter.type".into(), MetaValue::String("lora".into())),
        ("adapter.lora.alpha".into(), MetaValue::F32(alpha)),
    ];
    write_gguf(out, &metadata, &specs, &mut |i| {
        encode(&data[i].data, ty).map_err(|what| FormatError::Malformed {
            path: out.to_path_buf(),
            what: format!("tensor `{}`: {what}", specs[i].name),
        })
    })
    .map_err(|e| LoraError::Format(Box::new(e)))?;
    Ok(GgufAdapterSummary {
        modules: found.len(),
        r: config.r,
        alpha,
    })
}

/// One LoRA tensor of a GGUF adapter: the Hugging Face module it adapts and which factor it is.
fn lora_tensor(name: &str) -> Option<(String, Factor)> {
    let (base, factor) = if let Some(b) = name.strip_suffix(".lora_a") {
        (b, Factor::A)
    } else {
        (name.strip_suffix(".lora_b")?, Factor::B)
    };
    let module = hf_name(base)?.strip_suffix(".weight")?.to_string();
    Some((module, factor))
}

/// Opens a llama.cpp LoRA adapter and reads its configuration: `r` from its tensors, the alpha that gives
/// llama.cpp's scale (`adapter.lora.alpha`, or scale 1 when it is absent or 0, as llama.cpp reads it), and the
/// adapted layers as `target_modules` / `layers_to_transform`.
pub fn read_gguf_adapter_config(path: &Path) -> Result<(LoraConfig, GgufFile), LoraError> {
    let file = GgufFile::open(path).map_err(|e| LoraError::Format(Box::new(e)))?;
    let cerr = |reason: String| LoraError::Config {
        path: path.to_path_buf(),
        reason,
    };
    let key_str = |key: &str| match file.get(key) {
        Some(MetaValue::String(s)) => Ok(s.clone()),
        Some(v) => Err(cerr(format!(
            "`{key}` is a {}, not a string",
            v.type_name()
        ))),
        None => Err(cerr(format!("no `{key}` key: not a llama.cpp adapter"))),
    };
    let general = key_str("general.type")?;
    if general != "adapter" {
        return Err(cerr(format!(
            "general.type is `{general}`, not `adapter` (a model, not an adapter? use it with --model)"
        )));
    }
    let kind = key_str("adapter.type")?;
    if kind != "lora" {
        return Err(cerr(format!(
            "adapter.type is `{kind}`; engram reads LoRA adapters only"
        )));
    }
    let mut r = None;
    let mut targets = BTreeSet::new();
    let mut layers = BTreeSet::new();
    for info in file.tensors() {
        let (module, factor) = lora_tensor(&info.name).ok_or_else(|| {
            cerr(format!(
                "tensor `{}` is not a LoRA factor of a linear layer (expected blk.N.<tensor>.weight.lora_a or .lora_b)",
                info.name
            ))
        })?;
        let (layer, short) =
            split_module(&module).ok_or_else(|| cerr(format!("tensor `{}`", info.name)))?;
        if !LINEAR_MODULES.contains(&short) {
            return Err(cerr(format!(
                "tensor `{}` adapts `{short}`, which engram does not adapt",
                info.name
            )));
        }
        targets.insert(short.to_string());
        layers.insert(layer);
        if let (Factor::A, [rank, _]) = (factor, info.shape().as_slice()) {
            r.get_or_insert(*rank);
        }
    }
    let r = r.ok_or_else(|| cerr("holds no lora_a tensor".into()))?;
    let alpha = match file.get("adapter.lora.alpha") {
        None => 0.0,
        Some(MetaValue::F32(a)) => f64::from(*a),
        Some(MetaValue::F64(a)) => *a,
        Some(v) => {
            return Err(cerr(format!(
                "adapter.lora.alpha is a {}, not a float",
                v.type_name()
            )));
        }
    };
    let target_modules = if targets.len() == LINEAR_MODULES.len() {
        TargetModules::AllLinear
    } else {
        TargetModules::List(targets.into_iter().collect())
    };
    let config = LoraConfig {
        r,
        // llama.cpp: scale = alpha / r, or 1 when alpha is 0.
        lora_alpha: if alpha == 0.0 { r as f64 } else { alpha },
        lora_dropout: 0.0,
        use_rslora: false,
        target_modules,
        layers_to_transform: Some(layers.into_iter().collect()),
        base_model: None,
    };
    config.validate().map_err(|e| cerr(e.to_string()))?;
    Ok((config, file))
}

/// Reads a llama.cpp LoRA adapter for a model of shape `model`: its configuration and each module's (A, B) in
/// engram's layout, checked as a PEFT folder's are (every factor of a known module with the shape the model
/// and `r` imply, finite, both factors of every adapted layer), plus the file's architecture against the model's.
pub fn read_gguf_adapter(
    path: &Path,
    model: &ModelConfig,
) -> Result<(LoraConfig, Factors), LoraError> {
    let (mut config, file) = read_gguf_adapter_config(path)?;
    let dims = linear_dims(model);
    let arch = match file.get("general.architecture") {
        Some(MetaValue::String(s)) => s.as_str(),
        _ => "",
    };
    if arch != model.architecture.model_type() {
        return Err(LoraError::Config {
            path: path.to_path_buf(),
            reason: format!(
                "general.architecture is `{arch}`, the model is `{}`: an adapter for another model",
                model.architecture.model_type()
            ),
        });
    }
    // Every layer adapted: say so the way PEFT would (no layers_to_transform).
    if config.layers_to_transform.as_ref().is_some_and(|l| {
        l.len() == model.num_hidden_layers && l.iter().all(|&i| i < model.num_hidden_layers)
    }) {
        config.layers_to_transform = None;
    }
    let mut factors = Vec::with_capacity(file.tensors().len());
    for info in file.tensors() {
        // `read_gguf_adapter_config` accepted every name.
        let Some((module, factor)) = lora_tensor(&info.name) else {
            continue;
        };
        let values = file
            .dequantize(&info.name)
            .map_err(|e| e.to_string())
            .map(|t| {
                match qk_heads(model, &info.name) {
                    // A shape that does not split into heads is left as stored: the shape check reports it.
                    Some(heads) => unpermute_qk_rows(&t, heads).unwrap_or(t),
                    None => t,
                }
                .data
            });
        factors.push(StoredFactor {
            shown: info.name.clone(),
            key: peft_key(&module, factor),
            shape: info.shape(),
            values,
        });
    }
    let found = check_factors(path, factors, &config, &dims, &|module, factor| {
        let base = gguf_name(&format!("{module}.weight")).unwrap_or_else(|| module.to_string());
        match factor {
            Factor::A => format!("{base}.lora_a"),
            Factor::B => format!("{base}.lora_b"),
        }
    })?;
    Ok((config, found))
}
