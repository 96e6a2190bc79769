//! Writing a model out: as a Hugging Face folder (for transformers, PEFT, vLLM) or as a GGUF file laid out
//! like the one it came from (for llama.cpp, Ollama, LM Studio).

use std::path::Path;

use engram_formats::gguf::{
    ENCODABLE, GgmlType, GgufFile, MetaValue, TensorSpec, encode, hf_name, permute_qk_rows,
    qk_heads,
};
use engram_formats::hf::write_hf_folder;
use engram_formats::{FormatError, WeightSource};
use engram_tokenizer::Tokenizer;

use crate::ModelError;

/// Writes `source`'s weights (dequantised to f32, Hugging Face names and layout), config and tokenizer as a
/// Hugging Face folder at `dir` (`config.json`, `model.safetensors`, `tokenizer.json`, ...). Files are
/// written atomically.
pub fn export_hf_folder(
    source: &dyn WeightSource,
    tokenizer: &Tokenizer,
    dir: &Path,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Model {
        path: dir.to_path_buf(),
        reason: format!("cannot create the folder: {e}"),
    })?;
    let mut names = source.tensor_names();
    names.sort();
    let mut tensors = names.into_iter().map(|n| -> Result<_, FormatError> {
        let t = source.tensor(&n)?;
        Ok((n, t))
    });
    write_hf_folder(dir, source.config(), &mut tensors)?;
    tokenizer.save(dir.join("tokenizer.json"))?;
    write_tokenizer_config(tokenizer, dir)
}

/// `tokenizer_config.json`: the special tokens and the chat template, so that transformers and engram render
/// chats from the folder exactly as from the GGUF.
fn write_tokenizer_config(tokenizer: &Tokenizer, dir: &Path) -> Result<(), ModelError> {
    let token = |id: Option<u32>| id.and_then(|i| tokenizer.id_to_token(i));
    let mut config = serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": tokenizer.add_bos(),
        "bos_token": token(tokenizer.bos_id()),
        "eos_token": token(tokenizer.eos_ids().first().copied()),
        "pad_token": token(tokenizer.pad_id()),
    });
    if let Some(t) = tokenizer.chat_template() {
        config["chat_template"] = t.source().into();
    }
    let path = dir.join("tokenizer_config.json");
    let fail = |e: std::io::Error| ModelError::Model {
        path: path.clone(),
        reason: format!("cannot write: {e}"),
    };
    let mut tmp = engram_formats::staged_file(dir).map_err(fail)?;
    serde_json::to_writer_pretty(&mut tmp, &config).map_err(|e| fail(e.into()))?;
    tmp.persist(&path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// llama.cpp's `general.file_type` (`llama_ftype`) for a file whose matrices are `ty`: one for each type
/// `engram_formats::gguf::encode` writes ([`ENCODABLE`]), `None` for the rest.
fn file_type(ty: GgmlType) -> Option<u32> {
    Some(match ty {
        GgmlType::F32 => 0,
        GgmlType::F16 => 1,
        GgmlType::Q4_0 => 2,
        GgmlType::Q4_1 => 3,
        GgmlType::Q8_0 => 7,
        GgmlType::Q5_0 => 8,
        GgmlType::Q5_1 => 9,
        GgmlType::BF16 => 32,
        _ => return None,
    })
}

/// Writes `source`'s weights (a merged model, say) as a GGUF file at `path` laid out like `base`, the GGUF
/// file the model was loaded from: every metadata key of `base` (architecture, tokenizer, chat template) is
/// carried over, tensors keep its names and order, llama q/k rows are permuted back to llama.cpp's layout,
/// and matrices are stored as `ty` (1-D tensors, and matrices whose rows are not whole 32-value blocks, as
/// f32, as llama.cpp's own quantiser keeps them). Tensors `source` does not have (`rope_freqs`) are copied
/// as stored. The file is written atomically.
pub fn export_gguf(
    source: &dyn WeightSource,
    base: &GgufFile,
    path: &Path,
    ty: GgmlType,
) -> Result<(), ModelError> {
    let Some(file_type) = file_type(ty) else {
        return Err(ModelError::InvalidOption {
            name: "GGUF type".into(),
            value: ty.to_string(),
            reason: format!(
                "engram writes {}",
                ENCODABLE.map(|t| t.to_string()).join(", ")
            ),
        });
    };
    let config = source.config();
    let quantised = !matches!(ty, GgmlType::F32 | GgmlType::F16 | GgmlType::BF16);
    let mut metadata: Vec<(String, MetaValue)> = base
        .metadata()
        .iter()
        .filter(|(k, _)| {
            !matches!(
                k.as_str(),
                "general.file_type" | "general.quantization_version"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    metadata.push(("general.file_type".into(), MetaValue::U32(file_type)));
    if quantised {
        metadata.push(("general.quantization_version".into(), MetaValue::U32(2)));
    }

    let have: std::collections::HashSet<String> = source.tensor_names().into_iter().collect();
    // (spec, the Hugging Face name to read, heads to permute by) per tensor of `base`, in its order.
    let mut plan = Vec::with_capacity(base.tensors().len());
    for info in base.tensors() {
        let hf = hf_name(&info.name).filter(|n| have.contains(n));
        let shape = info.shape();
        let stored = match (&hf, shape.as_slice()) {
            (None, _) => info.ggml_type,
            (Some(_), [_, cols]) if !quantised || cols.is_multiple_of(32) => ty,
            _ => GgmlType::F32,
        };
        let heads = qk_heads(config, &info.name);
        plan.push((
            TensorSpec {
                name: info.name.clone(),
                shape,
                ggml_type: stored,
            },
            hf,
            heads,
        ));
    }
    let specs: Vec<TensorSpec> = plan.iter().map(|(s, _, _)| s.clone()).collect();
    let fail = |name: &str, what: String| FormatError::Malformed {
        path: path.to_path_buf(),
        what: format!("tensor `{name}`: {what}"),
    };
    engram_formats::gguf::write_gguf(path, &metadata, &specs, &mut |i| {
        let (spec, hf, heads) = &plan[i];
        let Some(hf) = hf else {
            return Ok(base.tensor_bytes(&spec.name)?.to_vec());
        };
        let mut t = source.tensor(hf)?;
        if t.shape != spec.shape {
            return Err(fail(
                &spec.name,
                format!(
                    "the model has shape {:?}, the base file {:?}",
                    t.shape, spec.shape
                ),
            ));
        }
        if let Some(h) = heads {
            t = permute_qk_rows(&t, *h)
                .ok_or_else(|| fail(&spec.name, format!("rows do not split into {h} heads")))?;
        }
        encode(&t.data, spec.ggml_type).map_err(|what| fail(&spec.name, what))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_engram_encodes_has_a_file_type() {
        for ty in ENCODABLE {
            assert!(file_type(ty).is_some(), "{ty}");
        }
        assert_eq!(file_type(GgmlType::Q4_K), None);
    }
}
