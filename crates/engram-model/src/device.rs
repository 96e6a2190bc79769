//! Run-time device choice: `cpu`, `wgpu`, `cuda[:N]`, with a clear error for a backend not compiled in.

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;

use crate::{BaseWeights, Dtype, LoadOptions, ModelError};

/// The environment variable that points the device-dependent tests at another device
/// ([`DeviceSpec::from_test_env`]).
pub const TEST_DEVICE_ENV: &str = "ENGRAM_TEST_DEVICE";

/// A device as a user names it on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DeviceSpec {
    /// Burn's pure-Rust `flex` CPU backend (always available).
    #[default]
    Cpu,
    /// Any GPU through wgpu (Vulkan, Metal, DX12); needs the `wgpu` feature.
    Wgpu,
    /// NVIDIA GPU number N; needs the `cuda` feature.
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason: &str| ModelError::invalid("device", s, reason);
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(DeviceSpec::Cpu),
            "wgpu" | "gpu" => Ok(DeviceSpec::Wgpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n
                    .parse()
                    .map(DeviceSpec::Cuda)
                    .map_err(|_| bad("expected cuda:N with N a GPU index, e.g. cuda:0")),
                None => Err(bad("expected one of cpu, wgpu, cuda, cuda:N")),
            },
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Wgpu => write!(f, "wgpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl DeviceSpec {
    /// A comma-separated list of devices (`cuda:0,cuda:1`), as data-parallel training takes them; the first
    /// is where the model is loaded. Empty entries and an empty list are errors.
    pub fn parse_list(s: &str) -> Result<Vec<DeviceSpec>, ModelError> {
        let specs = s
            .split(',')
            .map(|part| {
                if part.trim().is_empty() {
                    Err(ModelError::invalid(
                        "device",
                        s,
                        "an empty entry in the device list; expected e.g. cuda:0,cuda:1",
                    ))
                } else {
                    part.parse()
                }
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(specs)
    }

    /// The device the `ENGRAM_TEST_DEVICE` environment variable names (`wgpu`, `cuda:0`), or `None` when it is
    /// unset: the device-dependent tests run on the CPU unless pointed at a GPU backend (built with its
    /// feature), e.g. `ENGRAM_TEST_DEVICE=wgpu cargo test -p engram-model --features wgpu`.
    pub fn from_test_env() -> Result<Option<Device>, ModelError> {
        match std::env::var(TEST_DEVICE_ENV) {
            Ok(name) => name.parse::<DeviceSpec>()?.device().map(Some),
            Err(_) => Ok(None),
        }
    }

    /// The Burn device, or an error saying which cargo feature is missing or that no such GPU exists.
    pub fn device(self) -> Result<Device, ModelError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::flex()),
            DeviceSpec::Wgpu => wgpu_device(),
            DeviceSpec::Cuda(n) => cuda_device(n),
        }
    }
}

impl DeviceSpec {
    /// Refuses, by name, what this device's backend cannot run, before any weight is read: `wgpu` compiles
    /// its kernels to WGSL, which has neither bf16 nor 8-bit integers (both found on Mesa's software Vulkan:
    /// the WGSL compiler panics on `cube.bf16` and rejects `array<vec4<i8>>`).
    pub fn check(self, options: LoadOptions) -> Result<(), ModelError> {
        if self != DeviceSpec::Wgpu {
            return Ok(());
        }
        if options.dtype == Dtype::Bf16 {
            return Err(ModelError::invalid(
                "dtype",
                "bf16",
                "the wgpu backend compiles to WGSL, which has no bf16; use --dtype f16 there, or --device cuda",
            ));
        }
        if options.base == BaseWeights::Q8 {
            return Err(ModelError::invalid(
                "base weights",
                "q8",
                "the wgpu backend compiles to WGSL, which has no 8-bit integers; use --base-weights f32 \
                 (with --dtype f16 for half the memory) there, or --device cpu|cuda",
            ));
        }
        Ok(())
    }

    /// [`check`](Self::check), then [`device`](Self::device): the device to load a model held as `options` on.
    pub fn device_for(self, options: LoadOptions) -> Result<Device, ModelError> {
        self.check(options)?;
        self.device()
    }
}

#[cfg(feature = "wgpu")]
fn wgpu_device() -> Result<Device, ModelError> {
    use burn::tensor::{DeviceKind, DeviceType};
    let found = Device::enumerate(burn::tensor::DeviceFilter::new().with(DeviceType::Wgpu));
    if found.is_empty() {
        return Err(ModelError::Device {
            device: "wgpu".into(),
            reason: "no GPU adapter found (is a Vulkan/Metal/DX12 driver installed?)".into(),
        });
    }
    Ok(Device::wgpu(DeviceKind::default()))
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_device() -> Result<Device, ModelError> {
    Err(ModelError::Device {
        device: "wgpu".into(),
        reason: "this build has no wgpu support; rebuild with `--features wgpu`".into(),
    })
}

#[cfg(feature = "cuda")]
fn cuda_device(n: usize) -> Result<Device, ModelError> {
    use burn::tensor::DeviceType;
    let count = Device::enumerate(burn::tensor::DeviceFilter::new().with(DeviceType::Cuda)).len();
    if n >= count {
        return Err(ModelError::Device {
            device: format!("cuda:{n}"),
            reason: format!("only {count} CUDA device(s) found"),
        });
    }
    Ok(Device::cuda(n))
}

#[cfg(not(feature = "cuda"))]
fn cuda_device(n: usize) -> Result<Device, ModelError> {
    Err(ModelError::Device {
        device: format!("cuda:{n}"),
        reason: "this build has no CUDA support; rebuild with `--features cuda`".into(),
    })
}

/// Tunes the C allocator for tensor workloads; call once at the start of a program (the `engram` binary and
/// the benchmark do). Returns whether anything was changed.
///
/// glibc serves allocations above 128 KiB-32 MiB with `mmap` and gives them back with `munmap` when freed, so
/// every training step re-faults and re-zeroes the pages of the same large activations it freed in the last
/// step (page faults and `clear_page` took ~5% of a LoRA step in `perf`). Serving everything from the heap
/// and raising the trim threshold keeps that memory for reuse, in a single arena shared by all threads (see
/// docs/benchmarks.md for the measurements). Set `ENGRAM_MALLOC_TUNING=0` to leave the allocator alone (to measure it).
pub fn tune_allocator() -> bool {
    if std::env::var("ENGRAM_MALLOC_TUNING").is_ok_and(|v| v == "0") {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes allocator parameters; it is called before any worker threads exist.
        // No mmap'd chunks at all (the mmap threshold cannot exceed 32 MiB, and a logits tensor is larger), and
        // keep up to 1 GiB of freed heap instead of trimming it. mallopt returns 1 on success.
        unsafe {
            libc::mallopt(libc::M_MMAP_MAX, 0) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30) == 1
                // One arena: with per-thread arenas each training thread keeps its own freed activations
                // (measured: peak RSS 3.25 GB instead of 1.93 GB with two micro-batch threads).
                && libc::mallopt(libc::M_ARENA_MAX, 1) == 1
                && libc::mallopt(libc::M_TOP_PAD, 64 << 20) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_devices() {
        assert_eq!("cpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cpu);
        assert_eq!("CUDA:1".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(1));
        assert_eq!("cuda".parse::<DeviceSpec>().unwrap(), DeviceSpec::Cuda(0));
        assert_eq!("wgpu".parse::<DeviceSpec>().unwrap(), DeviceSpec::Wgpu);
        let err = "tpu".parse::<DeviceSpec>().unwrap_err().to_string();
        assert!(err.contains("tpu") && err.contains("cpu, wgpu"), "{err}");
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[test]
    fn parses_device_lists() {
        assert_eq!(
            DeviceSpec::parse_list("cuda:0, cuda:1").unwrap(),
            [DeviceSpec::Cuda(0), DeviceSpec::Cuda(1)]
        );
        assert_eq!(DeviceSpec::parse_list("cpu").unwrap(), [DeviceSpec::Cpu]);
        for bad in ["", "cuda:0,", "cuda:0,,cuda:1"] {
            let err = DeviceSpec::parse_list(bad).unwrap_err().to_string();
            assert!(err.contains("empty entry"), "{bad}: {err}");
        }
        let err = DeviceSpec::parse_list("cuda:0,tpu")
            .unwrap_err()
            .to_string();
        assert!(err.contains("tpu"), "{err}");
    }

    #[test]
    fn wgpu_refuses_bf16_and_q8_by_name() {
        let bf16 = DeviceSpec::Wgpu
            .check(Dtype::Bf16.into())
            .unwrap_err()
            .to_string();
        assert!(bf16.contains("bf16") && bf16.contains("WGSL"), "{bf16}");
        let q8 = DeviceSpec::Wgpu
            .check(BaseWeights::Q8.into())
            .unwrap_err()
            .to_string();
        assert!(q8.contains("q8") && q8.contains("8-bit"), "{q8}");
        DeviceSpec::Wgpu.check(Dtype::F16.into()).unwrap();
        for other in [DeviceSpec::Cpu, DeviceSpec::Cuda(0)] {
            other
                .check(LoadOptions::new(BaseWeights::Q8, Dtype::Bf16))
                .unwrap();
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn missing_feature_is_a_clear_error() {
        let err = DeviceSpec::Cuda(0).device().unwrap_err().to_string();
        assert!(err.contains("--features cuda"), "{err}");
    }
}
