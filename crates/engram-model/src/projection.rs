//! The model's linear layers, with room for low-rank adapters beside the frozen weight.
//!
//! `engram-lora` decides what goes into the slots (configuration, initialisation, files); this module only
//! computes `y = x·W (+ b) + Σ s·(x·A)·B` over the active adapters and folds an adapter into `W` and back.
//! Keeping the low-rank path separate means a training step never builds a full-size `W + s·A·B`, and the base
//! weight gets neither a gradient nor optimizer state.

use burn::module::{Module, Param};
use burn::tensor::module::linear;
use burn::tensor::{Distribution, Tensor};

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
    /// Dropout probability on the adapter's input, applied only while `a` requires a gradient (training).
    #[module(skip)]
    pub dropout: f64,
    /// Whether the adapter is active, inactive or merged into the base weight.
    #[module(skip)]
    pub state: AdapterState,
    /// Seed of this adapter's dropout masks for the next forward pass (set per micro-batch by the trainer, so
    /// masks depend on nothing but the run's seed and position: resumable and independent of other threads).
    /// `None`: Burn's device RNG.
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
    /// `[in, out]`, the layout Burn multiplies without a transpose.
    pub weight: Param<Tensor<2>>,
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
            adapters: Vec::new(),
        }
    }

    /// `[in, out]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.dims()
    }

    /// The adapter called `name`, if any.
    pub fn adapter(&self, name: &str) -> Option<&LowRank> {
        self.adapters.iter().find(|a| a.name == name)
    }

    /// The adapter called `name`, mutably.
    pub fn adapter_mut(&mut self, name: &str) -> Option<&mut LowRank> {
        self.adapters.iter_mut().find(|a| a.name == name)
    }

    /// Applies the layer to `x` (`[..., in]`, any rank ≥ 2).
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let mut y = linear(
            x.clone(),
            self.weight.val(),
            self.bias.as_ref().map(|b| b.val()),
        );
        for adapter in self
            .adapters
            .iter()
            .filter(|a| a.state == AdapterState::Active)
        {
            let a = adapter.a.val();
            let input = if adapter.dropout > 0.0 && a.is_require_grad() {
                dropout(x.clone(), adapter.dropout, adapter.dropout_seed)
            } else {
                x.clone()
            };
            // (x·A)·B, never A·B: the rank-r intermediate is what makes LoRA cheap. The scale is applied to that
            // intermediate too (r columns instead of `out`), in the forward and the backward pass.
            let low = linear(input, a, None).mul_scalar(adapter.scale);
            y = y + linear(low, adapter.b.val(), None);
        }
        y
    }

    /// Folds the adapter `name` into the weight. Returns `false` when there is no such unmerged adapter.
    pub fn merge(&mut self, name: &str) -> bool {
        let Some(adapter) = self
            .adapters
            .iter_mut()
            .find(|a| a.name == name && a.state != AdapterState::Merged)
        else {
            return false;
        };
        let w = self.weight.val().inner() + adapter.delta();
        adapter.state = AdapterState::Merged;
        self.weight = Param::initialized(self.weight.id, w).set_require_grad(false);
        true
    }

    /// Takes a merged adapter `name` back out of the weight (exact up to f32 rounding) and makes it active.
    /// Returns `false` when there is no such merged adapter.
    pub fn unmerge(&mut self, name: &str) -> bool {
        let Some(adapter) = self
            .adapters
            .iter_mut()
            .find(|a| a.name == name && a.state == AdapterState::Merged)
        else {
            return false;
        };
        let w = self.weight.val().inner() - adapter.delta();
        adapter.state = AdapterState::Active;
        self.weight = Param::initialized(self.weight.id, w).set_require_grad(false);
        true
    }
}

/// Inverted dropout: zeroes each element with probability `p` and scales the rest by `1/(1-p)`. With a seed the
/// mask is drawn on the host from splitmix64 streams (one per 4096 elements, in parallel), a pure function of
/// the seed.
fn dropout<const D: usize>(x: Tensor<D>, p: f64, seed: Option<u64>) -> Tensor<D> {
    let device = x.device().inner();
    let Some(seed) = seed else {
        let keep = Tensor::<D>::random(x.shape(), Distribution::Bernoulli(1.0 - p), &device);
        return x * keep.mul_scalar(1.0 / (1.0 - p));
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
    x * Tensor::<D>::from_data(burn::tensor::TensorData::new(mask, shape), &device)
}

/// One step of splitmix64 (Steele et al.): a cheap, well-mixed 64-bit hash for deriving seeds and masks.
pub fn splitmix64(z: u64) -> u64 {
    let mut z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
