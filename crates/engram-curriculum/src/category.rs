//! SliCK's knowledge categories (Gekhman et al., 2024) and how facts move between them.
//!
//! A fact is asked several times: greedily under several few-shot prompts, and sampled. The category is a
//! pure function of the counts of right answers ([`categorize`]), so it is tested here without a model.

use std::collections::HashMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::CurriculumError;

/// How well the model knows a fact.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Category {
    /// Every greedy answer is right.
    HighlyKnown,
    /// Some greedy answers are right.
    MaybeKnown,
    /// No greedy answer is right, some sampled ones are.
    WeaklyKnown,
    /// No answer is right.
    Unknown,
}

impl Category {
    /// From best known to least, the order of every table.
    pub const ALL: [Category; 4] = [
        Category::HighlyKnown,
        Category::MaybeKnown,
        Category::WeaklyKnown,
        Category::Unknown,
    ];

    /// The name used in files and reports (`HighlyKnown`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Category::HighlyKnown => "HighlyKnown",
            Category::MaybeKnown => "MaybeKnown",
            Category::WeaklyKnown => "WeaklyKnown",
            Category::Unknown => "Unknown",
        }
    }

    /// 3 for `HighlyKnown` down to 0 for `Unknown`: a fact "moves up" when its rank rises.
    pub fn rank(self) -> u8 {
        match self {
            Category::HighlyKnown => 3,
            Category::MaybeKnown => 2,
            Category::WeaklyKnown => 1,
            Category::Unknown => 0,
        }
    }

    /// Index into [`Category::ALL`].
    pub fn index(self) -> usize {
        3 - self.rank() as usize
    }
}

/// The category of a fact from its right answers: `greedy_right` of `greedy_total` greedy answers (one per
/// few-shot prompt) and `sampled_right` of `sampled_total` sampled ones. Counts that no probe can produce (no
/// greedy answer, more right than asked) are an error naming the fact.
pub fn categorize(
    id: &str,
    greedy_right: usize,
    greedy_total: usize,
    sampled_right: usize,
    sampled_total: usize,
) -> Result<Category, CurriculumError> {
    let bad = |message: String| CurriculumError::Counts {
        id: id.into(),
        message,
    };
    if greedy_total == 0 {
        return Err(bad("no greedy answer: a category needs at least one".into()));
    }
    if greedy_right > greedy_total {
        return Err(bad(format!(
            "{greedy_right} right of {greedy_total} greedy answers"
        )));
    }
    if sampled_right > sampled_total {
        return Err(bad(format!(
            "{sampled_right} right of {sampled_total} sampled answers"
        )));
    }
    Ok(if greedy_right == greedy_total {
        Category::HighlyKnown
    } else if greedy_right > 0 {
        Category::MaybeKnown
    } else if sampled_right > 0 {
        Category::WeaklyKnown
    } else {
        Category::Unknown
    })
}

/// Facts per category, in [`Category::ALL`] order.
pub fn counts<'a>(categories: impl IntoIterator<Item = &'a Category>) -> [usize; 4] {
    let mut c = [0; 4];
    for cat in categories {
        c[cat.index()] += 1;
    }
    c
}

/// How the facts known at one point (`from`) are known at another (`to`): `counts[i][j]` facts went from
/// `Category::ALL[i]` to `Category::ALL[j]`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transitions {
    /// Label of the earlier probe (`before`, `stage 1`, ...).
    pub from: String,
    /// Label of the later probe (`stage 1`, ..., `final`).
    pub to: String,
    /// `counts[i][j]`: facts that went from `Category::ALL[i]` to `Category::ALL[j]`.
    pub counts: [[usize; 4]; 4],
}

impl Transitions {
    /// Matches the facts of `before` and `after` by id; a fact missing from `after` is an error.
    pub fn between(
        from: &str,
        before: &[(String, Category)],
        to: &str,
        after: &[(String, Category)],
    ) -> Result<Self, CurriculumError> {
        let later: HashMap<&str, Category> =
            after.iter().map(|(id, c)| (id.as_str(), *c)).collect();
        let mut counts = [[0; 4]; 4];
        for (id, c) in before {
            let d = later
                .get(id.as_str())
                .ok_or_else(|| CurriculumError::Counts {
                    id: id.clone(),
                    message: format!("probed at `{from}` but not at `{to}`"),
                })?;
            counts[c.index()][d.index()] += 1;
        }
        Ok(Self {
            from: from.into(),
            to: to.into(),
            counts,
        })
    }

    /// Facts whose category rose.
    pub fn moved_up(&self) -> usize {
        self.sum(|i, j| j < i)
    }

    /// Facts whose category fell.
    pub fn moved_down(&self) -> usize {
        self.sum(|i, j| j > i)
    }

    fn sum(&self, keep: impl Fn(usize, usize) -> bool) -> usize {
        let mut n = 0;
        for i in 0..4 {
            for j in 0..4 {
                if keep(i, j) {
                    n += self.counts[i][j];
                }
            }
        }
        n
    }

    /// A Markdown table: rows `from`, columns `to`.
    pub fn to_markdown(&self) -> String {
        let mut s = format!("| {} ↓ / {} → |", self.from, self.to);
        for c in Category::ALL {
            write!(s, " {} |", c.name()).ok();
        }
        s.push_str("\n|---|---|---|---|---|\n");
        for (i, c) in Category::ALL.iter().enumerate() {
            write!(s, "| {} |", c.name()).ok();
            for n in self.counts[i] {
                write!(s, " {n} |").ok();
            }
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_four_categories_and_their_edges() {
        let c = |g, gt, s, st| categorize("f", g, gt, s, st).unwrap();
        assert_eq!(
            c(4, 4, 16, 16),
            Category::HighlyKnown,
            "greedy always right"
        );
        assert_eq!(
            c(4, 4, 0, 16),
            Category::HighlyKnown,
            "greedy right but every sample wrong is still HighlyKnown: greedy decides first"
        );
        assert_eq!(c(1, 4, 16, 16), Category::MaybeKnown, "greedy sometimes");
        assert_eq!(c(3, 4, 0, 0), Category::MaybeKnown);
        assert_eq!(
            c(0, 4, 1, 16),
            Category::WeaklyKnown,
            "only sampling finds it"
        );
        assert_eq!(c(0, 4, 0, 16), Category::Unknown, "no sample right");
        assert_eq!(c(0, 1, 0, 0), Category::Unknown, "no samples at all");
        assert_eq!(c(1, 1, 0, 0), Category::HighlyKnown, "one prompt");
    }

    #[test]
    fn impossible_counts_are_errors_naming_the_fact() {
        for (g, gt, s, st) in [(0, 0, 0, 0), (5, 4, 0, 0), (0, 4, 3, 2)] {
            let e = categorize("trivia-7", g, gt, s, st)
                .unwrap_err()
                .to_string();
            assert!(e.contains("trivia-7"), "{e}");
        }
    }

    #[test]
    fn transitions_count_moves() {
        let id = |i: usize| format!("f{i}");
        let before = vec![
            (id(0), Category::MaybeKnown),
            (id(1), Category::Unknown),
            (id(2), Category::HighlyKnown),
            (id(3), Category::WeaklyKnown),
        ];
        let after = vec![
            (id(3), Category::WeaklyKnown),
            (id(0), Category::HighlyKnown),
            (id(1), Category::MaybeKnown),
            (id(2), Category::MaybeKnown),
        ];
        let t = Transitions::between("before", &before, "after", &after).unwrap();
        assert_eq!(t.moved_up(), 2);
        assert_eq!(t.moved_down(), 1);
        assert_eq!(t.counts[1][0], 1, "MaybeKnown -> HighlyKnown");
        assert_eq!(t.counts[3][1], 1, "Unknown -> MaybeKnown");
        let md = t.to_markdown();
        assert!(md.contains("| MaybeKnown | 1 | 0 | 0 | 0 |"), "{md}");
        let missing = Transitions::between("a", &before, "b", &after[..3]).unwrap_err();
        assert!(missing.to_string().contains("f2"), "{missing}");
    }

    proptest! {
        /// More right greedy answers never give a lower category; more right samples neither.
        #[test]
        fn monotone_in_right_answers(gt in 1usize..8, st in 0usize..20, g in 0usize..8, s in 0usize..20) {
            let g = g.min(gt);
            let s = s.min(st);
            let base = categorize("f", g, gt, s, st).unwrap().rank();
            if g < gt {
                prop_assert!(categorize("f", g + 1, gt, s, st).unwrap().rank() >= base);
            }
            if s < st {
                prop_assert!(categorize("f", g, gt, s + 1, st).unwrap().rank() >= base);
            }
            let all = counts(&[categorize("f", g, gt, s, st).unwrap()]);
            prop_assert_eq!(all.iter().sum::<usize>(), 1);
        }
    }
}
