//! Reading a Hugging Face folder's safetensors weights, memory-mapped.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use rayon::prelude::*;
use safetensors::{Dtype, SafeTensors};
use serde_json::Value;

use super::{CONFIG_FILE, TOKENIZER_FILE, WEIGHTS_FILE, WEIGHTS_INDEX_FILE, read_config};
use crate::{FormatError, ModelConfig, TensorF32, WeightSource};

/// A Hugging Face model folder opened for reading: its `config.json` parsed and its safetensors file(s)
/// memory-mapped, with every tensor's location checked up front.
///
/// Weights come from `model.safetensors` when the folder has one (as transformers prefers), otherwise from the
/// shards that `model.safetensors.index.json`'s `weight_map` names. Tensors are read in Hugging Face names and
/// layout, converted to f32 from F32, F16 or BF16.
#[derive(Debug)]
pub struct HfWeights {
    dir: PathBuf,
    config: ModelConfig,
    /// `model.safetensors` or the index file: named in errors about tensors that are not there.
    weights_path: PathBuf,
    shards: Vec<Shard>,
    tensors: BTreeMap<String, Entry>,
}

/// One safetensors file: memory-mapped, or held in memory ([`HfWeights::from_bytes`]).
#[derive(Debug)]
struct Shard {
    path: PathBuf,
    storage: ShardBytes,
}

#[derive(Debug)]
enum ShardBytes {
    Mmap(Mmap),
    /// An in-memory file, or an empty one (an empty file cannot be mapped; `safetensors` rejects it anyway).
    Owned(Vec<u8>),
}

impl Shard {
    fn bytes(&self) -> &[u8] {
        match &self.storage {
            ShardBytes::Mmap(m) => m,
            ShardBytes::Owned(v) => v,
        }
    }
}

/// Where one tensor lies: its shard and its byte range in that file.
#[derive(Debug)]
struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

/// The tensors of one safetensors file, by name.
type ShardTensors = HashMap<String, Entry>;

impl HfWeights {
    /// Opens the folder `dir`: parses `config.json`, maps `model.safetensors` (or every shard the index names)
    /// and checks each header.
    ///
    /// Errors name the file: [`FormatError::Io`] for a missing `config.json` or a folder with neither
    /// `model.safetensors` nor `model.safetensors.index.json`; the errors of [`read_config`];
    /// [`FormatError::Safetensors`] for a truncated or corrupt safetensors file; for sharded weights,
    /// [`FormatError::Json`] / [`FormatError::BadConfig`] (field `weight_map...`) for a malformed index,
    /// [`FormatError::MissingShard`] for a shard file that does not exist and [`FormatError::MissingTensor`]
    /// (naming the shard) for a tensor the index lists but its shard lacks.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, FormatError> {
        let dir = dir.as_ref().to_path_buf();
        let config = read_config(dir.join(CONFIG_FILE))?;

        let single = dir.join(WEIGHTS_FILE);
        let index = dir.join(WEIGHTS_INDEX_FILE);
        if single.is_file() {
            let (shard, tensors) = open_shard(&single, 0)?;
            return Ok(Self {
                dir,
                config,
                weights_path: single,
                shards: vec![shard],
                tensors: tensors.into_iter().collect(),
            });
        }
        if index.is_file() {
            let (shards, tensors) = open_sharded(&dir, &index)?;
            return Ok(Self {
                dir,
                config,
                weights_path: index,
                shards,
                tensors,
            });
        }
        Err(FormatError::io(
            single,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no weights: neither {WEIGHTS_FILE} nor {WEIGHTS_INDEX_FILE} exists"),
            ),
        ))
    }

    /// A single-file model held in memory: the text of its `config.json` and the bytes of its
    /// `model.safetensors`, checked as [`HfWeights::open`] checks a folder (the fuzz targets and tests use it to
    /// parse without files). `dir_for_errors` only names the folder in errors.
    pub fn from_bytes(
        dir_for_errors: impl Into<PathBuf>,
        config_json: &str,
        safetensors: Vec<u8>,
    ) -> Result<Self, FormatError> {
        let dir = dir_for_errors.into();
        let config = super::parse_config(&dir.join(CONFIG_FILE), config_json)?;
        let single = dir.join(WEIGHTS_FILE);
        let shard = Shard {
            path: single.clone(),
            storage: ShardBytes::Owned(safetensors),
        };
        let tensors = read_shard_header(&shard, 0)?;
        Ok(Self {
            dir,
            config,
            weights_path: single,
            shards: vec![shard],
            tensors: tensors.into_iter().collect(),
        })
    }

    /// The folder the weights were opened from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder's `tokenizer.json`, if it has one.
    pub fn tokenizer_path(&self) -> Option<PathBuf> {
        let path = self.dir.join(TOKENIZER_FILE);
        path.is_file().then_some(path)
    }
}

impl WeightSource for HfWeights {
    fn config(&self) -> &ModelConfig {
        &self.config
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    /// Every tensor name, sorted.
    fn tensor_names(&self) -> Vec<String> {
        self.tensors.keys().cloned().collect()
    }

    /// Reads one tensor as f32. [`FormatError::MissingTensor`] for an unknown name,
    /// [`FormatError::UnsupportedTensorType`] (naming the shard and tensor) for a type other than F32/F16/BF16.
    fn tensor(&self, name: &str) -> Result<TensorF32, FormatError> {
        let entry = self
            .tensors
            .get(name)
            .ok_or_else(|| FormatError::MissingTensor {
                path: self.weights_path.clone(),
                tensor: name.to_string(),
            })?;
        let shard = self
            .shards
            .get(entry.shard)
            .ok_or_else(|| FormatError::Malformed {
                path: self.weights_path.clone(),
                what: format!("tensor `{name}` refers to an unknown shard"),
            })?;
        let bytes = shard.bytes();
        let data =
            bytes
                .get(entry.start..entry.end)
                .ok_or_else(|| FormatError::TensorOutOfBounds {
                    path: shard.path.clone(),
                    tensor: name.to_string(),
                    start: entry.start as u64,
                    end: entry.end as u64,
                    file_len: bytes.len() as u64,
                })?;
        let Some(values) = decode_f32(entry.dtype, data) else {
            return Err(FormatError::UnsupportedTensorType {
                path: shard.path.clone(),
                tensor: name.to_string(),
                ty: entry.dtype.to_string(),
            });
        };
        TensorF32::new(entry.shape.clone(), values).map_err(|_| FormatError::Malformed {
            path: shard.path.clone(),
            what: format!(
                "tensor `{name}`: {} bytes of {} do not make shape {:?}",
                data.len(),
                entry.dtype,
                entry.shape
            ),
        })
    }

    fn stored_dtype(&self, name: &str) -> Option<String> {
        self.tensors.get(name).map(|e| e.dtype.to_string())
    }
}

/// Decodes safetensors data of type F32, F16 or BF16 to f32 (`None` for other types).
pub fn decode_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    Some(match dtype {
        Dtype::F32 => convert::<4>(data, f32::from_le_bytes),
        Dtype::F16 => convert::<2>(data, |b| half::f16::from_le_bytes(b).to_f32()),
        // bf16 is the top half of an f32: widening is exact (NaN payloads included).
        Dtype::BF16 => convert::<2>(data, |b| {
            f32::from_bits(u32::from(u16::from_le_bytes(b)) << 16)
        }),
        _ => return None,
    })
}

/// Decodes little-endian elements of `N` bytes, in parallel for large tensors. A trailing partial element (which
/// the safetensors header validation rules out) is dropped, and then caught by the shape check.
fn convert<const N: usize>(bytes: &[u8], f: impl Fn([u8; N]) -> f32 + Sync) -> Vec<f32> {
    const CHUNK: usize = 1 << 16;
    let decode = |out: &mut [f32], bytes: &[u8]| {
        for (x, b) in out.iter_mut().zip(bytes.chunks_exact(N)) {
            let mut a = [0u8; N];
            a.copy_from_slice(b);
            *x = f(a);
        }
    };
    let mut out = vec![0f32; bytes.len() / N];
    if out.len() <= CHUNK {
        decode(&mut out, bytes);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(bytes.par_chunks(CHUNK * N))
            .for_each(|(o, b)| decode(o, b));
    }
    out
}

/// Maps one safetensors file and reads its header; `index` is the shard's number in the `HfWeights`.
fn open_shard(path: &Path, index: usize) -> Result<(Shard, ShardTensors), FormatError> {
    let file = File::open(path).map_err(|e| FormatError::io(path, e))?;
    let len = file.metadata().map_err(|e| FormatError::io(path, e))?.len();
    let storage = if len == 0 {
        ShardBytes::Owned(Vec::new())
    } else {
        // SAFETY: the map is only read. Another process truncating or rewriting the file in place while it is
        // mapped is outside what we can guard against (as for every mmap-based model loader); engram's own writer
        // replaces files by rename, which leaves existing maps of the old file valid.
        ShardBytes::Mmap(unsafe { Mmap::map(&file) }.map_err(|e| FormatError::io(path, e))?)
    };
    let shard = Shard {
        path: path.to_path_buf(),
        storage,
    };
    let tensors = read_shard_header(&shard, index)?;
    Ok((shard, tensors))
}

/// Reads one shard's safetensors header: where each tensor lies in it.
fn read_shard_header(shard: &Shard, index: usize) -> Result<ShardTensors, FormatError> {
    let path = shard.path.as_path();
    let (header_len, metadata) =
        SafeTensors::read_metadata(shard.bytes()).map_err(|source| FormatError::Safetensors {
            path: path.to_path_buf(),
            source,
        })?;
    // Data starts after the 8-byte header length and the header; offsets are relative to it.
    let base = header_len.checked_add(8);
    let mut tensors = HashMap::new();
    for (name, info) in metadata.tensors() {
        let (start, end) = info.data_offsets;
        let range = base.and_then(|b| Some((b.checked_add(start)?, b.checked_add(end)?)));
        let Some((start, end)) = range else {
            return Err(FormatError::Malformed {
                path: path.to_path_buf(),
                what: format!("tensor `{name}`: data offsets overflow"),
            });
        };
        tensors.insert(
            name,
            Entry {
                shard: index,
                dtype: info.dtype,
                shape: info.shape.clone(),
                start,
                end,
            },
        );
    }
    Ok(tensors)
}

/// Opens the shards `model.safetensors.index.json` names and checks that each holds the tensors mapped to it.
fn open_sharded(
    dir: &Path,
    index: &Path,
) -> Result<(Vec<Shard>, BTreeMap<String, Entry>), FormatError> {
    let weight_map = read_weight_map(index)?;

    // Group tensors by shard, in name order, so the first tensor named in an error is deterministic.
    let mut by_shard: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (tensor, file) in &weight_map {
        by_shard.entry(file).or_default().push(tensor);
    }

    let mut shards = Vec::with_capacity(by_shard.len());
    let mut tensors = BTreeMap::new();
    for (file, names) in by_shard {
        let path = dir.join(file);
        if !path.is_file() {
            return Err(FormatError::MissingShard {
                index: index.to_path_buf(),
                shard: file.to_string(),
                tensor: names.first().map_or_else(String::new, |n| n.to_string()),
            });
        }
        let (shard, mut in_shard) = open_shard(&path, shards.len())?;
        for name in names {
            let entry = in_shard
                .remove(name)
                .ok_or_else(|| FormatError::MissingTensor {
                    path: path.clone(),
                    tensor: name.to_string(),
                })?;
            tensors.insert(name.to_string(), entry);
        }
        shards.push(shard);
    }
    Ok((shards, tensors))
}

/// `weight_map` of an index file: tensor name to shard file name (a plain file name in the same folder).
fn read_weight_map(index: &Path) -> Result<BTreeMap<String, String>, FormatError> {
    let text = std::fs::read_to_string(index).map_err(|e| FormatError::io(index, e))?;
    parse_weight_map(index, &text)
}

/// Parses the text of a `model.safetensors.index.json` (`index` only names it in errors) to its `weight_map`:
/// tensor name to shard file name. A shard that is not a plain file name in the model folder (`../x`, `a/b`)
/// is refused, so an index cannot make engram open files outside the folder.
pub fn parse_weight_map(index: &Path, text: &str) -> Result<BTreeMap<String, String>, FormatError> {
    let bad = |field: String, message: String| FormatError::BadConfig {
        path: index.to_path_buf(),
        field,
        message,
    };
    let value: Value = serde_json::from_str(text).map_err(|source| FormatError::Json {
        path: index.to_path_buf(),
        source,
    })?;
    let Some(map) = value.get("weight_map") else {
        return Err(bad("weight_map".into(), "missing required field".into()));
    };
    let Value::Object(map) = map else {
        return Err(bad(
            "weight_map".into(),
            "expected an object mapping tensor names to shard files".into(),
        ));
    };
    let mut out = BTreeMap::new();
    for (tensor, file) in map {
        let field = || format!("weight_map.{tensor}");
        let Value::String(file) = file else {
            return Err(bad(field(), "expected a shard file name".into()));
        };
        let plain = Path::new(file)
            .file_name()
            .is_some_and(|f| f == file.as_str())
            && !file.contains(['/', '\\']);
        if !plain {
            return Err(bad(
                field(),
                format!("shard `{file}` is not a file name in the model folder"),
            ));
        }
        out.insert(tensor.clone(), file.clone());
    }
    Ok(out)
}
