//! The `self-qa` protocol.

use super::{Checker, QualityConfig, Records, Replay, ReplayProtocol, ask, on_topic, sampled};
use crate::record::{Format, Source};
use crate::text::{clean_generation, mentions, near_duplicate, text_questions};
use crate::{Generator, ReplayError, Sampling};

/// `self-qa`, in two stages. Questions come from the text itself (a wh-question for each name, number, date
/// and term of each sentence, see [`text_questions`]) and from the generator (`model_questions` samples);
/// then the generator answers every question *with the source in its prompt*. An answer to a text question
/// must contain the span the question was made from; when it does not, `span_fallback` keeps the question
/// with the span itself as the answer (provenance `text`).
#[derive(Clone, Debug)]
pub struct SelfQa {
    /// Questions the generator writes per source.
    pub model_questions: usize,
    /// At most this many text questions per source (0 = none).
    pub text_questions: usize,
    /// How the generator's questions are sampled.
    pub question_sampling: Sampling,
    /// How answers are generated (greedy in [`SelfQa::new`]).
    pub answer_sampling: Sampling,
    /// Keep a text question with its span as the answer when the generated answer lacks the span.
    pub span_fallback: bool,
    /// The checks an answer must pass.
    pub quality: QualityConfig,
}

impl SelfQa {
    /// `n` model-written questions sampled at `temperature`, up to 16 text questions, greedy answers.
    pub fn new(n: usize, temperature: f32, seed: u64) -> Self {
        Self {
            model_questions: n,
            text_questions: 16,
            question_sampling: sampled(temperature, 40, seed),
            answer_sampling: Sampling {
                seed,
                ..Sampling::greedy(48)
            },
            span_fallback: true,
            quality: QualityConfig {
                max_sentences: 2,
                ..QualityConfig::default()
            },
        }
    }
}

const QUESTION_PROMPT: &str =
    "Write one question that can be answered from the text above. Write only the question.";

/// The first question in a generation: up to and including its first `?`, on one line.
fn first_question(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains('?'))?;
    let q = &line[..=line.find('?')?];
    let q = q
        .trim()
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .trim();
    let q = q.strip_prefix("Question:").unwrap_or(q).trim();
    (!q.is_empty()).then(|| q.to_owned())
}

impl ReplayProtocol for SelfQa {
    fn name(&self) -> &str {
        "self-qa"
    }

    fn replay(
        &self,
        source: &Source,
        _: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let out = Records::new(
            format,
            source,
            self.name(),
            self.answer_sampling.seed,
            generator,
        );
        let ctx = source.context.as_str();
        let mut check = Checker::new(self.name(), ctx);
        // Stage 1: questions. (question, expected span for text questions)
        let mut questions: Vec<(String, Option<String>)> = text_questions(ctx)
            .into_iter()
            .take(self.text_questions)
            .map(|q| (q.question, Some(q.answer)))
            .collect();
        if self.model_questions > 0 {
            let prompt = format!("{ctx}\n\n{QUESTION_PROMPT}");
            let mut qcheck = Checker::new("self-qa", ctx);
            qcheck.duplicate_overlap = self.quality.duplicate_overlap;
            let outs = ask(
                generator,
                &vec![prompt; self.model_questions],
                &self.question_sampling,
                &mut check.yields,
            )?;
            // A model question and its answer are one candidate: counted as generated here, as kept (or
            // dropped) when answered.
            for c in outs {
                check.yields.generated += 1;
                let Some(q) = first_question(&c.text) else {
                    check.yields.drop("no question");
                    continue;
                };
                let words = q.split_whitespace().count();
                let known = questions.iter().any(|(k, _)| near_duplicate(k, &q, 0.8));
                let reason = qcheck.verdict(&q, None, |t| {
                    if !(3..=30).contains(&words) {
                        Some("question length")
                    } else if !on_topic(t, ctx) {
                        Some("off topic")
                    } else if known {
                        Some("duplicate")
                    } else {
                        None
                    }
                });
                match reason {
                    Some(r) => check.yields.drop(r),
                    None => questions.push((q, None)),
                }
            }
        }
        // Stage 2: answers, with the source in the prompt.
        let prompts: Vec<String> = questions
            .iter()
            .map(|(q, _)| engram_inject::user_turn(Some(ctx), q))
            .collect();
        let outs = ask(
            generator,
            &prompts,
            &self.answer_sampling,
            &mut check.yields,
        )?;
        let mut records = Vec::new();
        for (((q, span), c), prompt) in questions.iter().zip(outs).zip(&prompts) {
            let answer = clean_generation(&c.text, self.quality.max_sentences, c.finished);
            let answer = if answer.is_empty() {
                c.text.lines().next().unwrap_or("").trim().to_owned()
            } else {
                answer
            };
            let expected = span.as_deref();
            if expected.is_some() {
                check.yields.generated += 1;
            }
            let reason = check.verdict(&answer, Some(q), |t| match expected {
                Some(s) if !mentions(t, s) => Some("wrong answer"),
                _ => None,
            });
            match reason {
                Some(r) => check.yields.drop(r),
                None => check.yields.kept += 1,
            }
            let (part, content, prompt) = match (reason, expected) {
                (None, Some(_)) => ("text-question", answer, prompt.as_str()),
                (None, None) => ("model-question", answer, prompt.as_str()),
                (Some(_), Some(s)) if self.span_fallback => {
                    check.yields.rule_made += 1;
                    ("text-question-span", s.to_owned(), "")
                }
                (Some(_), _) => continue,
            };
            records.push(out.record(part, prompt, q, &content));
        }
        Ok(Replay {
            records,
            yields: vec![check.yields],
        })
    }
}
