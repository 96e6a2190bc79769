//! Text generation: greedy and sampled decoding over a left-padded batch, with a KV cache, stop strings and
//! streaming.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::ModelError;
use crate::llama::{ForwardInput, Llama, Logits};
use engram_tokenizer::Tokenizer;

/// How to pick each new token and when to stop.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GenerationConfig {
    /// Upper bound on generated tokens per prompt.
    pub max_new_tokens: usize,
    /// 0 means greedy (argmax); otherwise logits are divided by it before sampling.
    pub temperature: f32,
    /// Sample only among the k most likely tokens.
    pub top_k: Option<usize>,
    /// Nucleus sampling: the smallest set of tokens whose probability reaches p.
    pub top_p: Option<f32>,
    /// Seed of the sampler (row `i` of a batch uses a stream derived from `seed` and `i`).
    pub seed: u64,
    /// Stop a row when it produces an end-of-sequence token (which is not included in the text).
    pub stop_at_eos: bool,
    /// Stop a row when its text contains one of these (the text is cut before it).
    pub stop_strings: Vec<String>,
    /// CTRL-style repetition penalty (1.0 = off): logits of already generated tokens are divided by it.
    pub repetition_penalty: f32,
    /// Generations per prompt (Hugging Face's name). The prompts are prefilled once and their KV cache is
    /// repeated, so `n` samples of a prompt cost one prefill, not `n`. Result `r * n + j` is prompt `r`'s
    /// `j`-th generation, drawn from the sampler stream of that row.
    pub num_return_sequences: usize,
}

impl Default for GenerationConfig {
    fn default() -> Self {
        Self {
            max_new_tokens: 128,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            seed: 0,
            stop_at_eos: true,
            stop_strings: Vec::new(),
            repetition_penalty: 1.0,
            num_return_sequences: 1,
        }
    }
}

impl GenerationConfig {
    /// Greedy decoding of up to `max_new_tokens` tokens.
    pub fn greedy(max_new_tokens: usize) -> Self {
        Self {
            max_new_tokens,
            ..Self::default()
        }
    }

    /// Rejects out-of-range values with an error naming the option.
    pub fn validate(&self) -> Result<(), ModelError> {
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(ModelError::invalid(
                "temperature",
                self.temperature,
                "must be a finite number >= 0 (0 = greedy)",
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ModelError::invalid("top-p", p, "must be in (0, 1]"));
        }
        if self.top_k == Some(0) {
            return Err(ModelError::invalid("top-k", 0, "must be at least 1"));
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return Err(ModelError::invalid(
                "repetition-penalty",
                self.repetition_penalty,
                "must be a finite number > 0 (1 = off)",
            ));
        }
        if self.num_return_sequences == 0 {
            return Err(ModelError::invalid(
                "num-return-sequences",
                0,
                "must be at least 1",
            ));
        }
        if self.stop_strings.iter().any(|s| s.is_empty()) {
            return Err(ModelError::invalid(
                "stop string",
                "\"\"",
                "must not be empty",
            ));
        }
        Ok(())
    }
}

/// Why a row stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// Reached `max_new_tokens`.
    Length,
    /// Produced an end-of-sequence token.
    Eos,
    /// Its text reached a stop string.
    StopString,
}

/// One prompt's result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Generation {
    /// Every generated token id (an end-of-sequence token that stopped the row is included).
    pub tokens: Vec<u32>,
    /// The decoded text, without special tokens and cut before any stop string.
    pub text: String,
    /// Why generation of this row stopped.
    pub finish: FinishReason,
}

/// Token ids left-padded into one batch: what a batched forward pass needs.
#[derive(Clone, Debug)]
pub struct PaddedBatch {
    /// The padded token ids, positions and key padding mask.
    pub input: ForwardInput,
    /// Real (unpadded) length of each row.
    pub lengths: Vec<usize>,
    /// Whether any row is padded (when none is, no mask is built).
    pub padded: bool,
}

/// Left-pads `prompts` with `pad_id` so that every row ends at the same position, with per-row positions
/// starting at 0 at each row's first real token — so padding changes no result.
pub fn left_padded_batch(
    prompts: &[Vec<u32>],
    pad_id: u32,
    device: &Device,
) -> Result<PaddedBatch, ModelError> {
    if prompts.is_empty() {
        return Err(ModelError::invalid(
            "prompts",
            "[]",
            "need at least one prompt",
        ));
    }
    if let Some(i) = prompts.iter().position(|p| p.is_empty()) {
        return Err(ModelError::invalid(
            &format!("prompts[{i}]"),
            "\"\"",
            "is empty after tokenization: nothing to continue",
        ));
    }
    let b = prompts.len();
    let len = prompts.iter().map(Vec::len).max().unwrap_or(0);
    let mut tokens = Vec::with_capacity(b * len);
    let mut positions = Vec::with_capacity(b * len);
    let mut pad = Vec::with_capacity(b * len);
    for p in prompts {
        let n_pad = len - p.len();
        for j in 0..len {
            let is_pad = j < n_pad;
            tokens.push(if is_pad { pad_id } else { p[j - n_pad] } as i64);
            positions.push(j.saturating_sub(n_pad) as i64);
            pad.push(is_pad);
        }
    }
    let padded = pad.iter().any(|&p| p);
    Ok(PaddedBatch {
        input: ForwardInput {
            tokens: Tensor::<2, Int>::from_data(TensorData::new(tokens, [b, len]), device),
            positions: Tensor::<2, Int>::from_data(TensorData::new(positions, [b, len]), device),
            key_padding: padded
                .then(|| Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, len]), device)),
            segments: None,
        },
        lengths: prompts.iter().map(Vec::len).collect(),
        padded,
    })
}

/// Picks tokens from logits rows: argmax or seeded sampling with temperature, top-k and top-p.
struct Sampler {
    rngs: Vec<StdRng>,
}

impl Sampler {
    fn new(seed: u64, rows: usize) -> Self {
        let rngs = (0..rows)
            .map(|i| StdRng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
            .collect();
        Self { rngs }
    }

    fn pick(
        &mut self,
        row: usize,
        logits: &mut [f32],
        history: &[u32],
        cfg: &GenerationConfig,
    ) -> u32 {
        if cfg.repetition_penalty != 1.0 {
            for &t in history {
                if let Some(l) = logits.get_mut(t as usize) {
                    *l = if *l > 0.0 {
                        *l / cfg.repetition_penalty
                    } else {
                        *l * cfg.repetition_penalty
                    };
                }
            }
        }
        if cfg.temperature == 0.0 {
            return argmax(logits);
        }
        let mut cand: Vec<(u32, f32)> = logits
            .iter()
            .enumerate()
            .map(|(i, &l)| (i as u32, l / cfg.temperature))
            .collect();
        cand.sort_unstable_by(|a, b| b.1.total_cmp(&a.1));
        if let Some(k) = cfg.top_k {
            cand.truncate(k.max(1));
        }
        let max = cand[0].1;
        let mut probs: Vec<f32> = cand.iter().map(|&(_, l)| (l - max).exp()).collect();
        let sum: f32 = probs.iter().sum();
        probs.iter_mut().for_each(|p| *p /= sum);
        if let Some(top_p) = cfg.top_p {
            let mut acc = 0.0;
            let keep = probs
                .iter()
                .position(|&p| {
                    acc += p;
                    acc >= top_p
                })
                .map_or(probs.len(), |i| i + 1);
            probs.truncate(keep);
            cand.truncate(keep);
        }
        let total: f32 = probs.iter().sum();
        let mut r = self.rngs[row].random::<f32>() * total;
        for (i, p) in probs.iter().enumerate() {
            r -= p;
            if r <= 0.0 {
                return cand[i].0;
            }
        }
        cand[cand.len() - 1].0
    }
}

/// Index of the largest value (the first one on ties, like PyTorch's argmax).
pub fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Per-row streaming state: what was emitted and whether the row is done.
struct RowState {
    tokens: Vec<u32>,
    emitted: usize,
    text: String,
    finish: Option<FinishReason>,
}

/// Generates `cfg.num_return_sequences` continuations for each prompt (token ids) in one left-padded batch.
///
/// `on_text(row, chunk)` receives each row's text as it grows (never a partial UTF-8 character or a piece
/// of a stop string that may still complete).
pub fn generate(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<Vec<Generation>, ModelError> {
    generate_cancellable(
        model,
        tokenizer,
        prompts,
        cfg,
        &AtomicBool::new(false),
        on_text,
    )
}

/// [`generate`] that stops early once `cancel` is set (by another thread, or by `on_text` itself), e.g. when
/// the client that asked went away: it is read before each forward pass, so a cancelled generation costs at
/// most one more token. Returns [`ModelError::Cancelled`] then; the text streamed so far is all there is.
pub fn generate_cancellable(
    model: &Llama,
    tokenizer: &Tokenizer,
    prompts: &[Vec<u32>],
    cfg: &GenerationConfig,
    cancel: &AtomicBool,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<Vec<Generation>, ModelError> {
    cfg.validate()?;
    let cancelled = |step| {
        if cancel.load(Ordering::Relaxed) {
            Err(ModelError::Cancelled { step })
        } else {
            Ok(())
        }
    };
    cancelled(0)?;
    let device = model.device();
    let pad_id = tokenizer.padding_id();
    let batch = left_padded_batch(prompts, pad_id, &device)?;
    let n = cfg.num_return_sequences;
    let b = prompts.len() * n;
    let prompt_len = batch.input.tokens.dims()[1];
    let max_pos = model.rope.max_positions();
    if prompt_len + cfg.max_new_tokens > max_pos {
        return Err(ModelError::invalid(
            "max-new-tokens",
            cfg.max_new_tokens,
            format!(
                "prompt ({prompt_len} tokens) plus new tokens exceeds the {max_pos} positions available"
            ),
        ));
    }
    let mut key_padding = batch.input.key_padding.clone();
    let mut cache = model.new_cache();
    let mut logits = model.forward(batch.input, Some(&mut cache), Logits::Last);
    let mut lengths = batch.lengths;
    if n > 1 {
        let index = crate::llama::repeat_index(prompts.len(), n, &device);
        cache.repeat_rows(n);
        logits = logits.select(0, index.clone());
        lengths = lengths
            .iter()
            .flat_map(|&l| std::iter::repeat_n(l, n))
            .collect();
        // Rebuilt on the host rather than `select`ed: a selected bool tensor comes back as u8 on flex and
        // would no longer concatenate with the decoding steps' masks.
        key_padding = key_padding.map(|_| {
            let mask: Vec<bool> = lengths
                .iter()
                .flat_map(|&l| (0..prompt_len).map(move |j| j < prompt_len - l))
                .collect();
            Tensor::<2, Bool>::from_data(TensorData::new(mask, [b, prompt_len]), &device)
        });
    }
    let mut sampler = Sampler::new(cfg.seed, b);
    let mut rows: Vec<RowState> = (0..b)
        .map(|_| RowState {
            tokens: Vec::new(),
            emitted: 0,
            text: String::new(),
            finish: None,
        })
        .collect();
    let eos = tokenizer.eos_ids();
    for step in 0..cfg.max_new_tokens {
        let data: Vec<f32> = logits
            .try_into_vec_as::<f32>()
            .map_err(|e| ModelError::Backend(format!("reading logits: {e:?}")))?;
        let vocab = data.len() / b;
        let mut next = vec![pad_id; b];
        for (r, row) in rows.iter_mut().enumerate() {
            if row.finish.is_some() {
                continue;
            }
            let mut l = data[r * vocab..(r + 1) * vocab].to_vec();
            if l.iter().any(|v| !v.is_finite()) {
                return Err(ModelError::NonFinite { step });
            }
            let t = sampler.pick(r, &mut l, &row.tokens, cfg);
            next[r] = t;
            row.tokens.push(t);
            if cfg.stop_at_eos && eos.contains(&t) {
                row.finish = Some(FinishReason::Eos);
            }
            update_text(tokenizer, row, cfg, r, on_text)?;
            if row.finish.is_none() && row.tokens.len() == cfg.max_new_tokens {
                row.finish = Some(FinishReason::Length);
            }
        }
        if rows.iter().all(|r| r.finish.is_some()) {
            break;
        }
        cancelled(step + 1)?;
        // Finished rows keep decoding a pad token; their outputs are ignored.
        let tokens: Vec<i64> = next.iter().map(|&t| t as i64).collect();
        let positions: Vec<i64> = lengths.iter().map(|&l| (l + step) as i64).collect();
        key_padding = key_padding.map(|kp| {
            let no_pad =
                Tensor::<2, Bool>::from_data(TensorData::new(vec![false; b], [b, 1]), &device);
            Tensor::cat(vec![kp, no_pad], 1)
        });
        let input = ForwardInput {
            tokens: Tensor::from_data(TensorData::new(tokens, [b, 1]), &device),
            positions: Tensor::from_data(TensorData::new(positions, [b, 1]), &device),
            key_padding: key_padding.clone(),
            segments: None,
        };
        logits = model.forward(input, Some(&mut cache), Logits::Last);
    }
    Ok(rows
        .into_iter()
        .map(|r| Generation {
            tokens: r.tokens,
            text: r.text,
            finish: r.finish.unwrap_or(FinishReason::Length),
        })
        .collect())
}

/// Re-decodes the row, applies stop strings and streams whatever text is final.
fn update_text(
    tokenizer: &Tokenizer,
    row: &mut RowState,
    cfg: &GenerationConfig,
    r: usize,
    on_text: &mut dyn FnMut(usize, &str),
) -> Result<(), ModelError> {
    let mut full = tokenizer.decode(&row.tokens, true)?;
    if let Some(cut) = cfg
        .stop_strings
        .iter()
        .filter_map(|s| full.find(s.as_str()))
        .min()
    {
        full.truncate(cut);
        row.finish = Some(FinishReason::StopString);
    }
    let safe = if row.finish.is_some() {
        full.len()
    } else {
        stream_safe_len(&full, &cfg.stop_strings)
    };
    if safe > row.emitted {
        on_text(r, &full[row.emitted..safe]);
        row.emitted = safe;
    }
    row.text = full;
    Ok(())
}

/// How much of `text` can be shown now: not a trailing replacement character (an incomplete UTF-8 sequence
/// that the next token may complete) nor a suffix that could grow into a stop string.
fn stream_safe_len(text: &str, stop_strings: &[String]) -> usize {
    let mut end = text.len();
    if text.ends_with('\u{FFFD}') {
        end -= '\u{FFFD}'.len_utf8();
    }
    let mut safe = end;
    for s in stop_strings {
        for (i, _) in s.char_indices().skip(1) {
            if text[..end].ends_with(&s[..i]) {
                safe = safe.min(end - i);
            }
        }
    }
    safe
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, -1.0]), 1);
    }

    #[test]
    fn stream_holds_back_stop_prefixes_and_partial_chars() {
        let stops = vec!["<|im_end|>".to_string()];
        assert_eq!(stream_safe_len("Paris<|im", &stops), 5);
        assert_eq!(stream_safe_len("Paris.", &stops), 6);
        assert_eq!(stream_safe_len("ab\u{FFFD}", &stops), 2);
    }

    #[test]
    fn validate_rejects_out_of_range() {
        let bad = [
            GenerationConfig {
                temperature: -1.0,
                ..Default::default()
            },
            GenerationConfig {
                temperature: f32::NAN,
                ..Default::default()
            },
            GenerationConfig {
                top_p: Some(0.0),
                ..Default::default()
            },
            GenerationConfig {
                top_p: Some(1.5),
                ..Default::default()
            },
            GenerationConfig {
                top_k: Some(0),
                ..Default::default()
            },
            GenerationConfig {
                repetition_penalty: 0.0,
                ..Default::default()
            },
        ];
        for c in bad {
            assert!(c.validate().is_err(), "{c:?}");
        }
        assert!(GenerationConfig::default().validate().is_ok());
    }

    #[test]
    fn sampling_is_seeded_and_respects_top_k() {
        let cfg = GenerationConfig {
            temperature: 1.0,
            top_k: Some(2),
            seed: 7,
            ..Default::default()
        };
        let logits = vec![0.0, 5.0, 4.9, -3.0, 1.0];
        let draw = |seed| {
            let mut s = Sampler::new(seed, 1);
            (0..50)
                .map(|_| s.pick(0, &mut logits.clone(), &[], &cfg))
                .collect::<Vec<_>>()
        };
        let a = draw(7);
        assert_eq!(a, draw(7));
        assert!(a.iter().all(|&t| t == 1 || t == 2));
        assert!(a.contains(&1) && a.contains(&2));
    }

    #[test]
    fn top_p_keeps_the_nucleus() {
        let cfg = GenerationConfig {
            temperature: 1.0,
            top_p: Some(0.5),
            ..Default::default()
        };
        let mut s = Sampler::new(1, 1);
        let logits = vec![10.0, 0.0, 0.0, 0.0];
        for _ in 0..20 {
            assert_eq!(s.pick(0, &mut logits.clone(), &[], &cfg), 0);
        }
    }
}
