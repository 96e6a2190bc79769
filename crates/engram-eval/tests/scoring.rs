//! Likelihood scoring against a plain computation on a tiny random model: each scored token's log-probability
//! and argmax come from the full logits of that row run alone, so batching, left padding and picking only the
//! scored positions change nothing.

use engram_eval::{Continuation, score_continuations};
use engram_formats::Architecture;
use engram_formats::testing::{Memory, tiny_config};
use engram_model::{Device, Llama, Logits, left_padded_batch};

fn tiny() -> Llama {
    let weights = Memory::random(tiny_config(Architecture::Llama), 11);
    Llama::load(&weights, &Device::flex(), &mut |_, _| {}).unwrap()
}

/// Log-probabilities and argmaxes of every next token of `ids`, from the model's full logits.
fn plain(model: &Llama, ids: &[u32]) -> Vec<(f64, u32)> {
    let batch = left_padded_batch(&[ids.to_vec()], 0, &model.device()).unwrap();
    let logits = model.forward(batch.input, None, Logits::All);
    let v = logits.dims()[2];
    let values: Vec<f32> = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .unwrap();
    (1..ids.len())
        .map(|j| {
            let row = &values[(j - 1) * v..j * v];
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
            let lse = max
                + row
                    .iter()
                    .map(|&x| (x as f64 - max).exp())
                    .sum::<f64>()
                    .ln();
            let arg = (0..v).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap() as u32;
            (row[ids[j] as usize] as f64 - lse, arg)
        })
        .collect()
}

#[test]
fn batched_scores_equal_each_row_alone() {
    let model = tiny();
    let rows = vec![
        Continuation {
            ids: vec![1, 5, 9, 14, 3],
            start: 3,
        },
        Continuation {
            ids: vec![1, 7, 22, 40, 41, 42, 43, 8],
            start: 5,
        },
        Continuation {
            ids: vec![1, 60],
            start: 1,
        },
        // start 0 scores from the second token: the first has nothing to be predicted from.
        Continuation {
            ids: vec![4, 4, 4],
            start: 0,
        },
    ];
    let scores = score_continuations(&model, 0, &rows).unwrap();
    for (row, got) in rows.iter().zip(&scores) {
        let per_token = plain(&model, &row.ids);
        let from = row.start.max(1);
        let want: f64 = per_token[from - 1..].iter().map(|(lp, _)| lp).sum();
        let hits = per_token[from - 1..]
            .iter()
            .zip(&row.ids[from..])
            .filter(|((_, arg), id)| arg == *id)
            .count();
        assert_eq!(got.tokens, row.ids.len() - from);
        assert!((got.sum - want).abs() < 1e-4, "{} vs {want}", got.sum);
        assert_eq!(got.argmax_hits, hits);
        assert!(got.sum < 0.0);
    }
}

#[test]
fn the_argmax_continuation_is_fully_hit() {
    let model = tiny();
    // Extend a prompt greedily by three tokens: teacher-forced token accuracy of that answer must be 1.
    let mut ids = vec![1u32, 9, 17];
    for _ in 0..3 {
        let next = plain(&model, &[ids.clone(), vec![0]].concat())
            .last()
            .unwrap()
            .1;
        ids.push(next);
    }
    let s = score_continuations(&model, 0, &[Continuation { ids, start: 3 }]).unwrap();
    assert_eq!((s[0].argmax_hits, s[0].tokens), (3, 3));
    assert_eq!(s[0].token_accuracy(), 1.0);
    assert!(score_continuations(&model, 0, &[]).unwrap().is_empty());
}
