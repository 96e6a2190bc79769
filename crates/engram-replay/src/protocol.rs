//! The [`ReplayProtocol`] seam and the protocols: [`Paraphrase`], [`Implication`], [`SelfQa`] (Sys2-FT, Park
//! et al. 2025), [`ReasoningTrace`] (Lampinen et al. 2025), and [`Mix`] of several.
//!
//! Every candidate passes the [`Checker`] before it becomes a record: the names, numbers and dates it states
//! must be in the source, and duplicates, loops, unfinished text and echoed questions are dropped. What was
//! kept of what was generated is the protocol's [`Yield`].

use engram_tokenizer::Message;

use crate::record::{Format, Origin, Provenance, Record, Source, Yield};
use crate::text::{
    self, FactKind, clean_generation, containment, degenerate, echoes, fact_coverage, mentions,
    near_duplicate, text_questions, unsupported_facts,
};
use crate::{Generator, ReplayError, Sampling};

/// What a protocol made of one source.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// The training records kept, in the order they were made.
    pub records: Vec<Record>,
    /// One per protocol (a [`Mix`] gives several).
    pub yields: Vec<Yield>,
}

/// Turns a source into training records, with the generator's help.
pub trait ReplayProtocol: Send + Sync {
    /// `paraphrase`, `implication`, `self-qa`, `reasoning-trace`, or a mix's name.
    fn name(&self) -> &str;
    /// The records for `source`. `others` are the other sources of its dataset, for protocols that link
    /// items (they may be empty).
    fn replay(
        &self,
        source: &Source,
        others: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError>;
}

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

/// Sends prompts to the generator, counting prompts and tokens in `y`.
fn ask(
    generator: &mut dyn Generator,
    prompts: &[String],
    sampling: &Sampling,
    y: &mut Yield,
) -> Result<Vec<crate::Completion>, ReplayError> {
    let chats: Vec<Vec<Message>> = prompts.iter().map(|p| vec![Message::user(p)]).collect();
    let out = generator.complete(&chats, sampling)?;
    y.prompts += prompts.len();
    y.tokens_generated += out.iter().map(|c| c.tokens).sum::<usize>();
    Ok(out)
}

/// Makes one protocol's records for one source.
struct Records<'a> {
    format: &'a Format,
    source: &'a Source,
    protocol: &'a str,
    seed: u64,
    generator: String,
}

impl Records<'_> {
    /// A record of `part`; an empty `prompt` marks content made by rule, not by the generator.
    fn record(&self, part: &str, prompt: &str, user: &str, assistant: &str) -> Record {
        let by_rule = prompt.is_empty();
        Record {
            messages: self.format.turns(&self.source.context, user, assistant),
            provenance: Provenance {
                protocol: self.protocol.into(),
                part: part.into(),
                source: self.source.id.clone(),
                seed: self.seed,
                origin: if by_rule { Origin::Text } else { Origin::Model },
                generator: if by_rule {
                    String::new()
                } else {
                    self.generator.clone()
                },
                prompt: prompt.into(),
            },
        }
    }
}

/// Topic-keyed user turns for content that answers no particular question; `k` rotates through them.
fn topic_turn(topic: &str, k: usize) -> String {
    const TURNS: [&str; 4] = [
        "What do you know about {}?",
        "Tell me about {}.",
        "What is new about {}?",
        "What have you learned about {}?",
    ];
    TURNS[k % TURNS.len()].replace("{}", topic)
}

/// The first of `source`'s topics that `content` mentions, else the source's first topic.
fn topic_of(content: &str, topics: &[String]) -> String {
    topics
        .iter()
        .find(|t| mentions(content, t))
        .or(topics.first())
        .cloned()
        .unwrap_or_else(|| "this".into())
}

fn sampled(temperature: f32, max_new_tokens: usize, seed: u64) -> Sampling {
    Sampling {
        temperature,
        top_p: 0.9,
        repetition_penalty: 1.2,
        max_new_tokens,
        seed,
        ..Sampling::greedy(max_new_tokens)
    }
}

/// The shape paraphrase and implication share: `n` samples of `instruction` after the source, cleaned to
/// `max_sentences`, checked with `extra`, each kept one a record of `part` answering `user(content, k)`.
#[allow(clippy::too_many_arguments)]
fn sample_rewrites(
    protocol: &str,
    source: &Source,
    generator: &mut dyn Generator,
    format: &Format,
    instruction: &str,
    n: usize,
    sampling: &Sampling,
    max_sentences: usize,
    extra: &dyn Fn(&str) -> Option<&'static str>,
    user: &dyn Fn(&str, usize) -> String,
) -> Result<Replay, ReplayError> {
    let out = Records {
        format,
        source,
        protocol,
        seed: sampling.seed,
        generator: generator.name(),
    };
    let prompt = format!("{}\n\n{instruction}", source.context);
    let mut check = Checker::new(protocol, &source.context);
    let outs = ask(
        generator,
        &vec![prompt.clone(); n],
        sampling,
        &mut check.yields,
    )?;
    let mut records = Vec::new();
    for c in outs {
        let content = clean_generation(&c.text, max_sentences, c.finished);
        if check.check(&content, None, extra) {
            let turn = user(&content, records.len());
            records.push(out.record(protocol, &prompt, &turn, &content));
        }
    }
    Ok(Replay {
        records,
        yields: vec![check.yields],
    })
}

/// `paraphrase`: `n` rewrites of the whole source, each answering a topic question ("Tell me about X").
#[derive(Clone, Debug)]
pub struct Paraphrase {
    /// Rewrites sampled per source.
    pub n: usize,
    /// How rewrites are sampled.
    pub sampling: Sampling,
    /// The checks a rewrite must pass.
    pub quality: QualityConfig,
}

impl Paraphrase {
    /// `n` rewrites sampled at `temperature` (top-p 0.9, repetition penalty 1.2, up to 160 new tokens).
    pub fn new(n: usize, temperature: f32, seed: u64) -> Self {
        Self {
            n,
            sampling: sampled(temperature, 160, seed),
            quality: QualityConfig::default(),
        }
    }
}

const PARAPHRASE_PROMPT: &str =
    "Rewrite the text above in your own words. Keep every name, number and date.";

impl ReplayProtocol for Paraphrase {
    fn name(&self) -> &str {
        "paraphrase"
    }

    fn replay(
        &self,
        source: &Source,
        _: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let ctx = source.context.as_str();
        let min = self.quality.min_coverage;
        let topics = text::topics(ctx);
        sample_rewrites(
            self.name(),
            source,
            generator,
            format,
            PARAPHRASE_PROMPT,
            self.n,
            &self.sampling,
            self.quality.max_sentences,
            &|t| {
                if fact_coverage(t, ctx) < min {
                    Some("drops facts")
                } else if containment(t, ctx, 3) >= 0.9 {
                    Some("copy of the source")
                } else {
                    None
                }
            },
            &|content, k| topic_turn(&topic_of(content, &topics), k),
        )
    }
}

/// `implication`: `n` consequences or inferences drawn from the source, each answering "What follows from
/// what you know about X?". Generic filler (no name, number or term of the source) is dropped.
#[derive(Clone, Debug)]
pub struct Implication {
    /// Implications sampled per source.
    pub n: usize,
    /// How implications are sampled.
    pub sampling: Sampling,
    /// The checks an implication must pass.
    pub quality: QualityConfig,
}

impl Implication {
    /// `n` implications sampled at `temperature` (top-p 0.9, repetition penalty 1.2, ≤ 96 new tokens, ≤ 3 sentences).
    pub fn new(n: usize, temperature: f32, seed: u64) -> Self {
        Self {
            n,
            sampling: sampled(temperature, 96, seed),
            quality: QualityConfig {
                max_sentences: 3,
                ..QualityConfig::default()
            },
        }
    }
}

const IMPLICATION_PROMPT: &str = "What follows from the text above? State one consequence or inference that it does not say in so many words, in one or two sentences.";

/// Whether `content` mentions one of the facts (names, numbers, years or terms) of `source`.
fn on_topic(content: &str, source: &str) -> bool {
    text::facts(source)
        .iter()
        .any(|f| mentions(content, &f.text))
}

impl ReplayProtocol for Implication {
    fn name(&self) -> &str {
        "implication"
    }

    fn replay(
        &self,
        source: &Source,
        _: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let ctx = source.context.as_str();
        let topics = text::topics(ctx);
        sample_rewrites(
            self.name(),
            source,
            generator,
            format,
            IMPLICATION_PROMPT,
            self.n,
            &self.sampling,
            self.quality.max_sentences,
            &|t| {
                if !on_topic(t, ctx) {
                    Some("off topic")
                } else if text::sentences(t)
                    .iter()
                    .all(|s| containment(s, ctx, 3) >= 0.8)
                {
                    Some("restates the source")
                } else {
                    None
                }
            },
            &|content, _| {
                format!(
                    "What follows from what you know about {}?",
                    topic_of(content, &topics)
                )
            },
        )
    }
}

/// `self-qa`, in two stages. Questions come from the text itself (a wh-question for each name, number, date
/// and term of each sentence, see [`text_questions`]) and from the generator (`model_questions` samples);
/// then the generator answers every question *with the source in its prompt*. An answer to a text question
/// must contain the span the question was made from; when it does not, `span_fallback` keeps the question
/// with the span itself as the answer (provenance `text`).
#[derive(Clone, Debug)]
pub struct SelfQa {
    /// Questions the generator writes per source.
    pub model_questions: usize,
    /// At most this many text questions per source (0 = none).
    pub text_questions: usize,
    /// How the generator's questions are sampled.
    pub question_sampling: Sampling,
    /// How answers are generated (greedy in [`SelfQa::new`]).
    pub answer_sampling: Sampling,
    /// Keep a text question with its span as the answer when the generated answer lacks the span.
    pub span_fallback: bool,
    /// The checks an answer must pass.
    pub quality: QualityConfig,
}

impl SelfQa {
    /// `n` model-written questions sampled at `temperature`, up to 16 text questions, greedy answers.
    pub fn new(n: usize, temperature: f32, seed: u64) -> Self {
        Self {
            model_questions: n,
            text_questions: 16,
            question_sampling: sampled(temperature, 40, seed),
            answer_sampling: Sampling {
                seed,
                ..Sampling::greedy(48)
            },
            span_fallback: true,
            quality: QualityConfig {
                max_sentences: 2,
                ..QualityConfig::default()
            },
        }
    }
}

const QUESTION_PROMPT: &str =
    "Write one question that can be answered from the text above. Write only the question.";

/// The first question in a generation: up to and including its first `?`, on one line.
fn first_question(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains('?'))?;
    let q = &line[..=line.find('?')?];
    let q = q
        .trim()
        .trim_start_matches(|c: char| !c.is_alphanumeric())
        .trim();
    let q = q.strip_prefix("Question:").unwrap_or(q).trim();
    (!q.is_empty()).then(|| q.to_owned())
}

impl ReplayProtocol for SelfQa {
    fn name(&self) -> &str {
        "self-qa"
    }

    fn replay(
        &self,
        source: &Source,
        _: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let out = Records {
            format,
            source,
            protocol: self.name(),
            seed: self.answer_sampling.seed,
            generator: generator.name(),
        };
        let ctx = source.context.as_str();
        let mut check = Checker::new(self.name(), ctx);
        // Stage 1: questions. (question, expected span for text questions)
        let mut questions: Vec<(String, Option<String>)> = text_questions(ctx)
            .into_iter()
            .take(self.text_questions)
            .map(|q| (q.question, Some(q.answer)))
            .collect();
        if self.model_questions > 0 {
            let prompt = format!("{ctx}\n\n{QUESTION_PROMPT}");
            let mut qcheck = Checker::new("self-qa", ctx);
            qcheck.duplicate_overlap = self.quality.duplicate_overlap;
            let outs = ask(
                generator,
                &vec![prompt; self.model_questions],
                &self.question_sampling,
                &mut check.yields,
            )?;
            // A model question and its answer are one candidate: counted as generated here, as kept (or
            // dropped) when answered.
            for c in outs {
                check.yields.generated += 1;
                let Some(q) = first_question(&c.text) else {
                    check.yields.drop("no question");
                    continue;
                };
                let words = q.split_whitespace().count();
                let known = questions.iter().any(|(k, _)| near_duplicate(k, &q, 0.8));
                let reason = qcheck.verdict(&q, None, |t| {
                    if !(3..=30).contains(&words) {
                        Some("question length")
                    } else if !on_topic(t, ctx) {
                        Some("off topic")
                    } else if known {
                        Some("duplicate")
                    } else {
                        None
                    }
                });
                match reason {
                    Some(r) => check.yields.drop(r),
                    None => questions.push((q, None)),
                }
            }
        }
        // Stage 2: answers, with the source in the prompt.
        let prompts: Vec<String> = questions
            .iter()
            .map(|(q, _)| engram_inject::user_turn(Some(ctx), q))
            .collect();
        let outs = ask(
            generator,
            &prompts,
            &self.answer_sampling,
            &mut check.yields,
        )?;
        let mut records = Vec::new();
        for (((q, span), c), prompt) in questions.iter().zip(outs).zip(&prompts) {
            let answer = clean_generation(&c.text, self.quality.max_sentences, c.finished);
            let answer = if answer.is_empty() {
                c.text.lines().next().unwrap_or("").trim().to_owned()
            } else {
                answer
            };
            let expected = span.as_deref();
            if expected.is_some() {
                check.yields.generated += 1;
            }
            let reason = check.verdict(&answer, Some(q), |t| match expected {
                Some(s) if !mentions(t, s) => Some("wrong answer"),
                _ => None,
            });
            match reason {
                Some(r) => check.yields.drop(r),
                None => check.yields.kept += 1,
            }
            let (part, content, prompt) = match (reason, expected) {
                (None, Some(_)) => ("text-question", answer, prompt.as_str()),
                (None, None) => ("model-question", answer, prompt.as_str()),
                (Some(_), Some(s)) if self.span_fallback => {
                    check.yields.rule_made += 1;
                    ("text-question-span", s.to_owned(), "")
                }
                (Some(_), _) => continue,
            };
            records.push(out.record(part, prompt, q, &content));
        }
        Ok(Replay {
            records,
            yields: vec![check.yields],
        })
    }
}

/// `reasoning-trace`, the augmentation of Lampinen et al.: *local* traces — each sentence rephrased, and
/// reversed (rewritten to begin with its last name or term, and keyed by it, so the fact is reachable from
/// either end) — and *global* ones: sentences linking the source to `links` other sources of its dataset
/// (sharing a word, else its group), written with both in context. The source itself is kept as one record.
#[derive(Clone, Debug)]
pub struct ReasoningTrace {
    /// Make a rephrased record of each sentence.
    pub rephrase: bool,
    /// Make a reversed record of each sentence that has a second name or term to begin with.
    pub reverse: bool,
    /// Other sources of the dataset to write a linking sentence with.
    pub links: usize,
    /// Keep the source itself as one record.
    pub include_source: bool,
    /// How traces are sampled.
    pub sampling: Sampling,
    /// The checks a trace must pass.
    pub quality: QualityConfig,
}

impl ReasoningTrace {
    /// Rephrase, reverse and `links` links, sampled at `temperature` (top-p 0.9, up to 64 new tokens), the source kept.
    pub fn new(links: usize, temperature: f32, seed: u64) -> Self {
        Self {
            rephrase: true,
            reverse: true,
            links,
            include_source: true,
            sampling: sampled(temperature, 64, seed),
            quality: QualityConfig {
                max_sentences: 2,
                ..QualityConfig::default()
            },
        }
    }
}

/// The other sources to link with: those sharing a name or term with `source` first, then its group, in a
/// seeded order.
fn link_candidates<'a>(
    source: &Source,
    others: &'a [Source],
    n: usize,
    seed: u64,
) -> Vec<&'a Source> {
    let mine: Vec<String> = text::facts(&source.context)
        .into_iter()
        .filter(|f| matches!(f.kind, FactKind::Name | FactKind::Term))
        .map(|f| f.text.to_lowercase())
        .collect();
    let mut scored: Vec<(usize, u64, &Source)> = others
        .iter()
        .filter(|o| o.id != source.id)
        .map(|o| {
            let shared = mine.iter().filter(|m| mentions(&o.context, m)).count();
            let rank = if shared > 0 {
                0
            } else if o.group == source.group {
                1
            } else {
                2
            };
            let h = engram_model::splitmix64(seed ^ text_hash(&o.id) ^ text_hash(&source.id));
            (rank, h, o)
        })
        .filter(|(rank, _, _)| *rank < 2)
        .collect();
    scored.sort_by_key(|&(r, h, _)| (r, h));
    scored.into_iter().take(n).map(|(_, _, o)| o).collect()
}

fn text_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

impl ReplayProtocol for ReasoningTrace {
    fn name(&self) -> &str {
        "reasoning-trace"
    }

    fn replay(
        &self,
        source: &Source,
        others: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let out = Records {
            format,
            source,
            protocol: self.name(),
            seed: self.sampling.seed,
            generator: generator.name(),
        };
        let ctx = source.context.as_str();
        let topics = text::topics(ctx);
        let mut check = Checker::new(self.name(), ctx);
        let mut records = Vec::new();
        let seed = self.sampling.seed;
        if self.include_source {
            check.yields.rule_made += 1;
            let user = topic_turn(&topic_of(ctx, &topics), 1);
            records.push(out.record("source", "", &user, ctx));
        }
        // (prompt, part, sentence, the fact it is keyed by)
        let mut jobs: Vec<(String, &str, String, String)> = Vec::new();
        for s in text::sentences(ctx) {
            let fs: Vec<String> = text::facts(s).into_iter().map(|f| f.text).collect();
            let Some(first) = fs.first() else { continue };
            if self.rephrase {
                jobs.push((
                    format!("{ctx}\n\nRewrite this sentence in other words, keeping every name and number: {s}"),
                    "rephrase",
                    s.to_owned(),
                    first.clone(),
                ));
            }
            // The reversal is keyed by the sentence's last name or term (not a number: "What do you know
            // about 2029?" retrieves nothing), when there is one besides the first fact.
            let keys: Vec<String> = text::facts(s)
                .into_iter()
                .filter(|f| matches!(f.kind, FactKind::Name | FactKind::Term))
                .map(|f| f.text)
                .collect();
            if self.reverse && fs.len() >= 2 && keys.last().is_some_and(|k| k != first) {
                let last = keys.last().cloned().unwrap_or_default();
                if !s
                    .trim_start()
                    .to_lowercase()
                    .starts_with(&last.to_lowercase())
                    && !s
                        .to_lowercase()
                        .starts_with(&format!("the {}", last.to_lowercase()))
                {
                    jobs.push((
                        format!(
                            "{ctx}\n\nRewrite this sentence so that it begins with \"{last}\": {s}"
                        ),
                        "reversal",
                        s.to_owned(),
                        last,
                    ));
                }
            }
        }
        let prompts: Vec<String> = jobs.iter().map(|j| j.0.clone()).collect();
        let outs = ask(generator, &prompts, &self.sampling, &mut check.yields)?;
        for ((prompt, part, sentence, key), c) in jobs.iter().zip(outs) {
            let content = clean_generation(&c.text, self.quality.max_sentences, c.finished);
            // Names, numbers and dates must all survive; terms may be reworded.
            let needed: Vec<String> = text::facts(sentence)
                .into_iter()
                .filter(|f| f.kind != FactKind::Term)
                .map(|f| f.text)
                .collect();
            let kept = check.check(&content, None, |t| {
                if !needed.iter().all(|f| mentions(t, f)) {
                    Some("drops facts")
                } else if *part == "reversal" {
                    let head: String = t.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
                    (!mentions(&head, key)).then_some("not reversed")
                } else {
                    near_duplicate(t, sentence, 0.9).then_some("copy of the source")
                }
            });
            if kept {
                let user = topic_turn(key, records.len());
                records.push(out.record(part, prompt, &user, &content));
            }
        }
        // Global traces.
        let partners = link_candidates(source, others, self.links, seed);
        if !partners.is_empty() {
            let prompts: Vec<String> = partners
                .iter()
                .map(|o| format!("Text 1: {ctx}\n\nText 2: {}\n\nWrite one sentence that connects a fact from Text 1 with a fact from Text 2.", o.context))
                .collect();
            let outs = ask(generator, &prompts, &self.sampling, &mut check.yields)?;
            for ((o, prompt), c) in partners.iter().zip(&prompts).zip(outs) {
                let content = clean_generation(&c.text, self.quality.max_sentences, c.finished);
                let both = format!("{ctx} {}", o.context);
                // Checked against both sources: names from either are supported.
                let mut link_check = Checker::new(self.name(), &both);
                let kept = link_check.check(&content, None, |t| {
                    (!(on_topic(t, ctx) && on_topic(t, &o.context))).then_some("does not link")
                });
                check.yields.add(&Yield {
                    protocol: String::new(),
                    ..link_check.yields
                });
                if kept {
                    let other_topics = text::topics(&o.context);
                    let user = format!(
                        "How is {} related to {}?",
                        topic_of(&content, &topics),
                        topic_of(&content, &other_topics)
                    );
                    records.push(out.record("link", prompt, &user, &content));
                }
            }
        }
        Ok(Replay {
            records,
            yields: vec![check.yields],
        })
    }
}

/// Several protocols' records together (`sys2-mix`: paraphrase + implication + self-QA).
pub struct Mix {
    /// The mix's name (`sys2-mix`).
    pub name: String,
    /// The protocols whose records are put together, in order.
    pub protocols: Vec<Box<dyn ReplayProtocol>>,
}

impl ReplayProtocol for Mix {
    fn name(&self) -> &str {
        &self.name
    }

    fn replay(
        &self,
        source: &Source,
        others: &[Source],
        generator: &mut dyn Generator,
        format: &Format,
    ) -> Result<Replay, ReplayError> {
        let mut all = Replay::default();
        for p in &self.protocols {
            let r = p.replay(source, others, generator, format)?;
            all.records.extend(r.records);
            all.yields.extend(r.yields);
        }
        Ok(all)
    }
}

/// The protocol names [`protocol_by_name`] knows.
pub const PROTOCOLS: [&str; 4] = ["paraphrase", "implication", "self-qa", "reasoning-trace"];

/// A protocol by name with `n` generations (model questions for `self-qa`, links for `reasoning-trace`),
/// sampling temperature and seed; an unknown name is an error listing the known ones.
pub fn protocol_by_name(
    name: &str,
    n: usize,
    temperature: f32,
    seed: u64,
) -> Result<Box<dyn ReplayProtocol>, ReplayError> {
    let sampling = sampled(temperature, 1, seed);
    sampling.validate()?;
    Ok(match name {
        "paraphrase" => Box::new(Paraphrase::new(n, temperature, seed)),
        "implication" => Box::new(Implication::new(n, temperature, seed)),
        "self-qa" => Box::new(SelfQa::new(n, temperature, seed)),
        "reasoning-trace" => Box::new(ReasoningTrace::new(n, temperature, seed)),
        other => {
            return Err(ReplayError::option(
                "protocol",
                other,
                &format!("unknown protocol; known: {}", PROTOCOLS.join(", ")),
            ));
        }
    })
}
