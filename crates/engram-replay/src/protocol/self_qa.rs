//! The `self-qa` protocol.

use super::{Checker, QualityConfig, Records, Replay, ReplayProtocol, ask, on_topic, sampled};
use crate::record::{Format, Source};
use crate::text::{
    PASSAGE_SENTENCES, PASSAGE_WORDS, clean_generation, mentions, near_duplicate, passage_ranges,
    text_questions_per_sentence, topics,
};
use crate::{Generator, ReplayError, Sampling};

/// `self-qa`, in two stages. Questions come from the text itself (wh-questions for the names, numbers, dates
/// and terms of each sentence, see [`crate::text::text_questions`]) and from the generator (`model_questions`
/// samples per passage); then the generator answers every question *with the whole source in its prompt*. An
/// answer to a text question must contain the span the question was made from; when it does not,
/// `span_fallback` keeps the question with the sentence it was made from as the answer (provenance `text`).
///
/// Both budgets follow the text, so a long source (several news items, paragraphs) is asked about all
/// through, not only at its start: text questions per sentence, model questions per passage.
#[derive(Clone, Debug)]
pub struct SelfQa {
    /// Questions the generator writes per passage of the source: per paragraph, or run of up to 3 sentences
    /// and about 80 words (a short source is one passage).
    pub model_questions: usize,
    /// At most this many text questions per sentence of the source, its best spans first (0 = none).
    pub text_questions_per_sentence: usize,
    /// Questions about the things the source is about, its names (else terms), per source: "What do you know
    /// about Fenna Coltrave?". Answered with the source in view, they state each fact from the side of every
    /// name in it — the rule's author and the author's rule — in the model's own sentences (0 = none).
    pub topic_questions: usize,
    /// How the generator's questions are sampled.
    pub question_sampling: Sampling,
    /// How answers are generated (greedy in [`SelfQa::new`]).
    pub answer_sampling: Sampling,
    /// Keep a text question, answered with the sentence it was made from, when the generated answer lacks the
    /// span: a full sentence rather than the bare span, since what is trained on is answered in sentences.
    pub span_fallback: bool,
    /// The checks an answer must pass.
    pub quality: QualityConfig,
}

impl SelfQa {
    /// Text questions per sentence by default: about as many as the old cap gave a three-sentence item.
    pub const TEXT_QUESTIONS_PER_SENTENCE: usize = 3;

    /// `n` model-written questions per passage sampled at `temperature`, up to 3 text questions per sentence,
    /// greedy answers.
    pub fn new(n: usize, temperature: f32, seed: u64) -> Self {
        Self {
            model_questions: n,
            text_questions_per_sentence: Self::TEXT_QUESTIONS_PER_SENTENCE,
            topic_questions: 4,
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
        // Stage 1: questions. (question, for text questions the expected span and the sentence it is from)
        let mut questions: Vec<(String, Option<(String, String)>)> =
            text_questions_per_sentence(ctx, self.text_questions_per_sentence)
                .into_iter()
                .map(|q| (q.question, Some((q.answer, q.sentence.trim().to_owned()))))
                .collect();
        let text_made = questions.len();
        for topic in topics(ctx).into_iter().take(self.topic_questions) {
            questions.push((format!("What do you know about {topic}?"), None));
        }
        let topic_end = questions.len();
        if self.model_questions > 0 {
            // Each passage in the prompt on its own, so that questions come from all of a long source.
            let passages: Vec<&str> = passage_ranges(ctx, PASSAGE_SENTENCES, PASSAGE_WORDS)
                .into_iter()
                .map(|(s, e)| &ctx[s..e])
                .collect();
            let prompts: Vec<String> = passages
                .iter()
                .flat_map(|p| {
                    std::iter::repeat_n(format!("{p}\n\n{QUESTION_PROMPT}"), self.model_questions)
                })
                .collect();
            let mut qcheck = Checker::new("self-qa", ctx);
            qcheck.duplicate_overlap = self.quality.duplicate_overlap;
            let outs = ask(
                generator,
                &prompts,
                &self.question_sampling,
                &mut check.yields,
            )?;
            // A model question and its answer are one candidate: counted as generated here, as kept (or
            // dropped) when answered.
            let per_passage = outs.len().div_ceil(passages.len().max(1)).max(1);
            for (i, c) in outs.into_iter().enumerate() {
                let passage = passages[(i / per_passage).min(passages.len() - 1)];
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
                    } else if !on_topic(t, passage) {
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
        for (i, (((q, span), c), prompt)) in questions.iter().zip(outs).zip(&prompts).enumerate() {
            let answer = clean_generation(&c.text, self.quality.max_sentences, c.finished);
            let answer = if answer.is_empty() {
                c.text.lines().next().unwrap_or("").trim().to_owned()
            } else {
                answer
            };
            let expected = span.as_ref().map(|(s, _)| s.as_str());
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
                (None, None) if (text_made..topic_end).contains(&i) => {
                    ("topic-question", answer, prompt.as_str())
                }
                (None, None) => ("model-question", answer, prompt.as_str()),
                (Some(_), Some(_)) if self.span_fallback => {
                    check.yields.rule_made += 1;
                    let sentence = span.as_ref().map(|(_, s)| s.clone()).unwrap_or_default();
                    ("text-question-span", sentence, "")
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::{FactKind, facts, sentences, text_questions_per_sentence};
    use crate::{Completion, Format};
    use engram_model::ModelError;
    use engram_tokenizer::Message;

    /// Writes, for a question prompt, a question about the passage's first name; answers that question with
    /// the name, every other with `answer`. Records the prompts it saw.
    struct Fake {
        answer: &'static str,
        prompts: Vec<String>,
    }

    impl Generator for Fake {
        fn name(&self) -> String {
            "fake".into()
        }
        fn complete(
            &mut self,
            prompts: &[Vec<Message>],
            _: &Sampling,
        ) -> Result<Vec<Completion>, ModelError> {
            Ok(prompts
                .iter()
                .map(|p| {
                    let text = p.last().unwrap().content.clone();
                    let reply = match text.strip_suffix(QUESTION_PROMPT) {
                        Some(passage) => {
                            let fs = facts(passage);
                            let name = fs.iter().find(|f| f.kind == FactKind::Name).unwrap();
                            format!("What do we know about {}?", name.text)
                        }
                        None => match text.split("What do we know about ").nth(1) {
                            Some(name) => {
                                format!(
                                    "{} is someone the text talks about.",
                                    name.trim_end_matches('?')
                                )
                            }
                            None => self.answer.to_owned(),
                        },
                    };
                    self.prompts.push(text);
                    Completion {
                        tokens: reply.split_whitespace().count(),
                        text: reply,
                        finished: true,
                    }
                })
                .collect())
        }
    }

    /// The first `n` news contexts (the text module's test data).
    fn news(n: usize) -> Vec<String> {
        crate::text::tests::news_contexts()
            .into_iter()
            .take(n)
            .collect()
    }

    fn source(context: &str) -> Source {
        Source {
            id: "news-joined".into(),
            context: context.into(),
            group: "math".into(),
        }
    }

    #[test]
    fn a_failed_span_check_keeps_the_source_sentence() {
        let ctx = news(1).remove(0);
        let mut g = Fake {
            answer: "I do not know.",
            prompts: vec![],
        };
        let r = SelfQa::new(0, 0.7, 1)
            .replay(&source(&ctx), &[], &mut g, &Format::default())
            .unwrap();
        let expected = text_questions_per_sentence(&ctx, 3);
        assert_eq!(r.records.len(), expected.len());
        for (rec, q) in r.records.iter().zip(&expected) {
            assert_eq!(rec.provenance.part, "text-question-span");
            assert_eq!(rec.messages[0].content, q.question);
            let answer = &rec.messages[1].content;
            assert!(sentences(&ctx).contains(&answer.as_str()), "{answer}");
            assert!(mentions(answer, &q.answer), "{answer} / {}", q.answer);
            assert!(answer.split_whitespace().count() > 3, "{answer}");
        }
        assert_eq!(r.yields[0].rule_made, expected.len());
    }

    #[test]
    fn every_item_of_a_joined_text_gets_questions() {
        let items = news(5);
        let ctx = items.join("\n\n");
        let mut g = Fake {
            answer: "I do not know.",
            prompts: vec![],
        };
        let r = SelfQa::new(1, 0.7, 1)
            .replay(&source(&ctx), &[], &mut g, &Format::default())
            .unwrap();
        // One question-writing prompt per item, with that item alone.
        let asked: Vec<&str> = g
            .prompts
            .iter()
            .filter_map(|p| p.strip_suffix(QUESTION_PROMPT))
            .map(str::trim)
            .collect();
        assert_eq!(asked, items);
        for item in &items {
            let text = r
                .records
                .iter()
                .filter(|r| r.provenance.part == "text-question-span")
                .filter(|r| item.contains(&r.messages[1].content))
                .count();
            assert!(text >= 1, "no text question about {item}");
            let model = r
                .records
                .iter()
                .filter(|r| r.provenance.part == "model-question")
                .filter(|r| {
                    let q = &r.messages[0].content;
                    facts(item)
                        .iter()
                        .any(|f| f.kind == FactKind::Name && q.contains(&f.text))
                })
                .count();
            assert_eq!(model, 1, "one model question about {item}");
        }
        // The answers were written with the whole text in view.
        assert!(
            g.prompts
                .iter()
                .filter(|p| p.ends_with('?'))
                .all(|p| p.starts_with(&ctx))
        );
    }
}
