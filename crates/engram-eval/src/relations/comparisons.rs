//! comparisons: a > b > c (a chain, for transitivity) and d > e (a separate pair, asked both ways).
//!
//! An ordering is transitive, so "what are the a more X than?" has two answers (b and c). Only the middle of
//! the chain has one element on each side, so the chain fact asked directly is the one stated with b first;
//! the pair, related to nothing else, is asked forward and reversed.

use super::lexicon::ItemWords;
use super::questions::{Draft, Fill, Parts, context, fill};
use super::rng::Rng;
use engram_inject::QuestionKind::{Direct, Implication, Paraphrase, Reversal};

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

pub(super) fn comparisons(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
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
