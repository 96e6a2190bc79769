//! Writing a model out as a Hugging Face folder, so a GGUF-loaded model can be handed to other tools.

use std::path::Path;

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
