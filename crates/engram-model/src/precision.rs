//! The floating-point type the model computes in (`--dtype`), and how a model is loaded.
//!
//! Mixed precision the usual way: under `bf16`/`f16` the frozen weights and the activations are half
//! precision, while what must stay exact stays f32: the adapters' factors (the master weights the optimizer
//! updates; they are cast for each forward pass and their gradients flow back as f32), the residual stream
//! between sublayers, RMSNorm, the attention softmax while training, and the logits (cast to f32 before any
//! loss or softmax is taken).

use std::fmt;
use std::str::FromStr;

use burn::tensor::FloatDType;

use crate::{BaseWeights, ModelError};

/// The float type of the frozen weights and the activations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Dtype {
    /// 32-bit floats (the default): the fastest on the CPU for everything but f16 decoding.
    #[default]
    F32,
    /// bfloat16: f32's range with 8 bits of mantissa; the usual choice on a GPU.
    Bf16,
    /// IEEE half precision: 11 bits of mantissa but a range up to 65504.
    F16,
}

impl Dtype {
    /// Burn's float type.
    pub fn float_dtype(self) -> FloatDType {
        match self {
            Dtype::F32 => FloatDType::F32,
            Dtype::Bf16 => FloatDType::BF16,
            Dtype::F16 => FloatDType::F16,
        }
    }

    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            Dtype::F32 => 4,
            Dtype::Bf16 | Dtype::F16 => 2,
        }
    }
}

impl FromStr for Dtype {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "float32" => Ok(Dtype::F32),
            "bf16" | "bfloat16" => Ok(Dtype::Bf16),
            "f16" | "float16" | "half" => Ok(Dtype::F16),
            _ => Err(ModelError::invalid(
                "dtype",
                s,
                "expected one of f32, bf16, f16",
            )),
        }
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Dtype::F32 => "f32",
            Dtype::Bf16 => "bf16",
            Dtype::F16 => "f16",
        })
    }
}

/// How a model is held once loaded: its linear layers' frozen weights ([`BaseWeights`]) and the float type
/// everything else computes in ([`Dtype`]). A bare [`BaseWeights`] converts to options with f32 compute.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct LoadOptions {
    /// The linear layers' frozen weights: as the compute dtype, or 8-bit blocks.
    pub base: BaseWeights,
    /// The compute dtype.
    pub dtype: Dtype,
}

impl LoadOptions {
    /// Options with `base` weights and `dtype` compute.
    pub fn new(base: BaseWeights, dtype: Dtype) -> Self {
        Self { base, dtype }
    }
}

impl From<BaseWeights> for LoadOptions {
    fn from(base: BaseWeights) -> Self {
        Self {
            base,
            dtype: Dtype::F32,
        }
    }
}

impl From<Dtype> for LoadOptions {
    fn from(dtype: Dtype) -> Self {
        Self {
            base: BaseWeights::F32,
            dtype,
        }
    }
}

impl fmt::Display for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.base {
            BaseWeights::F32 => write!(f, "{}", self.dtype),
            BaseWeights::Q8 => write!(f, "q8 base, {} compute", self.dtype),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dtypes_parse_print_and_refuse_by_name() {
        for (text, dtype) in [
            ("f32", Dtype::F32),
            ("BF16", Dtype::Bf16),
            ("bfloat16", Dtype::Bf16),
            (" f16 ", Dtype::F16),
            ("half", Dtype::F16),
        ] {
            assert_eq!(text.parse::<Dtype>().unwrap(), dtype, "{text}");
        }
        for dtype in [Dtype::F32, Dtype::Bf16, Dtype::F16] {
            assert_eq!(dtype.to_string().parse::<Dtype>().unwrap(), dtype);
        }
        let err = "fp8".parse::<Dtype>().unwrap_err().to_string();
        assert!(
            err.contains("fp8") && err.contains("f32, bf16, f16"),
            "{err}"
        );
        assert_eq!(Dtype::Bf16.float_dtype(), FloatDType::BF16);
        assert_eq!((Dtype::F32.bytes(), Dtype::F16.bytes()), (4, 2));
        let both = LoadOptions::new(BaseWeights::Q8, Dtype::Bf16);
        assert_eq!(both.to_string(), "q8 base, bf16 compute");
        assert_eq!(LoadOptions::from(Dtype::F16).to_string(), "f16");
        assert_eq!(LoadOptions::from(BaseWeights::Q8).dtype, Dtype::F32);
    }
}
