//! Multiple choice by likelihood: each option scored by the log-probability the model gives it as the answer
//! to the question, with no options shown (the cloze-style scoring of lm-evaluation-harness).

use engram_model::{Llama, Logits, ModelError, left_padded_batch};
use engram_tokenizer::Tokenizer;

/// The log-probability of one option's tokens after the prompt.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OptionScore {
    /// Sum of the option tokens' log-probabilities.
    pub sum: f64,
    /// Number of option tokens.
    pub tokens: usize,
}

impl OptionScore {
    /// Length-normalised score: mean log-probability per token (so long options are not penalised).
    pub fn mean(&self) -> f64 {
        self.sum / self.tokens.max(1) as f64
    }
}

/// Token ids of `prompt` followed by `option`, and where the option starts. The option is tokenized together
/// with the prompt (as the model would read it) when that keeps the prompt's tokens; otherwise apart.
fn continuation(
    tok: &Tokenizer,
    prompt: &str,
    prompt_ids: &[u32],
    option: &str,
) -> Result<(Vec<u32>, usize), ModelError> {
    let joint = tok.encode(&format!("{prompt}{option}"))?;
    if joint.len() > prompt_ids.len() && joint.starts_with(prompt_ids) {
        return Ok((joint, prompt_ids.len()));
    }
    let mut ids = prompt_ids.to_vec();
    let mut tail = tok.encode(option)?;
    if let Some(bos) = tok.bos_id()
        && tail.first() == Some(&bos)
    {
        tail.remove(0);
    }
    ids.extend(tail);
    Ok((ids, prompt_ids.len()))
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
    let mut rows = Vec::with_capacity(options.len());
    let mut starts = Vec::with_capacity(options.len());
    for o in options {
        let (ids, start) = continuation(tok, prompt, &prompt_ids, o)?;
        rows.push(ids);
        starts.push(start);
    }
    let pad = tok
        .pad_id()
        .or_else(|| tok.eos_ids().first().copied())
        .unwrap_or(0);
    let batch = left_padded_batch(&rows, pad, &model.device())?;
    let logits = model.forward(batch.input, None, Logits::All);
    let [b, s, v] = logits.dims();
    let values = logits
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ModelError::Backend(format!("{e:?}")))?;
    let mut out = Vec::with_capacity(b);
    for (r, (ids, &start)) in rows.iter().zip(&starts).enumerate() {
        let offset = s - ids.len(); // left padding
        let mut sum = 0f64;
        for (j, &id) in ids.iter().enumerate().skip(start.max(1)) {
            // Position j's token is predicted by the logits at j - 1.
            let row = &values[(r * s + offset + j - 1) * v..(r * s + offset + j) * v];
            sum += log_softmax_at(row, id as usize);
        }
        out.push(OptionScore {
            sum,
            tokens: ids.len() - start.max(1),
        });
    }
    Ok(out)
}

/// `log softmax(row)[i]`, in f64.
fn log_softmax_at(row: &[f32], i: usize) -> f64 {
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
        let s = |sum, tokens| OptionScore { sum, tokens };
        // Option 1 has the larger total but the smaller mean: normalisation decides.
        assert_eq!(best_option(&[s(-2.0, 4), s(-1.5, 1), s(-0.9, 2)]), Some(2));
        assert_eq!(
            best_option(&[s(-1.0, 1), s(-1.0, 1)]),
            Some(0),
            "first on ties"
        );
        assert_eq!(best_option(&[]), None);
    }
}
