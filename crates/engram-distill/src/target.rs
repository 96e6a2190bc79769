//! Target sentences: what the teacher reads (with the context) and what the student reads (without it), the
//! three kinds SELF-PARAM uses, as plain serde data written to `targets.jsonl`.

use std::path::Path;

use engram_data::Example;
use engram_inject::user_turn;
use engram_replay::Record;
use engram_tokenizer::Message;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::DistillError;

/// Which of SELF-PARAM's target sets a target belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetKind {
    /// A question about the context and the model's answer (from the replay crate's `self-qa`): the teacher
    /// reads the context before the question.
    Qa,
    /// The context's end: the teacher reads the context from the start, the student only from a random point.
    Continuation,
    /// Unrelated general text, so the student keeps its behaviour elsewhere: the teacher reads it after the
    /// context (SELF-PARAM's default) or alone.
    Regulariser,
    /// The locality guard's row: a general prompt and the base model's own answer, read alike by both (the
    /// teacher is the base model without the context): a KL to the base.
    Rehearsal,
}

impl TargetKind {
    /// Every kind, in the order targets are built.
    pub const ALL: [TargetKind; 4] = [
        Self::Qa,
        Self::Continuation,
        Self::Regulariser,
        Self::Rehearsal,
    ];

    /// The name in `targets.jsonl` and reports (`qa`, `continuation`, `regulariser`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Qa => "qa",
            Self::Continuation => "continuation",
            Self::Regulariser => "regulariser",
            Self::Rehearsal => "rehearsal",
        }
    }
}

/// One distillation target: the loss is taken on the student's target tokens (assistant turns of a chat,
/// every token of a text) that the teacher's input ends with too.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Target {
    /// Which target set it belongs to.
    pub kind: TargetKind,
    /// The item whose context the teacher reads.
    pub source: String,
    /// What the teacher reads: the context, then the target tokens.
    pub teacher: Example,
    /// What the student reads: the target tokens without the context.
    pub student: Example,
}

/// QA targets from question/answer pairs: the student reads the question alone, the teacher the context
/// before it — the prompt the `icl` condition asks with.
pub fn qa_targets(source: &str, context: &str, pairs: &[(String, String)]) -> Vec<Target> {
    pairs
        .iter()
        .map(|(question, answer)| Target {
            kind: TargetKind::Qa,
            source: source.into(),
            teacher: Example::chat(vec![
                Message::user(user_turn(Some(context), question)),
                Message::assistant(answer.clone()),
            ]),
            student: Example::chat(vec![
                Message::user(question.clone()),
                Message::assistant(answer.clone()),
            ]),
        })
        .collect()
}

/// The locality guard's rows as targets: teacher and student read the same general prompt and the base
/// model's answer, so the loss is the student's divergence from the base model there.
pub fn rehearsal_targets(rows: &[engram_train::Rehearsal]) -> Vec<Target> {
    rows.iter()
        .map(|r| Target {
            kind: TargetKind::Rehearsal,
            source: "rehearsal".into(),
            teacher: r.example(),
            student: r.example(),
        })
        .collect()
}

/// `task` and the guard's rows for `seen` task rows (the task rows times their passes) after them, as
/// [`rehearsal_targets`], with what the guard added; `task` alone when the guard is off.
pub fn with_rehearsal_targets(
    lm: &engram_model::LoadedModel,
    guard: &engram_train::Guard,
    mut task: Vec<Target>,
    seen: usize,
    seed: u64,
) -> Result<(Vec<Target>, engram_train::GuardReport), DistillError> {
    let mut report = engram_train::GuardReport {
        share: guard.share,
        task_rows: seen,
        ..Default::default()
    };
    if guard.is_on() {
        let (pool, seconds) = guard.pool(lm)?;
        let rows = guard.draw(&pool, seen, seed);
        report.rehearsal_rows = rows.len();
        report.pool = pool.len();
        report.pool_seconds = seconds;
        task.extend(rehearsal_targets(&rows));
    }
    Ok((task, report))
}

/// The (question, answer) of each replayed record: its first user and first assistant turn.
pub fn record_pairs(records: &[Record]) -> Vec<(String, String)> {
    records
        .iter()
        .filter_map(|r| {
            let user = r.messages.iter().find(|m| m.role == "user")?;
            let answer = r.messages.iter().find(|m| m.role == "assistant")?;
            Some((user.content.clone(), answer.content.clone()))
        })
        .collect()
}

/// Byte offsets where a word starts (after whitespace).
fn word_starts(text: &str) -> Vec<usize> {
    let mut starts = Vec::new();
    let mut prev_space = true;
    for (i, c) in text.char_indices() {
        if !c.is_whitespace() && prev_space {
            starts.push(i);
        }
        prev_space = c.is_whitespace();
    }
    starts
}

/// `n` continuations of `context`, each cut at a distinct random word (after the first fifth, leaving at least
/// `min_words` words to score): the teacher reads the whole context, the student from the cut on.
pub fn continuation_targets(
    source: &str,
    context: &str,
    n: usize,
    min_words: usize,
    seed: u64,
) -> Vec<Target> {
    let starts = word_starts(context);
    let lo = (starts.len() / 5).max(1);
    let hi = starts.len().saturating_sub(min_words.max(1));
    if lo > hi {
        return Vec::new();
    }
    let mut cuts: Vec<usize> = (lo..=hi).collect();
    let mut rng = StdRng::seed_from_u64(seed);
    // A partial Fisher–Yates: the first n of a seeded shuffle.
    let take = n.min(cuts.len());
    for i in 0..take {
        let j = rng.random_range(i..cuts.len());
        cuts.swap(i, j);
    }
    let mut chosen = cuts[..take].to_vec();
    chosen.sort_unstable();
    chosen
        .into_iter()
        .map(|w| Target {
            kind: TargetKind::Continuation,
            source: source.into(),
            teacher: Example::text(context),
            student: Example::text(&context[starts[w]..]),
        })
        .collect()
}

/// `n` windows of about `words` words from `texts` (each starting at a sentence), seeded: the student reads the
/// window, the teacher the context then the window (`with_context`, SELF-PARAM's choice) or the window alone.
pub fn regulariser_targets(
    source: &str,
    context: &str,
    texts: &[String],
    n: usize,
    words: usize,
    with_context: bool,
    seed: u64,
) -> Vec<Target> {
    let windows: Vec<String> = texts
        .iter()
        .flat_map(|t| sentence_windows(t, words))
        .collect();
    if windows.is_empty() {
        return Vec::new();
    }
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let w = windows[rng.random_range(0..windows.len())].clone();
            let teacher = if with_context {
                format!("{context}\n\n{w}")
            } else {
                w.clone()
            };
            Target {
                kind: TargetKind::Regulariser,
                source: source.into(),
                teacher: Example::text(teacher),
                student: Example::text(w),
            }
        })
        .collect()
}

/// Runs of whole sentences of about `words` words (a sentence ends at `. `, `! ` or `? `; paragraphs too).
fn sentence_windows(text: &str, words: usize) -> Vec<String> {
    let mut sentences = Vec::new();
    for para in text.split("\n\n") {
        let para = para.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut start = 0;
        let bytes = para.as_bytes();
        for i in 0..bytes.len() {
            let end = matches!(bytes[i], b'.' | b'!' | b'?')
                && (i + 1 == bytes.len() || bytes[i + 1] == b' ');
            if end {
                sentences.push(para[start..=i].trim().to_owned());
                start = i + 1;
            }
        }
        if start < para.len() && !para[start..].trim().is_empty() {
            sentences.push(para[start..].trim().to_owned());
        }
    }
    let mut windows = Vec::new();
    let mut current: Vec<String> = Vec::new();
    let mut count = 0;
    for s in sentences {
        count += s.split_whitespace().count();
        current.push(s);
        if count >= words {
            windows.push(current.join(" "));
            current.clear();
            count = 0;
        }
    }
    if count * 2 >= words {
        windows.push(current.join(" "));
    }
    windows
}

/// Targets as JSONL, one per line.
pub fn targets_jsonl(targets: &[Target]) -> String {
    engram_model::formats::jsonl::to_jsonl(targets)
}

/// Reads a targets file written by [`targets_jsonl`]; a malformed line is an error naming it.
pub fn read_targets(path: &Path) -> Result<Vec<Target>, DistillError> {
    Ok(engram_model::formats::jsonl::read_jsonl_strict(path)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONTEXT: &str = "The glimmerfold is a shape found in 2031. Every glimmerfold has 7 corners. \
                           It was named by Ada Quill of Brackenvell after a long study.";

    #[test]
    fn continuations_are_suffixes_of_the_context_at_distinct_words() {
        let t = continuation_targets("x", CONTEXT, 5, 4, 3);
        assert_eq!(t.len(), 5);
        let mut seen = std::collections::BTreeSet::new();
        for target in &t {
            let (Example::Text { text: s }, Example::Text { text: full }) =
                (&target.student, &target.teacher)
            else {
                panic!("texts expected")
            };
            assert_eq!(full, CONTEXT);
            assert!(CONTEXT.ends_with(s.as_str()) && s.len() < CONTEXT.len());
            assert!(s.split_whitespace().count() >= 4);
            assert!(seen.insert(s.clone()), "distinct cuts");
        }
        assert_eq!(t, continuation_targets("x", CONTEXT, 5, 4, 3), "seeded");
        assert!(continuation_targets("x", "too short", 3, 4, 0).is_empty());
    }

    #[test]
    fn regulariser_windows_are_whole_sentences_with_or_without_the_context() {
        let general = vec!["Water falls as rain. It runs to the sea. The sun warms it.\n\nClouds form. Rain falls again.".to_owned()];
        let with = regulariser_targets("x", CONTEXT, &general, 4, 6, true, 1);
        assert_eq!(with.len(), 4);
        for t in &with {
            let (Example::Text { text: s }, Example::Text { text: teacher }) =
                (&t.student, &t.teacher)
            else {
                panic!("texts expected")
            };
            assert!(s.ends_with('.'), "{s}");
            assert_eq!(teacher, &format!("{CONTEXT}\n\n{s}"));
        }
        let without = regulariser_targets("x", CONTEXT, &general, 2, 6, false, 1);
        assert!(without.iter().all(|t| t.student == t.teacher));
        assert!(regulariser_targets("x", CONTEXT, &[], 2, 6, true, 1).is_empty());
    }

    #[test]
    fn qa_targets_put_the_context_only_before_the_teachers_question() {
        let record = Record {
            messages: vec![
                Message::user("How many corners has a glimmerfold?"),
                Message::assistant("7"),
            ],
            provenance: engram_replay::Provenance {
                protocol: "self-qa".into(),
                part: "answer".into(),
                source: "x".into(),
                seed: 0,
                generator: "test".into(),
                prompt: String::new(),
                origin: engram_replay::Origin::Text,
            },
        };
        let pairs = record_pairs(&[record]);
        assert_eq!(
            pairs,
            [(
                "How many corners has a glimmerfold?".to_owned(),
                "7".to_owned()
            )]
        );
        let t = qa_targets("x", CONTEXT, &pairs);
        let Example::Chat { messages: s } = &t[0].student else {
            panic!()
        };
        let Example::Chat { messages: teacher } = &t[0].teacher else {
            panic!()
        };
        assert!(!s[0].content.contains("glimmerfold is a shape"));
        assert!(
            teacher[0].content.starts_with(CONTEXT) && teacher[0].content.ends_with(&s[0].content)
        );
        assert_eq!(s[1], teacher[1]);
    }

    #[test]
    fn targets_round_trip_and_bad_lines_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("targets.jsonl");
        let t = continuation_targets("x", CONTEXT, 2, 4, 0);
        std::fs::write(&path, targets_jsonl(&t)).unwrap();
        assert_eq!(read_targets(&path).unwrap(), t);
        std::fs::write(&path, targets_jsonl(&t) + "{\"kind\": \"qa\"}\n").unwrap();
        let err = read_targets(&path).unwrap_err().to_string();
        assert!(err.contains("targets.jsonl:3"), "{err}");
    }
}
