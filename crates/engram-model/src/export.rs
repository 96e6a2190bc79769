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
    Ok(())
}
