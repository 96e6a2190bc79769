//! The teacher side, computed once: targets are tokenized for both readers, aligned on the tokens they end
//! with, and the frozen base model's distributions at the aligned positions are cached ([`TeacherDist`], top-k
//! plus the remaining mass by default). Training then never runs the teacher again.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use engram_data::{BatchConfig, Batcher, TokenizedExample, tokenize_example};
use engram_lora::Adapters;
use engram_model::LoadedModel;
use engram_train::TokenBatch;
use rayon::prelude::*;

use crate::DistillError;
use crate::kl::TeacherDist;
use crate::target::Target;

/// A target tokenized for both readers, with matching target positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aligned {
    /// The student's tokens; `loss_mask` keeps only targets the teacher sees too.
    pub student: TokenizedExample,
    /// The teacher's tokens; `loss_mask` marks the same target tokens in its sequence.
    pub teacher: TokenizedExample,
}

/// Aligns a student sequence (its `loss_mask` says which tokens are targets) with the teacher's ids: both end
/// with the same tokens (the target), the teacher's with more before them (the context). A student target
/// counts if it lies in that common suffix and the teacher has a token before it. `None` if none is left.
pub fn align(student: &TokenizedExample, teacher_ids: &[u32]) -> Option<Aligned> {
    let (ls, lt) = (student.ids.len(), teacher_ids.len());
    let common = student
        .ids
        .iter()
        .rev()
        .zip(teacher_ids.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    let mut s_mask = vec![false; ls];
    let mut t_mask = vec![false; lt];
    let first = (ls - common).max(1);
    for (i, &target) in student.loss_mask.iter().enumerate().skip(first) {
        // Teacher index of student token i (the teacher may in principle be the shorter one).
        let j = i as isize + lt as isize - ls as isize;
        if target && j >= 1 {
            s_mask[i] = true;
            t_mask[j as usize] = true;
        }
    }
    s_mask.iter().any(|&m| m).then(|| Aligned {
        student: TokenizedExample {
            ids: student.ids.clone(),
            loss_mask: s_mask,
        },
        teacher: TokenizedExample {
            ids: teacher_ids.to_vec(),
            loss_mask: t_mask,
        },
    })
}

/// How the teacher's distributions are computed and kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TeacherConfig {
    /// Distillation temperature (the cached distributions are at this temperature).
    pub temperature: f32,
    /// Tokens kept per position (`None`: the whole vocabulary, ~200 kB per target token for SmolLM2).
    pub top_k: Option<usize>,
    /// Student tokens per target (longer ones are truncated); the teacher gets room for the context too.
    pub max_len: usize,
    /// Teacher sequences per forward pass.
    pub batch_size: usize,
}

impl Default for TeacherConfig {
    /// T = 1, top-64, 512 tokens, 4 sequences per pass.
    fn default() -> Self {
        Self {
            temperature: 1.0,
            top_k: Some(64),
            max_len: 512,
            batch_size: 4,
        }
    }
}

/// Targets ready for training: the student's sequences and, per sequence, the teacher's distribution at each
/// of its target tokens, in order.
pub struct Prepared {
    /// The student's tokenized sequences, with their target tokens masked in.
    pub student: Vec<TokenizedExample>,
    /// Per student sequence, the teacher's distribution at each of its target tokens.
    pub teacher: Vec<Arc<Vec<TeacherDist>>>,
    /// Index into the targets given to [`prepare`] of each kept sequence.
    pub kept: Vec<usize>,
    /// Targets with no token both readers share (e.g. truncated away).
    pub dropped: usize,
    /// Teacher distributions cached (one per student target token).
    pub target_tokens: usize,
    /// Memory of the cached distributions.
    pub cache_bytes: usize,
    /// Wall time of the teacher's forward passes.
    pub teacher_seconds: f64,
}

/// Tokenizes and aligns `targets`, then runs the base model of `lm` (every adapter switched off, never a second
/// copy of the weights) over the teacher sequences and caches its distributions.
pub fn prepare(
    lm: &LoadedModel,
    targets: &[Target],
    config: &TeacherConfig,
) -> Result<Prepared, DistillError> {
    if !(config.temperature.is_finite() && config.temperature > 0.0) {
        return Err(DistillError::option(
            "kl-temperature",
            config.temperature,
            "must be a positive number",
        ));
    }
    if config.top_k == Some(0) {
        return Err(DistillError::option(
            "kl-top-k",
            0,
            "must be at least 1 (or `full` for the whole vocabulary)",
        ));
    }
    let (tok, template) = (&lm.tokenizer, &lm.chat_template);
    let mut aligned = Vec::new();
    let mut kept = Vec::new();
    let mut dropped = 0;
    for (i, t) in targets.iter().enumerate() {
        let student = match tokenize_example(tok, template, &t.student, config.max_len) {
            Ok(s) => s,
            Err(engram_data::DataError::NoTargets { .. }) => {
                dropped += 1;
                continue;
            }
            Err(e) => return Err(e.in_example(i + 1).into()),
        };
        // The teacher sequence is never truncated at the end: the target is there.
        let teacher = tokenize_example(tok, template, &t.teacher, usize::MAX)
            .map_err(|e| e.in_example(i + 1))?;
        match align(&student, &teacher.ids) {
            Some(a) => {
                aligned.push(a);
                kept.push(i);
            }
            None => dropped += 1,
        }
    }
    if aligned.is_empty() {
        return Err(DistillError::option(
            "targets",
            targets.len(),
            "no target has a token that teacher and student both read",
        ));
    }
    let start = Instant::now();
    let teacher_model = lm.model.without_adapters()?;
    let device = teacher_model.device();
    let (unique, owner) = share_teachers(&aligned);
    let longest = unique.iter().map(|t| t.ids.len()).max().unwrap_or(2);
    let batcher = Batcher::new(
        unique.clone(),
        BatchConfig {
            batch_size: config.batch_size.max(1),
            max_len: longest.max(2),
            packing: false,
            seed: 0,
            pad_id: lm.tokenizer.padding_id(),
        },
    )?;
    // Per unique teacher sequence, its distributions at the union positions, in token order.
    let mut computed: Vec<Vec<TeacherDist>> = vec![Vec::new(); unique.len()];
    for index in 0..batcher.batches_per_epoch() {
        let host = batcher.batch(0, index);
        let members = batcher.batch_examples(0, index);
        let batch = TokenBatch::from_host(&host, &device);
        let hidden = teacher_model.final_hidden(batch.input.clone(), None);
        let [b, s, h] = hidden.dims();
        let picked = hidden
            .reshape([b * s, h])
            .select(0, batch.target_positions.clone());
        let logits = teacher_model.project_logits(picked);
        let vocab = logits.dims()[1];
        let values = logits
            .into_data()
            .convert::<f32>()
            .try_into_vec::<f32>()
            .map_err(|e| DistillError::Shape(format!("teacher logits: {e:?}")))?;
        let mut rows: Vec<TeacherDist> = values
            .par_chunks(vocab)
            .map(|row| TeacherDist::from_logits(row, config.temperature, config.top_k))
            .collect::<Vec<_>>();
        // Rows come example by example, each in token order: hand each example its share.
        for &m in members.iter().rev() {
            let n = unique[m].num_targets();
            computed[m] = rows.split_off(rows.len() - n);
        }
    }
    let teacher: Vec<Vec<TeacherDist>> = aligned
        .iter()
        .zip(&owner)
        .map(|(a, &u)| own_rows(&unique[u].loss_mask, &a.teacher.loss_mask, &computed[u]))
        .collect();
    let teacher: Vec<Arc<Vec<TeacherDist>>> = teacher.into_iter().map(Arc::new).collect();
    let cache_bytes = teacher
        .iter()
        .flat_map(|t| t.iter())
        .map(TeacherDist::bytes)
        .sum();
    let target_tokens = teacher.iter().map(|t| t.len()).sum();
    Ok(Prepared {
        student: aligned.into_iter().map(|a| a.student).collect(),
        teacher,
        kept,
        dropped,
        target_tokens,
        cache_bytes,
        teacher_seconds: start.elapsed().as_secs_f64(),
    })
}

impl Prepared {
    /// The student sequences and their teacher rows as one pass of a guarded run sees them: the method's own
    /// (`is_task` of the target index) `passes` times, the guard's rows once ([`engram_train::Guard::passes`]).
    /// The teacher rows are shared, not copied.
    pub fn spread(
        &self,
        is_task: impl Fn(usize) -> bool,
        passes: usize,
    ) -> (Vec<TokenizedExample>, Vec<Arc<Vec<TeacherDist>>>) {
        let mut student = Vec::new();
        let mut teacher = Vec::new();
        for (j, &i) in self.kept.iter().enumerate() {
            let times = if is_task(i) { passes } else { 1 };
            for _ in 0..times {
                student.push(self.student[j].clone());
                teacher.push(self.teacher[j].clone());
            }
        }
        (student, teacher)
    }
}

/// Targets whose teacher reads the same tokens (every continuation of an item reads its whole context; a
/// regulariser window drawn twice) share one forward pass: the distinct teacher sequences, each with the union
/// of its targets' positions, and the index of each target's sequence.
fn share_teachers(aligned: &[Aligned]) -> (Vec<TokenizedExample>, Vec<usize>) {
    let mut unique: Vec<TokenizedExample> = Vec::new();
    let mut index_of: HashMap<&[u32], usize> = HashMap::new();
    let mut owner = Vec::with_capacity(aligned.len());
    for a in aligned {
        let u = *index_of.entry(a.teacher.ids.as_slice()).or_insert_with(|| {
            unique.push(TokenizedExample {
                ids: a.teacher.ids.clone(),
                loss_mask: vec![false; a.teacher.ids.len()],
            });
            unique.len() - 1
        });
        for (m, &t) in unique[u].loss_mask.iter_mut().zip(&a.teacher.loss_mask) {
            *m |= t;
        }
        owner.push(u);
    }
    (unique, owner)
}

/// The rows of a shared sequence (one per set flag of `union` after the first token, in order) that are at
/// the positions `wanted` sets.
fn own_rows<T: Clone>(union: &[bool], wanted: &[bool], rows: &[T]) -> Vec<T> {
    union
        .iter()
        .zip(wanted)
        .skip(1) // nothing predicts the first token: its flag never names a row
        .filter(|(u, _)| **u)
        .zip(rows)
        .filter(|((_, w), _)| **w)
        .map(|(_, r)| r.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(ids: &[u32], mask: &[bool]) -> TokenizedExample {
        TokenizedExample {
            ids: ids.to_vec(),
            loss_mask: mask.to_vec(),
        }
    }

    #[test]
    fn alignment_pairs_the_shared_ending() {
        // Student: [1, 2 | 7, 8, 9] with targets 8, 9; teacher: context [5, 5, 5] then [2, 7, 8, 9].
        let s = ex(&[1, 2, 7, 8, 9], &[false, false, false, true, true]);
        let a = align(&s, &[5, 5, 5, 2, 7, 8, 9]).unwrap();
        assert_eq!(a.student.loss_mask, [false, false, false, true, true]);
        assert_eq!(
            a.teacher.loss_mask,
            [false, false, false, false, false, true, true]
        );
        assert_eq!(a.student.num_targets(), a.teacher.num_targets());
    }

    #[test]
    fn targets_outside_the_shared_ending_are_dropped() {
        // Only the last token is shared: the student's earlier targets have no teacher position.
        let s = ex(&[1, 2, 3], &[false, true, true]);
        let a = align(&s, &[9, 9, 4, 3]).unwrap();
        assert_eq!(a.student.loss_mask, [false, false, true]);
        assert_eq!(a.teacher.loss_mask, [false, false, false, true]);
        assert!(align(&s, &[4, 5]).is_none(), "nothing shared");
        // Identical sequences (a regulariser read without the context) align token for token.
        let same = align(&s, &s.ids).unwrap();
        assert_eq!(same.teacher.loss_mask, s.loss_mask);
    }
    /// Continuations of one item share the teacher's sequence: one pass over the union of their positions,
    /// and each gets back exactly its own rows.
    #[test]
    fn identical_teacher_sequences_share_one_pass() {
        let teacher = [5, 6, 7, 8, 9];
        let a = align(&ex(&[8, 9], &[false, true]), &teacher).unwrap();
        let b = align(&ex(&[7, 8, 9], &[false, true, true]), &teacher).unwrap();
        let c = align(&ex(&[1, 9], &[false, true]), &[4, 9]).unwrap();
        let (unique, owner) = share_teachers(&[a.clone(), b.clone(), c.clone()]);
        assert_eq!(owner, [0, 0, 1]);
        assert_eq!(unique[0].loss_mask, [false, false, false, true, true]);
        // Rows of the shared sequence, one per union position: token 8 then token 9.
        let rows = ["row8", "row9"];
        assert_eq!(
            own_rows(&unique[0].loss_mask, &a.teacher.loss_mask, &rows),
            ["row9"]
        );
        assert_eq!(
            own_rows(&unique[0].loss_mask, &b.teacher.loss_mask, &rows),
            ["row8", "row9"]
        );
        assert_eq!(
            own_rows(&unique[1].loss_mask, &c.teacher.loss_mask, &["only"]),
            ["only"]
        );
    }
}
