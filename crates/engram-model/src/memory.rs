//! A memory check before loading: a clear error up front instead of the kernel killing the process once most
//! of a model too big for the machine has been read.
//!
//! The model runs in its compute dtype whatever its file stores (a Q4 GGUF is dequantised on load), so a model
//! needs about four bytes per parameter in f32 (two in bf16/f16, about 1.1 for linear weights held as q8),
//! plus a second copy of the embedding when it is tied to the output head (the head is kept transposed), plus room to stage the largest tensor while it is converted. On the CPU all of that is
//! host memory; on a GPU only the staging is, and Burn offers no query of the device's free memory, so GPU
//! memory is not checked (the backend reports its own allocation failure).

use std::path::Path;

use burn::tensor::Device;
use engram_formats::ModelConfig;

use crate::{BaseWeights, LoadOptions, ModelError, QUANT_BLOCK};

/// Set to `1` to load even when the check says the model will not fit (e.g. with plenty of swap).
pub const SKIP_MEMORY_CHECK_ENV: &str = "ENGRAM_SKIP_MEMORY_CHECK";

/// Bytes a model of this shape takes on its device once loaded as `options` say (a [`BaseWeights`], a
/// [`Dtype`](crate::Dtype) or both): embedding, head and biases in the compute dtype (a tied head stored a
/// second time), the linear weights in it too or as q8 blocks, the norms in f32.
pub fn weight_bytes(config: &ModelConfig, options: impl Into<LoadOptions>) -> u64 {
    let options = options.into();
    let dtype = options.dtype.bytes();
    let embedding = (config.vocab_size * config.hidden_size) as u64;
    let head_copy = if config.tie_word_embeddings {
        embedding
    } else {
        0
    };
    let linear = config.linear_weight_count() as u64;
    let norms = config.norm_weight_count() as u64;
    let rest = config.parameter_count() as u64 + head_copy - linear - norms;
    let linear_bytes = match options.base {
        BaseWeights::F32 => linear * dtype,
        // One byte per weight and an f32 scale per block (assumes every width is a multiple of the block, as in
        // every released llama/qwen2 shape).
        BaseWeights::Q8 => linear + 4 * linear / QUANT_BLOCK as u64,
    };
    rest * dtype + linear_bytes + norms * 4
}

/// Bytes of host memory loading needs besides the weights themselves: the largest tensor, dequantised and
/// converted (two f32 copies at once).
pub fn staging_bytes(config: &ModelConfig) -> u64 {
    let largest = (config.vocab_size * config.hidden_size)
        .max(config.hidden_size * config.intermediate_size) as u64;
    2 * 4 * largest
}

/// Host memory this process may still use: the kernel's `MemAvailable`, capped by the cgroup's limit (a
/// container's) less what the cgroup already uses. `None` where neither can be read (not Linux).
pub fn available_host_memory() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| mem_available(&s));
    let cgroup = cgroup_headroom();
    match (meminfo, cgroup) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// `MemAvailable` of a `/proc/meminfo` text, in bytes.
fn mem_available(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemAvailable:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kb| kb.trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)
}

/// The cgroup v2 (then v1) limit less current usage; `None` without a limit.
fn cgroup_headroom() -> Option<u64> {
    let read = |p: &str| std::fs::read_to_string(p).ok();
    let (limit, usage) = match (
        read("/sys/fs/cgroup/memory.max"),
        read("/sys/fs/cgroup/memory.current"),
    ) {
        (Some(l), Some(u)) => (l, u),
        _ => (
            read("/sys/fs/cgroup/memory/memory.limit_in_bytes")?,
            read("/sys/fs/cgroup/memory/memory.usage_in_bytes")?,
        ),
    };
    // "max" (v2) or a huge number (v1's "no limit") both parse to no useful cap.
    let limit = limit.trim().parse::<u64>().ok().filter(|&l| l < 1 << 60)?;
    let usage = usage.trim().parse::<u64>().ok()?;
    Some(limit.saturating_sub(usage))
}

/// Checks that the model at `path` (with `config`) fits in `available` bytes of host memory on `device`;
/// `available: None` (unknown) passes. Pure, so it can be tested with any figure.
pub fn check_fits(
    path: &Path,
    config: &ModelConfig,
    options: impl Into<LoadOptions>,
    device: &Device,
    available: Option<u64>,
) -> Result<(), ModelError> {
    let options = options.into();
    let Some(available) = available else {
        return Ok(());
    };
    let on_host = *device == Device::flex();
    let needed = staging_bytes(config)
        + if on_host {
            weight_bytes(config, options)
        } else {
            0
        };
    if needed <= available {
        return Ok(());
    }
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    Err(ModelError::OutOfMemory {
        path: path.to_path_buf(),
        reason: format!(
            "loading needs about {:.2} GiB of {} memory ({:.2} B parameters, {options}{}) but only {:.2} GiB is \
             available; use a smaller model, free memory, or set {SKIP_MEMORY_CHECK_ENV}=1 to try anyway",
            gib(needed),
            if on_host { "host" } else { "host staging" },
            config.parameter_count() as f64 / 1e9,
            if config.tie_word_embeddings && on_host {
                ", the tied output head stored a second time"
            } else {
                ""
            },
            gib(available),
        ),
    })
}

/// [`check_fits`] with the memory this process can use now, unless [`SKIP_MEMORY_CHECK_ENV`] is `1`.
pub fn check_memory(
    path: &Path,
    config: &ModelConfig,
    options: impl Into<LoadOptions>,
    device: &Device,
) -> Result<(), ModelError> {
    if std::env::var(SKIP_MEMORY_CHECK_ENV).is_ok_and(|v| v == "1") {
        return Ok(());
    }
    check_fits(path, config, options, device, available_host_memory())
}

#[cfg(test)]
mod tests {
    use super::*;
    use engram_formats::Architecture;

    /// Llama 3.1 8B's shape: 8.0 B parameters, untied head.
    fn llama_8b() -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            vocab_size: 128_256,
            hidden_size: 4096,
            intermediate_size: 14_336,
            num_hidden_layers: 32,
            num_attention_heads: 32,
            num_key_value_heads: 8,
            head_dim: 128,
            rms_norm_eps: 1e-5,
            rope_theta: 500_000.0,
            rope_scaling: None,
            max_position_embeddings: 131_072,
            tie_word_embeddings: false,
            attention_bias: false,
            bos_token_id: Some(128_000),
            eos_token_ids: vec![128_001],
            pad_token_id: None,
        }
    }

    /// `check_fits` on the CPU for a model at `/m/llama`, as a message on refusal.
    fn fits(c: &ModelConfig, base: BaseWeights, available: Option<u64>) -> Result<(), String> {
        check_fits(Path::new("/m/llama"), c, base, &Device::flex(), available)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn an_8b_model_needs_34_gib_and_is_refused_with_16() {
        // 29.9 GiB of f32 weights + 3.9 GiB to stage the 128256 x 4096 embedding (two f32 copies).
        let c = llama_8b();
        assert_eq!(c.parameter_count(), 8_030_261_248);
        assert_eq!(weight_bytes(&c, BaseWeights::F32), 8_030_261_248 * 4);
        let err = fits(&c, BaseWeights::F32, Some(16 << 30)).unwrap_err();
        assert!(
            err.starts_with(
                "/m/llama: loading needs about 33.83 GiB of host memory (8.03 B parameters"
            ) && err.contains("16.00 GiB"),
            "{err}"
        );
        assert!(err.contains(SKIP_MEMORY_CHECK_ENV), "{err}");
        // With 64 GiB it fits; unknown memory is not a reason to refuse.
        fits(&c, BaseWeights::F32, Some(64 << 30)).unwrap();
        fits(&c, BaseWeights::F32, None).unwrap();
        // Held as q8 the linear layers (6.98 B weights) take 1.125 bytes each: with the f32 embedding and head
        // (2 x 2.0 GiB) and the staging, 15.1 GiB, which fits in 16.
        assert_eq!(c.linear_weight_count(), 6_979_321_856);
        let q8 = weight_bytes(&c, BaseWeights::Q8) + staging_bytes(&c);
        assert!(
            (q8 as f64 / (1u64 << 30) as f64 - 15.14).abs() < 0.01,
            "{q8}"
        );
        fits(&c, BaseWeights::Q8, Some(16 << 30)).unwrap();
        // In bf16 everything but the norms' 0.27 M f32 scales takes two bytes: 15.0 GiB of weights.
        let bf16 = weight_bytes(&c, crate::Dtype::Bf16);
        assert_eq!(bf16, (8_030_261_248 - 266_240) * 2 + 266_240 * 4);
        // q8 linears under bf16: the embedding and head (2 x 1.0 GiB) at two bytes, 9.3 GiB in all.
        let both = weight_bytes(&c, LoadOptions::new(BaseWeights::Q8, crate::Dtype::Bf16));
        assert_eq!(
            both,
            (8_030_261_248 - 6_979_321_856 - 266_240) * 2 + 6_979_321_856 * 9 / 8 + 266_240 * 4
        );
    }

    #[test]
    fn a_tied_head_is_counted_twice() {
        let mut c = llama_8b();
        c.tie_word_embeddings = true;
        let embedding = 128_256u64 * 4096;
        assert_eq!(
            weight_bytes(&c, BaseWeights::F32),
            (c.parameter_count() as u64 + embedding) * 4
        );
    }

    #[test]
    fn meminfo_is_parsed_in_bytes() {
        let text =
            "MemTotal:       24576000 kB\nMemFree:         1000 kB\nMemAvailable:   20000000 kB\n";
        assert_eq!(mem_available(text), Some(20_000_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        // This machine (Linux) reports something, and it is not absurd.
        let now = available_host_memory().expect("Linux has /proc/meminfo");
        assert!(now > 1 << 20, "{now}");
    }
}
