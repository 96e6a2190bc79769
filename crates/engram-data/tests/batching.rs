//! Batches over arbitrary example lengths, masks and batch sizes: every example exactly once per
//! epoch, positions and targets right at segment boundaries and padding, packed rows within
//! `max_len`, and the same batches for the same seed.

use engram_data::{BatchConfig, Batcher, HostBatch, TokenizedExample};
use proptest::prelude::*;

const PAD: u32 = u32::MAX;

/// Token `j` of example `i` is `i << 16 | j`, so every token says where it came from.
fn token(i: usize, j: usize) -> u32 {
    ((i as u32) << 16) | j as u32
}

fn examples(shapes: &[Vec<bool>]) -> Vec<TokenizedExample> {
    shapes
        .iter()
        .enumerate()
        .map(|(i, mask)| TokenizedExample {
            ids: (0..mask.len()).map(|j| token(i, j)).collect(),
            loss_mask: mask.clone(),
        })
        .collect()
}

fn config(batch_size: usize, max_len: usize, packing: bool, seed: u64) -> BatchConfig {
    BatchConfig {
        batch_size,
        max_len,
        packing,
        seed,
        pad_id: PAD,
    }
}

/// Checks one epoch token by token; returns the examples of each row, in batch order.
fn check_epoch(
    batcher: &Batcher,
    examples: &[TokenizedExample],
    epoch: usize,
) -> Result<Vec<Vec<usize>>, TestCaseError> {
    let cfg = batcher.config().clone();
    let count = batcher.batches_per_epoch();
    prop_assert_eq!(count, batcher.num_rows().div_ceil(cfg.batch_size));
    let mut rows = Vec::new();
    let mut targets = 0;
    for index in 0..count {
        let b = batcher.batch(epoch, index);
        let expected_rows = if index + 1 < count {
            cfg.batch_size
        } else {
            batcher.num_rows() - index * cfg.batch_size
        };
        prop_assert_eq!(b.batch, expected_rows);
        prop_assert!(b.seq <= cfg.max_len);
        let n = b.batch * b.seq;
        prop_assert_eq!(b.tokens.len(), n);
        prop_assert_eq!(b.positions.len(), n);
        prop_assert_eq!(b.key_padding.len(), n);
        prop_assert_eq!(b.targets.len(), n);
        prop_assert_eq!(b.target_mask.len(), n);
        prop_assert_eq!(b.segments.is_some(), cfg.packing);
        if let Some(s) = &b.segments {
            prop_assert_eq!(s.len(), n);
        }
        // seq is the longest row: some row ends with a real token.
        prop_assert!((0..b.batch).any(|r| !b.key_padding[r * b.seq + b.seq - 1]));
        for r in 0..b.batch {
            rows.push(check_row(&b, r, examples, cfg.packing)?);
        }
        targets += b.num_targets();
    }
    prop_assert_eq!(targets, batcher.total_target_tokens());
    let mut seen: Vec<usize> = rows.iter().flatten().copied().collect();
    seen.sort_unstable();
    prop_assert_eq!(
        seen,
        (0..examples.len()).collect::<Vec<_>>(),
        "each example once"
    );
    Ok(rows)
}

/// Walks row `r`: whole examples one after the other, then padding.
fn check_row(
    b: &HostBatch,
    r: usize,
    examples: &[TokenizedExample],
    packing: bool,
) -> Result<Vec<usize>, TestCaseError> {
    let row = r * b.seq..(r + 1) * b.seq;
    let mut t = row.start;
    let mut members = Vec::new();
    while t < row.end && !b.key_padding[t] {
        let i = (b.tokens[t] >> 16) as usize;
        prop_assert!(i < examples.len());
        let ex = &examples[i];
        prop_assert!(t + ex.ids.len() <= row.end, "example {} cut", i);
        for j in 0..ex.ids.len() {
            let at = t + j;
            prop_assert!(!b.key_padding[at]);
            prop_assert_eq!(b.tokens[at], ex.ids[j]);
            prop_assert_eq!(b.positions[at], j as u32, "positions restart per segment");
            if let Some(s) = &b.segments {
                prop_assert_eq!(s[at], members.len() as u32);
            }
            if j + 1 < ex.ids.len() {
                prop_assert_eq!(b.targets[at], ex.ids[j + 1]);
                prop_assert_eq!(b.target_mask[at], ex.loss_mask[j + 1]);
            } else {
                // The last token of a segment predicts nothing, whatever follows it.
                prop_assert_eq!(b.targets[at], 0);
                prop_assert!(!b.target_mask[at]);
            }
        }
        members.push(i);
        t += ex.ids.len();
    }
    prop_assert!(!members.is_empty());
    prop_assert!(
        packing || members.len() == 1,
        "one example per row without packing"
    );
    for at in t..row.end {
        prop_assert!(b.key_padding[at]);
        prop_assert_eq!(b.tokens[at], PAD);
        prop_assert_eq!(b.positions[at], 0);
        prop_assert_eq!(b.targets[at], 0);
        prop_assert!(!b.target_mask[at]);
        if let Some(s) = &b.segments {
            prop_assert_eq!(s[at], members.len() as u32, "padding has its own segment");
        }
    }
    Ok(members)
}

/// Example shapes: 1..40 examples of 2..=max_len tokens, each with at least one target.
fn shapes(max_len: usize) -> impl Strategy<Value = Vec<Vec<bool>>> {
    proptest::collection::vec(
        (2..=max_len).prop_flat_map(|len| {
            (proptest::collection::vec(any::<bool>(), len), 1..len).prop_map(|(mut m, forced)| {
                m[0] = false;
                m[forced] = true;
                m
            })
        }),
        1..40,
    )
}

fn case() -> impl Strategy<Value = (Vec<Vec<bool>>, usize, usize, bool, u64)> {
    (2usize..48).prop_flat_map(|max_len| {
        (
            shapes(max_len),
            Just(max_len),
            1usize..9,
            any::<bool>(),
            any::<u64>(),
        )
    })
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn every_epoch_holds_every_example_once_with_exact_targets(
        (shapes, max_len, batch_size, packing, seed) in case()
    ) {
        let examples = examples(&shapes);
        let batcher = Batcher::new(examples.clone(), config(batch_size, max_len, packing, seed)).unwrap();
        prop_assert_eq!(batcher.num_examples(), examples.len());
        let expected_targets: usize = shapes.iter().map(|m| m[1..].iter().filter(|&&x| x).count()).sum();
        prop_assert_eq!(batcher.total_target_tokens(), expected_targets);
        for epoch in 0..3 {
            let rows = check_epoch(&batcher, &examples, epoch)?;
            if !packing {
                prop_assert_eq!(batcher.num_rows(), examples.len());
            } else {
                // Best-fit packing leaves no two rows that would fit together in one.
                let lens: Vec<usize> = rows
                    .iter()
                    .map(|r| r.iter().map(|&i| examples[i].ids.len()).sum())
                    .collect();
                for a in 0..lens.len() {
                    prop_assert!(lens[a] <= max_len);
                    for b in a + 1..lens.len() {
                        prop_assert!(lens[a] + lens[b] > max_len, "rows {} and {} could merge", a, b);
                    }
                }
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_batches(
        (shapes, max_len, batch_size, packing, seed) in case(),
        epoch in 0usize..1000,
    ) {
        let examples = examples(&shapes);
        let cfg = config(batch_size, max_len, packing, seed);
        let a = Batcher::new(examples.clone(), cfg.clone()).unwrap();
        let b = Batcher::new(examples, cfg).unwrap();
        prop_assert_eq!(a.batches_per_epoch(), b.batches_per_epoch());
        for i in 0..a.batches_per_epoch() {
            let first = a.batch(epoch, i);
            prop_assert_eq!(&first, &b.batch(epoch, i));
            prop_assert_eq!(&first, &a.batch(epoch, i));
        }
    }
}

/// The examples of an epoch in the order its batches hold them.
fn order(batcher: &Batcher, epoch: usize) -> Vec<u32> {
    (0..batcher.batches_per_epoch())
        .flat_map(|i| {
            let b = batcher.batch(epoch, i);
            (0..b.batch)
                .map(|r| b.tokens[r * b.seq] >> 16)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn seeds_and_epochs_change_the_order() {
    let shapes: Vec<Vec<bool>> = (0..30).map(|i| vec![false, true, i % 2 == 0]).collect();
    let make = |seed| Batcher::new(examples(&shapes), config(4, 8, false, seed)).unwrap();
    let (one, two) = (make(1), make(2));
    assert_eq!(order(&one, 0), order(&make(1), 0));
    // 30! orders: equal ones would mean the seed or the epoch is ignored.
    assert_ne!(order(&one, 0), order(&two, 0));
    assert_ne!(order(&one, 0), order(&one, 1));
    assert_ne!(order(&one, 1), order(&one, 2));
    let mut sorted = order(&one, 3);
    sorted.sort_unstable();
    assert_eq!(sorted, (0..30).collect::<Vec<u32>>());
}

#[test]
fn packed_epochs_regroup_rows_into_different_batches() {
    // 40 examples of 3 tokens, max_len 6: 20 rows of two, 10 batches of two rows.
    let shapes: Vec<Vec<bool>> = (0..40).map(|_| vec![false, true, true]).collect();
    let batcher = Batcher::new(examples(&shapes), config(2, 6, true, 9)).unwrap();
    assert_eq!(batcher.num_rows(), 20);
    assert_eq!(batcher.batches_per_epoch(), 10);
    let first = batcher.batch(0, 0);
    assert_eq!((first.batch, first.seq), (2, 6));
    assert!(
        first.key_padding.iter().all(|&p| !p),
        "full rows need no padding"
    );
    assert_eq!(first.positions, [0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1, 2]);
    assert_eq!(
        first.segments,
        Some(vec![0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1])
    );
    assert_ne!(order(&batcher, 0), order(&batcher, 1));
}
