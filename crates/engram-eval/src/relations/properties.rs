//! properties: g has two properties and f is a kind of g (so f inherits them); y has two others.
//!
//! Only y's properties are asked in reverse: "which creatures live in caves?" has two answers when caves are
//! g's (g and f).

use super::lexicon::ItemWords;
use super::questions::{Draft, Fill, Parts, context, fill};
use super::rng::Rng;
use engram_inject::QuestionKind::{Direct, Implication, Paraphrase, Reversal};

/// A kind of property: its phrase (`{v}` the value) and the questions that ask for it.
pub(super) struct Property {
    phrase: &'static str,
    pub(super) values: &'static [&'static str],
    direct: [&'static str; 3],
    paraphrase: [&'static str; 3],
}

pub(super) const PROPERTIES: [Property; 4] = [
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

pub(super) fn properties(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
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
