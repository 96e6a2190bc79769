//! Writing a Hugging Face folder: every file staged in the folder, synced, then renamed into place.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::{Dtype, View};
use serde_json::Value;
use tempfile::NamedTempFile;

use super::config::{config_to_json, generation_config_json};
use super::{CONFIG_FILE, GENERATION_CONFIG_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE};
use crate::{FormatError, ModelConfig, TensorF32};

/// Writes a Hugging Face folder that transformers (`LlamaForCausalLM` / `Qwen2ForCausalLM`) and llama.cpp's
/// `convert_hf_to_gguf.py` can load: `config.json` (transformers-style, every field explicit, `rope_theta` top-level
/// and `rope_parameters`), `model.safetensors` (f32, the names the iterator yields, `{"format": "pt"}` metadata) and
/// `generation_config.json`. `dir` is created if needed.
///
/// Every file is written atomically: staged in a temporary file in `dir`, synced, then renamed over its final
/// name. Nothing is renamed until the whole iterator has been consumed without error and every file is staged, so an
/// `Err` from `tensors` (or an invalid config, a tensor whose data does not match its shape, a name given twice)
/// leaves an existing folder exactly as it was. Tensors are collected in memory before writing (about 540 MB for a
/// 135M-parameter model).
///
/// Once the new weights are in place, a stale `model.safetensors.index.json` in `dir` and the shard files it names
/// are removed, so that no loader picks up the previous model's shards.
pub fn write_hf_folder(
    dir: impl AsRef<Path>,
    config: &ModelConfig,
    tensors: &mut dyn Iterator<Item = Result<(String, TensorF32), FormatError>>,
) -> Result<(), FormatError> {
    let dir = dir.as_ref();
    let weights_path = dir.join(WEIGHTS_FILE);
    let config_path = dir.join(CONFIG_FILE);
    let generation_path = dir.join(GENERATION_CONFIG_FILE);

    let config_text = json_text(&config_path, &config_to_json(&config_path, config)?)?;
    let generation_text = json_text(&generation_path, &generation_config_json(config))?;

    let mut collected: Vec<(String, TensorF32)> = Vec::new();
    let mut seen = HashSet::new();
    for item in tensors {
        let (name, tensor) = item?;
        let expected = tensor
            .shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d));
        if expected != Some(tensor.data.len()) {
            return Err(FormatError::ShapeMismatch {
                what: format!(
                    "{}: tensor `{name}` of shape {:?}",
                    weights_path.display(),
                    tensor.shape
                ),
                expected: expected.unwrap_or(usize::MAX),
                found: tensor.data.len(),
            });
        }
        if !seen.insert(name.clone()) {
            return Err(FormatError::Malformed {
                path: weights_path,
                what: format!("tensor `{name}` is given twice"),
            });
        }
        collected.push((name, tensor));
    }

    std::fs::create_dir_all(dir).map_err(|e| FormatError::io(dir, e))?;
    let staged_weights = stage_safetensors(dir, &weights_path, &collected)?;
    drop(collected);
    let staged_config = stage_text(dir, &config_path, &config_text)?;
    let staged_generation = stage_text(dir, &generation_path, &generation_text)?;

    staged_weights.commit()?;
    commit_text(staged_config, &config_path)?;
    commit_text(staged_generation, &generation_path)?;
    remove_stale_shards(dir)?;
    sync_dir(dir);
    Ok(())
}

fn json_text(path: &Path, value: &Value) -> Result<String, FormatError> {
    let mut text = serde_json::to_string_pretty(value).map_err(|source| FormatError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    text.push('\n');
    Ok(text)
}

/// A text file written and synced under a temporary name in the target folder.
fn stage_text(dir: &Path, path: &Path, text: &str) -> Result<NamedTempFile, FormatError> {
    let mut tmp = crate::staged_file(dir).map_err(|e| FormatError::io(dir, e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| FormatError::io(path, e))?;
    Ok(tmp)
}

fn commit_text(tmp: NamedTempFile, path: &Path) -> Result<(), FormatError> {
    tmp.persist(path)
        .map(drop)
        .map_err(|e| FormatError::io(path, e.error))
}

/// `model.safetensors` serialised (by `safetensors`) into a private temporary folder inside the target folder,
/// synced, waiting to be renamed into place. Dropping it removes the staged file.
struct StagedWeights {
    _tmp_dir: tempfile::TempDir,
    staged: PathBuf,
    target: PathBuf,
}

impl StagedWeights {
    fn commit(self) -> Result<(), FormatError> {
        std::fs::rename(&self.staged, &self.target).map_err(|e| FormatError::io(&self.target, e))
    }
}

fn stage_safetensors(
    dir: &Path,
    target: &Path,
    tensors: &[(String, TensorF32)],
) -> Result<StagedWeights, FormatError> {
    let tmp_dir = tempfile::Builder::new()
        .prefix(".engram-")
        .tempdir_in(dir)
        .map_err(|e| FormatError::io(dir, e))?;
    let staged = tmp_dir.path().join(WEIGHTS_FILE);
    let views = tensors.iter().map(|(name, t)| (name, F32View(t)));
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(views, Some(metadata), &staged).map_err(|source| {
        FormatError::Safetensors {
            path: target.to_path_buf(),
            source,
        }
    })?;
    // safetensors writes through its own 0600 temporary file.
    crate::make_readable(&staged)
        .and_then(|()| File::open(&staged))
        .and_then(|f| f.sync_all())
        .map_err(|e| FormatError::io(target, e))?;
    Ok(StagedWeights {
        _tmp_dir: tmp_dir,
        staged,
        target: target.to_path_buf(),
    })
}

/// `tensors` as the bytes of a safetensors file (F32, little-endian), with optional `__metadata__`. For the small
/// files beside a model (adapters, optimizer state); model weights go through [`write_hf_folder`].
pub fn f32_safetensors(
    tensors: &[(String, TensorF32)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    safetensors::serialize(tensors.iter().map(|(n, t)| (n, F32View(t))), metadata)
}

/// A [`TensorF32`] as safetensors sees it: F32, little-endian.
struct F32View<'a>(&'a TensorF32);

impl View for F32View<'_> {
    fn dtype(&self) -> Dtype {
        Dtype::F32
    }

    fn shape(&self) -> &[usize] {
        &self.0.shape
    }

    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Owned(self.0.data.iter().flat_map(|x| x.to_le_bytes()).collect())
    }

    fn data_len(&self) -> usize {
        self.0.data.len() * 4
    }
}

/// Removes `model.safetensors.index.json` and the shards it names (never `model.safetensors` itself), left by a
/// previous sharded model in the folder. An index that cannot be parsed is removed alone.
fn remove_stale_shards(dir: &Path) -> Result<(), FormatError> {
    let index = dir.join(WEIGHTS_INDEX_FILE);
    if !index.exists() {
        return Ok(());
    }
    let shards: HashSet<String> = std::fs::read_to_string(&index)
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(&text).ok())
        .and_then(|v| {
            v.get("weight_map")?.as_object().map(|m| {
                m.values()
                    .filter_map(|f| f.as_str())
                    .filter(|f| {
                        *f != WEIGHTS_FILE
                            && !f.contains(['/', '\\'])
                            && Path::new(f).file_name().is_some_and(|n| n == *f)
                    })
                    .map(str::to_string)
                    .collect()
            })
        })
        .unwrap_or_default();
    std::fs::remove_file(&index).map_err(|e| FormatError::io(&index, e))?;
    for shard in shards {
        let path = dir.join(shard);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(FormatError::io(&path, e)),
        }
    }
    Ok(())
}

/// Makes the renames durable where the platform allows syncing a directory; best effort.
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}
