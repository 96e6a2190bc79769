//! PEFT adapter folders: `adapter_config.json` + `adapter_model.safetensors`, keys and layouts as PEFT writes
//! them, so adapters move freely between engram and the Python ecosystem.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use burn::tensor::{Tensor, TensorData};
use engram_model::Llama;
use engram_model::formats::TensorF32;
use engram_model::formats::hf::{decode_f32, f32_safetensors};
use safetensors::SafeTensors;

use crate::adapters::{Factor, attach, low_rank, split_module};
use crate::{Adapters, LoraConfig, LoraError};
use engram_model::formats::atomic::write_file_atomically;

/// The adapter configuration file inside an adapter folder, as PEFT names it.
pub const CONFIG_FILE: &str = "adapter_config.json";
/// The adapter weights file inside an adapter folder, as PEFT names it.
pub const WEIGHTS_FILE: &str = "adapter_model.safetensors";

impl From<(PathBuf, std::io::Error)> for LoraError {
    fn from((path, source): (PathBuf, std::io::Error)) -> Self {
        LoraError::Io { path, source }
    }
}

/// Writes adapter `name` of `model` into the folder `dir` (created if needed) in PEFT's format. Each file is
/// replaced atomically, and other files in `dir` (a trainer's metrics and checkpoints) are left alone.
/// `config` must describe the attached adapter (its rank and scale are checked against it).
pub fn save_adapter(
    model: &Llama,
    name: &str,
    config: &LoraConfig,
    dir: &Path,
) -> Result<(), LoraError> {
    let summary = model.adapter_summary(name)?;
    if summary.rank != config.r || (summary.scale - config.scale()).abs() > 1e-9 {
        return Err(LoraError::State {
            name: name.into(),
            reason: format!(
                "has rank {} and scale {}, but the configuration to save says r = {} (scale {})",
                summary.rank,
                summary.scale,
                config.r,
                config.scale()
            ),
        });
    }
    let mut tensors: Vec<(String, TensorF32)> = Vec::new();
    for (key, _, t) in model.adapter_factors(name)? {
        let shape = t.dims().to_vec();
        let values = t
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| LoraError::Tensor {
                path: dir.join(WEIGHTS_FILE),
                key: key.clone(),
                reason: format!("cannot read the tensor: {e:?}"),
            })?;
        // engram keeps A as [in, r] and B as [r, out]; PEFT stores their transposes.
        let host = TensorF32 {
            shape,
            data: values,
        };
        tensors.push((key, host.transposed()));
    }
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    let weights = f32_safetensors(&tensors, Some(metadata)).map_err(|e| LoraError::Tensor {
        path: dir.join(WEIGHTS_FILE),
        key: "*".into(),
        reason: e.to_string(),
    })?;
    let config_json =
        serde_json::to_vec_pretty(&config.to_peft_json()).map_err(|e| LoraError::Config {
            path: dir.join(CONFIG_FILE),
            reason: e.to_string(),
        })?;
    std::fs::create_dir_all(dir).map_err(LoraError::io(dir))?;
    // Weights first, then the config: each file is replaced atomically, and a run never changes its
    // configuration, so a crash between the two leaves a loadable pair.
    for (file, bytes) in [(WEIGHTS_FILE, &weights), (CONFIG_FILE, &config_json)] {
        write_file_atomically(&dir.join(file), bytes).map_err(LoraError::io(dir.join(file)))?;
    }
    Ok(())
}

/// Each adapted module's factors (A, B) in engram's layout (`[in, r]`, `[r, out]`), by Hugging Face module name.
pub type Factors = BTreeMap<String, (TensorF32, TensorF32)>;

/// Reads only the configuration of an adapter: a PEFT folder `dir`, or a llama.cpp GGUF adapter file (see
/// [`read_gguf_adapter_config`](crate::read_gguf_adapter_config)).
pub fn read_adapter_config(dir: &Path) -> Result<LoraConfig, LoraError> {
    // As for models: a file is GGUF, a folder is Hugging Face's (PEFT's) layout.
    if dir.is_file() {
        return crate::gguf::read_gguf_adapter_config(dir).map(|(c, _)| c);
    }
    read_peft_config(dir)
}

/// The configuration of the PEFT adapter folder `dir`.
pub(crate) fn read_peft_config(dir: &Path) -> Result<LoraConfig, LoraError> {
    let path = dir.join(CONFIG_FILE);
    if !dir.is_dir() {
        return Err(LoraError::Config {
            path: dir.to_path_buf(),
            reason: "not an adapter (expected a PEFT folder with adapter_config.json and adapter_model.safetensors, or a llama.cpp GGUF adapter file)".into(),
        });
    }
    let text = std::fs::read_to_string(&path).map_err(LoraError::io(&path))?;
    parse_adapter_config(&path, &text)
}

/// Parses the text of an `adapter_config.json`; `path` only names it in errors.
pub fn parse_adapter_config(path: &Path, text: &str) -> Result<LoraConfig, LoraError> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| LoraError::Config {
        path: path.to_path_buf(),
        reason: format!("invalid JSON: {e}"),
    })?;
    LoraConfig::from_peft_json(path, &json)
}

/// Loads an adapter onto `model` under `name` (active): a PEFT adapter folder `dir`, or a llama.cpp GGUF
/// adapter file. Every key is checked against the configuration and the model before anything is attached: a
/// failed load leaves the model as it was.
pub fn load_adapter(model: &mut Llama, dir: &Path, name: &str) -> Result<LoraConfig, LoraError> {
    if model.adapter_names().iter().any(|n| n == name) {
        return Err(LoraError::DuplicateAdapter(name.into()));
    }
    let (config, mut found) = if dir.is_file() {
        crate::gguf::read_gguf_adapter(dir, model.config())?
    } else {
        read_peft_adapter(dir, &crate::linear_dims(model.config()))?
    };
    let device = model.device();
    for (module, proj) in model.projections_mut() {
        if let Some((a, b)) = found.remove(&module) {
            let a = Tensor::<2>::from_data(TensorData::new(a.data, a.shape), &device);
            let b = Tensor::<2>::from_data(TensorData::new(b.data, b.shape), &device);
            attach(proj, low_rank(name, &config, a, b));
        }
    }
    Ok(config)
}

/// The configuration and checked factors of the PEFT adapter folder `dir`, for a model whose linear modules
/// are `dims` ([`linear_dims`](crate::linear_dims)).
pub(crate) fn read_peft_adapter(
    dir: &Path,
    dims: &BTreeMap<String, [usize; 2]>,
) -> Result<(LoraConfig, Factors), LoraError> {
    let config = read_peft_config(dir)?;
    let path = dir.join(WEIGHTS_FILE);
    if !path.exists() && dir.join("adapter_model.bin").exists() {
        return Err(LoraError::Config {
            path: dir.join("adapter_model.bin"),
            reason: "PyTorch pickle adapters are not read; save with safetensors (PEFT's default)"
                .into(),
        });
    }
    let bytes = std::fs::read(&path).map_err(LoraError::io(&path))?;
    let found = read_adapter_tensors(&path, &bytes, &config, dims)?;
    Ok((config, found))
}

/// Reads and checks the bytes of an `adapter_model.safetensors` (`path` only names it in errors) against
/// `config` and a model's linear modules (`dims`: module name to `[in, out]`): every key must be a LoRA factor
/// of a targeted module, with the shape that module and `r` imply, finite F32/F16/BF16 values, and every
/// targeted module must have both factors. Returns each module's (A, B) in engram's layout (`[in, r]`,
/// `[r, out]`), the transposes of what PEFT stores.
pub fn read_adapter_tensors(
    path: &Path,
    bytes: &[u8],
    config: &LoraConfig,
    dims: &BTreeMap<String, [usize; 2]>,
) -> Result<Factors, LoraError> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| LoraError::Tensor {
        path: path.to_path_buf(),
        key: "*".into(),
        reason: format!("not a valid safetensors file: {e}"),
    })?;
    // Sorted, so that the first error reported is the same on every run.
    let mut names = st.names();
    names.sort();
    let mut factors = Vec::with_capacity(names.len());
    for key in names {
        let view = st.tensor(key).map_err(|e| LoraError::Tensor {
            path: path.to_path_buf(),
            key: key.to_string(),
            reason: e.to_string(),
        })?;
        factors.push(StoredFactor {
            shown: key.to_string(),
            key: key.to_string(),
            shape: view.shape().to_vec(),
            values: decode_f32(view.dtype(), view.data()).ok_or_else(|| {
                format!("dtype {:?} is not supported (F32, F16, BF16)", view.dtype())
            }),
        });
    }
    check_factors(path, factors, config, dims, &crate::adapters::peft_key)
}

/// One stored LoRA factor before it is checked: its PEFT key, its shape as stored (PEFT's layout, `[r, in]`
/// for A and `[out, r]` for B) and its values as f32, or why they could not be decoded.
pub(crate) struct StoredFactor {
    pub key: String,
    /// The tensor's name in its file, for errors (the key itself in a PEFT file).
    pub shown: String,
    pub shape: Vec<usize>,
    pub values: Result<Vec<f32>, String>,
}

/// Checks stored factors (whatever file they came from; `path` names it in errors) against `config` and a
/// model's linear modules, as [`read_adapter_tensors`] documents, and returns them in engram's layout.
/// `name_in_file` names a missing factor as its file would.
pub(crate) fn check_factors(
    path: &Path,
    factors: Vec<StoredFactor>,
    config: &LoraConfig,
    dims: &BTreeMap<String, [usize; 2]>,
    name_in_file: &dyn Fn(&str, Factor) -> String,
) -> Result<Factors, LoraError> {
    let terr = |key: &str, reason: String| LoraError::Tensor {
        path: path.to_path_buf(),
        key: key.into(),
        reason,
    };

    // module -> (A, B) as engram tensors' host data, validated.
    let mut found: BTreeMap<String, [Option<TensorF32>; 2]> = BTreeMap::new();
    for StoredFactor {
        key: peft,
        shown,
        shape,
        values,
    } in factors
    {
        let key = shown.as_str();
        let (module, factor) = parse_key(&peft).ok_or_else(|| {
            terr(
                key,
                "not a LoRA key (expected base_model.model.<module>.lora_A.weight or .lora_B.weight)"
                    .into(),
            )
        })?;
        let Some(&[d_in, d_out]) = dims.get(&module) else {
            return Err(terr(
                key,
                format!(
                    "this model has no module `{module}` (an adapter made for another architecture or size?)"
                ),
            ));
        };
        let (layer, short) =
            split_module(&module).ok_or_else(|| terr(key, "unexpected module name".into()))?;
        if !config.target_modules.matches(short)
            || config
                .layers_to_transform
                .as_ref()
                .is_some_and(|l| !l.contains(&layer))
        {
            return Err(terr(
                key,
                format!(
                    "`{module}` is not among the adapter's target_modules / layers_to_transform"
                ),
            ));
        }
        let expected = match factor {
            Factor::A => [config.r, d_in],
            Factor::B => [d_out, config.r],
        };
        if shape != expected {
            let what = if shape.len() == 2
                && (shape[0] == expected[0] || shape[1] == expected[1])
                && (match factor {
                    Factor::A => shape[1] == d_in,
                    Factor::B => shape[0] == d_out,
                }) {
                format!(
                    "rank mismatch: the adapter's configuration says r = {}",
                    config.r
                )
            } else {
                "wrong shape for this model".into()
            };
            return Err(terr(
                key,
                format!("shape {shape:?}, expected {expected:?} ({what})"),
            ));
        }
        let values = values.map_err(|reason| terr(key, reason))?;
        if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
            return Err(terr(key, format!("contains a non-finite value ({bad})")));
        }
        // Back to engram's layout: the transpose of what PEFT stores.
        let t = TensorF32 {
            shape: expected.to_vec(),
            data: values,
        }
        .transposed();
        let slot = match factor {
            Factor::A => 0,
            Factor::B => 1,
        };
        found.entry(module).or_default()[slot] = Some(t);
    }
    let targeted: Vec<&String> = dims
        .keys()
        .filter(|m| {
            split_module(m).is_some_and(|(layer, short)| {
                config.target_modules.matches(short)
                    && config
                        .layers_to_transform
                        .as_ref()
                        .is_none_or(|l| l.contains(&layer))
            })
        })
        .collect();
    for m in &targeted {
        let pair = found.get(*m);
        for (slot, factor) in [(0, Factor::A), (1, Factor::B)] {
            if pair.is_none_or(|p| p[slot].is_none()) {
                return Err(terr(
                    &name_in_file(m, factor),
                    "missing: the configuration targets this module".into(),
                ));
            }
        }
    }
    // Every module in `found` passed the target check, and every targeted one has both factors.
    Ok(found
        .into_iter()
        .filter_map(|(module, [a, b])| Some((module, (a?, b?))))
        .collect())
}

/// `base_model.model.<module>.lora_A[.<adapter>].weight` → (module, factor).
fn parse_key(key: &str) -> Option<(String, Factor)> {
    let rest = key.strip_prefix("base_model.model.")?;
    let rest = rest.strip_suffix(".weight")?;
    for (marker, factor) in [(".lora_A", Factor::A), (".lora_B", Factor::B)] {
        if let Some(pos) = rest.find(marker) {
            let tail = &rest[pos + marker.len()..];
            // PEFT writes no adapter name in files; some tools write `.default`.
            if tail.is_empty() || (tail.starts_with('.') && !tail[1..].contains('.')) {
                return Some((rest[..pos].to_owned(), factor));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peft_keys() {
        assert_eq!(
            parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"),
            Some(("model.layers.0.self_attn.q_proj".into(), Factor::A))
        );
        assert_eq!(
            parse_key("base_model.model.model.layers.2.mlp.down_proj.lora_B.default.weight"),
            Some(("model.layers.2.mlp.down_proj".into(), Factor::B))
        );
        assert_eq!(parse_key("model.layers.0.self_attn.q_proj.weight"), None);
        assert_eq!(
            parse_key("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector"),
            None
        );
    }
}
