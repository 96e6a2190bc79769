//! The llama-family decoder (Llama, SmolLM, Qwen2) as Burn modules, in one file.
//!
//! Field names follow the Hugging Face modules (`model.layers.N.self_attn.q_proj`, ...) so that LoRA target
//! names and adapter files line up with PEFT. Weights are read in Hugging Face layout (rotate-half RoPE, `[out,
//! in]` linears) and stored the way Burn multiplies (`[in, out]`).

use std::sync::{Arc, Mutex};

use burn::module::{Module, Param};
use burn::nn::{Embedding, RmsNorm};
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, Device, FloatDType, Gradients, Int, Tensor, TensorData, activation};
use engram_formats::{LAYER_LINEARS, ModelConfig, TensorF32, WeightSource};

use crate::ModelError;
use crate::projection::{Projection, frozen};
use crate::{Dtype, LoadOptions};

/// Attention sublayer with grouped-query attention.
#[derive(Module, Debug)]
pub struct SelfAttention {
    /// Query projection, `[hidden, num_heads · head_dim]`.
    pub q_proj: Projection,
    /// Key projection, `[hidden, num_kv_heads · head_dim]`.
    pub k_proj: Projection,
    /// Value projection, `[hidden, num_kv_heads · head_dim]`.
    pub v_proj: Projection,
    /// Output projection, `[num_heads · head_dim, hidden]`.
    pub o_proj: Projection,
    /// Number of query heads.
    #[module(skip)]
    pub num_heads: usize,
    /// Number of key/value heads; each serves `num_heads / num_kv_heads` query heads.
    #[module(skip)]
    pub num_kv_heads: usize,
    /// Width of one head.
    #[module(skip)]
    pub head_dim: usize,
}

/// SwiGLU feed-forward sublayer.
#[derive(Module, Debug)]
pub struct Mlp {
    /// Gate projection, `[hidden, intermediate]`, passed through SiLU.
    pub gate_proj: Projection,
    /// Up projection, `[hidden, intermediate]`, multiplied by the gate.
    pub up_proj: Projection,
    /// Down projection, `[intermediate, hidden]`.
    pub down_proj: Projection,
}

/// One pre-norm decoder block.
#[derive(Module, Debug)]
pub struct DecoderLayer {
    /// RMSNorm before attention.
    pub input_layernorm: RmsNorm,
    /// The attention sublayer.
    pub self_attn: SelfAttention,
    /// RMSNorm before the MLP.
    pub post_attention_layernorm: RmsNorm,
    /// The feed-forward sublayer.
    pub mlp: Mlp,
}

/// The decoder stack without the output head (`model.*` in Hugging Face names).
#[derive(Module, Debug)]
pub struct LlamaModel {
    /// Token embedding, `[vocab, hidden]`.
    pub embed_tokens: Embedding,
    /// The decoder blocks, first to last.
    pub layers: Vec<DecoderLayer>,
    /// Final RMSNorm, applied before the output head.
    pub norm: RmsNorm,
}

/// A llama-family causal language model (`LlamaForCausalLM` / `Qwen2ForCausalLM`).
#[derive(Module, Debug)]
pub struct Llama {
    /// The decoder stack.
    pub model: LlamaModel,
    /// `[hidden, vocab]`. With tied embeddings this is a transposed copy of the embedding: the copy costs
    /// memory but keeps the output GEMM on a contiguous operand.
    pub lm_head: Param<Tensor<2>>,
    /// RoPE tables; built for up to 4096 positions and grown on demand for longer inputs.
    #[module(skip)]
    pub rope: RopeTables,
    /// The hyper-parameters the model was built from.
    #[module(skip)]
    pub config: ModelConfig,
    /// The float type of the frozen weights and activations (see [`set_dtype`](Llama::set_dtype)).
    #[module(skip)]
    pub dtype: Dtype,
    /// While set, forward passes checkpoint their decoder layers into it (see
    /// [`LayerCheckpoint`]); `None` (the default) for an ordinary pass.
    #[module(skip)]
    pub checkpoints: Option<CheckpointSink>,
}

/// Where a layer-checkpointed forward pass leaves what its backward pass needs: one [`LayerCheckpoint`] per
/// pass through the decoder stack. Shared (`Arc`) so a model clone made for one micro-batch can be given its
/// own.
pub type CheckpointSink = Arc<Mutex<Vec<LayerCheckpoint>>>;

/// Activation checkpointing per decoder layer, for training with much less memory.
///
/// An ordinary training pass keeps every layer's activations, and the frozen weights its backward pass
/// multiplies by, until the backward pass: with `--base-weights q8` that is a dense copy of every expanded
/// weight, more memory than a dense model. A checkpointed pass runs the decoder layers outside autodiff,
/// keeping only each layer's input (`[batch, seq, hidden]`); the final norm and head run under autodiff from
/// [`top`](Self::top), a leaf. After the loss's backward pass, [`Llama::backward_layers`] runs each layer again
/// under autodiff from its input, last to first, and back-propagates the gradient arriving from above: one
/// layer's activations and expanded weights exist at a time, for about one more forward pass of compute.
/// Adapter dropout needs a seed ([`LowRank::dropout_seed`](crate::LowRank)) so that both passes draw the same
/// masks (the trainer always sets one).
#[derive(Debug)]
pub struct LayerCheckpoint {
    /// Each decoder layer's input (the residual stream), plain tensors.
    inputs: Vec<Tensor<3>>,
    /// The RoPE rows of the pass, in the compute dtype.
    rope: (Tensor<4>, Tensor<4>),
    /// The attention mask of the pass.
    mask: Option<Tensor<4, Bool>>,
    /// The last layer's output, an autodiff leaf requiring a gradient: the loss is computed from it.
    pub top: Tensor<3>,
}

/// Precomputed RoPE cos/sin tables, `[max_positions, head_dim]` (halves duplicated, as HF's rotate-half uses).
#[derive(Clone, Debug)]
pub struct RopeTables {
    /// Cosines, `[max_positions, head_dim]`.
    pub cos: Tensor<2>,
    /// Sines, `[max_positions, head_dim]`.
    pub sin: Tensor<2>,
}

/// Per-layer key/value cache for incremental decoding.
#[derive(Clone, Debug, Default)]
pub struct KvCache {
    layers: Vec<Option<(Tensor<4>, Tensor<4>)>>,
}

impl KvCache {
    /// An empty cache for `n_layers` layers.
    pub fn new(n_layers: usize) -> Self {
        Self {
            layers: vec![None; n_layers],
        }
    }

    /// Number of positions already cached.
    pub fn len(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.as_ref())
            .map(|(k, _)| k.dims()[2])
            .unwrap_or(0)
    }

    /// Whether nothing is cached yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Repeats every cached row `times` times, in place (row `r` becomes rows `r * times .. (r + 1) * times`):
    /// a batch of prompts is prefilled once and then sampled several times.
    pub fn repeat_rows(&mut self, times: usize) {
        if times <= 1 {
            return;
        }
        for (k, v) in self.layers.iter_mut().flatten() {
            let index = repeat_index(k.dims()[0], times, &k.device());
            *k = k.clone().select(0, index.clone());
            *v = v.clone().select(0, index);
        }
    }

    fn append(&mut self, layer: usize, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let (k, v) = match self.layers[layer].take() {
            Some((pk, pv)) => (Tensor::cat(vec![pk, k], 2), Tensor::cat(vec![pv, v], 2)),
            None => (k, v),
        };
        self.layers[layer] = Some((k.clone(), v.clone()));
        (k, v)
    }
}

/// `[rows * times]` indices `0,0,..,1,1,..`: what `select` needs to repeat each row `times` times.
pub fn repeat_index(rows: usize, times: usize, device: &Device) -> Tensor<1, Int> {
    let index: Vec<i64> = (0..rows * times).map(|i| (i / times) as i64).collect();
    Tensor::from_data(TensorData::new(index, [rows * times]), device)
}

/// One forward pass's inputs: token ids, their positions and which key positions are padding.
#[derive(Clone, Debug)]
pub struct ForwardInput {
    /// `[batch, seq]` token ids.
    pub tokens: Tensor<2, Int>,
    /// `[batch, seq]` RoPE positions (per row, so left padding does not shift them).
    pub positions: Tensor<2, Int>,
    /// `[batch, cached + seq]`, `true` where the key position is padding. `None`: no padding.
    pub key_padding: Option<Tensor<2, Bool>>,
    /// `[batch, seq]` segment ids for packed rows: a token attends only to earlier tokens of its own
    /// segment. `None`: one segment per row. Not combinable with a KV cache.
    pub segments: Option<Tensor<2, Int>>,
}

impl ForwardInput {
    /// Unpacked input: tokens, their positions and optional key padding.
    pub fn new(
        tokens: Tensor<2, Int>,
        positions: Tensor<2, Int>,
        key_padding: Option<Tensor<2, Bool>>,
    ) -> Self {
        Self {
            tokens,
            positions,
            key_padding,
            segments: None,
        }
    }

    /// The same input on `device`.
    pub fn to_device(self, device: &Device) -> Self {
        Self {
            tokens: self.tokens.to_device(device),
            positions: self.positions.to_device(device),
            // As ints: Burn 0.22's cubecl backends panic on flex's native bools in a cross-backend move
            // (`bool_from_data`: "Unsupported dtype Bool(Native)", found moving a batch to wgpu).
            key_padding: self.key_padding.map(|t| t.int().to_device(device).bool()),
            segments: self.segments.map(|t| t.to_device(device)),
        }
    }
}

/// Which positions' logits a forward pass computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Logits {
    /// Every position (training, scoring).
    All,
    /// Only the last position (generation): skips a `[seq, vocab]` GEMM.
    Last,
}

impl SelfAttention {
    fn forward(
        &self,
        x: Tensor<3>,
        rope: &(Tensor<4>, Tensor<4>),
        mask: Option<Tensor<4, Bool>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let [b, s, _] = x.dims();
        let (nh, nkv, hd) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let q = self
            .q_proj
            .forward(x.clone())
            .reshape([b, s, nh, hd])
            .swap_dims(1, 2);
        let k = self
            .k_proj
            .forward(x.clone())
            .reshape([b, s, nkv, hd])
            .swap_dims(1, 2);
        let v = self
            .v_proj
            .forward(x)
            .reshape([b, s, nkv, hd])
            .swap_dims(1, 2);
        let q = apply_rope(q, rope);
        let k = apply_rope(k, rope);
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, k, v),
            None => (k, v),
        };
        let dtype: FloatDType = q.dtype().into();
        // Only the fused CPU kernel shares kv heads itself (GQA); Burn's autodiff fallback and the GPU backends'
        // attention need them repeated (cubecl's matmul refuses 9 query heads against 3 kv heads). The autodiff
        // fallback takes its softmax in the tensors' own type, so under half precision it is given f32 (the
        // fused kernels accumulate in f32 themselves).
        let autodiff = q.is_autodiff() || k.is_autodiff() || v.is_autodiff();
        let (q, k, v) = if autodiff {
            let up = |t: Tensor<4>| t.cast(FloatDType::F32);
            (
                up(q),
                up(repeat_kv(k, nh / nkv)),
                up(repeat_kv(v, nh / nkv)),
            )
        } else if q.device() != Device::flex() {
            (q, repeat_kv(k, nh / nkv), repeat_kv(v, nh / nkv))
        } else {
            (q, k, v)
        };
        // Causal masking is bottom-right aligned, which is what a KV cache needs.
        let options = AttentionModuleOptions {
            scale: None,
            softcap: None,
            is_causal: true,
        };
        let out = attention(q, k, v, mask, None, options).cast(dtype);
        self.o_proj
            .forward(out.swap_dims(1, 2).reshape([b, s, nh * hd]))
    }
}

/// Expands `[b, n_kv, s, d]` to `[b, n_kv * groups, s, d]` (each kv head shared by `groups` query heads).
fn repeat_kv(x: Tensor<4>, groups: usize) -> Tensor<4> {
    if groups == 1 {
        return x;
    }
    let [b, nkv, s, d] = x.dims();
    x.unsqueeze_dim::<5>(2)
        .expand([b, nkv, groups, s, d])
        .reshape([b, nkv * groups, s, d])
}

/// HF rotate-half RoPE: `x * cos + rotate_half(x) * sin`, tables already gathered to `[b, 1, s, d]`.
fn apply_rope(x: Tensor<4>, (cos, sin): &(Tensor<4>, Tensor<4>)) -> Tensor<4> {
    let d = x.dims()[3];
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.clone().narrow(3, d / 2, d / 2);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * cos.clone() + rotated * sin.clone()
}

impl Mlp {
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let gate = activation::silu(self.gate_proj.forward(x.clone()));
        self.down_proj.forward(gate * self.up_proj.forward(x))
    }
}

impl DecoderLayer {
    /// `x` is the residual stream, kept in f32 whatever `dtype` the sublayers compute in: 30 layers of
    /// half-precision sums otherwise add up (measured on the reference prompts, top-10 logit error as a share
    /// of the top logit: bf16 0.33-0.74% with an f32 stream against 0.39-0.93% with a bf16 one; f16
    /// 0.07-0.10% against 0.05-0.29%).
    fn forward(
        &self,
        x: Tensor<3>,
        dtype: FloatDType,
        rope: &(Tensor<4>, Tensor<4>),
        mask: Option<Tensor<4, Bool>>,
        cache: Option<(&mut KvCache, usize)>,
    ) -> Tensor<3> {
        let attn = self.self_attn.forward(
            rms_norm(&self.input_layernorm, x.clone(), dtype),
            rope,
            mask,
            cache,
        );
        let h = x + attn.cast(FloatDType::F32);
        let mlp = self
            .mlp
            .forward(rms_norm(&self.post_attention_layernorm, h.clone(), dtype));
        h + mlp.cast(FloatDType::F32)
    }
}

/// RMSNorm of the f32 residual stream, with its statistics and scale in f32 (as Hugging Face's Llama does),
/// the result cast to the compute `dtype`.
fn rms_norm(norm: &RmsNorm, x: Tensor<3>, dtype: FloatDType) -> Tensor<3> {
    norm.forward(x).cast(dtype)
}

impl RopeTables {
    /// Tables for positions `0..max_positions`, with Llama-3 frequency scaling when configured.
    pub fn new(config: &ModelConfig, max_positions: usize, device: &Device) -> Self {
        let inv_freq = rope_inv_freq(config);
        let half = inv_freq.len();
        let d = half * 2;
        let mut cos = vec![0f32; max_positions * d];
        let mut sin = vec![0f32; max_positions * d];
        for p in 0..max_positions {
            for (i, f) in inv_freq.iter().enumerate() {
                // f64 angles: f32 loses precision at large positions.
                let angle = p as f64 * f;
                let (s, c) = angle.sin_cos();
                for j in [i, i + half] {
                    cos[p * d + j] = c as f32;
                    sin[p * d + j] = s as f32;
                }
            }
        }
        Self {
            cos: Tensor::from_data(TensorData::new(cos, [max_positions, d]), device),
            sin: Tensor::from_data(TensorData::new(sin, [max_positions, d]), device),
        }
    }

    /// Number of positions the tables cover.
    pub fn max_positions(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Gathers the tables at `positions` (`[b, s]`) into `[b, 1, s, d]`.
    fn gather(&self, positions: Tensor<2, Int>) -> (Tensor<4>, Tensor<4>) {
        let [b, s] = positions.dims();
        let d = self.cos.dims()[1];
        let flat = positions.reshape([b * s]);
        let cos = self
            .cos
            .clone()
            .select(0, flat.clone())
            .reshape([b, 1, s, d]);
        let sin = self.sin.clone().select(0, flat).reshape([b, 1, s, d]);
        (cos, sin)
    }
}

/// Inverse RoPE frequencies `theta^(-2i/d)`, rescaled the Llama-3 way when the config asks for it.
fn rope_inv_freq(config: &ModelConfig) -> Vec<f64> {
    let d = config.head_dim;
    let base: Vec<f64> = (0..d / 2)
        .map(|i| 1.0 / config.rope_theta.powf(2.0 * i as f64 / d as f64))
        .collect();
    let Some(s) = &config.rope_scaling else {
        return base;
    };
    let old_ctx = s.original_max_position_embeddings as f64;
    let low_wavelen = old_ctx / s.low_freq_factor;
    let high_wavelen = old_ctx / s.high_freq_factor;
    base.into_iter()
        .map(|f| {
            let wavelen = 2.0 * std::f64::consts::PI / f;
            if wavelen < high_wavelen {
                f
            } else if wavelen > low_wavelen {
                f / s.factor
            } else {
                let smooth = (old_ctx / wavelen - s.low_freq_factor)
                    / (s.high_freq_factor - s.low_freq_factor);
                (1.0 - smooth) * f / s.factor + smooth * f
            }
        })
        .collect()
}

/// What [`Llama::forward_detailed`] returns.
pub struct ForwardOutput {
    /// `[batch, seq, vocab]` (or `[batch, 1, vocab]` with [`Logits::Last`]).
    pub logits: Tensor<3>,
    /// Hidden states: index 0 the embeddings, then after each layer, the last one after the final norm
    /// (Hugging Face's `output_hidden_states` convention). Empty unless asked for.
    pub hidden_states: Vec<Tensor<3>>,
}

impl Llama {
    /// Builds the model from any weight source (GGUF file or Hugging Face folder) on `device`, in f32.
    pub fn load(
        source: &dyn WeightSource,
        device: &Device,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, ModelError> {
        Self::load_with(source, device, LoadOptions::default(), progress)
    }

    /// [`load`](Self::load), holding the model as `options` say (a [`BaseWeights`](crate::BaseWeights), a
    /// [`Dtype`] or both as [`LoadOptions`]); each layer is converted as it is read, so the whole model is
    /// never in memory as f32.
    pub fn load_with(
        source: &dyn WeightSource,
        device: &Device,
        options: impl Into<LoadOptions>,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Self, ModelError> {
        let options = options.into();
        let c = source.config().clone();
        validate_config(source, &c)?;
        let total = c.num_hidden_layers + 2;
        let loader = Loader {
            source,
            device,
            options,
        };
        let embed = loader.tensor("model.embed_tokens.weight", &[c.vocab_size, c.hidden_size])?;
        progress(1, total);
        let mut layers = Vec::with_capacity(c.num_hidden_layers);
        let (q_out, kv_out) = (
            c.num_attention_heads * c.head_dim,
            c.num_key_value_heads * c.head_dim,
        );
        for i in 0..c.num_hidden_layers {
            let p = |n: &str| format!("model.layers.{i}.{n}");
            let bias = c.attention_bias;
            layers.push(DecoderLayer {
                input_layernorm: loader.norm(&p("input_layernorm.weight"), &c)?,
                self_attn: SelfAttention {
                    q_proj: loader.linear(&p("self_attn.q_proj"), c.hidden_size, q_out, bias)?,
                    k_proj: loader.linear(&p("self_attn.k_proj"), c.hidden_size, kv_out, bias)?,
                    v_proj: loader.linear(&p("self_attn.v_proj"), c.hidden_size, kv_out, bias)?,
                    o_proj: loader.linear(&p("self_attn.o_proj"), q_out, c.hidden_size, false)?,
                    num_heads: c.num_attention_heads,
                    num_kv_heads: c.num_key_value_heads,
                    head_dim: c.head_dim,
                },
                post_attention_layernorm: loader.norm(&p("post_attention_layernorm.weight"), &c)?,
                mlp: Mlp {
                    gate_proj: loader.linear(
                        &p("mlp.gate_proj"),
                        c.hidden_size,
                        c.intermediate_size,
                        false,
                    )?,
                    up_proj: loader.linear(
                        &p("mlp.up_proj"),
                        c.hidden_size,
                        c.intermediate_size,
                        false,
                    )?,
                    down_proj: loader.linear(
                        &p("mlp.down_proj"),
                        c.intermediate_size,
                        c.hidden_size,
                        false,
                    )?,
                },
            });
            progress(i + 2, total);
        }
        let dtype = options.dtype.float_dtype();
        let lm_head = if c.tie_word_embeddings {
            transpose_to_tensor(&embed, device)
        } else {
            let w = loader.tensor("lm_head.weight", &[c.vocab_size, c.hidden_size])?;
            transpose_to_tensor(&w, device)
        }
        .cast(dtype);
        let norm = loader.norm("model.norm.weight", &c)?;
        let embed_tokens = Embedding {
            weight: Param::from_tensor(to_tensor::<2>(embed, device).cast(dtype)),
        };
        progress(total, total);
        // RoPE tables beyond a few thousand positions cost memory for nothing at our prompt sizes; they are
        // rebuilt on demand by `ensure_positions`.
        let rope = RopeTables::new(&c, c.max_position_embeddings.min(4096), device);
        Ok(Self {
            model: LlamaModel {
                embed_tokens,
                layers,
                norm,
            },
            lm_head: Param::from_tensor(lm_head),
            rope,
            config: c,
            dtype: options.dtype,
            checkpoints: None,
        })
    }

    /// Converts the frozen weights (embedding, output head, dense linear weights and biases) to `dtype`, in
    /// which the activations are then computed. RMSNorm scales, RoPE tables, adapters and 8-bit blocks are
    /// left as they are; logits come out f32 whatever the dtype.
    pub fn set_dtype(&mut self, dtype: Dtype) {
        let to = dtype.float_dtype();
        for p in [&mut self.model.embed_tokens.weight, &mut self.lm_head] {
            *p = frozen(p, p.val().cast(to));
        }
        for (_, p) in self.projections_mut() {
            p.set_dtype(to);
        }
        self.dtype = dtype;
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.lm_head.val().device()
    }

    /// A copy of the model on `device`: every weight (in the dtype it is held in, 8-bit blocks included), the
    /// adapters with their settings, and the RoPE tables. Parameters keep their ids, so a data-parallel
    /// trainer can match a replica's adapter factors with the original's. A copy on the model's own device
    /// shares the frozen weights instead of copying them.
    pub fn replicate(&self, device: &Device) -> Llama {
        let mut copy = self.clone().fork(device);
        // `fork` moves parameters only; the `#[module(skip)]` tensors go by hand.
        copy.rope = RopeTables {
            cos: self.rope.cos.clone().to_device(device),
            sin: self.rope.sin.clone().to_device(device),
        };
        for (_, p) in copy.projections_mut() {
            if let Some(q) = p.quantized.take() {
                p.quantized = Some(crate::Q8Weight {
                    values: q.values.to_device(device),
                    scales: q.scales.to_device(device),
                });
            }
        }
        copy
    }

    /// The backward pass through the decoder layers of a checkpointed forward pass ([`LayerCheckpoint`]):
    /// `grads` are the gradients of a loss computed from `checkpoint.top`. Each layer runs again under autodiff
    /// from its input, last to first, and its backward pass starts from the gradient arriving from the layer
    /// above. Returns each layer's gradients, last layer first: together they hold every adapter factor's
    /// gradient (read them with `Tensor::grad` on each). Empty when the loss does not depend on the layers.
    pub fn backward_layers(
        &self,
        checkpoint: LayerCheckpoint,
        grads: &Gradients,
    ) -> Vec<Gradients> {
        let LayerCheckpoint {
            inputs,
            rope,
            mask,
            top,
        } = checkpoint;
        let Some(mut upstream) = top.grad(grads) else {
            return Vec::new();
        };
        let dtype = self.dtype.float_dtype();
        let mut out = Vec::with_capacity(inputs.len());
        for (i, (layer, x)) in self.model.layers.iter().zip(inputs).enumerate().rev() {
            // The first layer's input comes from the frozen embedding: no gradient is needed there.
            let x = if i > 0 {
                x.autodiff().require_grad()
            } else {
                x
            };
            let y = layer.forward(x.clone(), dtype, &rope, mask.clone(), None);
            // `sum(y · upstream)` has gradient `upstream` with respect to `y`: the chain rule continues from there.
            let mut layer_grads = (y * upstream.clone()).sum().backward();
            let below = if i > 0 {
                x.grad_remove(&mut layer_grads)
            } else {
                None
            };
            out.push(layer_grads);
            match below {
                Some(g) => upstream = g,
                None => break,
            }
        }
        out
    }

    /// A clone whose adapter factors are plain tensors (no autodiff leaves), for the untracked first pass of
    /// layer checkpointing; dropout still applies, as the factors' seeds mark the pass as a training one.
    fn untracked_factors(&self) -> Llama {
        let mut copy = self.clone();
        copy.checkpoints = None;
        for (_, p) in copy.projections_mut() {
            for a in &mut p.adapters {
                a.a = frozen(&a.a, a.a.val().inner());
                a.b = frozen(&a.b, a.b.val().inner());
            }
        }
        copy
    }

    /// A fresh KV cache for this model.
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.config.num_hidden_layers)
    }

    /// Makes sure the RoPE tables cover `positions` positions (up to the model's maximum).
    pub fn ensure_positions(&mut self, positions: usize) -> Result<(), ModelError> {
        if positions > self.config.max_position_embeddings {
            return Err(ModelError::InvalidOption {
                name: "sequence length".into(),
                value: positions.to_string(),
                reason: format!(
                    "the model supports at most {} positions",
                    self.config.max_position_embeddings
                ),
            });
        }
        if positions > self.rope.max_positions() {
            let n = positions
                .next_power_of_two()
                .min(self.config.max_position_embeddings);
            self.rope = RopeTables::new(&self.config, n, &self.device());
        }
        Ok(())
    }

    /// Logits for `input`, appending to `cache` when given.
    pub fn forward(
        &self,
        input: ForwardInput,
        cache: Option<&mut KvCache>,
        logits: Logits,
    ) -> Tensor<3> {
        self.forward_detailed(input, cache, logits, false).logits
    }

    /// Like [`forward`](Self::forward), optionally returning every layer's hidden states.
    pub fn forward_detailed(
        &self,
        input: ForwardInput,
        cache: Option<&mut KvCache>,
        logits: Logits,
        hidden_states: bool,
    ) -> ForwardOutput {
        let mut hidden = Vec::new();
        let x = self.hidden_impl(input, cache, hidden_states.then_some(&mut hidden));
        let s = x.dims()[1];
        let x = match logits {
            Logits::All => x,
            Logits::Last => x.narrow(1, s - 1, 1),
        };
        let [b, s2, h] = x.dims();
        let logits =
            self.project_logits(x.reshape([b * s2, h]))
                .reshape([b, s2, self.config.vocab_size]);
        ForwardOutput {
            logits,
            hidden_states: hidden,
        }
    }

    /// The final (normed) hidden states `[batch, seq, hidden]`, before the output head. Training objectives
    /// use this with [`project_logits`](Self::project_logits) to compute logits only where a loss is taken.
    pub fn final_hidden(&self, input: ForwardInput, cache: Option<&mut KvCache>) -> Tensor<3> {
        self.hidden_impl(input, cache, None)
    }

    /// The output head: `[n, hidden]` hidden states to `[n, vocab]` logits, in f32 whatever the model's
    /// dtype (losses and softmaxes over the vocabulary are taken in f32).
    pub fn project_logits(&self, hidden: Tensor<2>) -> Tensor<2> {
        let head = self.lm_head.val();
        hidden.cast(head.dtype()).matmul(head).cast(FloatDType::F32)
    }

    fn hidden_impl(
        &self,
        input: ForwardInput,
        mut cache: Option<&mut KvCache>,
        mut hidden: Option<&mut Vec<Tensor<3>>>,
    ) -> Tensor<3> {
        let [b, s] = input.tokens.dims();
        let (cos, sin) = self.rope.gather(input.positions);
        let dtype = self.dtype.float_dtype();
        let rope = (cos.cast(dtype), sin.cast(dtype));
        let mut mask = input.key_padding.map(|pad| {
            let k = pad.dims()[1];
            pad.reshape([b, 1, 1, k]).expand([b, 1, s, k])
        });
        if let Some(seg) = input.segments {
            let q = seg.clone().reshape([b, 1, s, 1]).expand([b, 1, s, s]);
            let k = seg.reshape([b, 1, 1, s]).expand([b, 1, s, s]);
            let cross = q.not_equal(k);
            mask = Some(match mask {
                Some(m) => m.bool_or(cross),
                None => cross,
            });
        }
        let mut x = self
            .model
            .embed_tokens
            .forward(input.tokens)
            .cast(FloatDType::F32);
        if let (Some(sink), None) = (&self.checkpoints, &cache) {
            let mut inputs = Vec::with_capacity(self.model.layers.len());
            // The same layers with plain adapter factors: no autodiff graph, so each layer's activations and
            // expanded weights are freed as soon as the next layer has its input.
            let untracked = self.untracked_factors();
            for layer in &untracked.model.layers {
                inputs.push(x.clone());
                x = layer.forward(x, dtype, &rope, mask.clone(), None);
            }
            let top = x.autodiff().require_grad();
            sink.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(LayerCheckpoint {
                    inputs,
                    rope,
                    mask,
                    top: top.clone(),
                });
            return rms_norm(&self.model.norm, top, dtype);
        }
        for (i, layer) in self.model.layers.iter().enumerate() {
            if let Some(h) = hidden.as_deref_mut() {
                h.push(x.clone());
            }
            let c = cache.as_deref_mut().map(|c| (c, i));
            x = layer.forward(x, dtype, &rope, mask.clone(), c);
        }
        let x = rms_norm(&self.model.norm, x, dtype);
        if let Some(h) = hidden {
            h.push(x.clone().cast(FloatDType::F32));
        }
        x
    }

    /// Holds the frozen weights of every linear layer as `base` says (the embedding and the output head stay in
    /// the compute dtype); [`BaseWeights::F32`](crate::BaseWeights::F32) expands quantised ones back. Returns
    /// how many layers changed.
    pub fn set_base_weights(&mut self, base: crate::BaseWeights) -> usize {
        let dtype = self.dtype.float_dtype();
        let mut changed = 0;
        for (_, p) in self.projections_mut() {
            if p.quantize_weight(base) {
                // A weight expanded back from 8 bits is dense again: held in the compute dtype.
                p.set_dtype(dtype);
                changed += 1;
            }
        }
        changed
    }

    /// Every linear layer with its Hugging Face module name (`model.layers.3.self_attn.q_proj`), in order.
    pub fn projections(&self) -> Vec<(String, &Projection)> {
        let layers = self.model.layers.iter().map(DecoderLayer::linears);
        named_linears(layers)
    }

    /// [`projections`](Self::projections), mutably.
    pub fn projections_mut(&mut self) -> Vec<(String, &mut Projection)> {
        let layers = self.model.layers.iter_mut().map(DecoderLayer::linears_mut);
        named_linears(layers)
    }
}

/// Pairs each layer's linears (in [`LAYER_LINEARS`] order) with their full module names.
fn named_linears<P>(layers: impl Iterator<Item = [P; 7]>) -> Vec<(String, P)> {
    layers
        .enumerate()
        .flat_map(|(i, linears)| {
            LAYER_LINEARS
                .iter()
                .zip(linears)
                .map(move |(n, p)| (format!("model.layers.{i}.{n}"), p))
        })
        .collect()
}

impl DecoderLayer {
    /// The seven linear layers, in [`LAYER_LINEARS`] order.
    pub fn linears(&self) -> [&Projection; 7] {
        let (a, m) = (&self.self_attn, &self.mlp);
        [
            &a.q_proj,
            &a.k_proj,
            &a.v_proj,
            &a.o_proj,
            &m.gate_proj,
            &m.up_proj,
            &m.down_proj,
        ]
    }

    /// [`linears`](Self::linears), mutably.
    pub fn linears_mut(&mut self) -> [&mut Projection; 7] {
        let (a, m) = (&mut self.self_attn, &mut self.mlp);
        [
            &mut a.q_proj,
            &mut a.k_proj,
            &mut a.v_proj,
            &mut a.o_proj,
            &mut m.gate_proj,
            &mut m.up_proj,
            &mut m.down_proj,
        ]
    }
}

fn validate_config(source: &dyn WeightSource, c: &ModelConfig) -> Result<(), ModelError> {
    let bad = |field: &str, message: String| {
        Err(ModelError::Format(engram_formats::FormatError::BadConfig {
            path: source.path().to_path_buf(),
            field: field.into(),
            message,
        }))
    };
    if c.num_key_value_heads == 0 || !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
        return bad(
            "num_key_value_heads",
            format!(
                "{} does not divide num_attention_heads {}",
                c.num_key_value_heads, c.num_attention_heads
            ),
        );
    }
    if c.head_dim == 0 || !c.head_dim.is_multiple_of(2) {
        return bad(
            "head_dim",
            format!("{} must be even and non-zero", c.head_dim),
        );
    }
    Ok(())
}

struct Loader<'a> {
    source: &'a dyn WeightSource,
    device: &'a Device,
    options: LoadOptions,
}

impl Loader<'_> {
    fn tensor(&self, name: &str, shape: &[usize]) -> Result<TensorF32, ModelError> {
        let t = self.source.tensor(name)?;
        if t.shape != shape {
            return Err(ModelError::WrongShape {
                path: self.source.path().to_path_buf(),
                tensor: name.into(),
                expected: shape.to_vec(),
                found: t.shape,
            });
        }
        Ok(t)
    }

    fn linear(
        &self,
        name: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Projection, ModelError> {
        let w = self.tensor(&format!("{name}.weight"), &[d_out, d_in])?;
        let bias = if bias {
            let b = self.tensor(&format!("{name}.bias"), &[d_out])?;
            Some(to_tensor::<1>(b, self.device))
        } else {
            None
        };
        let mut p = Projection::new(transpose_to_tensor(&w, self.device), bias);
        p.quantize_weight(self.options.base);
        p.set_dtype(self.options.dtype.float_dtype());
        Ok(p)
    }

    fn norm(&self, name: &str, c: &ModelConfig) -> Result<RmsNorm, ModelError> {
        let w = self.tensor(name, &[c.hidden_size])?;
        Ok(RmsNorm {
            gamma: Param::from_tensor(to_tensor::<1>(w, self.device)),
            epsilon: c.rms_norm_eps,
        })
    }
}

fn to_tensor<const D: usize>(t: TensorF32, device: &Device) -> Tensor<D> {
    Tensor::from_data(TensorData::new(t.data, t.shape), device)
}

/// `[out, in]` (PyTorch) to a contiguous `[in, out]` (Burn) tensor.
fn transpose_to_tensor(t: &TensorF32, device: &Device) -> Tensor<2> {
    to_tensor(t.transposed(), device)
}
