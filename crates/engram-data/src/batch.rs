//! Deterministic batches of tokenized examples, as plain host vectors.

use std::collections::BTreeSet;

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use crate::{DataError, TokenizedExample};

/// How a [`Batcher`] forms batches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchConfig {
    /// Rows per batch (the last batch of an epoch may have fewer).
    pub batch_size: usize,
    /// The most tokens in a row: no example may be longer, and packed rows hold at most this many.
    pub max_len: usize,
    /// Pack several examples into one row (each a segment of its own) instead of one per row.
    pub packing: bool,
    /// Seed of the per-epoch shuffle.
    pub seed: u64,
    /// The token id written into padding.
    pub pad_id: u32,
}

/// One batch, every vector row-major `[batch * seq]`: element `r * seq + t` is token `t` of row
/// `r`. Rows are right-padded to `seq`, the longest row of the batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostBatch {
    /// Rows in this batch.
    pub batch: usize,
    /// Tokens per row (the longest row; shorter ones are padded).
    pub seq: usize,
    /// Token ids; padding is [`BatchConfig::pad_id`].
    pub tokens: Vec<u32>,
    /// RoPE positions: `0, 1, 2, ...` from the start of each example (each packed segment starts
    /// again at 0); `0` in padding.
    pub positions: Vec<u32>,
    /// `true` for padding (at the right end of a row), which no token may attend to.
    pub key_padding: Vec<bool>,
    /// With packing, the segment (example) of each token within its row, `0, 1, ...` in row
    /// order, with padding in a segment of its own after the last; attention must not cross
    /// segments. `None` without packing (one example per row).
    pub segments: Option<Vec<u32>>,
    /// `targets[i]` is the token after token `i` in the same segment: what position `i` is
    /// trained to predict. `0` where there is none (last token of a segment, padding).
    pub targets: Vec<u32>,
    /// `true` where `targets[i]` counts in the loss: the next token exists in the same segment
    /// and its [`TokenizedExample::loss_mask`] flag is set. Never `true` in padding.
    pub target_mask: Vec<bool>,
}

impl HostBatch {
    /// The number of tokens that count in the loss (`true` in `target_mask`): the denominator of
    /// a mean per-token loss.
    pub fn num_targets(&self) -> usize {
        self.target_mask.iter().filter(|&&m| m).count()
    }
}

/// Hands out the batches of each epoch, deterministically from [`BatchConfig::seed`].
///
/// Examples are first laid out in rows: one per row, or, with [`BatchConfig::packing`], packed
/// best-fit-decreasing into rows of at most `max_len` tokens (an example is never split), which
/// wastes little room on padding. The layout is fixed, so every epoch has the same number of
/// batches ([`Batcher::batches_per_epoch`], for learning-rate schedules and progress bars). Each
/// epoch visits the rows in its own seeded order (so the batches differ from epoch to epoch) and
/// groups them into batches of `batch_size` rows; every example is in exactly one batch per epoch.
/// The same examples, config and epoch always give the same batches.
#[derive(Clone, Debug)]
pub struct Batcher {
    examples: Vec<TokenizedExample>,
    config: BatchConfig,
    /// Example indices of each row, in segment order.
    rows: Vec<Vec<usize>>,
    total_targets: usize,
}

impl Batcher {
    /// Lays out `examples` for batching.
    ///
    /// Fails with [`DataError::Config`] when `batch_size` is 0, `max_len` is below 2, there is no
    /// example, or an example is empty, longer than `max_len` (truncate it with
    /// [`crate::tokenize_example`]), has a `loss_mask` of another length than its ids, or has no
    /// target token; the message names the example by its 0-based index.
    pub fn new(examples: Vec<TokenizedExample>, config: BatchConfig) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::Config("batch_size is 0".into()));
        }
        if config.max_len < 2 {
            return Err(DataError::Config(format!(
                "max_len is {}: a row needs two tokens to hold one target",
                config.max_len
            )));
        }
        if examples.is_empty() {
            return Err(DataError::Config("no examples".into()));
        }
        for (i, ex) in examples.iter().enumerate() {
            let problem = if ex.ids.is_empty() {
                "has no tokens".to_owned()
            } else if ex.ids.len() != ex.loss_mask.len() {
                format!(
                    "has {} ids but {} loss-mask flags",
                    ex.ids.len(),
                    ex.loss_mask.len()
                )
            } else if ex.ids.len() > config.max_len {
                format!(
                    "has {} tokens, more than max_len {}",
                    ex.ids.len(),
                    config.max_len
                )
            } else if ex.num_targets() == 0 {
                "has no target token".to_owned()
            } else {
                continue;
            };
            return Err(DataError::Config(format!("example {i} {problem}")));
        }
        let rows = if config.packing {
            pack(&examples, config.max_len)
        } else {
            (0..examples.len()).map(|i| vec![i]).collect()
        };
        let total_targets = examples.iter().map(TokenizedExample::num_targets).sum();
        Ok(Self {
            examples,
            config,
            rows,
            total_targets,
        })
    }

    /// Batches in every epoch: `ceil(rows / batch_size)`, where rows are the examples, or fewer
    /// with packing.
    pub fn batches_per_epoch(&self) -> usize {
        self.rows.len().div_ceil(self.config.batch_size)
    }

    /// Batch `index` of epoch `epoch`. Every batch has `batch_size` rows, except perhaps the last
    /// of the epoch. Costs a shuffle of the row order (`O(rows)`) besides building the batch.
    ///
    /// # Panics
    ///
    /// If `index >= self.batches_per_epoch()`.
    pub fn batch(&self, epoch: usize, index: usize) -> HostBatch {
        self.build(&self.batch_rows(epoch, index))
    }

    /// The rows of batch `index` of epoch `epoch`.
    fn batch_rows(&self, epoch: usize, index: usize) -> Vec<usize> {
        let count = self.batches_per_epoch();
        assert!(
            index < count,
            "batch index {index} out of range: an epoch has {count} batches"
        );
        let order = self.row_order(epoch);
        let start = index * self.config.batch_size;
        let end = (start + self.config.batch_size).min(order.len());
        order[start..end].to_vec()
    }

    /// The example indices of batch `index` of epoch `epoch`, in the order their tokens (and so their
    /// targets) appear in [`Batcher::batch`]'s rows: for objectives that carry per-example data beside the
    /// tokens (e.g. cached teacher distributions).
    ///
    /// # Panics
    ///
    /// If `index >= self.batches_per_epoch()`.
    pub fn batch_examples(&self, epoch: usize, index: usize) -> Vec<usize> {
        self.batch_rows(epoch, index)
            .iter()
            .flat_map(|&r| self.rows[r].iter().copied())
            .collect()
    }

    /// The number of examples.
    pub fn num_examples(&self) -> usize {
        self.examples.len()
    }

    /// The number of rows an epoch is laid out in (the examples, or fewer with packing).
    pub fn num_rows(&self) -> usize {
        self.rows.len()
    }

    /// Target tokens in all examples: the sum of [`HostBatch::num_targets`] over one epoch.
    pub fn total_target_tokens(&self) -> usize {
        self.total_targets
    }

    /// The config the batcher was made with.
    pub fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// The rows in the order epoch `epoch` visits them.
    fn row_order(&self, epoch: usize) -> Vec<usize> {
        // Golden-ratio multiple: consecutive epochs get far-apart seeds (seed_from_u64 then
        // scrambles them further), epoch 0 uses the seed as given.
        let seed = self.config.seed ^ (epoch as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut order: Vec<usize> = (0..self.rows.len()).collect();
        order.shuffle(&mut rng);
        order
    }

    fn build(&self, rows: &[usize]) -> HostBatch {
        let row_len = |r: usize| -> usize {
            self.rows[r]
                .iter()
                .map(|&i| self.examples[i].ids.len())
                .sum()
        };
        let seq = rows.iter().map(|&r| row_len(r)).max().unwrap_or(0);
        let n = rows.len() * seq;
        let mut tokens = vec![self.config.pad_id; n];
        let mut positions = vec![0u32; n];
        let mut key_padding = vec![true; n];
        let mut segments = self.config.packing.then(|| vec![0u32; n]);
        let mut targets = vec![0u32; n];
        let mut target_mask = vec![false; n];
        for (b, &r) in rows.iter().enumerate() {
            let mut at = b * seq;
            for (segment, &i) in self.rows[r].iter().enumerate() {
                let ex = &self.examples[i];
                for (j, &id) in ex.ids.iter().enumerate() {
                    tokens[at] = id;
                    positions[at] = j as u32;
                    key_padding[at] = false;
                    if let Some(s) = segments.as_mut() {
                        s[at] = segment as u32;
                    }
                    if let Some(&next) = ex.ids.get(j + 1) {
                        targets[at] = next;
                        target_mask[at] = ex.loss_mask[j + 1];
                    }
                    at += 1;
                }
            }
            if let Some(s) = segments.as_mut() {
                let padding_segment = self.rows[r].len() as u32;
                s[at..(b + 1) * seq].fill(padding_segment);
            }
        }
        HostBatch {
            batch: rows.len(),
            seq,
            tokens,
            positions,
            key_padding,
            segments,
            targets,
            target_mask,
        }
    }
}

/// Best-fit decreasing: longest examples first, each into the fullest row it still fits in (a new
/// row if none). Deterministic; no two rows could be merged into one.
fn pack(examples: &[TokenizedExample], max_len: usize) -> Vec<Vec<usize>> {
    let mut by_length: Vec<usize> = (0..examples.len()).collect();
    by_length.sort_by_key(|&i| (std::cmp::Reverse(examples[i].ids.len()), i));
    let mut rows: Vec<Vec<usize>> = Vec::new();
    // (room left, row index): the first entry with room >= len is the best fit.
    let mut room: BTreeSet<(usize, usize)> = BTreeSet::new();
    for i in by_length {
        let len = examples[i].ids.len();
        let fit = room.range((len, 0)..).next().copied();
        match fit {
            Some((left, r)) => {
                room.remove(&(left, r));
                rows[r].push(i);
                room.insert((left - len, r));
            }
            None => {
                room.insert((max_len - len, rows.len()));
                rows.push(vec![i]);
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn example(ids: &[u32], mask: &[bool]) -> TokenizedExample {
        TokenizedExample {
            ids: ids.to_vec(),
            loss_mask: mask.to_vec(),
        }
    }

    fn config(batch_size: usize, max_len: usize, packing: bool) -> BatchConfig {
        BatchConfig {
            batch_size,
            max_len,
            packing,
            seed: 7,
            pad_id: 99,
        }
    }

    #[test]
    fn packed_row_has_segments_positions_and_targets_per_example() {
        // Lengths 3 + 2 fill max_len 5 exactly: one row, two segments.
        let examples = vec![
            example(&[10, 11, 12], &[false, true, false]),
            example(&[20, 21], &[false, true]),
        ];
        let b = Batcher::new(examples, config(4, 5, true)).unwrap();
        assert_eq!(b.num_rows(), 1);
        assert_eq!(b.batches_per_epoch(), 1);
        let batch = b.batch(0, 0);
        assert_eq!((batch.batch, batch.seq), (1, 5));
        assert_eq!(batch.tokens, [10, 11, 12, 20, 21]);
        assert_eq!(batch.positions, [0, 1, 2, 0, 1]);
        assert_eq!(batch.segments, Some(vec![0, 0, 0, 1, 1]));
        assert_eq!(batch.key_padding, [false; 5]);
        // 12 is the last of its segment: it does not predict 20.
        assert_eq!(batch.targets, [11, 12, 0, 21, 0]);
        assert_eq!(batch.target_mask, [true, false, false, true, false]);
        assert_eq!(batch.num_targets(), 2);
        assert_eq!(b.total_target_tokens(), 2);
    }

    /// `batch_examples` names the examples whose tokens fill the batch's rows, in row order.
    #[test]
    fn batch_examples_match_the_rows() {
        let examples: Vec<_> = (0..7)
            .map(|i| example(&[i, i + 100, i + 200], &[false, true, true]))
            .collect();
        for packing in [false, true] {
            let b = Batcher::new(examples.clone(), config(3, 6, packing)).unwrap();
            for epoch in 0..3 {
                let mut seen = Vec::new();
                for index in 0..b.batches_per_epoch() {
                    let batch = b.batch(epoch, index);
                    let firsts: Vec<u32> = batch
                        .tokens
                        .chunks(3)
                        .map(|c| c[0])
                        .filter(|&t| t != 99)
                        .collect();
                    let named = b.batch_examples(epoch, index);
                    assert_eq!(firsts, named.iter().map(|&i| i as u32).collect::<Vec<_>>());
                    seen.extend(named);
                }
                seen.sort();
                assert_eq!(
                    seen,
                    (0..7).collect::<Vec<_>>(),
                    "each example once per epoch"
                );
            }
        }
    }

    #[test]
    fn short_rows_are_right_padded_with_their_own_segment() {
        let examples = vec![
            example(&[10, 11, 12, 13], &[false, true, true, true]),
            example(&[20, 21], &[false, true]),
        ];
        // max_len 5: the two do not fit together, so two rows.
        let b = Batcher::new(examples, config(2, 5, true)).unwrap();
        assert_eq!(b.num_rows(), 2);
        let batch = b.batch(0, 0);
        assert_eq!((batch.batch, batch.seq), (2, 4));
        let short = (0..2)
            .find(|&r| batch.tokens[r * 4] == 20)
            .expect("the short example is in the batch");
        let row = short * 4..short * 4 + 4;
        assert_eq!(batch.tokens[row.clone()], [20, 21, 99, 99]);
        assert_eq!(batch.positions[row.clone()], [0, 1, 0, 0]);
        assert_eq!(batch.key_padding[row.clone()], [false, false, true, true]);
        assert_eq!(batch.segments.as_ref().unwrap()[row.clone()], [0, 0, 1, 1]);
        assert_eq!(batch.targets[row.clone()], [21, 0, 0, 0]);
        assert_eq!(batch.target_mask[row], [true, false, false, false]);
        assert_eq!(batch.num_targets(), 4);
    }

    #[test]
    fn without_packing_there_are_no_segments_and_the_last_batch_is_smaller() {
        let examples: Vec<_> = (0..5)
            .map(|i| example(&[i, i + 100], &[false, true]))
            .collect();
        let b = Batcher::new(examples, config(2, 8, false)).unwrap();
        assert_eq!(b.batches_per_epoch(), 3);
        assert_eq!(b.batch(0, 0).batch, 2);
        assert_eq!(b.batch(0, 2).batch, 1);
        assert_eq!(b.batch(0, 2).seq, 2);
        assert_eq!(b.batch(0, 2).segments, None);
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let ok = || vec![example(&[1, 2], &[false, true])];
        let cases = [
            (ok(), config(0, 8, false), "batch_size is 0"),
            (
                ok(),
                config(1, 1, false),
                "max_len is 1: a row needs two tokens to hold one target",
            ),
            (vec![], config(1, 8, false), "no examples"),
            (
                vec![example(&[], &[])],
                config(1, 8, false),
                "example 0 has no tokens",
            ),
            (
                vec![example(&[1, 2], &[false])],
                config(1, 8, false),
                "example 0 has 2 ids but 1 loss-mask flags",
            ),
            (
                vec![example(&[1, 2, 3], &[false, true, true])],
                config(1, 2, true),
                "example 0 has 3 tokens, more than max_len 2",
            ),
            (
                vec![example(&[1, 2], &[true, false])],
                config(1, 8, false),
                "example 0 has no target token",
            ),
        ];
        for (examples, config, expected) in cases {
            let message = Batcher::new(examples, config).unwrap_err().to_string();
            assert_eq!(message, format!("invalid batch configuration: {expected}"));
        }
    }

    #[test]
    #[should_panic(expected = "batch index 1 out of range: an epoch has 1 batches")]
    fn a_batch_past_the_epoch_panics() {
        let b = Batcher::new(vec![example(&[1, 2], &[false, true])], config(4, 8, false)).unwrap();
        b.batch(0, 1);
    }
}
