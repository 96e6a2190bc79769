//! Scoring continuations by likelihood: each option's log-probability as the answer to a prompt (the
//! cloze-style multiple choice of lm-evaluation-harness, no options shown), and whether the model's argmax
//! reproduces each answer token under teacher forcing (EasyEdit's token accuracy). Rows of many prompts run
//! in one left-padded batch, and the output head is applied only at the positions that are scored.

use burn::tensor::{Int, Tensor, TensorData};
use engram_model::{Llama, ModelError, left_padded_batch};
use engram_tokenizer::Tokenizer;

/// The log-probability of one option's tokens after the prompt.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptionScore {
    /// Sum of the option tokens' log-probabilities.
    pub sum: f64,
    /// Number of option tokens.
    pub tokens: usize,
    /// Option tokens that are the model's argmax given everything before them (teacher forcing).
    pub argmax_hits: usize,
}

impl OptionScore {
    /// Length-normalised score: mean log-probability per token (so long options are not penalised).
    pub fn mean(&self) -> f64 {
        self.sum / self.tokens.max(1) as f64
    }

    /// Share of the option's tokens the model predicts exactly (0 for an empty option).
    pub fn token_accuracy(&self) -> f64 {
        if self.tokens == 0 {
            0.0
        } else {
            self.argmax_hits as f64 / self.tokens as f64
        }
    }
}

/// One row to score: token ids, of which those from `start` on are scored (each predicted from the ones
/// before it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Continuation {
    /// The prompt's token ids followed by the continuation's.
    pub ids: Vec<u32>,
    /// Index in `ids` of the first scored token.
    pub start: usize,
}

/// Token ids of `prompt` followed by `option`, and where the option starts. The option is tokenized together
/// with the prompt (as the model would read it) when that keeps the prompt's tokens; otherwise apart.
pub fn continuation(
    tok: &Tokenizer,
    prompt: &str,
    prompt_ids: &[u32],
    option: &str,
) -> Result<Continuation, ModelError> {
    let joint = tok.encode(&format!("{prompt}{option}"))?;
    if joint.len() > prompt_ids.len() && joint.starts_with(prompt_ids) {
        return Ok(Continuation {
            ids: joint,
            start: prompt_ids.len(),
        });
    }
    let mut ids = prompt_ids.to_vec();
    let mut tail = tok.encode(option)?;
    if let Some(bos) = tok.bos_id()
        && tail.first() == Some(&bos)
    {
        tail.remove(0);
    }
    ids.extend(tail);
    Ok(Continuation {
        ids,
        start: prompt_ids.len(),
    })
}

/// Scores `rows` in one batch: for each, the summed log-probability of `ids[start..]` and how many of those
/// tokens are the argmax. A row whose `start` is 0 scores from its second token (the first has no context).
pub fn score_continuations(
    model: &Llama,
    pad: u32,
    rows: &[Continuation],
) -> Result<Vec<OptionScore>, ModelError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Vec<u32>> = rows.iter().map(|r| r.ids.clone()).collect();
    let device = model.device();
    let batch = left_padded_batch(&ids, pad, &device)?;
    let s = batch.input.tokens.dims()[1];
    // Flattened `[b * s]` positions whose logits predict a scored token, and those tokens.
    let mut picks = Vec::new();
    let mut targets = Vec::new();
    for (r, row) in rows.iter().enumerate() {
        let offset = s - row.ids.len(); // left padding
        for j in row.start.max(1)..row.ids.len() {
            picks.push((r * s + offset + j - 1) as i64);
            targets.push(row.ids[j]);
        }
    }
    let mut out: Vec<OptionScore> = rows
        .iter()
        .map(|_| OptionScore {
            sum: 0.0,
            tokens: 0,
            argmax_hits: 0,
        })
        .collect();
    if picks.is_empty() {
        return Ok(out);
    }
    let hidden = model.final_hidden(batch.input, None);
    let [b, _, h] = hidden.dims();
    let n = picks.len();
    let index = Tensor::<1, Int>::from_data(TensorData::new(picks, [n]), &device);
    let logits = model.project_logits(hidden.reshape([b * s, h]).select(0, index));
    let v = logits.dims()[1];
    let values = host_f32(logits)?;
    let mut k = 0;
    for (r, row) in rows.iter().enumerate() {
        for _ in row.start.max(1)..row.ids.len() {
            let logits = &values[k * v..(k + 1) * v];
            let target = targets[k] as usize;
            out[r].sum += log_softmax_at(logits, target);
            out[r].tokens += 1;
            out[r].argmax_hits += usize::from(engram_model::argmax(logits) as usize == target);
            k += 1;
        }
    }
    Ok(out)
}

/// A tensor's values on the host, as f32.
pub(crate) fn host_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>, ModelError> {
    t.into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))
}

/// Scores every option as a continuation of `prompt` (already rendered, e.g. a chat prompt ending with the
/// assistant header), in one batch.
pub fn score_options(
    model: &Llama,
    tok: &Tokenizer,
    prompt: &str,
    options: &[String],
) -> Result<Vec<OptionScore>, ModelError> {
    let prompt_ids = tok.encode(prompt)?;
    let rows = options
        .iter()
        .map(|o| continuation(tok, prompt, &prompt_ids, o))
        .collect::<Result<Vec<_>, _>>()?;
    score_continuations(model, tok.padding_id(), &rows)
}

/// `log softmax(row)[i]`, in f64.
pub(crate) fn log_softmax_at(row: &[f32], i: usize) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = row.iter().map(|&x| (x as f64 - max).exp()).sum();
    row[i] as f64 - max - sum.ln()
}

/// The index of the best option by length-normalised score (the first on ties).
pub fn best_option(scores: &[OptionScore]) -> Option<usize> {
    scores
        .iter()
        .enumerate()
        .fold(None, |best: Option<(usize, f64)>, (i, s)| match best {
            Some((_, m)) if m >= s.mean() => best,
            _ => Some((i, s.mean())),
        })
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_softmax_and_best_option() {
        let row = [1.0f32, 2.0, 3.0];
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        assert!((log_softmax_at(&row, 2) - (3.0 - lse)).abs() < 1e-12);
        let s = |sum, tokens| OptionScore {
            sum,
            tokens,
            argmax_hits: 0,
        };
        // Option 1 has the larger total but the smaller mean: normalisation decides.
        assert_eq!(best_option(&[s(-2.0, 4), s(-1.5, 1), s(-0.9, 2)]), Some(2));
        assert_eq!(
            best_option(&[s(-1.0, 1), s(-1.0, 1)]),
            Some(0),
            "first on ties"
        );
        assert_eq!(best_option(&[]), None);
    }

    #[test]
    fn token_accuracy_counts_hits() {
        let s = OptionScore {
            sum: -1.0,
            tokens: 4,
            argmax_hits: 3,
        };
        assert_eq!(s.token_accuracy(), 0.75);
        let empty = OptionScore {
            sum: 0.0,
            tokens: 0,
            argmax_hits: 0,
        };
        assert_eq!(empty.token_accuracy(), 0.0);
    }
}
