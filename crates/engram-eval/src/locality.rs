//! Locality: what an injection did to everything else. On questions unrelated to the injected items (trivia),
//! the share of greedy answers that did not change from the base model and the share of the base answer's
//! tokens that are still the argmax (EasyEdit's locality); and the perplexity of plain general text.

use engram_model::{ModelError, generate};

use crate::EvalError;
use serde::{Deserialize, Serialize};

use crate::likelihood::{Continuation, score_continuations};
use crate::probe::{Asker, answer_config, chat_prompt, forced_rows};
use crate::{Item, Question, contains_answer, normalize_answer};

/// The base model's answers to the locality questions: what every adapted model is compared with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalityBaseline {
    /// Per question: the base model's greedy answer tokens and text.
    pub answers: Vec<BaselineAnswer>,
    /// Perplexity of the general text under the base model.
    pub perplexity: Option<f64>,
}

/// The base model's greedy answer to one locality question.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BaselineAnswer {
    /// Id of the item the question comes from.
    pub item_id: String,
    /// The answer's token ids, as generated.
    pub tokens: Vec<u32>,
    /// The answer's text, trimmed.
    pub text: String,
}

/// One model's locality figures against the baseline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LocalityScores {
    /// Share of questions whose greedy answer is unchanged (after answer normalisation).
    pub answers_unchanged: f64,
    /// Share of the base answers' tokens that are still the argmax, teacher-forced.
    pub tokens_unchanged: f64,
    /// Share of questions answered right (contains the answer).
    pub accuracy: f64,
    /// The base model's accuracy on the same questions.
    pub base_accuracy: f64,
    /// Perplexity on the general text; `None` without general text.
    pub perplexity: Option<f64>,
    /// `perplexity` over the base model's (1.0: unchanged); `None` without general text.
    pub perplexity_ratio: Option<f64>,
    /// Number of locality questions asked.
    pub questions: usize,
}

/// The questions and text locality is measured on.
#[derive(Clone, Debug, Default)]
pub struct LocalitySet {
    /// Unrelated questions, with the item each comes from.
    pub questions: Vec<(Item, Question)>,
    /// Plain text documents (e.g. `datasets/general/*.txt`).
    pub texts: Vec<String>,
    /// Tokens per perplexity window.
    pub window: usize,
}

impl LocalitySet {
    /// The shipped locality set: the first question of `questions` trivia items of its test split (taken
    /// round-robin over domains) and every general text for perplexity (which includes the texts SELF-PARAM's
    /// regulariser reads, [`crate::shipped::regulariser_texts`]).
    pub fn shipped(questions: usize) -> Result<Self, EvalError> {
        let t = crate::shipped::trivia()?;
        let test = t.split_ids("test")?;
        let items = crate::select_items(&t.items, test, Some(questions));
        Ok(Self {
            questions: items
                .into_iter()
                .map(|i| {
                    let q = i.questions[0].clone();
                    (i, q)
                })
                .collect(),
            texts: crate::shipped::general_texts(),
            window: 256,
        })
    }

    fn pairs(&self) -> Vec<(&Item, &Question)> {
        self.questions.iter().map(|(i, q)| (i, q)).collect()
    }
}

fn greedy_answers(
    asker: Asker<'_>,
    pairs: &[(&Item, &Question)],
    max_new_tokens: usize,
) -> Result<(Vec<Vec<u32>>, Vec<engram_model::Generation>), ModelError> {
    let mut prompts = Vec::with_capacity(pairs.len());
    for (_, q) in pairs {
        prompts.push(
            asker
                .tokenizer
                .encode(&chat_prompt(asker.template, None, &q.question)?)?,
        );
    }
    let cfg = answer_config(max_new_tokens);
    let mut gens = Vec::with_capacity(pairs.len());
    for chunk in prompts.chunks(16) {
        gens.extend(generate(
            asker.model,
            asker.tokenizer,
            chunk,
            &cfg,
            &mut |_, _| {},
        )?);
    }
    Ok((prompts, gens))
}

/// The base model's answers and perplexity (`asker` must have no adapter active).
pub fn locality_baseline(
    asker: Asker<'_>,
    set: &LocalitySet,
    max_new_tokens: usize,
) -> Result<LocalityBaseline, ModelError> {
    let pairs = set.pairs();
    let (_, gens) = greedy_answers(asker, &pairs, max_new_tokens)?;
    Ok(LocalityBaseline {
        answers: pairs
            .iter()
            .zip(gens)
            .map(|((item, _), g)| BaselineAnswer {
                item_id: item.id.clone(),
                tokens: g.tokens,
                text: g.text.trim().to_owned(),
            })
            .collect(),
        perplexity: perplexity(asker, &set.texts, set.window)?,
    })
}

/// Locality of the model `asker` holds (adapters active) against `base`.
pub fn locality_scores(
    asker: Asker<'_>,
    set: &LocalitySet,
    base: &LocalityBaseline,
    max_new_tokens: usize,
) -> Result<LocalityScores, ModelError> {
    let pairs = set.pairs();
    if base.answers.len() != pairs.len() {
        return Err(ModelError::invalid(
            "locality baseline",
            base.answers.len(),
            format!(
                "holds answers to a different question set ({} questions)",
                pairs.len()
            ),
        ));
    }
    let (prompts, gens) = greedy_answers(asker, &pairs, max_new_tokens)?;
    let answers: Vec<Vec<u32>> = base.answers.iter().map(|a| a.tokens.clone()).collect();
    let rows = forced_rows(&prompts, &answers);
    let mut hits = 0usize;
    let mut tokens = 0usize;
    for chunk in rows.chunks(16) {
        for s in score_continuations(asker.model, asker.tokenizer.padding_id(), chunk)? {
            hits += s.argmax_hits;
            tokens += s.tokens;
        }
    }
    let n = pairs.len().max(1) as f64;
    let unchanged = gens
        .iter()
        .zip(&base.answers)
        .filter(|(g, b)| normalize_answer(g.text.trim()) == normalize_answer(&b.text))
        .count();
    let right = |texts: &mut dyn Iterator<Item = &str>| {
        texts
            .zip(&pairs)
            .filter(|(t, (_, q))| contains_answer(t, &q.answer))
            .count() as f64
            / n
    };
    let ppl = perplexity(asker, &set.texts, set.window)?;
    Ok(LocalityScores {
        answers_unchanged: unchanged as f64 / n,
        tokens_unchanged: if tokens == 0 {
            1.0
        } else {
            hits as f64 / tokens as f64
        },
        accuracy: right(&mut gens.iter().map(|g| g.text.as_str())),
        base_accuracy: right(&mut base.answers.iter().map(|a| a.text.as_str())),
        perplexity_ratio: match (ppl, base.perplexity) {
            (Some(p), Some(b)) => Some(p / b),
            _ => None,
        },
        perplexity: ppl,
        questions: pairs.len(),
    })
}

/// Perplexity of `texts`, each tokenized and cut into windows of `window` tokens (every token after a
/// window's first is predicted). `None` without text.
pub fn perplexity(
    asker: Asker<'_>,
    texts: &[String],
    window: usize,
) -> Result<Option<f64>, ModelError> {
    let window = window.max(2);
    let mut rows = Vec::new();
    for t in texts {
        let ids = asker.tokenizer.encode(t)?;
        for w in ids.chunks(window) {
            if w.len() >= 2 {
                rows.push(Continuation {
                    ids: w.to_vec(),
                    start: 1,
                });
            }
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let (mut nll, mut n) = (0f64, 0usize);
    for chunk in rows.chunks(4) {
        for s in score_continuations(asker.model, asker.tokenizer.padding_id(), chunk)? {
            nll -= s.sum;
            n += s.tokens;
        }
    }
    Ok(Some((nll / n.max(1) as f64).exp()))
}
