//! The training engine's [`Objective`] for distillation: the student (the LoRA model, reading the target
//! alone) against the cached teacher distributions.

use std::sync::Arc;

use burn::tensor::{Device, Tensor, TensorData};
use engram_data::Batcher;
use engram_model::Llama;
use engram_train::{BatchSource, LossOutput, Objective, ToDevice, TokenBatch};

use crate::kl::{KlReduction, TeacherDist, divergence_loss};

/// A batch of student sequences with the teacher's distribution at each of their target tokens, in the order
/// of `tokens.target_positions`.
#[derive(Clone, Debug)]
pub struct DistillBatch {
    /// The student's token ids and target positions.
    pub tokens: TokenBatch,
    /// Per sequence of the batch, the teacher's distribution at each of its target tokens.
    pub teacher: Vec<Arc<Vec<TeacherDist>>>,
}

impl ToDevice for DistillBatch {
    /// The token tensors move; the teacher distributions stay on the host, shared.
    fn to_device(self, device: &Device) -> Self {
        Self {
            tokens: self.tokens.to_device(device),
            teacher: self.teacher,
        }
    }
}

/// Student batches from a [`Batcher`] with the cached teacher distributions of their sequences.
pub struct DistillBatches<'a> {
    /// The student's sequences, batched.
    pub batcher: &'a Batcher,
    /// Per student sequence (the batcher's examples, same order).
    pub teacher: &'a [Arc<Vec<TeacherDist>>],
    /// The device the batches go to.
    pub device: Device,
}

impl BatchSource for DistillBatches<'_> {
    type Batch = DistillBatch;
    fn batches_per_epoch(&self) -> usize {
        self.batcher.batches_per_epoch()
    }
    fn batch(&self, epoch: usize, index: usize) -> DistillBatch {
        let host = self.batcher.batch(epoch, index);
        DistillBatch {
            tokens: TokenBatch::from_host(&host, &self.device),
            teacher: self
                .batcher
                .batch_examples(epoch, index)
                .into_iter()
                .map(|i| self.teacher[i].clone())
                .collect(),
        }
    }
}

/// KL(teacher ‖ student) · T² over the target tokens. Like the fine-tuning objective, logits are computed only
/// at target positions, and the softmax and its gradient are one parallel pass on the host; the teacher side is
/// a lookup. A batch's logits are `[targets, vocab]` for the student alone: the teacher's never exist in full.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Distill {
    /// Distillation temperature `T` (> 0).
    pub temperature: f32,
    /// How per-token KL values become one loss.
    pub reduction: KlReduction,
    /// 0 the forward KL, 1 the reverse KL, between them the generalised JSD ([`divergence_loss`]).
    pub alpha: f32,
}

impl Default for Distill {
    fn default() -> Self {
        Self {
            temperature: 1.0,
            reduction: KlReduction::default(),
            alpha: 0.0,
        }
    }
}

impl Objective for Distill {
    type Batch = DistillBatch;

    fn name(&self) -> &str {
        "kl-distillation"
    }

    fn loss(&self, model: &Llama, batch: &DistillBatch) -> LossOutput {
        let tokens = &batch.tokens;
        let hidden = model.final_hidden(tokens.input.clone(), None);
        let [b, s, h] = hidden.dims();
        let picked = hidden
            .reshape([b * s, h])
            .select(0, tokens.target_positions.clone());
        let logits = model.project_logits(picked);
        let [n, vocab] = logits.dims();
        let teachers: Vec<&TeacherDist> = batch.teacher.iter().flat_map(|t| t.iter()).collect();
        let values = logits
            .clone()
            .inner()
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .unwrap_or_default();
        let loss = match divergence_loss(
            &teachers,
            values,
            vocab,
            self.temperature,
            self.reduction,
            self.alpha,
        ) {
            Ok(out) => {
                // `sum(logits · grad)` has gradient `grad`; its value is swapped for the true loss.
                let coef = Tensor::<2>::from_data(
                    TensorData::new(out.grad, [n, vocab]),
                    &logits.device().inner(),
                );
                let surrogate = (logits * coef).sum();
                (surrogate.clone() - surrogate.detach()).add_scalar(out.loss)
            }
            // Non-finite logits (or a teacher that does not fit): a NaN loss, which the trainer stops on,
            // keeping the last good checkpoint.
            Err(_) => logits.sum().mul_scalar(f64::NAN),
        };
        LossOutput {
            loss,
            tokens: tokens.num_targets,
        }
    }
}
