//! Attaching named adapters to a model, choosing which are active, merging them into the weights.

use burn::module::Param;
use burn::tensor::{Tensor, TensorData};
use engram_model::{AdapterState, Llama, LowRank, Projection};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::{LoraConfig, LoraError};

/// Which of an adapter's two matrices.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Factor {
    /// `lora_A`, `[in, r]` in engram (`[r, in]` in PEFT files).
    A,
    /// `lora_B`, `[r, out]` in engram (`[out, r]` in PEFT files).
    B,
}

/// PEFT's key for one factor of the adapter on `module` (`model.layers.0.self_attn.q_proj`).
pub fn peft_key(module: &str, factor: Factor) -> String {
    let f = match factor {
        Factor::A => "lora_A",
        Factor::B => "lora_B",
    };
    format!("base_model.model.{module}.{f}.weight")
}

/// The short name (`q_proj`) and layer index of a full module name (`model.layers.3.self_attn.q_proj`).
pub(crate) fn split_module(name: &str) -> Option<(usize, &str)> {
    let rest = name.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let short = rest.rsplit('.').next()?;
    Some((layer.parse().ok()?, short))
}

/// Adapter management on a model: PEFT's `add_adapter` / `set_adapter` / `disable_adapter` /
/// `merge_adapter` in Rust. Implemented for [`Llama`].
pub trait Adapters {
    /// Attaches a new adapter `name` to the layers `config` targets: A drawn Kaiming-uniform like PEFT
    /// (`U(-1/sqrt(in), 1/sqrt(in))`) from `seed`, B zero, so the model's output is unchanged until trained.
    /// The new adapter is active alongside any already active. Returns the number of layers adapted.
    fn add_adapter(
        &mut self,
        name: &str,
        config: &LoraConfig,
        seed: u64,
    ) -> Result<usize, LoraError>;
    /// Detaches `name` (unmerging it first if merged).
    fn remove_adapter(&mut self, name: &str) -> Result<(), LoraError>;
    /// Names of the attached adapters, in the order they were added.
    fn adapter_names(&self) -> Vec<String>;
    /// Makes exactly `names` active (summed), the other unmerged adapters inactive. `&[]` runs the base model.
    fn set_active_adapters(&mut self, names: &[&str]) -> Result<(), LoraError>;
    /// A copy of the model that runs with every adapter switched off: the base model, e.g. as a distillation
    /// teacher. Tensors are shared, not copied (Burn tensors are reference-counted), so it costs no weight
    /// memory. Fails if an adapter is merged (its update is inside the weights).
    fn without_adapters(&self) -> Result<Llama, LoraError>;
    /// Folds `name` into the base weights; forward passes then skip its low-rank path.
    fn merge_adapter(&mut self, name: &str) -> Result<(), LoraError>;
    /// Takes a merged `name` back out of the weights and makes it active again.
    fn unmerge_adapter(&mut self, name: &str) -> Result<(), LoraError>;
    /// Merges every active adapter and drops all adapters: a plain model, e.g. for export.
    fn merge_and_unload(&mut self) -> Result<(), LoraError>;
    /// The adapter's factors with their PEFT keys, in model order.
    fn adapter_factors(&self, name: &str) -> Result<Vec<(String, Factor, Tensor<2>)>, LoraError>;
    /// Visits every factor of adapter `name` mutably, with its PEFT key (for optimizers and loaders).
    fn visit_factors_mut(
        &mut self,
        name: &str,
        f: &mut dyn FnMut(&str, Factor, &mut Param<Tensor<2>>),
    ) -> Result<(), LoraError>;
    /// The configuration-independent facts of adapter `name`: rank, scale, dropout, module names.
    fn adapter_summary(&self, name: &str) -> Result<AdapterSummary, LoraError>;
    /// Seeds the dropout masks of adapter `name` for the next forward pass (each layer gets its own stream
    /// derived from `seed`); `None` returns to Burn's device RNG.
    fn set_dropout_seed(&mut self, name: &str, seed: Option<u64>) -> Result<(), LoraError>;
}

/// What is attached under one adapter name.
#[derive(Clone, Debug, PartialEq)]
pub struct AdapterSummary {
    /// Rank of the update (`r`).
    pub rank: usize,
    /// Multiplier of the low-rank path (`lora_alpha / r`, or `/ sqrt(r)` with rsLoRA).
    pub scale: f64,
    /// Dropout probability on the adapter input during training.
    pub dropout: f64,
    /// Whether the adapter is active, inactive or merged (the state of its first module).
    pub state: AdapterState,
    /// Full module names (`model.layers.0.self_attn.q_proj`).
    pub modules: Vec<String>,
    /// Trainable parameters (sum of A and B sizes).
    pub parameters: usize,
}

impl Adapters for Llama {
    fn add_adapter(
        &mut self,
        name: &str,
        config: &LoraConfig,
        seed: u64,
    ) -> Result<usize, LoraError> {
        config.validate()?;
        if name.is_empty() {
            return Err(LoraError::invalid(
                "adapter name",
                "\"\"",
                "must not be empty",
            ));
        }
        if self.adapter_names().iter().any(|n| n == name) {
            return Err(LoraError::DuplicateAdapter(name.into()));
        }
        let n_layers = self.config().num_hidden_layers;
        if let Some(bad) = config
            .layers_to_transform
            .iter()
            .flatten()
            .find(|&&l| l >= n_layers)
        {
            return Err(LoraError::invalid(
                "layers_to_transform",
                bad,
                format!("the model has {n_layers} layers (0..{})", n_layers - 1),
            ));
        }
        let targeted = |module: &str| {
            split_module(module).is_some_and(|(layer, short)| {
                config.target_modules.matches(short)
                    && config
                        .layers_to_transform
                        .as_ref()
                        .is_none_or(|l| l.contains(&layer))
            })
        };
        // Sized before anything is allocated: a rank of 100000 would otherwise abort the process.
        let parameters: u128 = self
            .projections()
            .iter()
            .filter(|(module, _)| targeted(module))
            .map(|(_, proj)| {
                let [d_in, d_out] = proj.dims();
                config.r as u128 * (d_in + d_out) as u128
            })
            .sum();
        check_adapter_memory(config.r, parameters, 1, available_for_adapters())?;
        let device = self.device();
        let mut rng = StdRng::seed_from_u64(seed);
        let mut count = 0;
        for (module, proj) in self.projections_mut() {
            if !targeted(&module) {
                continue;
            }
            let [d_in, d_out] = proj.dims();
            let bound = 1.0 / (d_in as f32).sqrt();
            let a: Vec<f32> = (0..d_in * config.r)
                .map(|_| rng.random_range(-bound..bound))
                .collect();
            let a = Tensor::<2>::from_data(TensorData::new(a, [d_in, config.r]), &device);
            let b = Tensor::<2>::zeros([config.r, d_out], &device);
            proj.adapters.push(low_rank(name, config, a, b));
            count += 1;
        }
        if count == 0 {
            return Err(LoraError::invalid(
                "target_modules",
                format!("{:?}", config.target_modules),
                "matched no layer of this model",
            ));
        }
        Ok(count)
    }

    fn remove_adapter(&mut self, name: &str) -> Result<(), LoraError> {
        self.require(name)?;
        for (_, proj) in self.projections_mut() {
            proj.unmerge(name);
            proj.adapters.retain(|a| a.name != name);
        }
        Ok(())
    }

    fn adapter_names(&self) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for (_, proj) in self.projections() {
            for a in &proj.adapters {
                if !names.contains(&a.name) {
                    names.push(a.name.clone());
                }
            }
        }
        names
    }

    fn set_active_adapters(&mut self, names: &[&str]) -> Result<(), LoraError> {
        for n in names {
            self.require(n)?;
        }
        for (_, proj) in self.projections_mut() {
            for a in &mut proj.adapters {
                if a.state != AdapterState::Merged {
                    a.state = if names.contains(&a.name.as_str()) {
                        AdapterState::Active
                    } else {
                        AdapterState::Inactive
                    };
                }
            }
        }
        Ok(())
    }

    fn without_adapters(&self) -> Result<Llama, LoraError> {
        let mut base = self.clone();
        for (_, proj) in base.projections_mut() {
            for a in &mut proj.adapters {
                if a.state == AdapterState::Merged {
                    return Err(LoraError::State {
                        name: a.name.clone(),
                        reason: "is merged into the weights; unmerge it to run the base model"
                            .into(),
                    });
                }
                a.state = AdapterState::Inactive;
            }
        }
        Ok(base)
    }

    fn merge_adapter(&mut self, name: &str) -> Result<(), LoraError> {
        self.require(name)?;
        let mut any = false;
        for (_, proj) in self.projections_mut() {
            any |= proj.merge(name);
        }
        if !any {
            return Err(LoraError::State {
                name: name.into(),
                reason: "is already merged".into(),
            });
        }
        Ok(())
    }

    fn unmerge_adapter(&mut self, name: &str) -> Result<(), LoraError> {
        self.require(name)?;
        let mut any = false;
        for (_, proj) in self.projections_mut() {
            any |= proj.unmerge(name);
        }
        if !any {
            return Err(LoraError::State {
                name: name.into(),
                reason: "is not merged".into(),
            });
        }
        Ok(())
    }

    fn merge_and_unload(&mut self) -> Result<(), LoraError> {
        for (_, proj) in self.projections_mut() {
            let active: Vec<String> = proj
                .adapters
                .iter()
                .filter(|a| a.state == AdapterState::Active)
                .map(|a| a.name.clone())
                .collect();
            for n in active {
                proj.merge(&n);
            }
            proj.adapters.clear();
        }
        Ok(())
    }

    fn adapter_factors(&self, name: &str) -> Result<Vec<(String, Factor, Tensor<2>)>, LoraError> {
        self.require(name)?;
        let mut out = Vec::new();
        for (module, proj) in self.projections() {
            if let Some(a) = proj.adapter(name) {
                out.push((peft_key(&module, Factor::A), Factor::A, a.a.val()));
                out.push((peft_key(&module, Factor::B), Factor::B, a.b.val()));
            }
        }
        Ok(out)
    }

    fn visit_factors_mut(
        &mut self,
        name: &str,
        f: &mut dyn FnMut(&str, Factor, &mut Param<Tensor<2>>),
    ) -> Result<(), LoraError> {
        self.require(name)?;
        for (module, proj) in self.projections_mut() {
            if let Some(a) = proj.adapter_mut(name) {
                f(&peft_key(&module, Factor::A), Factor::A, &mut a.a);
                f(&peft_key(&module, Factor::B), Factor::B, &mut a.b);
            }
        }
        Ok(())
    }

    fn adapter_summary(&self, name: &str) -> Result<AdapterSummary, LoraError> {
        let mut summary: Option<AdapterSummary> = None;
        for (module, proj) in self.projections() {
            if let Some(a) = proj.adapter(name) {
                let size = a.a.val().shape().num_elements() + a.b.val().shape().num_elements();
                let s = summary.get_or_insert_with(|| AdapterSummary {
                    rank: a.rank(),
                    scale: a.scale,
                    dropout: a.dropout,
                    state: a.state,
                    modules: Vec::new(),
                    parameters: 0,
                });
                s.modules.push(module);
                s.parameters += size;
            }
        }
        summary.ok_or_else(|| LoraError::NoSuchAdapter(name.into()))
    }

    fn set_dropout_seed(&mut self, name: &str, seed: Option<u64>) -> Result<(), LoraError> {
        self.require(name)?;
        for (i, (_, proj)) in self.projections_mut().into_iter().enumerate() {
            if let Some(a) = proj.adapter_mut(name) {
                a.dropout_seed =
                    seed.map(|s| s ^ (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            }
        }
        Ok(())
    }
}

trait Require {
    fn require(&self, name: &str) -> Result<(), LoraError>;
}

impl Require for Llama {
    fn require(&self, name: &str) -> Result<(), LoraError> {
        if self
            .projections()
            .iter()
            .any(|(_, p)| p.adapter(name).is_some())
        {
            Ok(())
        } else {
            Err(LoraError::NoSuchAdapter(name.into()))
        }
    }
}

/// A frozen-until-trained low-rank slot for `proj`.
pub(crate) fn low_rank(name: &str, config: &LoraConfig, a: Tensor<2>, b: Tensor<2>) -> LowRank {
    LowRank {
        a: Param::from_tensor(a).set_require_grad(false),
        b: Param::from_tensor(b).set_require_grad(false),
        name: name.into(),
        scale: config.scale(),
        dropout: config.lora_dropout,
        state: AdapterState::Active,
        dropout_seed: None,
    }
}

/// Attaches given factors to one projection (used by the file loader).
pub(crate) fn attach(proj: &mut Projection, adapter: LowRank) {
    proj.adapters.push(adapter);
}

/// Host memory an adapter may take: what the process can still use (`None`: unknown, or the check switched
/// off with the model loader's [`SKIP_MEMORY_CHECK_ENV`](engram_model::SKIP_MEMORY_CHECK_ENV)).
pub fn available_for_adapters() -> Option<u64> {
    if std::env::var(engram_model::SKIP_MEMORY_CHECK_ENV).is_ok_and(|v| v == "1") {
        return None;
    }
    engram_model::available_host_memory()
}

/// Refuses, before any allocation, an adapter of rank `r` with `parameters` f32 values when `copies` of
/// it (1 to hold it; training adds a gradient and two optimizer moments) need more than `available` bytes.
/// Pure, so it can be tested with any figure.
pub fn check_adapter_memory(
    r: usize,
    parameters: u128,
    copies: u32,
    available: Option<u64>,
) -> Result<(), LoraError> {
    let needed = parameters * 4 * u128::from(copies);
    match available {
        Some(available) if needed > u128::from(available) => {
            let gib = |b: u128| b as f64 / (1u64 << 30) as f64;
            Err(LoraError::invalid(
                "r",
                r,
                format!(
                    "an adapter of this rank has {:.3} B parameters and {} needs about {:.1} GiB, but only \
                     {:.1} GiB of memory is available; pick a smaller r or fewer target_modules",
                    parameters as f64 / 1e9,
                    if copies > 1 {
                        "training it"
                    } else {
                        "holding it"
                    },
                    gib(needed),
                    gib(u128::from(available)),
                ),
            ))
        }
        _ => Ok(()),
    }
}
