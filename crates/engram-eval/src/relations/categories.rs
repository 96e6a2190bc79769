//! categories: a chain of kinds for a two-step syllogism, and a separate pair p ⊂ q asked both ways.
//!
//! Variant A: t ⊂ g ⊂ y (all t are g, all g are y). Variant B: Z is a t, t ⊂ g, and W is a p. Being a kind of
//! something is transitive, so only a kind with a single kind above it is asked forward.

use super::lexicon::ItemWords;
use super::questions::{Draft, Fill, Parts, context, fill};
use super::rng::Rng;
use engram_inject::QuestionKind::{Direct, Implication, Paraphrase, Reversal};

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

pub(super) fn categories(rng: &mut Rng, w: &mut ItemWords) -> Result<Parts, String> {
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
