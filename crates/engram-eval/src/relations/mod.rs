//! The `relations` dataset: knowledge about made-up things, generated from a seed.
//!
//! After Lampinen et al. 2025, "On the generalization of language models from in-context learning and
//! finetuning": every entity is a pronounceable nonsense word (`glomp`, `dovask`, `Kelbirv`), so no model
//! knows anything about it beforehand and nothing can be answered from pretraining. Each item states a few
//! relations between such words, and its questions test whether the model can use them the way it could with
//! the text in its prompt:
//!
//! - `direct` / `paraphrase`: a stated relation, asked in the order it was written (cue the first-mentioned
//!   entity, ask for the second) — plain recall, and recall through other words.
//! - `reversal`: the same kind of relation asked the other way round (cue the second-mentioned entity, ask for
//!   the first). Models finetuned on "A is R of B" often cannot answer "who is R of B?" although they can in
//!   context — the *reversal curse* (Berglund et al. 2023), which is what this split measures.
//! - `implication`: needs two stated facts combined — transitivity of an ordering, a two-step syllogism
//!   ("all t are g", "all g are y" ⇒ "all t are y"), property inheritance, or a composed role ("the teacher of
//!   C's teacher").
//!
//! Four domains: `comparisons` (orderings by an adjective), `categories` (kinds and syllogisms), `properties`
//! (properties inherited by a sub-kind) and `roles` (asymmetric relations between named people). Questions are
//! worded so that exactly one answer follows from the context under a closed-world reading, and the distractors
//! are, where the item has enough of them, other words from the same item (for relations, the word the
//! relation points to in the *other* direction first), so picking the answer needs the relation, not just
//! recognising a word from the context.
//!
//! Every nonsense word is used by one item only, so all items can be written into one adapter without
//! interfering. [`generate_relations`] is deterministic: its own small PRNG (splitmix64) keeps the output
//! fixed across dependency upgrades, and items are drawn domain by domain in turn, so the first `n` items of
//! each domain are the same whatever `items_per_domain` is.

mod categories;
mod comparisons;
mod lexicon;
mod properties;
mod questions;
mod rng;
mod roles;

use std::collections::HashSet;

use crate::EvalError;
use categories::categories;
use comparisons::comparisons;
use engram_inject::{Item, Splits};
use lexicon::{INVENTORY, Inventory, ItemWords, Lexicon};
use properties::properties;
use rng::Rng;
use roles::roles;

/// The domains, in output order; an item's `domain` field is one of these.
pub const DOMAINS: [&str; 4] = ["comparisons", "categories", "properties", "roles"];

/// The largest `items_per_domain` accepted: ids have three digits.
pub const MAX_ITEMS_PER_DOMAIN: usize = 999;

/// What to generate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RelationsConfig {
    /// Seeds every choice; the same seed gives the same dataset.
    pub seed: u64,
    /// Items in each of the four [`DOMAINS`].
    pub items_per_domain: usize,
}

impl Default for RelationsConfig {
    /// The shipped dataset: seed 2025, 12 items per domain (48 items; 24 / 8 / 16 train / dev / test).
    fn default() -> Self {
        Self {
            seed: 2025,
            items_per_domain: 12,
        }
    }
}

/// Generates the dataset: items ordered by domain (as [`DOMAINS`]) then number, ids
/// `relations-<domain>-001`...; and the splits, per domain the first half (rounded down) `train`, the next sixth
/// (rounded down) `dev` and the rest `test` (6 / 2 / 4 for 12 items).
///
/// Errors with [`EvalError::Option`] (name `items_per_domain`) when more than [`MAX_ITEMS_PER_DOMAIN`] items are
/// asked for, or when no new nonsense word can be found (never for the accepted sizes: the word space holds
/// hundreds of thousands of words; the check is there so that a change to it fails loudly instead of looping).
pub fn generate_relations(config: &RelationsConfig) -> Result<(Vec<Item>, Splits), EvalError> {
    let generated = generate(config, &INVENTORY)?;
    let n = config.items_per_domain;
    let (train, dev) = (n / 2, n / 6);
    let mut splits = Splits {
        train: Vec::new(),
        dev: Vec::new(),
        test: Vec::new(),
    };
    for chunk in generated.chunks(n.max(1)) {
        for (k, g) in chunk.iter().enumerate() {
            let split = if k < train {
                &mut splits.train
            } else if k < train + dev {
                &mut splits.dev
            } else {
                &mut splits.test
            };
            split.push(g.item.id.clone());
        }
    }
    Ok((generated.into_iter().map(|g| g.item).collect(), splits))
}

/// One generated item with what the tests check it against.
struct Generated {
    item: Item,
    /// Every nonsense word the item uses (context and distractors), lowercase.
    #[cfg_attr(not(test), allow(dead_code))] // for the tests
    words: Vec<String>,
    /// The entities and property values of the context, as they are written there.
    #[cfg_attr(not(test), allow(dead_code))] // for the tests
    terms: Vec<String>,
}

fn generate(config: &RelationsConfig, inventory: &Inventory) -> Result<Vec<Generated>, EvalError> {
    let n = config.items_per_domain;
    if n > MAX_ITEMS_PER_DOMAIN {
        return Err(option_error(
            n,
            format!("at most {MAX_ITEMS_PER_DOMAIN} items per domain (ids have three digits)"),
        ));
    }
    let mut lexicon = Lexicon {
        inventory,
        used: HashSet::new(),
    };
    // One stream per domain, and domains take turns item by item, so item k of a domain depends only on items
    // before it: a larger dataset extends a smaller one.
    let mut rngs: Vec<Rng> = (0..DOMAINS.len())
        .map(|d| Rng::new(config.seed ^ 0xA076_1D64_78BD_642F_u64.wrapping_mul(d as u64 + 1)))
        .collect();
    let mut per_domain: Vec<Vec<Generated>> = DOMAINS.iter().map(|_| Vec::new()).collect();
    for k in 0..n {
        for (d, domain) in DOMAINS.iter().enumerate() {
            let rng = &mut rngs[d];
            let mut words = ItemWords {
                lexicon: &mut lexicon,
                words: Vec::new(),
                fresh_words: Vec::new(),
                fresh_names: Vec::new(),
            };
            let parts = match d {
                0 => comparisons(rng, &mut words),
                1 => categories(rng, &mut words),
                2 => properties(rng, &mut words),
                _ => roles(rng, &mut words),
            }
            .map_err(|reason| option_error(n, reason))?;
            let questions = parts
                .drafts
                .into_iter()
                .enumerate()
                .map(|(j, draft)| draft.finish((k + j) % 4, rng, &mut words, &parts.values))
                .collect::<Result<_, _>>()
                .map_err(|reason| option_error(n, reason))?;
            per_domain[d].push(Generated {
                item: Item {
                    id: format!("relations-{domain}-{:03}", k + 1),
                    domain: (*domain).to_owned(),
                    context: parts.context,
                    questions,
                },
                words: words.words,
                terms: parts.terms,
            });
        }
    }
    Ok(per_domain.into_iter().flatten().collect())
}

fn option_error(n: usize, reason: String) -> EvalError {
    EvalError::Option {
        name: "items_per_domain".into(),
        value: n.to_string(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    use super::lexicon::{MAX_WORD_LEN, allowed};
    use super::properties::PROPERTIES;
    use super::*;
    use engram_inject::QuestionKind::{self, Direct, Implication, Paraphrase, Reversal};
    use engram_inject::{parse_items, parse_splits};

    fn config(seed: u64, items_per_domain: usize) -> RelationsConfig {
        RelationsConfig {
            seed,
            items_per_domain,
        }
    }

    fn generated(seed: u64, n: usize) -> Vec<Generated> {
        generate(&config(seed, n), &INVENTORY).unwrap()
    }

    fn tokens(text: &str) -> Vec<&str> {
        text.split(|c: char| !c.is_ascii_alphanumeric())
            .filter(|t| !t.is_empty())
            .collect()
    }

    fn sentences(context: &str) -> Vec<Vec<&str>> {
        context
            .split_terminator(['.', '?'])
            .map(tokens)
            .filter(|s| !s.is_empty())
            .collect()
    }

    /// The item's entities and values named in `question`, other than `answer`.
    fn cues<'a>(g: &Generated, question: &'a str, answer: &str) -> Vec<&'a str> {
        tokens(question)
            .into_iter()
            .filter(|t| *t != answer && g.terms.iter().any(|term| term == t))
            .collect()
    }

    /// Whether some sentence names `x` before `y`.
    fn written_before(context: &str, x: &str, y: &str) -> bool {
        sentences(context).iter().any(|s| {
            let (px, py) = (
                s.iter().position(|t| *t == x),
                s.iter().position(|t| *t == y),
            );
            matches!((px, py), (Some(px), Some(py)) if px < py)
        })
    }

    const KINDS: [QuestionKind; 5] = [Direct, Direct, Paraphrase, Reversal, Implication];

    #[test]
    fn the_same_seed_gives_the_same_dataset_and_another_seed_another() {
        let a = generate_relations(&RelationsConfig::default()).unwrap();
        let b = generate_relations(&RelationsConfig::default()).unwrap();
        assert_eq!(a, b);
        let c = generate_relations(&config(2026, 12)).unwrap();
        assert_eq!(a.1, c.1, "splits are by id, so the same");
        let differing = a.0.iter().zip(&c.0).filter(|(x, y)| x != y).count();
        assert_eq!(differing, a.0.len(), "every item changes with the seed");
    }

    #[test]
    fn a_larger_dataset_extends_a_smaller_one() {
        let (small, _) = generate_relations(&config(7, 12)).unwrap();
        let (large, _) = generate_relations(&config(7, 30)).unwrap();
        for (d, domain) in DOMAINS.iter().enumerate() {
            assert_eq!(
                small[d * 12..(d + 1) * 12],
                large[d * 30..d * 30 + 12],
                "{domain}"
            );
        }
    }

    #[test]
    fn items_have_the_format_the_loader_expects() {
        let (items, splits) = generate_relations(&RelationsConfig::default()).unwrap();
        assert_eq!(items.len(), 48);
        for (i, item) in items.iter().enumerate() {
            let (d, k) = (i / 12, i % 12);
            assert_eq!(item.domain, DOMAINS[d]);
            assert_eq!(item.id, format!("relations-{}-{:03}", DOMAINS[d], k + 1));
            let n_sentences = item.context.matches(". ").count() + 1;
            assert!(
                (3..=5).contains(&n_sentences) && item.context.ends_with('.'),
                "{}",
                item.context
            );
            let kinds: Vec<_> = item.questions.iter().map(|q| q.kind).collect();
            assert_eq!(kinds, KINDS, "{}", item.id);
            let context = tokens(&item.context);
            for (j, q) in item.questions.iter().enumerate() {
                assert_eq!(q.options.len(), 4, "{}: {q:?}", item.id);
                let distinct: HashSet<_> = q.options.iter().collect();
                assert_eq!(distinct.len(), 4, "{}: {q:?}", item.id);
                assert_eq!(q.options[(k + j) % 4], q.answer, "answer position rotates");
                assert!(
                    tokens(&q.answer).iter().all(|t| context.contains(t)),
                    "{}: answer {:?} is not in the context",
                    item.id,
                    q.answer
                );
                assert!(q.question.ends_with(['?', '.']), "{q:?}");
            }
        }
        // What the loader reads back is what was generated.
        let jsonl: String = items
            .iter()
            .map(|i| serde_json::to_string(i).unwrap() + "\n")
            .collect();
        let read = parse_items(Path::new("relations.jsonl"), &jsonl).unwrap();
        assert_eq!(read, items);
        let splits_json = serde_json::to_string(&splits).unwrap();
        parse_splits(Path::new("splits.json"), &splits_json, &read).unwrap();
    }

    #[test]
    fn words_are_new_nonsense_used_by_one_item_only() {
        let all = generated(2025, 200);
        let mut owner: HashMap<&str, &str> = HashMap::new();
        for g in &all {
            let mut initials = HashSet::new();
            for w in &g.words {
                assert!(
                    (4..=MAX_WORD_LEN).contains(&w.len())
                        && w.bytes().all(|b| b.is_ascii_lowercase()),
                    "{w:?}"
                );
                let syllables = w
                    .split(|c: char| !"aeiou".contains(c))
                    .filter(|s| !s.is_empty())
                    .count();
                assert!((1..=2).contains(&syllables), "{w:?}");
                assert!(allowed(w), "{w:?} is English or offensive");
                assert!(
                    initials.insert(w.as_bytes()[0]),
                    "{}: {w} looks like another word",
                    g.item.id
                );
                if let Some(first) = owner.insert(w, &g.item.id) {
                    panic!("{w:?} is used by {first} and {}", g.item.id);
                }
            }
            // Every entity of the context is one of the item's words (the rest of the terms are values).
            for t in &g.terms {
                let lower = t.to_ascii_lowercase();
                let is_value = PROPERTIES.iter().any(|p| p.values.contains(&t.as_str()));
                assert!(is_value || g.words.contains(&lower), "{}: {t}", g.item.id);
            }
        }
        // No template word is ever a nonsense word (so no cue is mistaken for an entity).
        for g in &all {
            let text = std::iter::once(g.item.context.as_str())
                .chain(g.item.questions.iter().map(|q| q.question.as_str()));
            for t in text.flat_map(tokens) {
                let lower = t.to_ascii_lowercase();
                if owner.contains_key(lower.as_str()) {
                    assert!(
                        g.words.contains(&lower),
                        "{}: {t} belongs to another item",
                        g.item.id
                    );
                }
            }
        }
    }

    #[test]
    fn direct_questions_follow_the_written_order_and_reversals_invert_it() {
        for g in generated(11, 40) {
            let item = &g.item;
            let mut forward: Vec<(&str, &str)> = Vec::new();
            for q in &item.questions[..4] {
                assert!(
                    !tokens(&q.question).contains(&q.answer.as_str()),
                    "{}: {q:?} names its answer",
                    item.id
                );
                let cues = cues(&g, &q.question, &q.answer);
                assert_eq!(
                    cues.len(),
                    1,
                    "{}: {q:?} should name one entity or value",
                    item.id
                );
                let (cue, answer) = (cues[0], q.answer.as_str());
                let (after, before) = (
                    written_before(&item.context, cue, answer),
                    written_before(&item.context, answer, cue),
                );
                if q.kind == Reversal {
                    assert!(
                        before && !after,
                        "{}: {q:?} must give the later-written word and ask for the earlier one\n{}",
                        item.id,
                        item.context
                    );
                    // The reversed fact is one that is also asked forward.
                    assert!(
                        forward.contains(&(answer, cue)),
                        "{}: {q:?} reverses no direct question",
                        item.id
                    );
                } else {
                    assert!(after && !before, "{}: {q:?}\n{}", item.id, item.context);
                    forward.push((cue, answer));
                }
            }
        }
    }

    #[test]
    fn implications_need_two_facts() {
        for g in generated(12, 40) {
            let item = &g.item;
            let q = &item.questions[4];
            let mut needed = cues(&g, &q.question, &q.answer);
            assert!(!needed.is_empty(), "{q:?}");
            needed.push(&q.answer);
            let in_one = sentences(&item.context)
                .iter()
                .any(|s| needed.iter().all(|t| s.contains(t)));
            assert!(
                !in_one,
                "{}: {q:?} is answered by one sentence\n{}",
                item.id, item.context
            );
        }
    }

    #[test]
    fn distractors_come_from_the_item_where_it_has_them() {
        for g in generated(13, 40) {
            for q in &g.item.questions {
                let from_item = q
                    .options
                    .iter()
                    .filter(|o| **o != q.answer && g.terms.contains(o))
                    .count();
                let least = if g.item.domain == "comparisons" || g.item.domain == "roles" {
                    2
                } else {
                    1
                };
                assert!(from_item >= least, "{}: {q:?}", g.item.id);
            }
        }
    }

    #[test]
    fn splits_partition_each_domain_half_sixth_third() {
        for (n, counts) in [
            (12, (6, 2, 4)),
            (200, (100, 33, 67)),
            (1, (0, 0, 1)),
            (0, (0, 0, 0)),
        ] {
            let (items, splits) = generate_relations(&config(3, n)).unwrap();
            assert_eq!(items.len(), 4 * n);
            let sizes = (splits.train.len(), splits.dev.len(), splits.test.len());
            assert_eq!(sizes, (4 * counts.0, 4 * counts.1, 4 * counts.2), "n = {n}");
            let mut all: Vec<&String> = splits
                .train
                .iter()
                .chain(&splits.dev)
                .chain(&splits.test)
                .collect();
            all.sort();
            let mut ids: Vec<&String> = items.iter().map(|i| &i.id).collect();
            ids.sort();
            assert_eq!(all, ids);
        }
        let (_, splits) = generate_relations(&RelationsConfig::default()).unwrap();
        assert_eq!(splits.train[5], "relations-comparisons-006");
        assert_eq!(
            splits.dev,
            DOMAINS
                .iter()
                .flat_map(|d| [7, 8].map(|k| format!("relations-{d}-{k:03}")))
                .collect::<Vec<_>>()
        );
        assert_eq!(splits.test[0], "relations-comparisons-009");
    }

    #[test]
    fn too_many_items_or_too_few_words_is_an_error_not_a_panic() {
        let e = generate_relations(&config(1, MAX_ITEMS_PER_DOMAIN + 1)).unwrap_err();
        assert!(
            matches!(&e, EvalError::Option { name, .. } if name == "items_per_domain"),
            "{e}"
        );
        // An inventory that spells four words (two initials) cannot fill one item.
        const TINY: Inventory = Inventory {
            onsets: &["b"],
            clusters: &["gl"],
            vowels: &["a"],
            joins: &["d"],
            cluster_joins: &["rd"],
            rimes: &["omp"],
        };
        assert_eq!(TINY.all_words(), ["badomp", "bardomp", "gladomp", "glomp"]);
        let e = generate(&config(1, 1), &TINY).err().unwrap();
        assert!(
            e.to_string().contains("ran out of new nonsense words"),
            "{e}"
        );
    }

    #[test]
    fn wordings_vary() {
        let all = generated(2025, 24);
        for domain in DOMAINS {
            // A sentence or question with its entities and values masked.
            let shapes = |texts: &mut dyn Iterator<Item = (&Generated, &str)>| -> HashSet<String> {
                texts
                    .map(|(g, text)| {
                        tokens(text)
                            .iter()
                            .map(|t| {
                                if g.terms.iter().any(|x| x == t) {
                                    "_"
                                } else {
                                    t
                                }
                            })
                            .collect::<Vec<_>>()
                            .join(" ")
                    })
                    .collect()
            };
            let items = || all.iter().filter(|g| g.item.domain == domain);
            let facts = shapes(
                &mut items().flat_map(|g| g.item.context.split(". ").skip(1).map(move |s| (g, s))),
            );
            assert!(facts.len() >= 3, "{domain}: {facts:?}");
            for kind in [Direct, Paraphrase, Reversal, Implication] {
                let asked = shapes(&mut items().flat_map(|g| {
                    g.item
                        .questions
                        .iter()
                        .filter(move |q| q.kind == kind)
                        .map(move |q| (g, q.question.as_str()))
                }));
                assert!(asked.len() >= 3, "{domain} {kind:?}: {asked:?}");
            }
        }
    }
}
