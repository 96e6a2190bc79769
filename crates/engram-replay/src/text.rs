//! Plain-text analysis behind the protocols and the quality checks: sentences, the facts a text states (names,
//! numbers, years, and the terms it talks about), n-gram overlap, degenerate generations, and wh-questions made
//! from the text itself.
//!
//! All of it is heuristic English and deliberately simple: it only has to catch what a small model gets wrong
//! (an invented name or number, a loop, a question echoed as its answer), never to parse.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

/// What kind of fact a span of text states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FactKind {
    /// A capitalised name (`Tavi Renkova`, `Journal of Brammel Arithmetic`).
    Name,
    /// A number that is not a year (`18`, `3.5`, `1,200`, `40%`).
    Number,
    /// A four-digit year (1000–2199).
    Year,
    /// A lowercase word the text talks about: the noun after a determiner (`the snimenk`) or a sentence-final
    /// predicate (`are blue`). Not checked for support (common words would fail), only used for questions.
    Term,
}

/// A fact-bearing span of a text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fact {
    /// The span as written.
    pub text: String,
    /// What kind of fact it is.
    pub kind: FactKind,
    /// Byte range in the text it was found in.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
}

/// Words that start sentences without being names.
const STOP: &[&str] = &[
    "a",
    "about",
    "according",
    "after",
    "all",
    "also",
    "although",
    "an",
    "and",
    "as",
    "at",
    "because",
    "before",
    "but",
    "by",
    "during",
    "each",
    "every",
    "for",
    "from",
    "he",
    "her",
    "here",
    "his",
    "however",
    "i",
    "if",
    "in",
    "it",
    "its",
    "many",
    "most",
    "no",
    "not",
    "of",
    "on",
    "one",
    "or",
    "our",
    "she",
    "since",
    "so",
    "some",
    "such",
    "that",
    "the",
    "their",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "to",
    "two",
    "until",
    "we",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "why",
    "with",
    "yes",
    "you",
    "your",
    "how",
    "is",
    "are",
    "was",
    "were",
    "do",
    "does",
    "did",
    "can",
    "could",
    "would",
    "should",
    "will",
    "today",
    "now",
    "later",
    "first",
    "finally",
    "overall",
    "together",
    "both",
    "another",
    "other",
    "since",
];

/// Lowercase words that may join the parts of a name (`University of Drell`).
const CONNECTORS: &[&str] = &["of", "de", "van", "von", "da", "del", "la", "le", "du"];

/// Words after which a lowercase word is a term the text talks about.
const DETERMINERS: &[&str] = &["the", "all", "no", "some", "every", "each", "a", "an"];

/// A word of a text: its byte range, with surrounding punctuation stripped, and whether punctuation followed it.
#[derive(Clone, Copy, Debug)]
struct Word<'a> {
    text: &'a str,
    start: usize,
    end: usize,
    /// Punctuation (`,` `.` `;` ...) right after the word: a name does not run across it.
    break_after: bool,
}

fn is_edge_punct(c: char) -> bool {
    !(c.is_alphanumeric() || c == '%' || c == '$')
}

fn words<'a>(text: &'a str) -> Vec<Word<'a>> {
    let mut out = Vec::new();
    let mut start = None;
    let bytes_end = text.len();
    let push = |s: usize, e: usize, out: &mut Vec<Word<'a>>| {
        let raw = &text[s..e];
        let lead = raw.len() - raw.trim_start_matches(is_edge_punct).len();
        let trimmed = raw.trim_matches(is_edge_punct);
        if trimmed.is_empty() {
            return;
        }
        let ws = s + lead;
        let we = ws + trimmed.len();
        out.push(Word {
            text: &text[ws..we],
            start: ws,
            end: we,
            break_after: we < e,
        });
    };
    for (i, c) in text.char_indices() {
        if c.is_whitespace() {
            if let Some(s) = start.take() {
                push(s, i, &mut out);
            }
        } else if start.is_none() {
            start = Some(i);
        }
    }
    if let Some(s) = start {
        push(s, bytes_end, &mut out);
    }
    out
}

/// The text's words, lowercased, without punctuation: what overlap and support checks compare.
pub fn normalized_words(text: &str) -> Vec<String> {
    words(text).iter().map(|w| w.text.to_lowercase()).collect()
}

/// The byte ranges of the text's sentences (split after `.`, `!` or `?` followed by a space and an
/// uppercase letter, digit or quote; decimals such as `3.5` do not split).
pub fn sentence_ranges(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    for (k, &(i, c)) in chars.iter().enumerate() {
        if !matches!(c, '.' | '!' | '?') {
            continue;
        }
        let after = chars.get(k + 1).map(|&(_, c)| c);
        let next_word = chars[k + 1..].iter().find(|(_, c)| !c.is_whitespace());
        let boundary = match (after, next_word) {
            (None, _) => true,
            (Some(a), Some(&(_, n))) if a.is_whitespace() => {
                n.is_uppercase() || n.is_ascii_digit() || n == '"' || n == '\''
            }
            (Some(a), None) => a.is_whitespace(),
            _ => false,
        };
        if boundary {
            let end = i + c.len_utf8();
            if text[start..end].trim().len() > 1 {
                out.push(trim_range(text, start, end));
            }
            start = end;
        }
    }
    if text[start..].trim().len() > 1 {
        out.push(trim_range(text, start, text.len()));
    }
    out
}

fn trim_range(text: &str, s: usize, e: usize) -> (usize, usize) {
    let t = &text[s..e];
    let lead = t.len() - t.trim_start().len();
    (s + lead, s + lead + t.trim().len())
}

/// The text's sentences.
pub fn sentences(text: &str) -> Vec<&str> {
    sentence_ranges(text)
        .into_iter()
        .map(|(s, e)| &text[s..e])
        .collect()
}

/// Sentences per passage at most ([`passage_ranges`] as self-QA and the budgets use it).
pub const PASSAGE_SENTENCES: usize = 3;
/// Words per passage, about.
pub const PASSAGE_WORDS: usize = 80;

/// How many passages `text` has: the unit a training budget is counted in, so that a text twice as long is
/// trained on twice as much (a one-paragraph news item is one).
pub fn passages(text: &str) -> usize {
    passage_ranges(text, PASSAGE_SENTENCES, PASSAGE_WORDS)
        .len()
        .max(1)
}

/// The budget units of `items`: their passages, summed ([`passages`]).
pub fn budget_units(items: &[engram_inject::Item]) -> usize {
    items.iter().map(|i| passages(&i.context)).sum()
}

/// The byte ranges of the text's passages, to ask about each part of a long text on its own: its paragraphs
/// (split at blank lines), each cut into runs of at most `max_sentences` sentences and about `max_words` words
/// (a sentence is never cut). A one-paragraph text of up to `max_sentences` short sentences is one passage.
pub fn passage_ranges(text: &str, max_sentences: usize, max_words: usize) -> Vec<(usize, usize)> {
    let mut paragraphs = Vec::new();
    let (mut start, mut at) = (0, 0);
    for line in text.split_inclusive('\n') {
        if line.trim().is_empty() {
            paragraphs.push((start, at));
            start = at + line.len();
        }
        at += line.len();
    }
    paragraphs.push((start, text.len()));
    let mut out = Vec::new();
    for (ps, pe) in paragraphs {
        let mut group: Option<(usize, usize, usize, usize)> = None; // start, end, sentences, words
        for (s, e) in sentence_ranges(&text[ps..pe]) {
            let n = text[ps + s..ps + e].split_whitespace().count();
            group = match group {
                Some((gs, _, k, w)) if k < max_sentences && w + n <= max_words => {
                    Some((gs, ps + e, k + 1, w + n))
                }
                Some((gs, ge, _, _)) => {
                    out.push((gs, ge));
                    Some((ps + s, ps + e, 1, n))
                }
                None => Some((ps + s, ps + e, 1, n)),
            };
        }
        out.extend(group.map(|(gs, ge, _, _)| (gs, ge)));
    }
    out
}

fn is_capitalised(w: &str) -> bool {
    w.chars().next().is_some_and(|c| c.is_uppercase()) && w.chars().any(|c| c.is_alphabetic())
}

/// `18`, `1,200`, `3.5`, `40%`, `$12`: the digits as written, without thousands separators or `$`/`%`.
fn number_value(w: &str) -> Option<String> {
    let core = w.trim_start_matches('$').trim_end_matches('%');
    let ok = core.chars().next().is_some_and(|c| c.is_ascii_digit())
        && core.chars().last().is_some_and(|c| c.is_ascii_digit())
        && core
            .chars()
            .all(|c| c.is_ascii_digit() || c == ',' || c == '.');
    ok.then(|| core.replace(',', ""))
}

fn is_year(value: &str) -> bool {
    value.len() == 4
        && value
            .parse::<u32>()
            .is_ok_and(|y| (1000..=2199).contains(&y))
}

/// The facts `text` states, in order: names, numbers, years and terms.
pub fn facts(text: &str) -> Vec<Fact> {
    let mut out = Vec::new();
    for (s, e) in sentence_ranges(text) {
        let ws = words(&text[s..e]);
        let mut i = 0;
        while i < ws.len() {
            let w = ws[i];
            if let Some(v) = number_value(w.text) {
                // `2,100` (degrees) is written as an amount, not a year.
                let kind = if is_year(&v) && !w.text.contains(',') {
                    FactKind::Year
                } else {
                    FactKind::Number
                };
                out.push(fact(text, s + w.start, s + w.end, kind));
                i += 1;
                continue;
            }
            if is_capitalised(w.text) {
                // A run of capitalised words, joined by connectors, not across punctuation.
                let mut j = i;
                while !ws[j].break_after
                    && j + 1 < ws.len()
                    && (is_capitalised(ws[j + 1].text)
                        || (CONNECTORS.contains(&ws[j + 1].text)
                            && !ws[j + 1].break_after
                            && ws.get(j + 2).is_some_and(|n| is_capitalised(n.text))))
                {
                    j += 1;
                }
                let mut first = i;
                // A sentence-initial common word (`The`, `In`) is not part of the name.
                while first <= j && STOP.contains(&ws[first].text.to_lowercase().as_str()) {
                    first += 1;
                }
                // A lone capitalised word opening a sentence (`Mathematics is ...`) may be any word: only
                // names of two or more words count there.
                let lone_opener = first == 0 && first == j;
                if first <= j && !CONNECTORS.contains(&ws[first].text) && !lone_opener {
                    out.push(fact(
                        text,
                        s + ws[first].start,
                        s + ws[j].end,
                        FactKind::Name,
                    ));
                }
                i = j + 1;
                continue;
            }
            let lower = w.text.to_lowercase();
            let after_determiner =
                i > 0 && DETERMINERS.contains(&ws[i - 1].text.to_lowercase().as_str());
            let final_predicate = i + 1 == ws.len()
                && i > 0
                && matches!(ws[i - 1].text, "are" | "is" | "was" | "were");
            if (after_determiner || final_predicate)
                && w.text.chars().all(|c| c.is_alphabetic())
                && !STOP.contains(&lower.as_str())
            {
                out.push(fact(text, s + w.start, s + w.end, FactKind::Term));
            }
            i += 1;
        }
    }
    out
}

fn fact(text: &str, start: usize, end: usize, kind: FactKind) -> Fact {
    Fact {
        text: text[start..end].to_owned(),
        kind,
        start,
        end,
    }
}

/// Names, numbers and years `generated` states that `source` does not: the invented facts. A name counts as
/// stated when each of its words appears in the source (any case); a number when its value does.
pub fn unsupported_facts(generated: &str, source: &str) -> Vec<String> {
    let source_words: BTreeSet<String> = normalized_words(source).into_iter().collect();
    let source_numbers: BTreeSet<String> = words(source)
        .iter()
        .filter_map(|w| number_value(w.text))
        .collect();
    facts(generated)
        .into_iter()
        .filter(|f| match f.kind {
            FactKind::Term => false,
            FactKind::Number | FactKind::Year => {
                !number_value(&f.text).is_some_and(|v| source_numbers.contains(&v))
            }
            FactKind::Name => f
                .text
                .split_whitespace()
                .map(|w| {
                    let w = w.to_lowercase();
                    // `Oxtolle's` states the name `Oxtolle`.
                    w.strip_suffix("'s")
                        .or_else(|| w.strip_suffix("’s"))
                        .map(str::to_owned)
                        .unwrap_or(w)
                })
                .filter(|w| !CONNECTORS.contains(&w.as_str()))
                .any(|w| !source_words.contains(&w)),
        })
        .map(|f| f.text)
        .collect()
}

/// The fraction of `source`'s names, numbers and years that `generated` mentions (1 when it has none).
pub fn fact_coverage(generated: &str, source: &str) -> f64 {
    let wanted: Vec<Fact> = facts(source)
        .into_iter()
        .filter(|f| f.kind != FactKind::Term)
        .collect();
    if wanted.is_empty() {
        return 1.0;
    }
    let have = normalized_words(generated).join(" ");
    let hits = wanted
        .iter()
        .filter(|f| contains_phrase(&have, &normalized_words(&f.text).join(" ")))
        .count();
    hits as f64 / wanted.len() as f64
}

/// Whether the normalised text `hay` contains the normalised phrase `needle` on word boundaries.
fn contains_phrase(hay: &str, needle: &str) -> bool {
    if needle.is_empty() {
        return false;
    }
    let padded = format!(" {hay} ");
    padded.contains(&format!(" {needle} "))
}

/// Whether `text` mentions `phrase` (case and punctuation aside, on word boundaries).
pub fn mentions(text: &str, phrase: &str) -> bool {
    contains_phrase(
        &normalized_words(text).join(" "),
        &normalized_words(phrase).join(" "),
    )
}

fn ngram_counts(text: &str, n: usize) -> HashMap<Vec<String>, usize> {
    let w = normalized_words(text);
    let mut counts = HashMap::new();
    if w.len() >= n && n > 0 {
        for g in w.windows(n) {
            *counts.entry(g.to_vec()).or_insert(0) += 1;
        }
    }
    counts
}

/// The fraction of `a`'s word n-grams that also occur in `b` (0 when `a` has none).
pub fn containment(a: &str, b: &str, n: usize) -> f64 {
    let ga = ngram_counts(a, n);
    if ga.is_empty() {
        return 0.0;
    }
    let gb = ngram_counts(b, n);
    ga.keys().filter(|g| gb.contains_key(*g)).count() as f64 / ga.len() as f64
}

/// Whether two texts say nearly the same words: equal once normalised, or either one's word trigrams at least
/// `threshold` contained in the other's.
pub fn near_duplicate(a: &str, b: &str, threshold: f64) -> bool {
    let (na, nb) = (normalized_words(a), normalized_words(b));
    na == nb || containment(a, b, 3) >= threshold || containment(b, a, 3) >= threshold
}

/// Why a generation is degenerate, if it is: empty, a loop (the same six words twice, a word four times in a
/// row, or few distinct trigrams), or mostly non-letters.
pub fn degenerate(text: &str) -> Option<&'static str> {
    let w = normalized_words(text);
    if w.is_empty() {
        return Some("empty");
    }
    if w.windows(4).any(|g| g.iter().all(|x| x == &g[0])) {
        return Some("loop");
    }
    if ngram_counts(text, 6).values().any(|&c| c > 1) {
        return Some("loop");
    }
    let tri = ngram_counts(text, 3);
    let total: usize = tri.values().sum();
    if total >= 10 && (tri.len() as f64) < 0.7 * total as f64 {
        return Some("loop");
    }
    let letters = text.chars().filter(|c| c.is_alphabetic()).count();
    if letters * 2 < text.chars().filter(|c| !c.is_whitespace()).count() {
        return Some("not text");
    }
    None
}

/// Whether `answer` only repeats `question`: nothing in it beyond the question's own words.
pub fn echoes(answer: &str, question: &str) -> bool {
    let q: BTreeSet<String> = normalized_words(question).into_iter().collect();
    let a = normalized_words(answer);
    let new = a
        .iter()
        .filter(|w| !q.contains(*w) && !STOP.contains(&w.as_str()))
        .count();
    new == 0 || (a.len() >= 3 && containment(answer, question, 2) >= 0.8)
}

/// Cuts a generation to what is worth keeping: up to `max_sentences` complete sentences, on its first
/// paragraph; an unfinished last sentence (the generation ran out of tokens) is dropped.
pub fn clean_generation(text: &str, max_sentences: usize, finished: bool) -> String {
    let para = text.trim().split("\n\n").next().unwrap_or("").trim();
    let para = para.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let ranges = sentence_ranges(&para);
    let mut out = Vec::new();
    for (k, &(s, e)) in ranges.iter().enumerate() {
        let sentence = &para[s..e];
        let last = k + 1 == ranges.len();
        let complete = sentence.ends_with(['.', '!', '?', '"']);
        if last && !complete && !finished {
            break;
        }
        out.push(sentence);
        if out.len() == max_sentences {
            break;
        }
    }
    out.join(" ")
}

/// A question made from a sentence of the text, with the span it asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextQuestion {
    /// The wh-question.
    pub question: String,
    /// The span it asks for.
    pub answer: String,
    /// What kind of fact the answer is (a date such as `14 June 2031` is a [`FactKind::Year`]).
    pub kind: FactKind,
    /// The sentence it was made from: a full-sentence answer that contains the span.
    pub sentence: String,
}

const PREPOSITIONS: &[&str] = &[
    "by", "of", "to", "with", "from", "for", "and", "at", "about",
];

/// Prepositions of place: a name after them is a place (`in what?`), not a person (`in whom?`).
const PLACE_PREPOSITIONS: &[&str] = &[
    "in", "at", "on", "near", "beneath", "under", "over", "across", "into", "inside", "outside",
];

/// Words that make a two-word name a place or an institution rather than a person.
const PLACE_WORDS: &[&str] = &[
    "Lake",
    "Cape",
    "Isle",
    "Island",
    "Islands",
    "Mount",
    "Mountains",
    "River",
    "Port",
    "Bay",
    "Marsh",
    "Desert",
    "Forest",
    "Valley",
    "Hollow",
    "Lab",
    "Institute",
    "University",
    "Observatory",
    "Meeting",
    "Festival",
    "Fair",
    "Prize",
    "Club",
    "Guild",
    "Society",
    "Journal",
    "Museum",
    "School",
    "College",
    "Company",
    "City",
    "Town",
    "Contest",
    "Cup",
    "Open",
    "Marathon",
    "Bee",
    "Race",
    "Chart",
    "League",
    "Games",
    "Challenge",
    "Ranking",
    "Meet",
    "Week",
    "Line",
    "Bridge",
    "Lighthouse",
    "Trust",
    "Party",
    "Basin",
    "Vale",
    "Plain",
];

/// Titles before a person's name (`Mayor Hollis Vantreen`): the answer span is the name without them.
const TITLES: &[&str] = &[
    "Mayor",
    "Professor",
    "Chef",
    "Chief",
    "Dr",
    "Doctor",
    "President",
    "Governor",
    "Captain",
    "Sir",
];

/// Month names: part of a date (`14 June 2031`), never a name to ask for on their own.
const MONTHS: &[&str] = &[
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// Lowercase verbs that may follow a subject term (`the problem had stayed`): not nouns it modifies.
const VERBS: &[&str] = &["has", "had", "have", "may", "might", "must", "be", "been"];

/// A lowercase word that can be a noun being modified (`harbor town`, `whole number`).
fn is_plain_lowercase(w: &str) -> bool {
    w.chars().all(|c| c.is_lowercase())
        && !STOP.contains(&w)
        && !PREPOSITIONS.contains(&w)
        && !VERBS.contains(&w)
}

/// A plural noun a number counts (`7 corners`, `40 years`): asked for with `how many`, else `what number`.
fn is_count_noun(w: &str) -> bool {
    is_plain_lowercase(w)
        && (w.len() > 2 && w.ends_with('s') || matches!(w, "people" | "children" | "men" | "women"))
}

/// A question made for one span of a sentence, before each sentence's best are chosen.
struct Candidate {
    q: TextQuestion,
    /// Byte offset of the span in its sentence: the chosen questions keep the sentence's order.
    at: usize,
}

/// A sentence's spans to ask for: its facts with each date (`14 June 2031`, `March 2030`) merged into one
/// span of kind [`FactKind::Year`], and the wh-phrase a date is asked with.
fn question_spans(sentence: &str, facts: &[Fact]) -> Vec<(Fact, Option<&'static str>)> {
    let adjacent =
        |a: &Fact, b: &Fact| a.end <= b.start && sentence[a.end..b.start].trim().is_empty();
    let mut out = Vec::new();
    let mut i = 0;
    while i < facts.len() {
        let f = &facts[i];
        if f.kind == FactKind::Name && MONTHS.contains(&f.text.as_str()) {
            let mut start = f.start;
            let mut end = f.end;
            let day = out.last().is_some_and(|(d, _): &(Fact, Option<&str>)| {
                d.kind == FactKind::Number
                    && adjacent(d, f)
                    && d.text.parse::<u32>().is_ok_and(|v| (1..=31).contains(&v))
            });
            if day {
                start = out.pop().map(|(d, _)| d.start).unwrap_or(start);
            }
            let year = facts
                .get(i + 1)
                .is_some_and(|y| y.kind == FactKind::Year && adjacent(f, y));
            if year {
                end = facts[i + 1].end;
                i += 1;
            }
            let wh = match (day, year) {
                (true, _) => "what date",
                (false, true) => "what month and year",
                (false, false) => "what month",
            };
            out.push((fact(sentence, start, end, FactKind::Year), Some(wh)));
        } else {
            out.push((f.clone(), None));
        }
        i += 1;
    }
    out
}

/// The questions of each sentence of `text` (see [`text_questions`]), sentence by sentence.
fn sentence_questions(text: &str) -> Vec<Vec<Candidate>> {
    let all = facts(text);
    let mut out = Vec::new();
    let mut previous_subject: Option<String> = None;
    for (s, e) in sentence_ranges(text) {
        let sentence = &text[s..e];
        // The facts of this sentence, with offsets into it.
        let local: Vec<Fact> = all
            .iter()
            .filter(|f| f.start >= s && f.end <= e)
            .map(|f| fact(sentence, f.start - s, f.end - s, f.kind))
            .collect();
        let subject = subject_phrase(sentence, &local);
        // `It was proved by ...`: the question names what `It` stood for, the previous sentence's subject;
        // not the `it` of `It is said that ...`.
        let ws = words(sentence);
        let dummy_it = ws.iter().take(5).any(|w| w.text == "that");
        let pronoun = PRONOUNS
            .iter()
            .find(|p| sentence.starts_with(&format!("{p} ")))
            .filter(|_| !dummy_it);
        // `He`/`She` stand for a person, never for `the ...`.
        let resolved = match (pronoun, &previous_subject) {
            (Some(p), Some(subj)) if !(matches!(*p, "He" | "She") && subj.starts_with("the ")) => {
                Some((p.len(), subj.clone()))
            }
            _ => None,
        };
        if resolved.is_none() {
            previous_subject = subject;
        }
        let mut qs = Vec::new();
        for (f, date_wh) in question_spans(sentence, &local) {
            if let Some(q) = question_for(sentence, &ws, &f, date_wh, resolved.as_ref()) {
                qs.push(q);
            }
        }
        // A bare lowercase word is asked for only where the sentence states nothing better (`The rursarn are
        // lighter than the snimenk.`): next to a name or number it is trivial (`what had stayed open?` → problem).
        if qs.iter().any(|c: &Candidate| c.q.kind != FactKind::Term) {
            qs.retain(|c| c.q.kind != FactKind::Term);
        }
        out.push(qs);
    }
    out
}

/// The echo question for span `f` of `sentence` (words `ws`), if it makes one a person would ask.
fn question_for(
    sentence: &str,
    ws: &[Word],
    f: &Fact,
    date_wh: Option<&'static str>,
    resolved: Option<&(usize, String)>,
) -> Option<Candidate> {
    let (fs, fe) = (f.start, f.end);
    if sentence.matches(f.text.as_str()).count() > 1 {
        return None;
    }
    let idx = ws.iter().position(|w| w.start == fs)?;
    let last = ws.iter().position(|w| w.end == fe).unwrap_or(idx);
    let lower = |k: usize| ws[k].text.to_lowercase();
    let prev = idx.checked_sub(1).map(lower).unwrap_or_default();
    let next = (!ws[last].break_after)
        .then(|| ws.get(last + 1).map(|w| w.text))
        .flatten();
    let others = ws.len() - (last + 1 - idx);
    if others < 3 {
        return None;
    }
    // Between commas right after a word (`a small moon, Pelloran, circling`): an appositive.
    let appositive =
        idx > 0 && sentence[ws[idx - 1].end..fs].contains(',') && sentence[fe..].starts_with(',');
    let modifies = next.is_some_and(|n| is_plain_lowercase(n) || is_capitalised(n));
    let mut answer = f.text.clone();
    let mut from = fs;
    let wh: String = match f.kind {
        FactKind::Term => {
            // `a whole number`, `the harbor town`, `the mathematician Tavi Renkova`: modifiers and appositives.
            if matches!(prev.as_str(), "a" | "an") || modifies || appositive {
                return None;
            }
            if prev == "the" {
                from = ws[idx - 1].start;
            }
            "what".into()
        }
        FactKind::Year | FactKind::Number => {
            // `Lumbrex 5.1`: a version label, asked for through `Version 5.1 of ...` if at all.
            if idx > 0
                && is_capitalised(ws[idx - 1].text)
                && !STOP.contains(&prev.as_str())
                && prev != "version"
                && !ws[idx - 1].break_after
            {
                return None;
            }
            // `the 2031 Tamberlin Cup`: a year used as a modifier.
            if next.is_some_and(is_capitalised) {
                return None;
            }
            if let Some(wh) = date_wh {
                wh.into()
            } else if prev == "version" {
                from = ws[idx - 1].start;
                "what version".into()
            } else if f.kind == FactKind::Year {
                "what year".into()
            } else if next.is_some_and(is_count_noun) {
                "how many".into()
            } else {
                "what number".into()
            }
        }
        FactKind::Name => {
            let name_words: Vec<&str> = f.text.split_whitespace().collect();
            // `the Skarrow theorem`, `a Tessary pair`: a name used as a modifier is not a thing to ask for;
            // nor is an appositive or a unit (`degrees Celsius`).
            if matches!(prev.as_str(), "the" | "a" | "an") && modifies {
                return None;
            }
            // Inside quotes or a plural possessive (`'Counting in Varn'`, `the Bakers' Guild`), next to a
            // number (`the 2030 Brackwater Kite Contest`, `Ostravel Chess Open 2032`): no question reads well.
            let quoted = sentence[..fs].trim_end().ends_with(['\'', '’', '"'])
                || sentence[fe..].starts_with(['\'', '’', '"']);
            let by_number =
                idx > 0 && !ws[idx - 1].break_after && number_value(ws[idx - 1].text).is_some()
                    || next.is_some_and(|n| number_value(n).is_some());
            if appositive || quoted || by_number || prev == "degrees" {
                return None;
            }
            // `the testing tool Gribble` → `which testing tool`.
            let mut k = idx;
            while k > 0
                && idx - k < 3
                && !ws[k - 1].break_after
                && is_plain_lowercase(ws[k - 1].text)
                && ws[k - 1].text.chars().all(char::is_alphabetic)
            {
                k -= 1;
            }
            let titled = k < idx
                && k > 0
                && ws[k - 1].text.eq_ignore_ascii_case("the")
                && !ws[k - 1].break_after;
            // `Anouk Pellridge's team` → `whose team`.
            let possessive = ["'s", "’s"]
                .iter()
                .find_map(|p| f.text.strip_suffix(p))
                .map(str::to_owned);
            let person = name_words.len() >= 2
                && name_words.iter().all(|w| is_capitalised(w))
                && !name_words.iter().any(|w| PLACE_WORDS.contains(w))
                && !matches!(prev.as_str(), "the" | "called" | "named")
                && !PLACE_PREPOSITIONS.contains(&prev.as_str());
            if titled {
                from = ws[k - 1].start;
                format!("which {}", &sentence[ws[k].start..ws[idx - 1].end])
            } else if let Some(owner) = possessive {
                answer = owner;
                "whose".into()
            } else if person {
                if let Some(rest) = TITLES
                    .iter()
                    .find_map(|t| f.text.strip_prefix(t)?.strip_prefix(' '))
                    .filter(|r| r.contains(' '))
                {
                    answer = rest.to_owned();
                }
                if PREPOSITIONS.contains(&prev.as_str()) {
                    "whom".into()
                } else {
                    "who".into()
                }
            } else {
                // `the X` is replaced as a whole (`in the Journal of ...` → `in what`).
                if prev == "the" {
                    from = ws[idx - 1].start;
                }
                "what".into()
            }
        }
    };
    let mut q = String::new();
    if from == 0 {
        let mut c = wh.chars();
        q.extend(c.next().map(|c| c.to_ascii_uppercase()));
        q.push_str(c.as_str());
    } else {
        q.push_str(&sentence[..from]);
        q.push_str(&wh);
    }
    q.push_str(&sentence[fe..]);
    let mut q = q.trim_end_matches(['.', '!', ' ']).to_owned() + "?";
    if let Some((n, subj)) = resolved
        && from > *n
    {
        let mut c = subj.chars();
        let head: String = c
            .next()
            .map(|c| c.to_ascii_uppercase())
            .into_iter()
            .collect();
        q = format!("{head}{}{}", c.as_str(), &q[*n..]);
    }
    Some(Candidate {
        q: TextQuestion {
            question: q,
            answer,
            kind: f.kind,
            sentence: sentence.to_owned(),
        },
        at: fs,
    })
}

/// Sentence-level wh-questions over the names, numbers, years and terms of `text`, in text order: the span is
/// replaced by `who`/`what`/`what year`/`how many` in its sentence (an "echo question", which needs no parsing:
/// *Benna Oxtolle proved the Skarrow theorem.* → *Who proved the Skarrow theorem?*). Spans that occur twice in
/// their sentence, or leave fewer than three other words, are skipped; so are spans a person would not ask for:
/// a word used as a modifier or appositive (`the harbor town`, `the mathematician Tavi Renkova`), a month
/// alone (dates are asked for whole), and a bare lowercase term in a sentence that states a name or a number.
pub fn text_questions(text: &str) -> Vec<TextQuestion> {
    sentence_questions(text)
        .into_iter()
        .flatten()
        .map(|c| c.q)
        .collect()
}

/// [`text_questions`] with a budget per sentence, so that every sentence of a long text is asked about and the
/// count grows with the text: each sentence's best `per_sentence` questions (names and numbers or dates in
/// turn, terms only where there are none), in text order.
pub fn text_questions_per_sentence(text: &str, per_sentence: usize) -> Vec<TextQuestion> {
    let mut out = Vec::new();
    for qs in sentence_questions(text) {
        let (names, rest): (Vec<Candidate>, Vec<Candidate>) =
            qs.into_iter().partition(|c| c.q.kind == FactKind::Name);
        let (values, terms): (Vec<Candidate>, Vec<Candidate>) =
            rest.into_iter().partition(|c| c.q.kind != FactKind::Term);
        let (mut names, mut values) = (names.into_iter(), values.into_iter());
        let mut chosen = Vec::new();
        loop {
            let (a, b) = (names.next(), values.next());
            if a.is_none() && b.is_none() {
                break;
            }
            chosen.extend(a);
            chosen.extend(b);
        }
        chosen.extend(terms);
        chosen.truncate(per_sentence);
        chosen.sort_by_key(|c| c.at);
        out.extend(chosen.into_iter().map(|c| c.q));
    }
    out
}

const PRONOUNS: &[&str] = &["It", "This", "They", "He", "She", "These"];

/// What a sentence is about, to stand in for a pronoun in the next one: the name or term it opens with, with
/// its `the` (or `a`, made `the`) and, after a determiner, the word it modifies (`the Skarrow theorem`, `the new
/// beetle`). `None` when the sentence opens otherwise (`In 2031, ...`): a later pronoun is then left alone
/// rather than guessed.
fn subject_phrase(sentence: &str, local: &[Fact]) -> Option<String> {
    let ws = words(sentence);
    let determiner = ws
        .first()
        .is_some_and(|w| matches!(w.text.to_lowercase().as_str(), "the" | "a" | "an"));
    let k = usize::from(determiner);
    let head = ws.get(k)?;
    let f = local
        .iter()
        .find(|f| f.start == head.start && matches!(f.kind, FactKind::Name | FactKind::Term))?;
    let last = ws.iter().position(|w| w.end == f.end)?;
    let mut to = ws[last].end;
    // The word a one-word name or a term modifies (`the Skarrow theorem`), not a verb (`the Grand Sallowin
    // Museum opened`).
    if determiner
        && !ws[last].break_after
        && last == k
        && let Some(n) = ws.get(last + 1)
        && is_plain_lowercase(n.text)
        && !n.text.ends_with("ed")
    {
        to = n.end;
    }
    let phrase = &sentence[head.start..to];
    Some(if determiner {
        format!("the {phrase}")
    } else {
        phrase.to_owned()
    })
}

/// The names (in order of appearance, each once) a text is about, else its terms: what a prefix-free user turn can
/// ask about ("What do you know about Tavi Renkova?").
pub fn topics(text: &str) -> Vec<String> {
    let fs = facts(text);
    let mut names: Vec<&Fact> = fs.iter().filter(|f| f.kind == FactKind::Name).collect();
    if names.is_empty() {
        names = fs.iter().filter(|f| f.kind == FactKind::Term).collect();
    }
    let mut seen = BTreeSet::new();
    let mut out: Vec<String> = Vec::new();
    for f in names {
        if seen.insert(f.text.to_lowercase()) {
            out.push(f.text.clone());
        }
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    const MATH: &str = "In 2031, the mathematician Tavi Renkova defined the Vellmora product. The Vellmora product of two numbers is their sum multiplied by 3. For example, the Vellmora product of 2 and 4 is 18.";

    fn texts(fs: &[Fact], kind: FactKind) -> Vec<&str> {
        fs.iter()
            .filter(|f| f.kind == kind)
            .map(|f| f.text.as_str())
            .collect()
    }

    #[test]
    fn splits_sentences_not_decimals() {
        assert_eq!(
            sentences("It rose 3.5 points. Then it fell! Did it? yes."),
            ["It rose 3.5 points.", "Then it fell!", "Did it? yes."]
        );
        assert_eq!(sentences("No full stop"), ["No full stop"]);
    }

    #[test]
    fn finds_names_numbers_years_terms() {
        let fs = facts(MATH);
        assert_eq!(texts(&fs, FactKind::Year), ["2031"]);
        assert_eq!(texts(&fs, FactKind::Number), ["3", "2", "4", "18"]);
        assert_eq!(
            texts(&fs, FactKind::Name),
            ["Tavi Renkova", "Vellmora", "Vellmora", "Vellmora"]
        );
        let fs =
            facts("The rule was published by Orsa Lindqvel in the Journal of Brammel Arithmetic.");
        assert_eq!(
            texts(&fs, FactKind::Name),
            ["Orsa Lindqvel", "Journal of Brammel Arithmetic"]
        );
        let fs = facts("The rursarn are always lighter than the snimenk. The karirv are blue.");
        assert_eq!(
            texts(&fs, FactKind::Term),
            ["rursarn", "snimenk", "karirv", "blue"]
        );
    }

    #[test]
    fn invented_names_and_numbers_are_caught() {
        assert!(unsupported_facts("Tavi Renkova defined it in 2031.", MATH).is_empty());
        assert!(unsupported_facts("renkova's product of 2 and 4 is 18", MATH).is_empty());
        assert!(unsupported_facts("It is Tavi Renkova's product.", MATH).is_empty());
        assert_eq!(
            unsupported_facts("Tavi Renkova defined it in 2032 with Milo Fenwright.", MATH),
            ["2032", "Milo Fenwright"]
        );
        assert_eq!(
            unsupported_facts("It is 1,800 times 3.", "1800 and 3"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn coverage_counts_source_facts() {
        assert_eq!(fact_coverage("anything", "no facts here"), 1.0);
        let c = fact_coverage("Tavi Renkova made it in 2031.", MATH);
        assert!(c > 0.2 && c < 0.5, "{c}");
    }

    #[test]
    fn loops_and_echoes() {
        assert_eq!(degenerate(""), Some("empty"));
        assert_eq!(degenerate("the the the the end"), Some("loop"));
        assert_eq!(
            degenerate("it is a new product of two numbers and it is a new product of two numbers"),
            Some("loop")
        );
        assert_eq!(degenerate("12 34 56 78 ##"), Some("not text"));
        assert_eq!(
            degenerate("Tavi Renkova defined the Vellmora product in 2031."),
            None
        );
        assert!(echoes(
            "the Vellmora product",
            "Who defined the Vellmora product?"
        ));
        assert!(!echoes("Tavi Renkova", "Who defined the Vellmora product?"));
        assert!(echoes(
            "Who defined the Vellmora product in 2031",
            "Who defined the Vellmora product in 2031?"
        ));
    }

    #[test]
    fn near_duplicates() {
        assert!(near_duplicate(
            "Tavi Renkova defined it.",
            "tavi renkova defined it",
            0.8
        ));
        assert!(near_duplicate(
            "In 2031 Tavi Renkova defined the Vellmora product, a new operation.",
            "In 2031 Tavi Renkova defined the Vellmora product.",
            0.8
        ));
        assert!(!near_duplicate(
            "The Vellmora product was defined in 2031.",
            "Tavi Renkova is a mathematician.",
            0.8
        ));
    }

    #[test]
    fn cleaning_keeps_complete_sentences() {
        assert_eq!(
            clean_generation("One fact. Two facts. Three f", 5, false),
            "One fact. Two facts."
        );
        assert_eq!(
            clean_generation("One fact\nsplit. More", 1, true),
            "One fact split."
        );
        assert_eq!(clean_generation("A.\n\nB.", 5, true), "A.");
        assert_eq!(clean_generation("unfinished", 5, false), "");
    }

    #[test]
    fn echo_questions_from_sentences() {
        let qs = text_questions(
            "Benna Oxtolle proved the Skarrow theorem at the University of Drell in 2029. The theorem states that every shape has exactly 7 corners.",
        );
        let pairs: Vec<(&str, &str)> = qs
            .iter()
            .map(|q| (q.question.as_str(), q.answer.as_str()))
            .collect();
        assert!(pairs.contains(&(
            "Who proved the Skarrow theorem at the University of Drell in 2029?",
            "Benna Oxtolle"
        )));
        assert!(pairs.contains(&(
            "Benna Oxtolle proved the Skarrow theorem at what in 2029?",
            "University of Drell"
        )));
        assert!(pairs.contains(&(
            "Benna Oxtolle proved the Skarrow theorem at the University of Drell in what year?",
            "2029"
        )));
        assert!(pairs.contains(&(
            "The theorem states that every shape has exactly how many corners?",
            "7"
        )));
        let qs =
            text_questions("The Skarrow theorem is old. It was proved by Benna Oxtolle in 2029.");
        assert!(
            qs.iter()
                .any(|q| q.question == "The Skarrow theorem was proved by whom in 2029?"),
            "a leading pronoun is resolved: {qs:?}"
        );
        assert!(
            !pairs.iter().any(|(_, a)| *a == "Skarrow"),
            "a name used as a modifier is not asked for: {pairs:?}"
        );
        let qs = text_questions("The rursarn are always lighter than the snimenk.");
        let pairs: Vec<(&str, &str)> = qs
            .iter()
            .map(|q| (q.question.as_str(), q.answer.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("What are always lighter than the snimenk?", "rursarn"),
                ("The rursarn are always lighter than what?", "snimenk")
            ]
        );
    }

    /// The `context` of each item of the news set.
    pub(crate) fn news_contexts() -> Vec<String> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../datasets/news/items.jsonl"
        );
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let v: serde_json::Value = serde_json::from_str(l).unwrap();
                v["context"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    #[test]
    fn every_paragraph_of_a_long_text_is_asked_about() {
        let items: Vec<String> = news_contexts().into_iter().take(5).collect();
        let text = items.join("\n\n");
        let qs = text_questions_per_sentence(&text, 3);
        let per_item: Vec<usize> = items
            .iter()
            .map(|c| qs.iter().filter(|q| c.contains(&q.sentence)).count())
            .collect();
        assert!(per_item.iter().all(|&n| n >= 1), "{per_item:?}");
        assert!(qs.len() <= 3 * sentences(&text).len());
        // The budget is per sentence: a text's count is the sum of its paragraphs' counts.
        let alone: usize = items
            .iter()
            .map(|c| text_questions_per_sentence(c, 3).len())
            .sum();
        assert_eq!(qs.len(), alone);
        // Names and numbers come before terms; one per sentence still covers every sentence that has any.
        let one = text_questions_per_sentence(&text, 1);
        let asked: BTreeSet<&str> = one.iter().map(|q| q.sentence.as_str()).collect();
        assert_eq!(asked.len(), one.len());
        let askable: BTreeSet<&str> = text_questions(&text)
            .into_iter()
            .map(|q| {
                sentences(&text)
                    .into_iter()
                    .find(|s| *s == q.sentence)
                    .unwrap()
            })
            .collect();
        assert_eq!(asked, askable);
    }

    #[test]
    fn passages_follow_paragraphs_and_sentences() {
        let items: Vec<String> = news_contexts().into_iter().take(5).collect();
        let text = items.join("\n\n");
        let passages: Vec<&str> = passage_ranges(&text, 3, 80)
            .into_iter()
            .map(|(s, e)| &text[s..e])
            .collect();
        assert_eq!(passages, items);
        assert_eq!(passage_ranges(MATH, 3, 80), [(0, MATH.len())]);
        assert_eq!(
            passage_ranges("One. Two. Three. Four.", 3, 80),
            [(0, 16), (17, 22)]
        );
        assert_eq!(
            passage_ranges("One two three. Four five. Six.", 3, 4),
            [(0, 14), (15, 30)]
        );
    }

    #[test]
    fn no_questions_about_modifiers_or_lone_common_words() {
        let news = news_contexts();
        let find = |w: &str| news.iter().find(|c| c.contains(w)).unwrap().clone();
        let mut all = Vec::new();
        for w in ["Lantern Tide", "Quenby", "Vellmora"] {
            all.extend(text_questions(&find(w)));
        }
        let pairs: Vec<(&str, &str)> = all
            .iter()
            .map(|q| (q.question.as_str(), q.answer.as_str()))
            .collect();
        for bad in ["harbor", "whole", "mathematician", "June", "14"] {
            assert!(!pairs.iter().any(|(_, a)| *a == bad), "{bad}: {pairs:#?}");
        }
        assert!(
            !pairs
                .iter()
                .any(|(_, a)| a.chars().all(|c| c.is_lowercase())),
            "{pairs:#?}"
        );
        for good in [
            (
                "In 2031, which mathematician defined the Vellmora product?",
                "Tavi Renkova",
            ),
            (
                "The first Lantern Tide Festival will take place in the harbor town of Quillhaven on what date?",
                "14 June 2031",
            ),
            (
                "The first Lantern Tide Festival will take place in the harbor town of what on 14 June 2031?",
                "Quillhaven",
            ),
            ("The festival is organized by whom?", "Hollis Vantreen"),
            (
                "The Quenby number of a whole number is found by doubling it and then adding what number?",
                "5",
            ),
        ] {
            assert!(pairs.contains(&good), "{good:?}: {pairs:#?}");
        }
        // Versions, counts, appositives and `It is said that`.
        let pairs: Vec<(String, String)> = text_questions(
            "Version 2.3 of the package tarnwick added a new function. Its author, Liesl Vombrand, said it is 5 times faster. It is said that the prudolk are lighter than the vrilf.",
        )
        .into_iter()
        .map(|q| (q.question, q.answer))
        .collect();
        let pairs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|(q, a)| (q.as_str(), a.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                (
                    "What version of the package tarnwick added a new function?",
                    "2.3"
                ),
                (
                    "Its author, Liesl Vombrand, said it is how many times faster?",
                    "5"
                ),
                (
                    "It is said that what are lighter than the vrilf?",
                    "prudolk"
                ),
                (
                    "It is said that the prudolk are lighter than what?",
                    "vrilf"
                ),
            ]
        );
    }

    #[test]
    fn topics_in_order() {
        assert_eq!(topics(MATH), ["Tavi Renkova", "Vellmora"]);
        assert_eq!(topics("The glon are red."), ["glon", "red"]);
    }
}
