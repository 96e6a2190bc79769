//! Answer metrics on plain strings and numbers: SQuAD-style normalisation, exact match, contains-answer and
//! token F1; gap recovery; bootstrap confidence intervals. No model here, so each is unit-tested by hand.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// SQuAD's answer normalisation: lower case, punctuation removed, the articles `a`, `an`, `the` removed,
/// white space collapsed.
pub fn normalize_answer(s: &str) -> String {
    let lowered = s.to_lowercase();
    let no_punct: String = lowered
        .chars()
        .map(|c| if c.is_ascii_punctuation() { ' ' } else { c })
        .collect();
    no_punct
        .split_whitespace()
        .filter(|w| !matches!(*w, "a" | "an" | "the"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Normalised prediction equals the normalised answer.
pub fn exact_match(prediction: &str, answer: &str) -> bool {
    normalize_answer(prediction) == normalize_answer(answer)
}

/// The normalised answer appears in the normalised prediction as whole words (`"18"` is not found in
/// `"180"`).
pub fn contains_answer(prediction: &str, answer: &str) -> bool {
    let (p, a) = (normalize_answer(prediction), normalize_answer(answer));
    if a.is_empty() {
        return false;
    }
    let (pw, aw): (Vec<&str>, Vec<&str>) = (p.split(' ').collect(), a.split(' ').collect());
    pw.windows(aw.len()).any(|w| w == aw.as_slice())
}

/// Words that carry no content of their own in an answer (`Who is X?` → `It is X.` adds nothing).
const FILLER: &[&str] = &[
    "is", "are", "was", "were", "be", "it", "its", "this", "that", "of", "in", "on", "to", "and",
    "or", "by", "for", "with", "as", "at", "who", "what", "which", "yes", "no", "i", "you", "he",
    "she", "they", "his", "her", "their", "called", "named", "known",
];

/// Whether `answer` only repeats words of `question`: every word of it that carries content is one of the
/// question's (`Who is Tavi Renkova?` → `Tavi Renkova.`). Such an answer cannot state a fact the question does
/// not already hold, so a method whose answers echo the question scores nothing by containing its reference.
/// An empty answer is not an echo.
pub fn echoes_question(answer: &str, question: &str) -> bool {
    let q = normalize_answer(question);
    let asked: Vec<&str> = q.split(' ').collect();
    let a = normalize_answer(answer);
    let words: Vec<&str> = a
        .split(' ')
        .filter(|w| !w.is_empty() && !FILLER.contains(w))
        .collect();
    !words.is_empty() && words.iter().all(|w| asked.contains(w))
}

/// SQuAD token F1 between the normalised prediction and answer (multiset overlap of words).
pub fn token_f1(prediction: &str, answer: &str) -> f64 {
    let p = normalize_answer(prediction);
    let a = normalize_answer(answer);
    let pw: Vec<&str> = p.split_whitespace().collect();
    let aw: Vec<&str> = a.split_whitespace().collect();
    if pw.is_empty() || aw.is_empty() {
        return if pw.is_empty() && aw.is_empty() {
            1.0
        } else {
            0.0
        };
    }
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for w in &aw {
        *counts.entry(w).or_default() += 1;
    }
    let mut common = 0usize;
    for w in &pw {
        if let Some(c) = counts.get_mut(w)
            && *c > 0
        {
            *c -= 1;
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / pw.len() as f64;
    let recall = common as f64 / aw.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// How much of the in-context gain a condition recovers: `(score − base) / (icl − base)`. `None` when in-context
/// learning does not beat the base model (the ratio means nothing then).
pub fn gap_recovery(score: f64, base: f64, icl: f64) -> Option<f64> {
    let gap = icl - base;
    (gap > 1e-12).then(|| (score - base) / gap)
}

/// A mean with a percentile-bootstrap confidence interval.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Estimate {
    /// Mean of the values.
    pub mean: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end of the interval.
    pub hi: f64,
    /// Number of values.
    pub n: usize,
}

/// The mean of `values` with a `level` (e.g. 0.95) percentile-bootstrap interval from `resamples` resamples
/// drawn with `seed`. `None` for no values.
pub fn bootstrap_mean(values: &[f64], resamples: usize, level: f64, seed: u64) -> Option<Estimate> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 || resamples == 0 {
        return Some(Estimate {
            mean,
            lo: mean,
            hi: mean,
            n,
        });
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - level.clamp(0.0, 1.0)) / 2.0;
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Some(Estimate {
        mean,
        lo: at(tail),
        hi: at(1.0 - tail),
        n,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_answer_that_only_repeats_the_question_is_an_echo() {
        assert!(echoes_question("Tavi Renkova.", "Who is Tavi Renkova?"));
        assert!(echoes_question(
            "It is the Vellmora product.",
            "What is the Vellmora product?"
        ));
        assert!(!echoes_question(
            "Tavi Renkova defined it.",
            "Who defined the Vellmora product?"
        ));
        assert!(
            !echoes_question("", "Who is X?"),
            "empty is wrong, not an echo"
        );
        assert!(!echoes_question(
            "18",
            "What is the Vellmora product of 2 and 4?"
        ));
        assert!(echoes_question(
            "4",
            "What is the Vellmora product of 2 and 4?"
        ));
    }

    use super::*;

    #[test]
    fn normalisation_follows_squad() {
        assert_eq!(
            normalize_answer("  The Vellmora   Product! "),
            "vellmora product"
        );
        assert_eq!(normalize_answer("An apple, a pear"), "apple pear");
        assert_eq!(normalize_answer("Tavi-Renkova."), "tavi renkova");
        assert_eq!(normalize_answer("Théâtre"), "théâtre");
    }

    #[test]
    fn exact_match_and_contains() {
        assert!(exact_match("the Vellmora product.", "The Vellmora product"));
        assert!(!exact_match("Vellmora", "The Vellmora product"));
        assert!(contains_answer(
            "It was defined by Tavi Renkova in 2031.",
            "Tavi Renkova"
        ));
        assert!(
            !contains_answer("The answer is 180.", "18"),
            "whole words only"
        );
        assert!(contains_answer("The answer is 18.", "18"));
        assert!(!contains_answer("anything", ""));
    }

    #[test]
    fn token_f1_counts_overlap_as_a_multiset() {
        assert_eq!(token_f1("Tavi Renkova", "Tavi Renkova"), 1.0);
        assert_eq!(token_f1("Orsa Lindqvel", "Tavi Renkova"), 0.0);
        // prediction "tavi tavi renkova" (3 words), answer "tavi renkova" (2): overlap 2, p = 2/3, r = 1.
        let f = token_f1("Tavi Tavi Renkova", "Tavi Renkova");
        assert!((f - 0.8).abs() < 1e-12, "{f}");
        // "the" is dropped by normalisation on both sides.
        assert_eq!(token_f1("the Quenby fair", "Quenby fair"), 1.0);
        assert_eq!(token_f1("", ""), 1.0);
        assert_eq!(token_f1("x", ""), 0.0);
    }

    #[test]
    fn gap_recovery_is_relative_to_icl() {
        assert!((gap_recovery(0.6, 0.2, 1.0).unwrap() - 0.5).abs() < 1e-12);
        assert_eq!(gap_recovery(0.2, 0.2, 1.0), Some(0.0));
        assert_eq!(gap_recovery(0.5, 0.5, 0.5), None);
        assert_eq!(gap_recovery(0.5, 0.6, 0.4), None);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_narrows_with_n() {
        let small: Vec<f64> = (0..20).map(|i| (i % 2) as f64).collect();
        let large: Vec<f64> = (0..2000).map(|i| (i % 2) as f64).collect();
        let s = bootstrap_mean(&small, 2000, 0.95, 7).unwrap();
        let l = bootstrap_mean(&large, 2000, 0.95, 7).unwrap();
        assert_eq!((s.mean, l.mean), (0.5, 0.5));
        assert!(s.lo < 0.5 && s.hi > 0.5 && l.lo < 0.5 && l.hi > 0.5);
        assert!(l.hi - l.lo < (s.hi - s.lo) / 4.0, "{s:?} vs {l:?}");
        // Binomial: half-width about 1.96 * sqrt(0.25 / 20) = 0.22.
        assert!((s.hi - s.lo) > 0.3 && (s.hi - s.lo) < 0.6, "{s:?}");
        assert_eq!(bootstrap_mean(&small, 2000, 0.95, 7), Some(s), "seeded");
        assert_eq!(bootstrap_mean(&[], 100, 0.95, 0), None);
        let one = bootstrap_mean(&[0.3], 100, 0.95, 0).unwrap();
        assert_eq!((one.lo, one.hi), (0.3, 0.3));
    }
}
