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

use std::collections::HashSet;

use crate::EvalError;
use QuestionKind::{Direct, Implication, Paraphrase, Reversal};
use engram_inject::{Item, Question, QuestionKind, Splits};

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

// ---------------------------------------------------------------------------------------------------------
// Randomness: the project's own splitmix64 (engram-model), so the dataset never changes with a dependency's
// version.

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The splitmix64 sequence: the state advances by the golden-ratio increment, the output is its mix.
    fn next(&mut self) -> u64 {
        let out = engram_model::splitmix64(self.0);
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        out
    }

    /// Uniform in `0..n` (n > 0), by the high half of a 128-bit product (bias below 2^-50 for our n).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next()) * n as u128) >> 64) as usize
    }

    fn coin(&mut self) -> bool {
        self.next() >> 63 == 1
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        xs[self.below(xs.len())]
    }

    fn pick_ref<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }

    fn shuffle<T>(&mut self, xs: &mut [T]) {
        for i in (1..xs.len()).rev() {
            xs.swap(i, self.below(i + 1));
        }
    }

    fn shuffled<T: Clone>(&mut self, xs: &[T]) -> Vec<T> {
        let mut v = xs.to_vec();
        self.shuffle(&mut v);
        v
    }
}

// ---------------------------------------------------------------------------------------------------------
// Nonsense words.

/// The syllables words are spelled from. One-syllable words are `cluster + rime` (`glomp`, `trisk`); two-syllable
/// words `onset + vowel + join + rime` (`dovask`, `kelbirv`), at most [`MAX_WORD_LEN`] letters. The final rimes are
/// ones English words rarely end in (`-omp`, `-ask`, `-irv`, ...; no `-er`, `-ed`, `-s`), which keeps the
/// [`BLOCKLIST`] of English words the inventory can still spell short.
struct Inventory {
    onsets: &'static [&'static str],
    clusters: &'static [&'static str],
    vowels: &'static [&'static str],
    joins: &'static [&'static str],
    cluster_joins: &'static [&'static str],
    rimes: &'static [&'static str],
}

const INVENTORY: Inventory = Inventory {
    onsets: &[
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "y",
    ],
    clusters: &[
        "bl", "br", "dr", "fl", "fr", "gl", "gr", "kl", "kr", "pl", "pr", "sk", "sl", "sn", "sp",
        "st", "tr", "vr",
    ],
    vowels: &["a", "e", "i", "o", "u"],
    joins: &[
        "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
    ],
    cluster_joins: &[
        "rb", "rd", "rf", "rg", "rk", "rl", "rm", "rn", "rp", "rs", "rt", "rv", "rz", "lb", "ld",
        "lf", "lg", "lk", "lm", "lp", "ls", "lt", "lv", "lz", "nd", "ng", "nk", "ns", "nt", "nv",
        "nz", "mb", "mp", "mf", "sk", "sp", "st",
    ],
    rimes: &[
        "arv", "emp", "enk", "erv", "elk", "eff", "esk", "ib", "iz", "imp", "irn", "irm", "irv",
        "ilk", "ilt", "ilf", "isk", "omp", "onk", "ork", "orv", "oll", "osk", "ub", "uv", "urk",
        "urm", "urv", "ulk", "ulf", "ull", "usk", "av", "az", "eb", "ef", "ep", "iv", "of", "ud",
        "uf", "ug", "amp", "ank", "arn", "alk", "alf", "ask", "erk", "erm", "elf", "ink", "olk",
        "olt", "olf", "ump",
    ],
};

const MAX_WORD_LEN: usize = 7;

/// Tries for one new word before giving up; the space is so much larger than any dataset that this is only
/// reached when it has been shrunk.
const MAX_TRIES: usize = 10_000;

/// Every English word (and common name) that [`INVENTORY`] can spell: all of its words were checked against
/// the large American and British English word lists when the inventory was chosen. Rerun that check when the
/// inventory changes. Sorted, for binary search.
const BLOCKLIST: &[&str] = &[
    "berserk", "blank", "bleb", "blimp", "blink", "blub", "braz", "brink", "brisk", "brusk",
    "burbank", "damask", "debug", "deneb", "deriv", "drank", "drink", "droll", "drub", "drug",
    "dundalk", "flank", "flask", "flub", "flump", "frank", "frisk", "frug", "frump", "gandalf",
    "ganef", "ganof", "gazump", "glib", "goldarn", "graz", "grep", "grub", "grump", "gustav",
    "manuf", "nonself", "norfolk", "plank", "pleb", "plonk", "plug", "plump", "prank", "pref",
    "prep", "preterm", "primp", "prink", "priv", "prof", "relink", "revamp", "revolt", "rudolf",
    "salep", "skep", "skimp", "skink", "skulk", "skull", "slav", "slink", "slub", "slug", "slump",
    "snub", "snug", "spank", "sperm", "spilt", "spiv", "spud", "stalk", "stamp", "stank", "step",
    "stilt", "stink", "stomp", "stork", "stub", "stud", "stull", "stump", "talmud", "topaz",
    "tramp", "tref", "troll", "tromp", "trug", "trull", "trump",
];

/// Spellings no word may contain, whatever a dictionary says.
const OFFENSIVE: &[&str] = &[
    "anal", "anus", "bitch", "boob", "clit", "cum", "dik", "dild", "fag", "fap", "fuk", "kok",
    "kum", "milf", "nazi", "nig", "pis", "poop", "porn", "pube", "rape", "sex", "slut", "smeg",
    "sperm", "spunk", "tard", "tit", "turd", "vag", "wank",
];

impl Inventory {
    fn sample(&self, rng: &mut Rng) -> String {
        if rng.below(4) == 0 {
            return format!("{}{}", rng.pick(self.clusters), rng.pick(self.rimes));
        }
        // Simple onsets and joins are favoured: they keep words short and easy to say.
        let onset = if rng.below(5) < 3 {
            rng.pick(self.onsets)
        } else {
            rng.pick(self.clusters)
        };
        let join = if rng.coin() {
            rng.pick(self.joins)
        } else {
            rng.pick(self.cluster_joins)
        };
        format!(
            "{onset}{}{join}{}",
            rng.pick(self.vowels),
            rng.pick(self.rimes)
        )
    }

    /// Every word the inventory can spell (before the blocklist), for checking it against a dictionary.
    #[cfg(test)]
    fn all_words(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in self.clusters {
            for r in self.rimes {
                out.push(format!("{c}{r}"));
            }
        }
        for o in self.onsets.iter().chain(self.clusters) {
            for v in self.vowels {
                for j in self.joins.iter().chain(self.cluster_joins) {
                    for r in self.rimes {
                        let w = format!("{o}{v}{j}{r}");
                        if w.len() <= MAX_WORD_LEN {
                            out.push(w);
                        }
                    }
                }
            }
        }
        out.sort();
        out.dedup();
        out
    }
}

/// Whether a spelled word may be used: not English, nothing offensive in it.
fn allowed(word: &str) -> bool {
    BLOCKLIST.binary_search(&word).is_err() && !OFFENSIVE.iter().any(|o| word.contains(o))
}

/// The words used so far in the whole dataset.
struct Lexicon<'a> {
    inventory: &'a Inventory,
    used: HashSet<String>,
}

impl Lexicon<'_> {
    /// A new word, unused anywhere, whose first letter is not in `avoid` (so that no two words of an item look
    /// alike at a glance or share a prefix).
    fn draw(&mut self, rng: &mut Rng, avoid: &[u8]) -> Result<String, String> {
        for _ in 0..MAX_TRIES {
            let w = self.inventory.sample(rng);
            if w.len() > MAX_WORD_LEN
                || avoid.contains(&w.as_bytes()[0])
                || self.used.contains(&w)
                || !allowed(&w)
            {
                continue;
            }
            self.used.insert(w.clone());
            return Ok(w);
        }
        Err(format!(
            "ran out of new nonsense words after {} (no new one in {MAX_TRIES} tries)",
            self.used.len()
        ))
    }
}

/// The words of the item being built.
struct ItemWords<'a, 'b> {
    lexicon: &'a mut Lexicon<'b>,
    words: Vec<String>,
    fresh_words: Vec<String>,
    fresh_names: Vec<String>,
}

impl ItemWords<'_, '_> {
    /// A new lowercase word for this item.
    fn word(&mut self, rng: &mut Rng) -> Result<String, String> {
        let avoid: Vec<u8> = self.words.iter().map(|w| w.as_bytes()[0]).collect();
        let w = self.lexicon.draw(rng, &avoid)?;
        self.words.push(w.clone());
        Ok(w)
    }

    /// A new word written as a name.
    fn name(&mut self, rng: &mut Rng) -> Result<String, String> {
        Ok(capitalize(&self.word(rng)?))
    }

    /// The `i`-th distractor word that appears nowhere in the context (shared by the item's questions).
    fn fresh(&mut self, rng: &mut Rng, i: usize, as_name: bool) -> Result<String, String> {
        while self.fresh_pool(as_name).len() <= i {
            let w = self.word(rng)?;
            let w = if as_name { capitalize(&w) } else { w };
            self.fresh_pool(as_name).push(w);
        }
        Ok(self.fresh_pool(as_name)[i].clone())
    }

    fn fresh_pool(&mut self, as_name: bool) -> &mut Vec<String> {
        if as_name {
            &mut self.fresh_names
        } else {
            &mut self.fresh_words
        }
    }
}

fn capitalize(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

// ---------------------------------------------------------------------------------------------------------
// Questions.

/// How to fill up the options when the item has too few wrong answers of the right type.
#[derive(Clone, Copy)]
enum Fill {
    Word,
    Name,
    /// Other values of the property (not used in the item).
    Value(&'static [&'static str]),
}

struct Draft {
    kind: QuestionKind,
    question: String,
    answer: String,
    /// Wrong answers from the item, the most telling first.
    distractors: Vec<String>,
    fill: Fill,
}

impl Draft {
    fn new(
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
    fn finish(
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
struct Parts {
    context: String,
    /// In order: direct, direct, paraphrase, reversal, implication.
    drafts: Vec<Draft>,
    terms: Vec<String>,
    /// Property values the context uses (never fresh distractors).
    values: Vec<&'static str>,
}

/// `template` with each `{key}` replaced.
fn fill(template: &str, vars: &[(&str, &str)]) -> String {
    let mut s = template.to_owned();
    for (k, v) in vars {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

fn context(intro: String, mut facts: Vec<String>, rng: &mut Rng) -> String {
    // The facts come in random order, so that position in the text says nothing about the relation.
    rng.shuffle(&mut facts);
    std::iter::once(intro)
        .chain(facts)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------------------
// comparisons: a > b > c (a chain, for transitivity) and d > e (a separate pair, asked both ways).
//
// An ordering is transitive, so "what are the a more X than?" has two answers (b and c). Only the middle of
// the chain has one element on each side, so the chain fact asked directly is the one stated with b first;
// the pair, related to nothing else, is asked forward and reversed.

struct Scale {
    more: &'static str,
    less: &'static str,
    most: &'static str,
    least: &'static str,
    /// What the five kinds are, plural.
    noun: &'static str,
}

const fn scale(
    more: &'static str,
    less: &'static str,
    most: &'static str,
    least: &'static str,
    noun: &'static str,
) -> Scale {
    Scale {
        more,
        less,
        most,
        least,
        noun,
    }
}

const SCALES: [Scale; 12] = [
    scale(
        "more dangerous",
        "less dangerous",
        "most dangerous",
        "least dangerous",
        "beasts",
    ),
    scale("heavier", "lighter", "heaviest", "lightest", "stones"),
    scale("older", "younger", "oldest", "youngest", "trees"),
    scale("faster", "slower", "fastest", "slowest", "birds"),
    scale("brighter", "dimmer", "brightest", "dimmest", "stars"),
    scale("rarer", "more common", "rarest", "most common", "flowers"),
    scale("larger", "smaller", "largest", "smallest", "fish"),
    scale("stronger", "weaker", "strongest", "weakest", "insects"),
    scale("louder", "quieter", "loudest", "quietest", "frogs"),
    scale("taller", "shorter", "tallest", "shortest", "plants"),
    scale("hotter", "colder", "hottest", "coldest", "springs"),
    scale(
        "sweeter",
        "more bitter",
        "sweetest",
        "most bitter",
        "fruits",
    ),
];

const CMP_INTRO: [&str; 4] = [
    "Five kinds of {N} are compared here.",
    "These notes compare five kinds of {N}.",
    "A traveller wrote down how five kinds of {N} compare.",
    "Here is what is known about five kinds of {N}.",
];
/// `{F}` is written first, `{S}` second, `{C}` the comparative as stated.
const CMP_FACT: [&str; 4] = [
    "The {F} are {C} than the {S}.",
    "The {F} are known to be {C} than the {S}.",
    "It is said that the {F} are {C} than the {S}.",
    "The {F} are always {C} than the {S}.",
];
const CMP_DIRECT: [&str; 3] = [
    "What are the {F} {C} than?",
    "The {F} are {C} than which {N}?",
    "Which {N} are the {F} {C} than?",
];
const CMP_PARAPHRASE: [&str; 3] = [
    "Name the {N} that the {F} are {C} than.",
    "Compared with which {N} are the {F} {C}?",
    "According to the text, the {F} are {C} than what?",
];
/// Cues `{S}`, asks for `{F}`; `{I}` is the inverse comparative.
const CMP_REVERSAL: [&str; 3] = [
    "Which {N} are {C} than the {S}?",
    "What are the {S} {I} than?",
    "The {S} are {I} than which {N}?",
];
const CMP_IMPLICATION: [&str; 4] = [
    "Which are {M}: the {X} or the {Y}?",
    "Are the {X} or the {Y} {M}?",
    "Of the {X}, the {Y} and the {Z}, which are the {SUP}?",
    "Which {N} are the {SUP} of the {X}, the {Y} and the {Z}?",
];

/// A stated comparison.
struct Cmp {
    first: String,
    second: String,
    comp: &'static str,
    inverse: &'static str,
}

impl Cmp {
    /// `higher` ranks above `lower`; the sentence starts with `higher` when `higher_first`.
    fn new(s: &Scale, higher: &str, lower: &str, higher_first: bool) -> Self {
        let (first, second, comp, inverse) = if higher_first {
            (higher, lower, s.more, s.less)
        } else {
            (lower, higher, s.less, s.more)
        };
        Self {
            first: first.to_owned(),
            second: second.to_owned(),
            comp,
            inverse,
        }
    }

    fn vars<'a>(&'a self, noun: &'a str) -> [(&'a str, &'a str); 5] {
        [
            ("F", &self.first),
            ("S", &self.second),
            ("C", self.comp),
            ("I", self.inverse),
            ("N", noun),
        ]
    }
}

fn comparisons(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
    let s = rng.pick_ref(&SCALES);
    let [a, b, c, d, e] = [
        w.word(rng)?,
        w.word(rng)?,
        w.word(rng)?,
        w.word(rng)?,
        w.word(rng)?,
    ];
    let direct_is_ab = rng.coin();
    let ab = Cmp::new(s, &a, &b, if direct_is_ab { false } else { rng.coin() });
    let bc = Cmp::new(s, &b, &c, if direct_is_ab { rng.coin() } else { true });
    let pair = Cmp::new(s, &d, &e, rng.coin());
    let facts = [&ab, &bc, &pair]
        .iter()
        .map(|f| fill(rng.pick(&CMP_FACT), &f.vars(s.noun)))
        .collect();
    let context = context(fill(rng.pick(&CMP_INTRO), &[("N", s.noun)]), facts, rng);

    // The chain fact stated with b first: its answer is a or c, and the other of the two is the tempting
    // wrong answer (the relation's other direction).
    let (chain, chain_wrong) = if direct_is_ab { (&ab, &c) } else { (&bc, &a) };
    let mut chain_distractors = vec![chain_wrong.clone()];
    chain_distractors.extend(rng.shuffled(&[d.clone(), e.clone()]));
    let pair_distractors = rng.shuffled(&[a.clone(), b.clone(), c.clone()]);
    let forward = |rng: &mut Rng, f: &Cmp, templates: &[&str], wrong: &[String]| {
        Draft::new(
            Direct,
            fill(rng.pick(templates), &f.vars(s.noun)),
            &f.second,
            wrong.to_vec(),
            Fill::Word,
        )
    };
    let mut directs: Vec<(&Cmp, Vec<String>)> =
        vec![(chain, chain_distractors), (&pair, pair_distractors)];
    rng.shuffle(&mut directs);
    let (para_fact, para_wrong) = rng.pick_ref(&directs).clone();
    let mut paraphrase = forward(rng, para_fact, &CMP_PARAPHRASE, &para_wrong);
    paraphrase.kind = Paraphrase;
    let reversal = Draft::new(
        Reversal,
        fill(rng.pick(&CMP_REVERSAL), &pair.vars(s.noun)),
        &pair.first,
        rng.shuffled(&[a.clone(), b.clone(), c.clone()]),
        Fill::Word,
    );
    // Transitivity: a above c needs both chain facts. Either a pairwise question about a and c (never in one
    // sentence) or a superlative over the whole chain.
    let up = rng.coin();
    let (answer, other) = if up { (&a, &c) } else { (&c, &a) };
    let template = rng.below(CMP_IMPLICATION.len());
    let named = if template < 2 {
        rng.shuffled(&[&a, &c])
    } else {
        rng.shuffled(&[&a, &b, &c])
    };
    let implication = Draft::new(
        Implication,
        fill(
            CMP_IMPLICATION[template],
            &[
                ("M", if up { s.more } else { s.less }),
                ("SUP", if up { s.most } else { s.least }),
                ("X", named[0]),
                ("Y", named[1]),
                ("Z", named.get(2).map_or("", |z| z.as_str())),
                ("N", s.noun),
            ],
        ),
        answer,
        vec![other.clone(), b.clone(), rng.pick(&[&d, &e]).to_string()],
        Fill::Word,
    );
    let mut drafts = directs
        .iter()
        .map(|(f, wrong)| forward(rng, f, &CMP_DIRECT, wrong))
        .collect::<Vec<_>>();
    drafts.extend([paraphrase, reversal, implication]);
    Ok(Parts {
        context,
        drafts,
        terms: vec![a, b, c, d, e],
        values: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// categories: a chain of kinds for a two-step syllogism, and a separate pair p ⊂ q asked both ways.
//
// Variant A: t ⊂ g ⊂ y (all t are g, all g are y). Variant B: Z is a t, t ⊂ g, and W is a p. Being a kind of
// something is transitive, so only a kind with a single kind above it is asked forward.

/// What the item sorts into kinds: singular, plural.
const CAT_NOUNS: [(&str, &str); 6] = [
    ("creature", "creatures"),
    ("plant", "plants"),
    ("stone", "stones"),
    ("machine", "machines"),
    ("spirit", "spirits"),
    ("shell", "shells"),
];

const CAT_INTRO: [&str; 4] = [
    "These notes sort some {ns} into kinds.",
    "An old book sorts the {ns} of a far valley into kinds.",
    "Here is how some {ns} are grouped into kinds.",
    "A keeper of records wrote down these facts about kinds of {ns}.",
];
/// `{X}` is a kind of `{Y}`, `{X}` written first.
const CAT_SUB: [&str; 4] = [
    "All {X} are {Y}.",
    "Every {X} is a {Y}.",
    "Each {X} is a kind of {Y}.",
    "The {X} are a kind of {Y}.",
];
/// The individual `{Z}` is an `{X}`.
const CAT_MEMBER: [&str; 3] = [
    "{Z} is a {X}.",
    "{Z} is one of the {X}.",
    "The {n} called {Z} is a {X}.",
];
const CAT_DIRECT: [&str; 3] = [
    "What are all {X}?",
    "Every {X} is a what?",
    "All {X} are what?",
];
const CAT_PARAPHRASE: [&str; 3] = [
    "Which kind does every {X} belong to?",
    "Name the kind that all {X} belong to.",
    "To which kind of {n} does every {X} belong?",
];
/// Cues `{Y}`, asks for the kind below it.
const CAT_REVERSAL: [&str; 3] = [
    "Which kind of {n} is a kind of {Y}?",
    "Every member of which kind is a {Y}?",
    "Name the kind whose members are all {Y}.",
];
/// t ⊂ g ⊂ y: what else are all t?
const CAT_UP: [&str; 3] = [
    "Besides {G}, what are all {T}?",
    "What are all {T}, apart from {G}?",
    "Apart from being {G}, what are all {T}?",
];
/// t ⊂ g ⊂ y: which other kind is a kind of y?
const CAT_DOWN: [&str; 3] = [
    "Besides the {G}, which kind of {n} is a kind of {Y}?",
    "Apart from the {G}, name a kind whose members are all {Y}.",
    "Which kind other than the {G} is a kind of {Y}?",
];
/// Z is a t, t ⊂ g: what else is Z?
const CAT_MEMBER_UP: [&str; 3] = [
    "What must {Z} be, besides a {T}?",
    "Besides being a {T}, what kind of {n} is {Z}?",
    "Apart from a {T}, what is {Z}?",
];
/// Z is a t, t ⊂ g: who is a g?
const CAT_MEMBER_DOWN: [&str; 3] = [
    "Which {n} must be a {G}?",
    "Name the {n} that must be a {G}.",
    "Which named {n} is a {G}?",
];

fn categories(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
    let (n, ns) = rng.pick(&CAT_NOUNS);
    let sub = |rng: &mut Rng, x: &str, y: &str| fill(rng.pick(&CAT_SUB), &[("X", x), ("Y", y)]);
    let member = |rng: &mut Rng, z: &str, x: &str| {
        fill(rng.pick(&CAT_MEMBER), &[("Z", z), ("X", x), ("n", n)])
    };
    let forward =
        |rng: &mut Rng, kind, templates: &[&str], x: &str, y: &str, wrong: Vec<String>| {
            Draft::new(
                kind,
                fill(rng.pick(templates), &[("X", x), ("n", n)]),
                y,
                wrong,
                Fill::Word,
            )
        };
    let intro = fill(rng.pick(&CAT_INTRO), &[("ns", ns)]);
    let kinds_a = rng.coin();
    let (t, g) = (w.word(rng)?, w.word(rng)?);
    let (p, q) = (w.word(rng)?, w.word(rng)?);
    let (context, mut directs, implication, terms);
    if kinds_a {
        let y = w.word(rng)?;
        context = self::context(
            intro,
            vec![sub(rng, &t, &g), sub(rng, &g, &y), sub(rng, &p, &q)],
            rng,
        );
        // g has one kind above it (y), so "what are all g?" has one answer; t is the kind the relation points
        // to the other way.
        let mut wrong = vec![t.clone()];
        wrong.extend(rng.shuffled(&[p.clone(), q.clone()]));
        directs = vec![(g.clone(), y.clone(), wrong)];
        directs.push((
            p.clone(),
            q.clone(),
            rng.shuffled(&[t.clone(), g.clone(), y.clone()]),
        ));
        implication = if rng.coin() {
            let qn = fill(rng.pick(&CAT_UP), &[("G", &g), ("T", &t)]);
            Draft::new(
                Implication,
                qn,
                &y,
                rng.shuffled(&[p.clone(), q.clone()]),
                Fill::Word,
            )
        } else {
            let qn = fill(rng.pick(&CAT_DOWN), &[("G", &g), ("Y", &y), ("n", n)]);
            Draft::new(
                Implication,
                qn,
                &t,
                rng.shuffled(&[p.clone(), q.clone()]),
                Fill::Word,
            )
        };
        terms = vec![t.clone(), g.clone(), y, p.clone(), q.clone()];
    } else {
        let (z, other) = (w.name(rng)?, w.name(rng)?);
        context = self::context(
            intro,
            vec![
                member(rng, &z, &t),
                sub(rng, &t, &g),
                sub(rng, &p, &q),
                member(rng, &other, &p),
            ],
            rng,
        );
        directs = vec![(t.clone(), g.clone(), rng.shuffled(&[p.clone(), q.clone()]))];
        directs.push((p.clone(), q.clone(), rng.shuffled(&[t.clone(), g.clone()])));
        implication = if rng.coin() {
            let qn = fill(rng.pick(&CAT_MEMBER_UP), &[("Z", &z), ("T", &t), ("n", n)]);
            Draft::new(
                Implication,
                qn,
                &g,
                rng.shuffled(&[p.clone(), q.clone()]),
                Fill::Word,
            )
        } else {
            // The other individual belongs to the pair's kinds: a wrong answer of the right type.
            let qn = fill(rng.pick(&CAT_MEMBER_DOWN), &[("G", &g), ("n", n)]);
            Draft::new(Implication, qn, &z, vec![other.clone()], Fill::Name)
        };
        terms = vec![z, other, t.clone(), g.clone(), p.clone(), q.clone()];
    }
    let reversal = Draft::new(
        Reversal,
        fill(rng.pick(&CAT_REVERSAL), &[("Y", &q), ("n", n)]),
        &p,
        directs[1].2.clone(),
        Fill::Word,
    );
    rng.shuffle(&mut directs);
    let (px, py, pwrong) = rng.pick_ref(&directs).clone();
    let paraphrase = forward(rng, Paraphrase, &CAT_PARAPHRASE, &px, &py, pwrong);
    let mut drafts: Vec<Draft> = directs
        .into_iter()
        .map(|(x, y, wrong)| forward(rng, Direct, &CAT_DIRECT, &x, &y, wrong))
        .collect();
    drafts.extend([paraphrase, reversal, implication]);
    Ok(Parts {
        context,
        drafts,
        terms,
        values: Vec::new(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// properties: g has two properties and f is a kind of g (so f inherits them); y has two others.
//
// Only y's properties are asked in reverse: "which creatures live in caves?" has two answers when caves are
// g's (g and f).

/// A kind of property: its phrase (`{v}` the value) and the questions that ask for it.
struct Property {
    phrase: &'static str,
    values: &'static [&'static str],
    direct: [&'static str; 3],
    paraphrase: [&'static str; 3],
}

const PROPERTIES: [Property; 4] = [
    Property {
        phrase: "live in {v}",
        values: &[
            "caves",
            "marshes",
            "burrows",
            "treetops",
            "rivers",
            "deserts",
            "forests",
            "lakes",
            "meadows",
            "mountains",
            "swamps",
            "dunes",
        ],
        direct: [
            "Where do the {X} live?",
            "The {X} live in what?",
            "In which places do the {X} live?",
        ],
        paraphrase: [
            "Where do the {X} make their home?",
            "What kind of place is home to the {X}?",
            "Where would you find the {X} living?",
        ],
    },
    Property {
        phrase: "eat {v}",
        values: &[
            "stones",
            "moss",
            "berries",
            "beetles",
            "seeds",
            "roots",
            "snails",
            "leaves",
            "mushrooms",
            "worms",
            "grass",
            "nuts",
        ],
        direct: [
            "What do the {X} eat?",
            "The {X} eat what?",
            "What food do the {X} eat?",
        ],
        paraphrase: [
            "What do the {X} feed on?",
            "What is the food of the {X}?",
            "On what do the {X} feed?",
        ],
    },
    Property {
        phrase: "are {v}",
        values: &[
            "blue", "red", "green", "yellow", "purple", "orange", "grey", "white", "black",
            "silver", "golden", "brown",
        ],
        direct: [
            "What colour are the {X}?",
            "The {X} are what colour?",
            "Which colour are the {X}?",
        ],
        paraphrase: [
            "What is the colour of the {X}?",
            "Of what colour are the {X}?",
            "How are the {X} coloured?",
        ],
    },
    Property {
        phrase: "are active at {v}",
        // Four times far enough apart that none is read as another.
        values: &["dawn", "noon", "dusk", "midnight"],
        direct: [
            "When are the {X} active?",
            "At what time are the {X} active?",
            "The {X} are active at what time?",
        ],
        paraphrase: [
            "At what time of day do the {X} come out?",
            "When can the {X} be seen moving about?",
            "At which time of day are the {X} awake?",
        ],
    },
];

const PROP_NOUNS: [&str; 3] = ["creatures", "animals", "beasts"];
const PROP_INTRO: [&str; 4] = [
    "Three kinds of {ns} are described here.",
    "These notes describe three kinds of {ns}.",
    "A naturalist wrote down what is known about three kinds of {ns}.",
    "Here is what is known about three kinds of {ns}.",
];
/// `{P1}`, `{P2}`: property phrases of `{X}`, which is written first.
const PROP_FACT: [&str; 3] = [
    "The {X} {P1} and {P2}.",
    "The {X} {P1}, and they {P2}.",
    "It is known that the {X} {P1} and {P2}.",
];
const PROP_SUB: [&str; 3] = [
    "Every {F} is a {G}.",
    "The {F} are a kind of {G}.",
    "All {F} are {G}.",
];
/// Cues the property `{P}`, asks who has it.
const PROP_REVERSAL: [&str; 3] = [
    "Which {ns} {P}?",
    "Name the {ns} that {P}.",
    "The {ns} that {P} are called what?",
];
/// The sub-kind shares g's property: who else has it?
const PROP_DOWN: [&str; 3] = [
    "Besides the {G}, which {ns} {P}?",
    "Apart from the {G}, name the {ns} that {P}.",
    "Which {ns} other than the {G} {P}?",
];

fn properties(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
    let ns = rng.pick(&PROP_NOUNS);
    let kinds = rng.shuffled(&[0, 1, 2, 3]);
    let props = [&PROPERTIES[kinds[0]], &PROPERTIES[kinds[1]]];
    // values[i] = (g's, y's) value of props[i], never equal.
    let values: Vec<(&'static str, &'static str)> = props
        .iter()
        .map(|p| {
            let v = rng.shuffled(p.values);
            (v[0], v[1])
        })
        .collect();
    let (g, f, y) = (w.word(rng)?, w.word(rng)?, w.word(rng)?);
    let phrase = |i: usize, of_g: bool| {
        let (vg, vy) = values[i];
        fill(props[i].phrase, &[("v", if of_g { vg } else { vy })])
    };
    let creature = |rng: &mut Rng, x: &str, of_g: bool| {
        fill(
            rng.pick(&PROP_FACT),
            &[("X", x), ("P1", &phrase(0, of_g)), ("P2", &phrase(1, of_g))],
        )
    };
    let facts = vec![
        creature(rng, &g, true),
        fill(rng.pick(&PROP_SUB), &[("F", &f), ("G", &g)]),
        creature(rng, &y, false),
    ];
    let context = context(fill(rng.pick(&PROP_INTRO), &[("ns", ns)]), facts, rng);

    let value = |i: usize, of_g: bool| if of_g { values[i].0 } else { values[i].1 };
    // Asks `x` for property i of g (or y); the other creature's value of the same property is the first
    // wrong answer.
    let ask = |rng: &mut Rng, kind, templates: &[&str], x: &str, i: usize, of_g: bool| {
        Draft::new(
            kind,
            fill(rng.pick(templates), &[("X", x)]),
            value(i, of_g),
            vec![value(i, !of_g).to_owned()],
            Fill::Value(props[i].values),
        )
    };
    let (ig, iy) = (rng.below(2), rng.below(2));
    let mut directs = vec![(&g, ig, true), (&y, iy, false)];
    rng.shuffle(&mut directs);
    let (px, pi, pg) = rng.pick(&directs);
    let paraphrase = ask(rng, Paraphrase, &props[pi].paraphrase, px, pi, pg);
    let reversal = Draft::new(
        Reversal,
        fill(
            rng.pick(&PROP_REVERSAL),
            &[("ns", ns), ("P", &phrase(iy, false))],
        ),
        &y,
        rng.shuffled(&[g.clone(), f.clone()]),
        Fill::Word,
    );
    // Inheritance, on the property of g not asked directly.
    let implication = if rng.coin() {
        ask(rng, Implication, &props[1 - ig].direct, &f, 1 - ig, true)
    } else {
        let qn = fill(
            rng.pick(&PROP_DOWN),
            &[("G", &g), ("ns", ns), ("P", &phrase(1 - ig, true))],
        );
        Draft::new(Implication, qn, &f, vec![y.clone()], Fill::Word)
    };
    let mut drafts: Vec<Draft> = directs
        .into_iter()
        .map(|(x, i, of_g)| ask(rng, Direct, &props[i].direct, x, i, of_g))
        .collect();
    drafts.extend([paraphrase, reversal, implication]);
    let used: Vec<&'static str> = values.iter().flat_map(|&(a, b)| [a, b]).collect();
    let mut terms = vec![g.clone(), f.clone(), y.clone()];
    terms.extend(used.iter().map(|v| (*v).to_owned()));
    Ok(Parts {
        context,
        drafts,
        terms,
        values: used,
    })
}

// ---------------------------------------------------------------------------------------------------------
// roles: a chain P0 → P1 → P2 → P3 of one asymmetric relation between named people ("P0 is the teacher of
// P1"). In this closed world everyone has at most one on each side, so every question has one answer.

/// One relation: the agent `{A}` is, say, the teacher of the patient `{B}`.
struct Role {
    /// Sentences that name the agent first.
    agent_first: [&'static str; 3],
    /// Sentences that name the patient first.
    patient_first: [&'static str; 3],
    /// Cue the patient `{B}`, ask for the agent.
    ask_agent: [&'static str; 3],
    ask_agent_paraphrase: [&'static str; 3],
    /// Cue the agent `{A}`, ask for the patient.
    ask_patient: [&'static str; 3],
    ask_patient_paraphrase: [&'static str; 3],
    /// Two steps up from `{X}`: the agent of X's agent.
    agent_of_agent: [&'static str; 3],
    /// Two steps down from `{X}`: the patient of X's patient.
    patient_of_patient: [&'static str; 3],
}

const ROLES: [Role; 5] = [
    Role {
        agent_first: [
            "{A} is the teacher of {B}.",
            "{A} teaches {B}.",
            "{A} is {B}'s teacher.",
        ],
        patient_first: [
            "{B} is the student of {A}.",
            "{B} is taught by {A}.",
            "{B}'s teacher is {A}.",
        ],
        ask_agent: [
            "Who is the teacher of {B}?",
            "Who teaches {B}?",
            "Who is {B}'s teacher?",
        ],
        ask_agent_paraphrase: [
            "Whose student is {B}?",
            "By whom is {B} taught?",
            "Name the teacher of {B}.",
        ],
        ask_patient: [
            "Whom does {A} teach?",
            "Who is the student of {A}?",
            "Who is {A}'s student?",
        ],
        ask_patient_paraphrase: [
            "Whose teacher is {A}?",
            "Who is taught by {A}?",
            "Name the student of {A}.",
        ],
        agent_of_agent: [
            "Who is the teacher of {X}'s teacher?",
            "Who teaches the teacher of {X}?",
            "Who is the teacher of the person who teaches {X}?",
        ],
        patient_of_patient: [
            "Who is the student of {X}'s student?",
            "Whom does the student of {X} teach?",
            "Who is taught by the person whom {X} teaches?",
        ],
    },
    Role {
        agent_first: [
            "{A} is the mother of {B}.",
            "{A} is {B}'s mother.",
            "{A} gave birth to {B}.",
        ],
        patient_first: [
            "{B} is the child of {A}.",
            "{B}'s mother is {A}.",
            "{B} was born to {A}.",
        ],
        ask_agent: [
            "Who is the mother of {B}?",
            "Who is {B}'s mother?",
            "Who gave birth to {B}?",
        ],
        ask_agent_paraphrase: [
            "Whose child is {B}?",
            "Name the mother of {B}.",
            "To whom was {B} born?",
        ],
        ask_patient: [
            "Who is the child of {A}?",
            "Who is {A}'s child?",
            "Whose mother is {A}?",
        ],
        ask_patient_paraphrase: [
            "Name the child of {A}.",
            "Who was born to {A}?",
            "To whom did {A} give birth?",
        ],
        agent_of_agent: [
            "Who is the mother of {X}'s mother?",
            "Who is the mother of the mother of {X}?",
            "Who gave birth to {X}'s mother?",
        ],
        patient_of_patient: [
            "Who is the child of {X}'s child?",
            "Who is the child of the child of {X}?",
            "Who was born to {X}'s child?",
        ],
    },
    Role {
        agent_first: [
            "{A} is the father of {B}.",
            "{A} is {B}'s father.",
            "{A} is the proud father of {B}.",
        ],
        patient_first: [
            "{B} is the child of {A}.",
            "{B}'s father is {A}.",
            "{B} is the son of {A}.",
        ],
        ask_agent: [
            "Who is the father of {B}?",
            "Who is {B}'s father?",
            "Whose son is {B}?",
        ],
        ask_agent_paraphrase: [
            "Whose child is {B}?",
            "Name the father of {B}.",
            "Who is the parent of {B}?",
        ],
        ask_patient: [
            "Who is the child of {A}?",
            "Who is {A}'s child?",
            "Whose father is {A}?",
        ],
        ask_patient_paraphrase: [
            "Name the child of {A}.",
            "Who is the son of {A}?",
            "Of whom is {A} the father?",
        ],
        agent_of_agent: [
            "Who is the father of {X}'s father?",
            "Who is the father of the father of {X}?",
            "Whose son is {X}'s father?",
        ],
        patient_of_patient: [
            "Who is the child of {X}'s child?",
            "Who is the child of the child of {X}?",
            "Who is the son of {X}'s son?",
        ],
    },
    Role {
        agent_first: [
            "{A} employs {B}.",
            "{A} is the employer of {B}.",
            "{A} is {B}'s employer.",
        ],
        patient_first: [
            "{B} works for {A}.",
            "{B} is employed by {A}.",
            "{B}'s employer is {A}.",
        ],
        ask_agent: [
            "Who employs {B}?",
            "Who is {B}'s employer?",
            "Who is the employer of {B}?",
        ],
        ask_agent_paraphrase: [
            "For whom does {B} work?",
            "Name the employer of {B}.",
            "By whom is {B} employed?",
        ],
        ask_patient: [
            "Whom does {A} employ?",
            "Who is {A}'s employee?",
            "Who works for {A}?",
        ],
        ask_patient_paraphrase: [
            "Who is employed by {A}?",
            "Name the employee of {A}.",
            "Whose employer is {A}?",
        ],
        agent_of_agent: [
            "Who employs {X}'s employer?",
            "Who is the employer of {X}'s employer?",
            "For whom does {X}'s employer work?",
        ],
        patient_of_patient: [
            "Whom does {X}'s employee employ?",
            "Who works for the employee of {X}?",
            "Who is the employee of {X}'s employee?",
        ],
    },
    Role {
        agent_first: [
            "{A} coaches {B}.",
            "{A} is the coach of {B}.",
            "{A} is {B}'s coach.",
        ],
        patient_first: [
            "{B} is coached by {A}.",
            "{B} trains under {A}.",
            "{B}'s coach is {A}.",
        ],
        ask_agent: [
            "Who coaches {B}?",
            "Who is {B}'s coach?",
            "Who is the coach of {B}?",
        ],
        ask_agent_paraphrase: [
            "Under whom does {B} train?",
            "By whom is {B} coached?",
            "Name the coach of {B}.",
        ],
        ask_patient: [
            "Whom does {A} coach?",
            "Who trains under {A}?",
            "Who is coached by {A}?",
        ],
        ask_patient_paraphrase: [
            "Whose coach is {A}?",
            "Name the person whom {A} coaches.",
            "Who is {A} the coach of?",
        ],
        agent_of_agent: [
            "Who coaches {X}'s coach?",
            "Who is the coach of {X}'s coach?",
            "Under whom does {X}'s coach train?",
        ],
        patient_of_patient: [
            "Who trains under the person who trains under {X}?",
            "Whom does the person coached by {X} coach?",
            "Who is coached by the one whom {X} coaches?",
        ],
    },
];

const ROLE_INTRO: [&str; 4] = [
    "Four people from one village are described here.",
    "This is about four people who know each other.",
    "The following is known about four people in a small town.",
    "Here are some facts about four people.",
];

fn roles(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
    let role = rng.pick_ref(&ROLES);
    let people = [w.name(rng)?, w.name(rng)?, w.name(rng)?, w.name(rng)?];
    // Fact i: people[i] is the agent of people[i + 1], stated agent first or patient first.
    let agent_first: Vec<bool> = (0..3).map(|_| rng.coin()).collect();
    let facts = (0..3)
        .map(|i| {
            let templates = if agent_first[i] {
                &role.agent_first
            } else {
                &role.patient_first
            };
            fill(
                rng.pick(templates),
                &[("A", &people[i]), ("B", &people[i + 1])],
            )
        })
        .collect();
    let context = context(rng.pick(&ROLE_INTRO).to_string(), facts, rng);

    // Wrong answers: the others of the four, never the cue, then a fresh name.
    let others = |rng: &mut Rng, answer: &str, cue: &str| {
        let rest: Vec<String> = people
            .iter()
            .filter(|p| *p != answer && *p != cue)
            .cloned()
            .collect();
        rng.shuffled(&rest)
    };
    // Fact i asked from its first-mentioned person (forward) or from the other one (reversed).
    let ask = |rng: &mut Rng, kind, i: usize, forward: bool, paraphrase: bool| {
        let (a, b) = (&people[i], &people[i + 1]);
        let asks_patient = agent_first[i] == forward;
        let templates = match (asks_patient, paraphrase) {
            (true, false) => &role.ask_patient,
            (true, true) => &role.ask_patient_paraphrase,
            (false, false) => &role.ask_agent,
            (false, true) => &role.ask_agent_paraphrase,
        };
        let (answer, cue) = if asks_patient { (b, a) } else { (a, b) };
        let wrong = others(rng, answer, cue);
        Draft::new(
            kind,
            fill(rng.pick(templates), &[("A", a), ("B", b)]),
            answer,
            wrong,
            Fill::Name,
        )
    };
    let direct_facts = &rng.shuffled(&[0, 1, 2])[..2];
    // The reversal asks one of the facts also asked forward, so the two directions can be compared.
    let (para_fact, rev_fact) = (rng.pick(direct_facts), rng.pick(direct_facts));
    let paraphrase = ask(rng, Paraphrase, para_fact, true, true);
    let reversal = ask(rng, Reversal, rev_fact, false, false);
    let start = rng.below(2);
    let implication = if rng.coin() {
        let (answer, cue) = (&people[start], &people[start + 2]);
        let qn = fill(rng.pick(&role.agent_of_agent), &[("X", cue)]);
        Draft::new(
            Implication,
            qn,
            answer,
            others(rng, answer, cue),
            Fill::Name,
        )
    } else {
        let (answer, cue) = (&people[start + 2], &people[start]);
        let qn = fill(rng.pick(&role.patient_of_patient), &[("X", cue)]);
        Draft::new(
            Implication,
            qn,
            answer,
            others(rng, answer, cue),
            Fill::Name,
        )
    };
    let mut drafts: Vec<Draft> = direct_facts
        .iter()
        .map(|&i| ask(rng, Direct, i, true, false))
        .collect();
    drafts.extend([paraphrase, reversal, implication]);
    Ok(Parts {
        context,
        drafts,
        terms: people.to_vec(),
        values: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    use super::*;
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
    fn the_blocklist_matches_the_inventory() {
        assert!(
            BLOCKLIST.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        let space: HashSet<String> = INVENTORY.all_words().into_iter().collect();
        assert!(space.len() > 300_000, "{}", space.len());
        for w in BLOCKLIST {
            assert!(space.contains(*w), "{w} cannot be spelled; stale entry");
            assert!(!allowed(w));
        }
        for w in ["blank", "drink", "stomp", "trump"] {
            assert!(!allowed(w), "{w}");
        }
        assert!(
            !allowed("nigomp") && !allowed("titub"),
            "offensive spellings"
        );
        assert!(allowed("glomp") && allowed("dovask"));
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
