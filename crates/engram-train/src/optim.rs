//! AdamW with PyTorch's semantics, learning-rate schedules and global gradient-norm clipping.
//!
//! Written here rather than taken from `burn::optim` for two reasons: the state must round-trip through a
//! checkpoint exactly (so a resumed run ends bit-identical), and clipping must use the global norm over all
//! parameters like `torch.nn.utils.clip_grad_norm_` (Burn clips each tensor on its own).

use std::collections::BTreeMap;

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::TrainError;

/// AdamW hyper-parameters (`torch.optim.AdamW` names and defaults, but `weight_decay` 0.0 by default like
/// transformers' `TrainingArguments`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWConfig {
    /// Decay rate of the first moment (mean of gradients), in `[0, 1)`; 0.9 by default.
    pub beta1: f64,
    /// Decay rate of the second moment (mean of squared gradients), in `[0, 1)`; 0.999 by default.
    pub beta2: f64,
    /// Added to the denominator for numerical stability; 1e-8 by default.
    pub eps: f64,
    /// Decoupled weight decay coefficient (≥ 0); 0.0 by default.
    pub weight_decay: f64,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
        }
    }
}

impl AdamWConfig {
    /// Checks ranges, naming the option.
    pub fn validate(&self) -> Result<(), TrainError> {
        for (name, v) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&v) {
                return Err(TrainError::invalid(name, v, "must be in [0, 1)"));
            }
        }
        if !(self.eps > 0.0 && self.eps.is_finite()) {
            return Err(TrainError::invalid("eps", self.eps, "must be positive"));
        }
        if !(self.weight_decay >= 0.0 && self.weight_decay.is_finite()) {
            return Err(TrainError::invalid(
                "weight-decay",
                self.weight_decay,
                "must be >= 0",
            ));
        }
        Ok(())
    }
}

/// First and second moments of one parameter.
#[derive(Clone, Debug)]
pub struct Moments {
    /// Running mean of the gradient (`m`).
    pub exp_avg: Tensor<2>,
    /// Running mean of the squared gradient (`v`).
    pub exp_avg_sq: Tensor<2>,
}

/// AdamW over named 2-D parameters (the adapter factors, by PEFT key).
#[derive(Clone, Debug)]
pub struct AdamW {
    /// The hyper-parameters.
    pub config: AdamWConfig,
    /// Optimizer steps taken (for bias correction).
    pub step: u64,
    /// Moments per parameter, by PEFT key.
    pub state: BTreeMap<String, Moments>,
}

impl AdamW {
    /// An optimizer with no steps taken and no state.
    pub fn new(config: AdamWConfig) -> Self {
        Self {
            config,
            step: 0,
            state: BTreeMap::new(),
        }
    }

    /// Starts a step: bias corrections use the new step count for every parameter of this step.
    pub fn begin_step(&mut self) {
        self.step += 1;
    }

    /// Updates one parameter (`param` and `grad` without autodiff) with learning rate `lr`; returns the new
    /// value. `torch.optim.AdamW`: decoupled decay `p·(1 − lr·wd)`, then `p − lr·m̂/(√v̂ + eps)`.
    pub fn update(&mut self, key: &str, param: Tensor<2>, grad: Tensor<2>, lr: f64) -> Tensor<2> {
        let c = &self.config;
        let t = self.step.max(1) as i32;
        let moments = self.state.remove(key).unwrap_or_else(|| Moments {
            exp_avg: grad.zeros_like(),
            exp_avg_sq: grad.zeros_like(),
        });
        let exp_avg = moments.exp_avg.mul_scalar(c.beta1) + grad.clone().mul_scalar(1.0 - c.beta1);
        let exp_avg_sq = moments.exp_avg_sq.mul_scalar(c.beta2)
            + (grad.clone() * grad).mul_scalar(1.0 - c.beta2);
        let bias1 = 1.0 - c.beta1.powi(t);
        let bias2 = 1.0 - c.beta2.powi(t);
        let decayed = if c.weight_decay > 0.0 {
            param.mul_scalar(1.0 - lr * c.weight_decay)
        } else {
            param
        };
        let denom = exp_avg_sq
            .clone()
            .div_scalar(bias2)
            .sqrt()
            .add_scalar(c.eps);
        let new = decayed - exp_avg.clone().div(denom).mul_scalar(lr / bias1);
        self.state.insert(
            key.to_owned(),
            Moments {
                exp_avg,
                exp_avg_sq,
            },
        );
        new
    }
}

/// The learning-rate curve after warm-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Stay at the peak.
    Constant,
    /// Half a cosine from the peak towards 0, which it would reach one step after the last (as transformers' schedule).
    Cosine,
    /// A straight line from the peak towards 0, which it would reach one step after the last (as transformers').
    Linear,
}

impl std::str::FromStr for Decay {
    type Err = TrainError;
    fn from_str(s: &str) -> Result<Self, TrainError> {
        match s {
            "constant" => Ok(Self::Constant),
            "cosine" => Ok(Self::Cosine),
            "linear" => Ok(Self::Linear),
            other => Err(TrainError::invalid(
                "schedule",
                other,
                "expected constant, cosine or linear",
            )),
        }
    }
}

/// Linear warm-up to `peak` over `warmup_steps`, then `decay` until `total_steps`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    /// The learning rate at the end of warm-up.
    pub peak: f64,
    /// Steps of linear warm-up (0: none).
    pub warmup_steps: usize,
    /// The curve after warm-up.
    pub decay: Decay,
    /// Optimizer steps in the run: the span the decay runs over.
    pub total_steps: usize,
}

impl LrSchedule {
    /// The learning rate of optimizer step `step` (0-based). Warm-up reaches `peak·(step+1)/warmup`, so the
    /// first step already moves the weights.
    pub fn lr(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.peak * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        match self.decay {
            Decay::Constant => self.peak,
            Decay::Cosine => self.peak * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos()),
            Decay::Linear => self.peak * (1.0 - progress),
        }
    }
}

/// The global L2 norm of `grads` (one host read).
pub fn global_norm(grads: &[Tensor<2>]) -> f64 {
    let Some(first) = grads.first() else {
        return 0.0;
    };
    let mut sum = first.clone().powi_scalar(2).sum();
    for g in &grads[1..] {
        sum = sum + g.clone().powi_scalar(2).sum();
    }
    let v: f32 = sum.into_scalar();
    (v as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};

    #[test]
    fn schedules() {
        let s = |decay| LrSchedule {
            peak: 1.0,
            warmup_steps: 4,
            decay,
            total_steps: 14,
        };
        let c = s(Decay::Cosine);
        assert_eq!(c.lr(0), 0.25);
        assert_eq!(c.lr(3), 1.0);
        assert_eq!(c.lr(4), 1.0);
        assert!((c.lr(9) - 0.5).abs() < 1e-12, "half way down");
        assert!(c.lr(13) < 0.03 && c.lr(13) > 0.0);
        let l = s(Decay::Linear);
        assert!((l.lr(9) - 0.5).abs() < 1e-12);
        assert_eq!(l.lr(14), 0.0);
        assert_eq!(s(Decay::Constant).lr(13), 1.0);
        assert!("step".parse::<Decay>().is_err());
    }

    /// One AdamW step against the formula written out on scalars (what torch.optim.AdamW computes).
    #[test]
    fn adamw_matches_torch_formula() {
        let device = Device::flex();
        let p0 = [0.5f32, -1.0, 2.0, 0.0];
        let g = [[0.1f32, -0.2, 0.3, 0.0], [0.05, 0.1, -0.3, 1.0]];
        let cfg = AdamWConfig {
            weight_decay: 0.01,
            ..AdamWConfig::default()
        };
        let mut opt = AdamW::new(cfg.clone());
        let mut p = Tensor::<2>::from_data(TensorData::new(p0.to_vec(), [2, 2]), &device);
        let (lr, mut want) = (0.1f64, p0.map(f64::from));
        let (mut m, mut v) = ([0f64; 4], [0f64; 4]);
        for (t, g) in g.iter().enumerate() {
            opt.begin_step();
            let gt = Tensor::<2>::from_data(TensorData::new(g.to_vec(), [2, 2]), &device);
            p = opt.update("w", p, gt, lr);
            for i in 0..4 {
                let gi = g[i] as f64;
                want[i] *= 1.0 - lr * cfg.weight_decay;
                m[i] = 0.9 * m[i] + 0.1 * gi;
                v[i] = 0.999 * v[i] + 0.001 * gi * gi;
                let (mh, vh) = (
                    m[i] / (1.0 - 0.9f64.powi(t as i32 + 1)),
                    v[i] / (1.0 - 0.999f64.powi(t as i32 + 1)),
                );
                want[i] -= lr * mh / (vh.sqrt() + cfg.eps);
            }
        }
        let got = p.into_data().try_to_vec::<f32>().unwrap();
        for i in 0..4 {
            assert!(
                (got[i] as f64 - want[i]).abs() < 1e-5,
                "{i}: {} vs {}",
                got[i],
                want[i]
            );
        }
    }

    #[test]
    fn global_norm_is_over_all_tensors() {
        let device = Device::flex();
        let a = Tensor::<2>::from_data(TensorData::new(vec![3f32, 0.0], [1, 2]), &device);
        let b = Tensor::<2>::from_data(TensorData::new(vec![0f32, 4.0], [2, 1]), &device);
        assert!((global_norm(&[a, b]) - 5.0).abs() < 1e-6);
        assert_eq!(global_norm(&[]), 0.0);
    }
}
