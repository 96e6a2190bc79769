//! The quality checks every protocol's candidates pass: [`QualityConfig`] and the [`Checker`].

use crate::record::Yield;
use crate::text::{degenerate, echoes, near_duplicate, unsupported_facts};

/// The quality checks, shared by every protocol.
#[derive(Clone, Debug, PartialEq)]
pub struct QualityConfig {
    /// Two candidates whose word trigrams overlap at least this much (either way) are duplicates.
    pub duplicate_overlap: f64,
    /// A paraphrase must mention at least this fraction of the source's names, numbers and dates.
    pub min_coverage: f64,
    /// Longest kept content, in sentences.
    pub max_sentences: usize,
}

impl Default for QualityConfig {
    fn default() -> Self {
        Self {
            duplicate_overlap: 0.8,
            min_coverage: 0.5,
            max_sentences: 6,
        }
    }
}

/// Applies the checks to one protocol's candidates for one source, keeping count in a [`Yield`].
pub struct Checker<'a> {
    source: &'a str,
    kept: Vec<String>,
    /// Candidates generated, kept and dropped (by reason) so far.
    pub yields: Yield,
    /// See [`QualityConfig::duplicate_overlap`].
    pub duplicate_overlap: f64,
}

impl<'a> Checker<'a> {
    /// A checker for `protocol`'s candidates made from the text `source`.
    pub fn new(protocol: &str, source: &'a str) -> Self {
        Self {
            source,
            kept: Vec::new(),
            yields: Yield::new(protocol),
            duplicate_overlap: QualityConfig::default().duplicate_overlap,
        }
    }

    /// Counts a candidate dropped before the content checks (e.g. an unfinished generation).
    pub fn reject(&mut self, reason: &str) {
        self.yields.generated += 1;
        self.yields.drop(reason);
    }

    /// Checks a candidate and counts it: see [`Checker::verdict`]. Returns whether it was kept.
    pub fn check(
        &mut self,
        content: &str,
        question: Option<&str>,
        extra: impl FnOnce(&str) -> Option<&'static str>,
    ) -> bool {
        self.yields.generated += 1;
        match self.verdict(content, question, extra) {
            Some(r) => {
                self.yields.drop(r);
                false
            }
            None => {
                self.yields.kept += 1;
                true
            }
        }
    }

    /// Why a candidate is dropped, if it is: degenerate text, facts not in the source, a question where content
    /// was asked for, an echo of `question`, `extra` (a protocol's own check), or a repeat of one already
    /// kept. A candidate that passes is remembered for the duplicate check. Counts nothing.
    pub fn verdict(
        &mut self,
        content: &str,
        question: Option<&str>,
        extra: impl FnOnce(&str) -> Option<&'static str>,
    ) -> Option<&'static str> {
        let reason = degenerate(content)
            .or_else(|| {
                let invented = unsupported_facts(content, self.source);
                (!invented.is_empty()).then_some("unsupported fact")
            })
            .or_else(|| match question {
                Some(_) if content.trim_end().ends_with('?') => Some("question as answer"),
                Some(q) if echoes(content, q) => Some("echo of the question"),
                _ => None,
            })
            .or_else(|| extra(content))
            .or_else(|| {
                let dup = self.kept.iter().any(|k| match question {
                    // Answers to different questions may be the same words (two questions, one name).
                    Some(_) => false,
                    None => near_duplicate(k, content, self.duplicate_overlap),
                });
                dup.then_some("duplicate")
            });
        if reason.is_none() {
            self.kept.push(content.to_owned());
        }
        reason
    }
}
