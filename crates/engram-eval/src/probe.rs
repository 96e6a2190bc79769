//! Asking the model an item's questions and scoring every answer: multiple choice by likelihood (no options
//! shown), multiple choice by option letter (options shown, several orders), teacher-forced token accuracy of
//! the answer, and a greedy chat answer scored by exact match, contains-answer and token F1.
//!
//! Every condition is asked the same way: one user turn holding the question — after the item's context and a
//! blank line when the context is in the prompt (`icl`) — rendered with the model's chat template.

use engram_model::{Llama, ModelError, generate};
use engram_tokenizer::{ChatTemplate, Message, Tokenizer};
use serde::{Deserialize, Serialize};

use crate::likelihood::{Continuation, continuation, host_f32, score_continuations};
use crate::{Item, Question, best_option, contains_answer, exact_match, token_f1};

/// The model, tokenizer and chat template a probe asks.
#[derive(Clone, Copy)]
pub struct Asker<'a> {
    /// The model asked.
    pub model: &'a Llama,
    /// Its tokenizer.
    pub tokenizer: &'a Tokenizer,
    /// The chat template the questions are formatted with.
    pub template: &'a ChatTemplate,
}

/// How questions are asked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProbeConfig {
    /// Random orders of the options for the option-letter variant (its score is the mean over orders).
    pub letter_orders: usize,
    /// Upper bound on a generated answer's tokens (generation also stops at the end of the first line).
    pub max_new_tokens: usize,
    /// Questions per batch.
    pub batch_questions: usize,
    /// Seeds the option orders.
    pub seed: u64,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            letter_orders: 3,
            max_new_tokens: 24,
            batch_questions: 8,
            seed: 0,
        }
    }
}

/// One question's scores under one condition.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct QuestionScores {
    /// The right option has the best length-normalised log-probability.
    pub likelihood_correct: bool,
    /// Length-normalised log-probability of each option, in the dataset's order.
    pub option_logprobs: Vec<f64>,
    /// Share of the option orders in which the right letter had the highest probability.
    pub letter_accuracy: f64,
    /// Share of the answer's tokens the model predicts exactly, teacher-forced.
    pub token_accuracy: f64,
    /// The greedy answer (first line).
    pub generation: String,
    /// The normalised answer equals the normalised reference ([`exact_match`]).
    pub exact_match: bool,
    /// The normalised reference appears in the normalised answer as whole words.
    pub contains: bool,
    /// Token-level F1 between the answer and the reference (SQuAD style).
    pub f1: f64,
    /// The answer only repeats words of the question ([`engram_inject::answer::echoes_question`]); set when
    /// a report is made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub echo: bool,
    /// The same adapter gave this answer to questions with other answers too; set when a report is made.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub repeated: bool,
}

pub use engram_inject::prompt::{answer_config, chat_prompt, user_turn};

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

/// The user turn of the option-letter variant: the question and the options in `order`.
fn letter_turn(context: Option<&str>, q: &Question, order: &[usize]) -> String {
    let mut text = format!("{}\n", q.question);
    for (letter, &i) in LETTERS.iter().zip(order) {
        text.push_str(&format!("{letter}. {}\n", q.options[i]));
    }
    text.push_str("Answer with the letter of the correct option.");
    user_turn(context, &text)
}

/// `n` orders of 4 options, the first ones distinct, seeded by `seed` and the question text (so every
/// condition sees the same orders).
pub fn option_orders(seed: u64, question: &str, n: usize) -> Vec<[usize; 4]> {
    let mut state = question.bytes().fold(seed ^ 0x9e37_79b9_7f4a_7c15, |h, b| {
        engram_model::splitmix64(h ^ b as u64)
    });
    let mut orders: Vec<[usize; 4]> = Vec::with_capacity(n);
    let mut tries = 0;
    while orders.len() < n {
        let mut o = [0, 1, 2, 3];
        for i in (1..4).rev() {
            state = engram_model::splitmix64(state);
            o.swap(i, (state % (i as u64 + 1)) as usize);
        }
        // Prefer orders not drawn yet; with more than 24 requested, repeats are unavoidable.
        tries += 1;
        if !orders.contains(&o) || tries > 64 {
            orders.push(o);
        }
    }
    orders
}

/// Asks each `(item, question)` with or without the item's context, in batches, and scores the answers.
pub fn probe_questions(
    asker: Asker<'_>,
    questions: &[(&Item, &Question)],
    with_context: bool,
    cfg: &ProbeConfig,
) -> Result<Vec<QuestionScores>, ModelError> {
    let mut out = Vec::with_capacity(questions.len());
    for chunk in questions.chunks(cfg.batch_questions.max(1)) {
        out.extend(probe_chunk(asker, chunk, with_context, cfg)?);
    }
    Ok(out)
}

fn probe_chunk(
    asker: Asker<'_>,
    chunk: &[(&Item, &Question)],
    with_context: bool,
    cfg: &ProbeConfig,
) -> Result<Vec<QuestionScores>, ModelError> {
    let tok = asker.tokenizer;
    let pad = tok.padding_id();
    let ctx = |item: &Item| with_context.then(|| item.context.clone());

    // Likelihood and token accuracy: one row per option.
    let mut rows = Vec::new();
    let mut prompts = Vec::new();
    for (item, q) in chunk {
        let prompt = chat_prompt(asker.template, ctx(item).as_deref(), &q.question)?;
        let prompt_ids = tok.encode(&prompt)?;
        for o in &q.options {
            rows.push(continuation(tok, &prompt, &prompt_ids, o)?);
        }
        prompts.push(prompt_ids);
    }
    let option_scores = score_continuations(asker.model, pad, &rows)?;

    // Option letters: one row per order, scored at the last position over the four letter tokens.
    let letter_ids = LETTERS
        .iter()
        .map(|l| {
            let ids = tok.encode(l)?;
            match ids.as_slice() {
                [id] => Ok(*id),
                _ => Err(ModelError::invalid(
                    "tokenizer",
                    l,
                    "an option letter must be one token",
                )),
            }
        })
        .collect::<Result<Vec<u32>, ModelError>>()?;
    let mut letter_rows = Vec::new();
    let mut letter_right = Vec::new(); // per row: the letter index of the answer
    for (item, q) in chunk {
        let right = q.options.iter().position(|o| o == &q.answer).unwrap_or(0);
        for order in option_orders(cfg.seed, &q.question, cfg.letter_orders) {
            let turn = letter_turn(ctx(item).as_deref(), q, &order);
            let prompt = asker.template.render(&[Message::user(turn)], true)?;
            letter_rows.push(tok.encode(&prompt)?);
            letter_right.push(order.iter().position(|&i| i == right).unwrap_or(0));
        }
    }
    let letter_hits = if letter_rows.is_empty() {
        Vec::new()
    } else {
        let batch = engram_model::left_padded_batch(&letter_rows, pad, &asker.model.device())?;
        let logits = asker
            .model
            .forward(batch.input, None, engram_model::Logits::Last);
        let v = logits.dims()[2];
        let values = host_f32(logits)?;
        letter_right
            .iter()
            .enumerate()
            .map(|(r, &right)| {
                let row = &values[r * v..(r + 1) * v];
                let best = (0..4)
                    .max_by(|&a, &b| {
                        row[letter_ids[a] as usize].total_cmp(&row[letter_ids[b] as usize])
                    })
                    .unwrap_or(0);
                best == right
            })
            .collect()
    };

    let generations = generate(
        asker.model,
        tok,
        &prompts,
        &answer_config(cfg.max_new_tokens),
        &mut |_, _| {},
    )?;

    let mut out = Vec::with_capacity(chunk.len());
    for (k, ((_, q), g)) in chunk.iter().zip(generations).enumerate() {
        let scores = &option_scores[k * q.options.len()..(k + 1) * q.options.len()];
        let right = q.options.iter().position(|o| o == &q.answer).unwrap_or(0);
        let orders = cfg.letter_orders;
        let hits = letter_hits[k * orders..(k + 1) * orders]
            .iter()
            .filter(|&&h| h)
            .count();
        let text = g.text.trim().to_owned();
        out.push(QuestionScores {
            likelihood_correct: best_option(scores) == Some(right),
            option_logprobs: scores.iter().map(|s| s.mean()).collect(),
            letter_accuracy: if orders == 0 {
                0.0
            } else {
                hits as f64 / orders as f64
            },
            token_accuracy: scores[right].token_accuracy(),
            exact_match: exact_match(&text, &q.answer),
            contains: contains_answer(&text, &q.answer),
            f1: token_f1(&text, &q.answer),
            generation: text,
            echo: false,
            repeated: false,
        });
    }
    Ok(out)
}

/// Rows for teacher-forcing `answers` after `prompts`: used by locality to compare argmax tokens.
pub(crate) fn forced_rows(prompts: &[Vec<u32>], answers: &[Vec<u32>]) -> Vec<Continuation> {
    prompts
        .iter()
        .zip(answers)
        .map(|(p, a)| Continuation {
            ids: p.iter().chain(a).copied().collect(),
            start: p.len(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_orders_are_seeded_permutations() {
        let a = option_orders(7, "Who?", 3);
        assert_eq!(a, option_orders(7, "Who?", 3), "deterministic");
        assert_ne!(a, option_orders(8, "Who?", 3), "seeded");
        for o in &a {
            let mut s = *o;
            s.sort();
            assert_eq!(s, [0, 1, 2, 3]);
        }
        assert_ne!(a[0], a[1]);
        assert_ne!(a[1], a[2]);
        assert_eq!(
            option_orders(1, "q", 30).len(),
            30,
            "more orders than permutations"
        );
    }

    #[test]
    fn letter_turn_lists_options_in_order() {
        let q = Question {
            kind: crate::QuestionKind::Direct,
            question: "Which?".into(),
            answer: "b".into(),
            options: vec!["a".into(), "b".into(), "c".into(), "d".into()],
        };
        let t = letter_turn(Some("Ctx."), &q, &[2, 0, 3, 1]);
        assert_eq!(
            t,
            "Ctx.\n\nWhich?\nA. c\nB. a\nC. d\nD. b\nAnswer with the letter of the correct option."
        );
    }
}
