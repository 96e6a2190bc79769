//! Questions: drafts with their answer and wrong answers, finished into four options; the templates' fill-in.

use super::lexicon::ItemWords;
use super::rng::Rng;
use engram_inject::{Question, QuestionKind};

/// How to fill up the options when the item has too few wrong answers of the right type.
#[derive(Clone, Copy)]
pub(super) enum Fill {
    Word,
    Name,
    /// Other values of the property (not used in the item).
    Value(&'static [&'static str]),
}

pub(super) struct Draft {
    pub(super) kind: QuestionKind,
    question: String,
    answer: String,
    /// Wrong answers from the item, the most telling first.
    distractors: Vec<String>,
    fill: Fill,
}

impl Draft {
    pub(super) fn new(
        kind: QuestionKind,
        question: String,
        answer: &str,
        distractors: Vec<String>,
        fill: Fill,
    ) -> Self {
        Self {
            kind,
            question,
            answer: answer.to_owned(),
            distractors,
            fill,
        }
    }

    /// The question with four options, the answer at `position`.
    pub(super) fn finish(
        self,
        position: usize,
        rng: &mut Rng,
        words: &mut ItemWords,
        item_values: &[&str],
    ) -> Result<Question, String> {
        let mut wrong: Vec<String> = self.distractors.into_iter().take(3).collect();
        match self.fill {
            Fill::Word | Fill::Name => {
                let mut i = 0;
                while wrong.len() < 3 {
                    wrong.push(words.fresh(rng, i, matches!(self.fill, Fill::Name))?);
                    i += 1;
                }
            }
            Fill::Value(pool) => {
                for v in rng.shuffled(pool) {
                    if wrong.len() == 3 {
                        break;
                    }
                    if !item_values.contains(&v) && !wrong.iter().any(|w| w == v) {
                        wrong.push(v.to_owned());
                    }
                }
            }
        }
        if wrong.len() < 3 {
            return Err(format!("too few wrong answers for {:?}", self.question));
        }
        rng.shuffle(&mut wrong);
        let mut options = wrong;
        options.insert(position, self.answer.clone());
        Ok(Question {
            kind: self.kind,
            question: self.question,
            answer: self.answer,
            options,
        })
    }
}

/// An item before its options are finished.
pub(super) struct Parts {
    pub(super) context: String,
    /// In order: direct, direct, paraphrase, reversal, implication.
    pub(super) drafts: Vec<Draft>,
    pub(super) terms: Vec<String>,
    /// Property values the context uses (never fresh distractors).
    pub(super) values: Vec<&'static str>,
}

/// `template` with each `{key}` replaced.
pub(super) fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_owned();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

pub(super) fn context(intro: String, mut facts: Vec<String>, rng: &mut Rng) -> String {
    // The facts come in random order, so that position in the text says nothing about the relation.
    rng.shuffle(&mut facts);
    std::iter::once(intro)
        .chain(facts)
        .collect::<Vec<_>>()
        .join(" ")
}
