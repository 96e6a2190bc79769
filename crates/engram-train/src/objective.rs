//! What a training step minimises. An [`Objective`] turns a batch into a scalar loss and the number of tokens
//! it was averaged over; the trainer does the rest (accumulation, clipping, the optimizer, checkpoints).
//! Next-token cross-entropy is the first; SELF-PARAM's KL distillation plugs in the same way.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use engram_data::{Batcher, HostBatch};
use engram_model::{ForwardInput, Llama};

/// A scalar loss and what it averages over.
pub struct LossOutput {
    /// `[1]`, the mean loss over `tokens`.
    pub loss: Tensor<1>,
    /// How many target tokens the mean is over: micro-batches are weighted by it when gradients are
    /// accumulated, so a step's gradient is the mean over all its tokens.
    pub tokens: usize,
}

/// A training loss over batches of type `Batch`. `Sync` and `Send` batches: the trainer may evaluate several
/// micro-batches on parallel threads, and on several devices (see [`Trainer::replicas`](crate::Trainer)).
pub trait Objective: Sync {
    /// The micro-batch the loss is computed on.
    type Batch: Send + ToDevice;
    /// A short name for logs and metrics (`cross-entropy`).
    fn name(&self) -> &str;
    /// The loss of `model` on `batch`. The adapter factors being trained are autodiff tensors inside `model`;
    /// everything else is frozen.
    fn loss(&self, model: &Llama, batch: &Self::Batch) -> LossOutput;
}

/// A batch that can be moved to another device (data-parallel training sends each micro-batch to the replica
/// of the model that computes it).
pub trait ToDevice {
    /// The same batch with its tensors on `device` (host data is shared or copied as is).
    fn to_device(self, device: &Device) -> Self;
}

/// Batches by position, so that a run can be resumed at any step and replays the same data.
pub trait BatchSource {
    /// The micro-batch type it yields.
    type Batch;
    /// Micro-batches in one pass over the data.
    fn batches_per_epoch(&self) -> usize;
    /// Micro-batch `index` of epoch `epoch`; the same arguments always give the same batch.
    fn batch(&self, epoch: usize, index: usize) -> Self::Batch;
}

/// Token ids on the device with the positions whose next token is a training target.
#[derive(Clone, Debug)]
pub struct TokenBatch {
    /// The padded token ids, positions and masks for the forward pass.
    pub input: ForwardInput,
    /// Flat indices into `[batch * seq]` of the positions that predict a target.
    pub target_positions: Tensor<1, Int>,
    /// The target token at each of those positions.
    pub targets: Tensor<1, Int>,
    /// The same targets on the host (for [`cross_entropy_host`]).
    pub targets_host: Vec<u32>,
    /// Number of target positions (the length of `targets`).
    pub num_targets: usize,
    /// `batch * seq`, including padding.
    pub num_tokens: usize,
}

impl TokenBatch {
    /// Moves a host batch to `device`.
    pub fn from_host(h: &HostBatch, device: &Device) -> Self {
        let shape = [h.batch, h.seq];
        let ints = |v: &[u32]| v.iter().map(|&x| x as i64).collect::<Vec<i64>>();
        let mut positions = Vec::new();
        let mut targets = Vec::new();
        for (i, (&keep, &t)) in h.target_mask.iter().zip(&h.targets).enumerate() {
            if keep {
                positions.push(i as i64);
                targets.push(t as i64);
            }
        }
        let n = positions.len();
        let padded = h.key_padding.iter().any(|&p| p);
        Self {
            input: ForwardInput {
                tokens: Tensor::from_data(TensorData::new(ints(&h.tokens), shape), device),
                positions: Tensor::from_data(TensorData::new(ints(&h.positions), shape), device),
                key_padding: padded.then(|| {
                    Tensor::<2, Bool>::from_data(
                        TensorData::new(h.key_padding.clone(), shape),
                        device,
                    )
                }),
                segments: h
                    .segments
                    .as_ref()
                    .map(|s| Tensor::from_data(TensorData::new(ints(s), shape), device)),
            },
            target_positions: Tensor::from_data(TensorData::new(positions, [n]), device),
            targets_host: targets.iter().map(|&t| t as u32).collect(),
            targets: Tensor::from_data(TensorData::new(targets, [n]), device),
            num_targets: n,
            num_tokens: h.batch * h.seq,
        }
    }
}

impl ToDevice for TokenBatch {
    fn to_device(self, device: &Device) -> Self {
        Self {
            input: self.input.to_device(device),
            target_positions: self.target_positions.to_device(device),
            targets: self.targets.to_device(device),
            ..self
        }
    }
}

/// [`Batcher`] batches moved to a device.
pub struct DeviceBatches<'a> {
    /// The tokenised, batched data.
    pub batcher: &'a Batcher,
    /// The device the batches go to.
    pub device: Device,
}

impl BatchSource for DeviceBatches<'_> {
    type Batch = TokenBatch;
    fn batches_per_epoch(&self) -> usize {
        self.batcher.batches_per_epoch()
    }
    fn batch(&self, epoch: usize, index: usize) -> TokenBatch {
        TokenBatch::from_host(&self.batcher.batch(epoch, index), &self.device)
    }
}

/// Next-token cross-entropy over the target positions only (assistant turns for chats, every token but the
/// first for plain text). Logits are computed only where a loss is taken: with chat data most positions are
/// prompt, and the `[positions, vocab]` output product is the largest matrix product of the model.
#[derive(Clone, Copy, Debug, Default)]
pub struct CrossEntropy;

impl Objective for CrossEntropy {
    type Batch = TokenBatch;

    fn name(&self) -> &str {
        "cross-entropy"
    }

    fn loss(&self, model: &Llama, batch: &TokenBatch) -> LossOutput {
        let hidden = model.final_hidden(batch.input.clone(), None);
        let [b, s, h] = hidden.dims();
        let picked = hidden
            .reshape([b * s, h])
            .select(0, batch.target_positions.clone());
        let logits = model.project_logits(picked);
        let loss = if host_softmax_enabled(&logits.device()) {
            cross_entropy_host(logits, &batch.targets_host)
        } else {
            cross_entropy(logits, batch.targets.clone())
        };
        LossOutput {
            loss,
            tokens: batch.num_targets,
        }
    }
}

/// Mean of `logsumexp(logits) − logits[target]` over rows: `[n, vocab]`, `[n]` → `[1]`.
pub fn cross_entropy(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1> {
    let n = targets.dims()[0];
    // The max is a constant shift for stability: its gradient cancels, so it is detached.
    let max = logits.clone().detach().max_dim(1);
    let lse = (logits.clone() - max.clone()).exp().sum_dim(1).log() + max;
    let picked = logits.gather(1, targets.reshape([n, 1]));
    (lse - picked).mean()
}

/// Whether [`CrossEntropy`] computes the softmax on the host: on the `flex` CPU backend, where Burn's
/// element-wise kernels run on one thread and the `[targets, vocab]` softmax and its backward pass are ~10
/// passes over ~100 MB. `ENGRAM_HOST_SOFTMAX=0` turns it off (to measure it in the benchmark).
pub fn host_softmax_enabled(device: &Device) -> bool {
    device.clone().inner() == Device::flex()
        && !std::env::var("ENGRAM_HOST_SOFTMAX").is_ok_and(|v| v == "0")
}

/// [`cross_entropy`] with the softmax done in one parallel pass on the host (rayon).
///
/// The gradient of the mean cross-entropy with respect to the logits is `(softmax − onehot) / n`. That matrix is
/// computed on the host and enters the graph as the constant in `sum(logits · coef)`, whose gradient is exactly
/// `coef`; the returned value is the true loss (`surrogate − detach(surrogate) + loss`), so callers see no
/// difference except speed.
pub fn cross_entropy_host(logits: Tensor<2>, targets: &[u32]) -> Tensor<1> {
    use rayon::prelude::*;
    let [n, v] = logits.dims();
    assert_eq!(n, targets.len(), "one target per row");
    if n == 0 {
        // Nothing to predict: a zero that still belongs to the graph.
        return logits.sum().mul_scalar(0.0);
    }
    let device = logits.device();
    let mut values = logits
        .clone()
        .inner()
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .expect("f32 logits");
    let inv_n = 1.0 / n as f64;
    // In place: each row of logits becomes its row of `coef`; the row's loss is returned.
    let losses: Vec<f64> = values
        .par_chunks_mut(v)
        .zip(targets.par_iter())
        .map(|(row, &t)| {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for x in row.iter_mut() {
                let e = (*x - max).exp();
                *x = e;
                sum += e as f64;
            }
            let t = t as usize;
            let picked = row.get(t).copied().unwrap_or(0.0) as f64;
            let scale = (inv_n / sum) as f32;
            for x in row.iter_mut() {
                *x *= scale;
            }
            if let Some(x) = row.get_mut(t) {
                *x -= inv_n as f32;
            }
            // -log softmax[t] = log(sum) - log(e_t) with e_t = exp(l_t - max).
            sum.ln() - picked.max(f64::MIN_POSITIVE).ln()
        })
        .collect();
    let loss = losses.iter().sum::<f64>() * inv_n;
    let coef = Tensor::<2>::from_data(TensorData::new(values, [n, v]), &device.inner());
    let surrogate = (logits * coef).sum();
    (surrogate.clone() - surrogate.detach()).add_scalar(loss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_entropy_matches_the_formula() {
        let device = Device::flex();
        let logits = [[2.0f32, 1.0, 0.1], [0.0, 0.0, 5.0]];
        let targets = [0i64, 1];
        let t = Tensor::<2>::from_data(TensorData::new(logits.concat(), [2, 3]), &device);
        let y = Tensor::<1, Int>::from_data(TensorData::new(targets.to_vec(), [2]), &device);
        let got: f32 = cross_entropy(t, y).into_scalar();
        let want: f64 = logits
            .iter()
            .zip(targets)
            .map(|(row, t)| {
                let lse = row.iter().map(|v| (*v as f64).exp()).sum::<f64>().ln();
                lse - row[t as usize] as f64
            })
            .sum::<f64>()
            / 2.0;
        assert!((got as f64 - want).abs() < 1e-5, "{got} vs {want}");
    }

    /// The host softmax gives the same loss and the same gradient as the tensor-op version.
    #[test]
    fn host_cross_entropy_matches_values_and_gradients() {
        let ad = Device::flex().autodiff();
        let (n, v) = (7, 50);
        let data: Vec<f32> = (0..n * v)
            .map(|i| ((i * 7919 % 1000) as f32 / 100.0) - 5.0)
            .collect();
        let targets: Vec<u32> = (0..n as u32).map(|i| (i * 13) % v as u32).collect();
        let run = |host: bool| {
            let x =
                Tensor::<2>::from_data(TensorData::new(data.clone(), [n, v]), &ad).require_grad();
            let loss = if host {
                cross_entropy_host(x.clone(), &targets)
            } else {
                let t: Vec<i64> = targets.iter().map(|&t| t as i64).collect();
                cross_entropy(x.clone(), Tensor::from_data(TensorData::new(t, [n]), &ad))
            };
            let value: f32 = loss.clone().inner().into_scalar();
            let grads = loss.backward();
            let g = x
                .grad(&grads)
                .unwrap()
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            (value, g)
        };
        let (a, ga) = run(false);
        let (b, gb) = run(true);
        assert!((a - b).abs() < 1e-5 * a.abs(), "{a} vs {b}");
        let max = ga
            .iter()
            .zip(&gb)
            .map(|(x, y)| (x - y).abs())
            .fold(0f32, f32::max);
        assert!(max < 1e-6, "gradients differ by {max}");
    }
}
