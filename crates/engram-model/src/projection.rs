//! The model's linear layers, with room for low-rank adapters beside the frozen weight.
//!
//! `engram-lora` decides what goes into the slots (configuration, initialisation, files); this module only
//! computes `y = x·W (+ b) + Σ s·(x·A)·B` over the active adapters and folds an adapter into `W` and back.
//! Keeping the low-rank path separate means a training step never builds a full-size `W + s·A·B`, and the base
//! weight gets neither a gradient nor optimizer state.

use std::fmt;
use std::str::FromStr;

use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{Distribution, FloatDType, Int, IntDType, Tensor};

/// How the frozen base weights of the linear layers are held in memory (QLoRA's idea: the base stays
/// quantised, only the adapters are f32).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum BaseWeights {
    /// Dense, in the model's compute dtype ([`Dtype`](crate::Dtype): f32 by default, the fastest on the CPU).
    #[default]
    F32,
    /// 8-bit symmetric integers with an f32 scale per block of 32 output weights ([`Q8Weight`]), expanded
    /// by the layer at each forward pass. A GGUF Q4_1 (4 bits, a scale and a minimum per block) is
    /// re-quantised to 8 bits rather than kept as its blocks: Burn's tensors have no 4-bit integer type.
    Q8,
}

/// Output weights sharing one scale under [`BaseWeights::Q8`] (GGUF's block size too).
pub const QUANT_BLOCK: usize = 32;

/// A frozen weight held as 8-bit integers, one f32 scale per [`QUANT_BLOCK`] consecutive outputs.
///
/// Kept as a Burn `i8` integer tensor and expanded with two element-wise ops rather than as Burn's own
/// quantised float tensor: on the CPU backend Burn's `dequantize` is a serial loop, 32x slower than this
/// (8.0 ms against 0.25 ms for a 576 x 1536 weight, measured here), and it ran once per layer per decoded
/// token.
#[derive(Clone, Debug)]
pub struct Q8Weight {
    /// `[in, out]`, dtype `i8`, in -127..=127.
    pub values: Tensor<2, Int>,
    /// `[in, out / QUANT_BLOCK, 1]`: each block's largest magnitude / 127.
    pub scales: Tensor<3>,
}

impl Q8Weight {
    /// Quantises `w` (`[in, out]`, `out` a multiple of [`QUANT_BLOCK`]) on its device (in f32, whatever
    /// `w`'s float type).
    pub fn quantize(w: Tensor<2>) -> Self {
        let w = w.cast(FloatDType::F32);
        let [d_in, d_out] = w.dims();
        let blocks = w.reshape([d_in, d_out / QUANT_BLOCK, QUANT_BLOCK]);
        // An all-zero block gets a tiny scale instead of a division by zero; its values round to 0.
        let scales = blocks
            .clone()
            .abs()
            .max_dim(2)
            .clamp_min(1e-30)
            .div_scalar(127.0);
        let values = (blocks / scales.clone())
            .round()
            .clamp(-127.0, 127.0)
            .int()
            .cast(IntDType::I8)
            .reshape([d_in, d_out]);
        Self { values, scales }
    }

    /// The weight as f32 `[in, out]`.
    pub fn dequantize(&self) -> Tensor<2> {
        let [d_in, d_out] = self.values.dims();
        (self
            .values
            .clone()
            .float()
            .reshape([d_in, d_out / QUANT_BLOCK, QUANT_BLOCK])
            * self.scales.clone())
        .reshape([d_in, d_out])
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        self.values.dims()
    }

    /// Bytes held: one per weight plus four per block.
    pub fn bytes(&self) -> usize {
        let [d_in, d_out] = self.dims();
        d_in * d_out + 4 * d_in * d_out / QUANT_BLOCK
    }
}

impl FromStr for BaseWeights {
    type Err = crate::ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "f32" | "dense" => Ok(BaseWeights::F32),
            "q8" => Ok(BaseWeights::Q8),
            _ => Err(crate::ModelError::invalid(
                "base weights",
                s,
                "expected f32 (dense, in the compute dtype) or q8",
            )),
        }
    }
}

impl fmt::Display for BaseWeights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BaseWeights::F32 => "f32",
            BaseWeights::Q8 => "q8",
        })
    }
}

/// Whether an adapter takes part in the forward pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AdapterState {
    /// Added as a separate low-rank path.
    Active,
    /// Kept but skipped.
    Inactive,
    /// Folded into the base weight (skipped as a path; unmerge to take it out again).
    Merged,
}

/// One low-rank adapter on one linear layer: `Δy = scale · (x·A)·B`.
#[derive(Module, Debug)]
pub struct LowRank {
    /// `[in, r]` (PEFT stores its transpose, `lora_A.weight` `[r, in]`).
    pub a: Param<Tensor<2>>,
    /// `[r, out]` (PEFT: `lora_B.weight` `[out, r]`).
    pub b: Param<Tensor<2>>,
    /// The adapter's name, unique within its layer.
    #[module(skip)]
    pub name: String,
    /// Multiplier of the low-rank path: `alpha / r`, or `alpha / √r` under rsLoRA.
    #[module(skip)]
    pub scale: f64,
    /// Dropout probability on the adapter's input, applied only in training passes: while `a` requires a
    /// gradient or a [`dropout_seed`](Self::dropout_seed) is set.
    #[module(skip)]
    pub dropout: f64,
    /// Whether the adapter is active, inactive or merged into the base weight.
    #[module(skip)]
    pub state: AdapterState,
    /// Seed of this adapter's dropout masks for the next forward pass (set per micro-batch by the trainer, so
    /// masks depend on nothing but the run's seed and position: resumable and independent of other threads).
    /// `None`: Burn's device RNG. A seed also marks passes as training ones, so that dropout applies in the
    /// untracked first pass of layer checkpointing ([`LayerCheckpoint`](crate::LayerCheckpoint)), with the
    /// masks of the tracked second pass.
    #[module(skip)]
    pub dropout_seed: Option<u64>,
}

impl LowRank {
    /// The adapter's rank `r`.
    pub fn rank(&self) -> usize {
        self.a.dims()[1]
    }

    /// `scale · A·B`, `[in, out]`: what merging adds to the weight.
    pub fn delta(&self) -> Tensor<2> {
        let a = self.a.val().inner();
        let b = self.b.val().inner();
        a.matmul(b).mul_scalar(self.scale)
    }
}

/// A linear layer `x·W + b` whose weight is frozen, plus any number of named low-rank adapters.
#[derive(Module, Debug)]
pub struct Projection {
    /// `[in, out]`, the layout Burn multiplies without a transpose; empty (`[0, 0]`) while the weight is held
    /// in [`quantized`](Self::quantized) form. Read it through [`weight_f32`](Self::weight_f32) and
    /// [`dims`](Self::dims).
    pub weight: Param<Tensor<2>>,
    /// The frozen weight as 8-bit blocks, when the model was loaded with [`BaseWeights::Q8`].
    #[module(skip)]
    pub quantized: Option<Q8Weight>,
    /// `[out]`, present for Qwen2's q/k/v projections.
    pub bias: Option<Param<Tensor<1>>>,
    /// The low-rank adapters on this layer, in the order they were added.
    pub adapters: Vec<LowRank>,
}

impl Projection {
    /// A layer with no adapters.
    pub fn new(weight: Tensor<2>, bias: Option<Tensor<1>>) -> Self {
        Self {
            weight: Param::from_tensor(weight).set_require_grad(false),
            bias: bias.map(|b| Param::from_tensor(b).set_require_grad(false)),
            quantized: None,
            adapters: Vec::new(),
        }
    }

    /// Holds the frozen weight as `base` says (adapters stay f32). Returns `false`, leaving the weight as it
    /// is, where it is already held so or the output width is not a multiple of [`QUANT_BLOCK`].
    pub fn quantize_weight(&mut self, base: BaseWeights) -> bool {
        match (base, self.quantized.is_some()) {
            (BaseWeights::Q8, false) if self.dims()[1].is_multiple_of(QUANT_BLOCK) => {
                let q = Q8Weight::quantize(self.weight.val().inner());
                let device = self.weight.val().device();
                self.set_weight(Tensor::empty([0, 0], &device));
                self.quantized = Some(q);
                true
            }
            (BaseWeights::F32, true) => {
                let w = self.weight_f32();
                self.quantized = None;
                self.set_weight(w);
                true
            }
            _ => false,
        }
    }

    fn set_weight(&mut self, w: Tensor<2>) {
        self.weight = frozen(&self.weight, w);
    }

    /// Holds the dense frozen weight and the bias as `dtype` (a quantised weight keeps its 8-bit blocks and is
    /// expanded to the input's type at each pass; the adapters stay f32, their master copy).
    pub fn set_dtype(&mut self, dtype: FloatDType) {
        if self.quantized.is_none() {
            self.weight = frozen(&self.weight, self.weight.val().cast(dtype));
        }
        if let Some(b) = &mut self.bias {
            *b = frozen(b, b.val().cast(dtype));
        }
    }

    /// Whether the frozen weight is held quantised.
    pub fn is_quantized(&self) -> bool {
        self.quantized.is_some()
    }

    /// The frozen weight as f32 `[in, out]` (expanded from its 8-bit blocks if it is held so).
    pub fn weight_f32(&self) -> Tensor<2> {
        self.weight_as(FloatDType::F32)
    }

    /// The frozen weight as `dtype` (a no-op where it is held so).
    fn weight_as(&self, dtype: FloatDType) -> Tensor<2> {
        match &self.quantized {
            Some(q) => q.dequantize().cast(dtype),
            None => self.weight.val().cast(dtype),
        }
    }

    /// Bytes the frozen weight takes (bias and adapters not counted).
    pub fn weight_bytes(&self) -> usize {
        match &self.quantized {
            Some(q) => q.bytes(),
            None => self.weight.val().dtype().size() * self.weight.dims().iter().product::<usize>(),
        }
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        match &self.quantized {
            Some(q) => q.dims(),
            None => self.weight.dims(),
        }
    }

    /// The adapter called `name`, if any.
    pub fn adapter(&self, name: &str) -> Option<&LowRank> {
        self.adapters.iter().find(|a| a.name == name)
    }

    /// The adapter called `name`, mutably.
    pub fn adapter_mut(&mut self, name: &str) -> Option<&mut LowRank> {
        self.adapters.iter_mut().find(|a| a.name == name)
    }

    /// Applies the layer to `x` (`[..., in]`, any rank ≥ 2), computing in `x`'s float type.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype: FloatDType = x.dtype().into();
        // A no-op for a weight held in x's type; a quantised one is expanded for this pass only.
        let mut y = linear(
            x.clone(),
            self.weight_as(dtype),
            self.bias.as_ref().map(|b| b.val().cast(dtype)),
        );
        for adapter in self
            .adapters
            .iter()
            .filter(|a| a.state == AdapterState::Active)
        {
            let trained = adapter.a.val().is_require_grad() || adapter.dropout_seed.is_some();
            // f32 master factors, cast for this pass (the cast's backward hands f32 gradients back).
            let a = adapter.a.val().cast(dtype);
            let input = if adapter.dropout > 0.0 && trained {
                dropout(x.clone(), adapter.dropout, adapter.dropout_seed)
            } else {
                x.clone()
            };
            // (x·A)·B, never A·B: the rank-r intermediate is what makes LoRA cheap. The scale is applied to that
            // intermediate too (r columns instead of `out`), in the forward and the backward pass.
            let low = linear(input, a, None).mul_scalar(adapter.scale);
            y = y + linear(low, adapter.b.val().cast(dtype), None);
        }
        y
    }

    /// Folds the adapter `name` into the weight (which becomes f32 if it was held quantised: re-quantising would
    /// round the adapter away). Returns `false` when there is no such unmerged adapter.
    pub fn merge(&mut self, name: &str) -> bool {
        let Some(adapter) = self
            .adapters
            .iter_mut()
            .find(|a| a.name == name && a.state != AdapterState::Merged)
        else {
            return false;
        };
        let delta = adapter.delta();
        adapter.state = AdapterState::Merged;
        let dtype = self.stored_dtype();
        let w = self.weight_f32().inner() + delta;
        self.quantized = None;
        self.set_weight(w.cast(dtype));
        true
    }

    /// The float type a dense weight is kept in after a merge: the weight's own, f32 for a quantised one.
    fn stored_dtype(&self) -> FloatDType {
        match &self.quantized {
            Some(_) => FloatDType::F32,
            None => self.weight.val().dtype().into(),
        }
    }

    /// Takes a merged adapter `name` back out of the weight (exact up to the rounding of the weight's float
    /// type: f32's, or bf16's under `--dtype bf16`) and makes it active.
    /// Returns `false` when there is no such merged adapter.
    pub fn unmerge(&mut self, name: &str) -> bool {
        let Some(adapter) = self
            .adapters
            .iter_mut()
            .find(|a| a.name == name && a.state == AdapterState::Merged)
        else {
            return false;
        };
        let delta = adapter.delta();
        adapter.state = AdapterState::Active;
        let dtype = self.stored_dtype();
        let w = self.weight_f32().inner() - delta;
        self.quantized = None;
        self.set_weight(w.cast(dtype));
        true
    }
}

/// `value` as a frozen (no gradient) parameter in `param`'s place, keeping its id.
pub(crate) fn frozen<const D: usize>(
    param: &Param<Tensor<D>>,
    value: Tensor<D>,
) -> Param<Tensor<D>> {
    Param::initialized(param.id, value).set_require_grad(false)
}

/// Inverted dropout: zeroes each element with probability `p` and scales the rest by `1/(1-p)`. With a seed the
/// mask is drawn on the host from splitmix64 streams (one per 4096 elements, in parallel), a pure function of
/// the seed.
fn dropout<const D: usize>(x: Tensor<D>, p: f64, seed: Option<u64>) -> Tensor<D> {
    let device = x.device().inner();
    let dtype: FloatDType = x.dtype().into();
    let Some(seed) = seed else {
        let keep = Tensor::<D>::random(x.shape(), Distribution::Bernoulli(1.0 - p), &device);
        return x * keep.mul_scalar(1.0 / (1.0 - p)).cast(dtype);
    };
    use rayon::prelude::*;
    const CHUNK: usize = 4096;
    let shape = x.shape();
    let n = shape.num_elements();
    let scale = (1.0 / (1.0 - p)) as f32;
    // Keep when the top 24 bits, as a fraction, fall below 1 - p.
    let threshold = ((1.0 - p) * (1u64 << 24) as f64) as u64;
    let mut mask = vec![0f32; n];
    mask.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut state = splitmix64(seed ^ (c as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93));
            for m in chunk {
                state = splitmix64(state);
                *m = if (state >> 40) < threshold {
                    scale
                } else {
                    0.0
                };
            }
        });
    x * Tensor::<D>::from_data(burn::tensor::TensorData::new(mask, shape), &device).cast(dtype)
}

/// One step of splitmix64 (Steele et al.): a cheap, well-mixed 64-bit hash for deriving seeds and masks.
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
