//! The protocols and their quality checks on a scripted generator (a test double whose answers are known),
//! and property tests of the formatting and the filters.

use engram_model::ModelError;
use engram_replay::text::{degenerate, near_duplicate, text_questions, unsupported_facts};
use engram_replay::{
    Completion, Format, Generator, Implication, Mix, Origin, Paraphrase, ReasoningTrace,
    ReplayProtocol, Sampling, SelfQa, Source, protocol_by_name, read_records, records_jsonl,
};
use engram_tokenizer::Message;
use proptest::prelude::*;

const CONTEXT: &str = "The Skarrow theorem states that every glimmerfold shape has exactly 7 corners. It was proved by Benna Oxtolle at the University of Drell in 2029.";

fn source() -> Source {
    Source {
        id: "news-math-003".into(),
        context: CONTEXT.into(),
        group: "math".into(),
    }
}

/// Answers each prompt with a scripted reply whose key its last user turn contains.
struct Scripted {
    replies: Vec<(&'static str, &'static str)>,
    prompts: Vec<String>,
}

impl Generator for Scripted {
    fn name(&self) -> String {
        "scripted".into()
    }
    fn complete(
        &mut self,
        prompts: &[Vec<Message>],
        _: &Sampling,
    ) -> Result<Vec<Completion>, ModelError> {
        Ok(prompts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let text = &p.last().unwrap().content;
                self.prompts.push(text.clone());
                // The first key found picks the replies; prompts of one call rotate through that key's.
                let key = self
                    .replies
                    .iter()
                    .find(|(k, _)| text.contains(k))
                    .map(|(k, _)| *k);
                let matching: Vec<&str> = self
                    .replies
                    .iter()
                    .filter(|(k, _)| Some(*k) == key)
                    .map(|(_, r)| *r)
                    .collect();
                let reply = matching
                    .get(i % matching.len().max(1))
                    .copied()
                    .unwrap_or("I do not know.");
                Completion {
                    text: reply.into(),
                    tokens: reply.split_whitespace().count(),
                    finished: true,
                }
            })
            .collect())
    }
}

#[test]
fn paraphrases_that_invent_or_drop_facts_are_dropped() {
    let mut g = Scripted {
        replies: vec![
            // Kept: every fact, reworded.
            (
                "Rewrite the text",
                "Benna Oxtolle of the University of Drell proved in 2029 the Skarrow theorem: a glimmerfold shape always has 7 corners.",
            ),
            // Invents a name.
            (
                "Rewrite the text",
                "Milo Fenwright proved the Skarrow theorem in 2029 at the University of Drell; shapes have 7 corners.",
            ),
            // Invents a number.
            (
                "Rewrite the text",
                "Benna Oxtolle proved in 2031 at the University of Drell that glimmerfold shapes have 7 corners.",
            ),
            // Loops.
            (
                "Rewrite the text",
                "the theorem the theorem the theorem the theorem",
            ),
        ],
        prompts: vec![],
    };
    let p = Paraphrase::new(4, 0.7, 1);
    let r = p
        .replay(&source(), &[], &mut g, &Format::default())
        .unwrap();
    let y = &r.yields[0];
    assert_eq!((y.generated, y.kept), (4, 1), "{y:?}");
    assert_eq!(y.dropped["unsupported fact"], 2);
    assert_eq!(y.dropped["loop"], 1);
    assert_eq!(r.records.len(), 1);
    let rec = &r.records[0];
    assert_eq!(rec.provenance.protocol, "paraphrase");
    assert_eq!(rec.provenance.origin, Origin::Model);
    assert_eq!(rec.provenance.generator, "scripted");
    assert!(
        rec.provenance.prompt.contains(CONTEXT),
        "the prompt used is kept"
    );
    assert_eq!(rec.messages[0].role, "user");
    assert!(
        !rec.messages[0]
            .content
            .contains("glimmerfold shape has exactly")
    );
    assert!(rec.messages[1].content.starts_with("Benna Oxtolle"));
}

#[test]
fn self_qa_answers_with_the_context_and_falls_back_to_the_sentence() {
    let mut g = Scripted {
        replies: vec![
            (
                "Write one question",
                "Question: Who proved the Skarrow theorem?\nAnswer: ...",
            ),
            ("Write one question", "What is your favourite colour?"),
            ("how many corners", "Every glimmerfold shape has 7 corners."),
            (
                "by whom",
                "The Skarrow theorem was proved by Benna Oxtolle.",
            ),
            (
                "Who proved the Skarrow theorem?",
                "Benna Oxtolle proved it.",
            ),
            // Every other question gets a wrong (invented) answer.
            ("?", "It was Milo Fenwright."),
        ],
        prompts: vec![],
    };
    let p = SelfQa::new(2, 0.7, 5);
    let r = p
        .replay(&source(), &[], &mut g, &Format::default())
        .unwrap();
    let y = &r.yields[0];
    assert_eq!(y.dropped.get("off topic"), Some(&1), "{y:?}");
    let parts: Vec<(&str, &str, &str)> = r
        .records
        .iter()
        .map(|r| {
            (
                r.provenance.part.as_str(),
                r.messages[0].content.as_str(),
                r.messages[1].content.as_str(),
            )
        })
        .collect();
    assert!(parts.contains(&(
        "model-question",
        "Who proved the Skarrow theorem?",
        "Benna Oxtolle proved it."
    )));
    assert!(parts.contains(&(
        "text-question",
        "The Skarrow theorem states that every glimmerfold shape has exactly how many corners?",
        "Every glimmerfold shape has 7 corners."
    )));
    // The invented answer to the year question is replaced by the sentence the question was made from.
    assert!(
        parts.contains(&(
            "text-question-span",
            "The Skarrow theorem was proved by Benna Oxtolle at the University of Drell in what year?",
            "It was proved by Benna Oxtolle at the University of Drell in 2029."
        )),
        "{parts:#?}"
    );
    // Stage 2 saw the context before every question, the names of the text asked about too.
    assert!(
        g.prompts
            .iter()
            .filter(|p| p.ends_with('?'))
            .all(|p| p.starts_with(CONTEXT))
    );
    assert!(
        g.prompts
            .iter()
            .any(|p| p.ends_with("What do you know about Benna Oxtolle?")),
        "{:#?}",
        g.prompts
    );
    for r in &r.records {
        let rule = r.provenance.part == "text-question-span";
        assert_eq!(r.provenance.origin == Origin::Text, rule);
        assert_eq!(r.provenance.prompt.is_empty(), rule);
    }
    assert_eq!(
        y.rule_made,
        r.records
            .iter()
            .filter(|r| r.provenance.part == "text-question-span")
            .count()
    );
}

#[test]
fn implications_must_be_about_the_source_and_new() {
    let mut g = Scripted {
        replies: vec![
            (
                "What follows",
                "Mathematics is a fascinating subject that many people enjoy.",
            ),
            (
                "What follows",
                "Since 2029, no one has found a glimmerfold shape with 8 corners, because Benna Oxtolle proved they all have 7.",
            ),
            (
                "What follows",
                "The Skarrow theorem states that every glimmerfold shape has exactly 7 corners.",
            ),
        ],
        prompts: vec![],
    };
    let r = Implication::new(3, 0.7, 0)
        .replay(&source(), &[], &mut g, &Format::default())
        .unwrap();
    let y = &r.yields[0];
    assert_eq!(y.dropped.get("off topic"), Some(&1), "{y:?}");
    // "8" is not in the source: the inference states a number the text does not.
    assert_eq!(y.dropped.get("unsupported fact"), Some(&1), "{y:?}");
    assert_eq!(y.dropped.get("restates the source"), Some(&1), "{y:?}");
    assert_eq!(y.kept, 0);
}

#[test]
fn reasoning_traces_rephrase_reverse_and_link() {
    let other = Source {
        id: "news-math-004".into(),
        context: "The University of Drell opened a glimmerfold museum in 2030.".into(),
        group: "math".into(),
    };
    let unrelated = Source {
        id: "news-food-001".into(),
        context: "Pellin soup is made with blue beans.".into(),
        group: "food".into(),
    };
    let mut g = Scripted {
        replies: vec![
            (
                "begins with \"University of Drell\"",
                "University of Drell is where Benna Oxtolle proved the theorem in 2029.",
            ),
            (
                "in other words",
                "Benna Oxtolle, at the University of Drell, proved it in 2029.",
            ),
            (
                "connects",
                "The University of Drell, where the Skarrow theorem was proved, opened a glimmerfold museum in 2030.",
            ),
        ],
        prompts: vec![],
    };
    let r = ReasoningTrace::new(2, 0.7, 0)
        .replay(&source(), &[other, unrelated], &mut g, &Format::default())
        .unwrap();
    let parts: Vec<&str> = r
        .records
        .iter()
        .map(|r| r.provenance.part.as_str())
        .collect();
    assert_eq!(parts[0], "source");
    assert!(parts.contains(&"reversal"), "{parts:?}");
    assert!(parts.contains(&"rephrase"), "{parts:?}");
    assert!(parts.contains(&"link"), "{parts:?}");
    let reversal = r
        .records
        .iter()
        .find(|r| r.provenance.part == "reversal")
        .unwrap();
    // Keyed by the sentence's last name: the fact is reachable from that end too.
    assert!(reversal.messages[0].content.contains("University of Drell"));
    assert!(
        reversal.messages[1]
            .content
            .starts_with("University of Drell")
    );
    // Only the related item was linked; the unrelated one (another group, no shared word) was not.
    assert!(!g.prompts.iter().any(|p| p.contains("Pellin soup")));
}

#[test]
fn a_mix_adds_its_protocols_and_records_are_train_ready_jsonl() {
    let mut g = Scripted {
        replies: vec![(
            "Rewrite the text",
            "Benna Oxtolle of the University of Drell proved in 2029 that each glimmerfold shape has 7 corners.",
        )],
        prompts: vec![],
    };
    let mix = Mix {
        name: "mix".into(),
        protocols: vec![
            Box::new(Paraphrase::new(1, 0.7, 0)),
            protocol_by_name("self-qa", 0, 0.7, 0).unwrap(),
        ],
    };
    let r = mix
        .replay(&source(), &[], &mut g, &Format::default())
        .unwrap();
    assert_eq!(r.yields.len(), 2);
    assert_eq!(r.yields[0].protocol, "paraphrase");
    assert_eq!(r.yields[1].protocol, "self-qa");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.jsonl");
    std::fs::write(&path, records_jsonl(&r.records)).unwrap();
    assert_eq!(read_records(&path).unwrap(), r.records);
    // `engram train` reads the same file: chat examples, provenance ignored.
    let examples = engram_data::read_jsonl(&path).unwrap();
    assert_eq!(examples.len(), r.records.len());
    assert_eq!(examples[0], r.records[0].example());
    let err = protocol_by_name("summarise", 1, 0.7, 0).err().unwrap();
    assert!(err.to_string().contains("self-qa"), "{err}");
    let err = protocol_by_name("paraphrase", 1, -1.0, 0).err().unwrap();
    assert!(err.to_string().contains("temperature"), "{err}");
}

#[test]
fn a_malformed_record_line_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("replay.jsonl");
    std::fs::write(&path, "\n{\"messages\": []}\n").unwrap();
    let err = read_records(&path).unwrap_err().to_string();
    assert!(err.contains("replay.jsonl:2"), "{err}");
}

fn sentence() -> impl Strategy<Value = String> {
    prop::collection::vec("[A-Za-z]{1,9}|[0-9]{1,4}", 3..12).prop_map(|w| w.join(" ") + ".")
}

proptest! {
    #[test]
    fn no_context_leaks_into_a_prefix_free_example(
        context in prop::collection::vec(sentence(), 1..4).prop_map(|s| s.join(" ")),
        question in "[A-Za-z ]{1,40}\\?",
        answer in "[A-Za-z ]{1,40}",
    ) {
        let plain = Format::default().turns(&context, &question, &answer);
        prop_assert_eq!(plain.len(), 2);
        prop_assert_eq!(&plain[0].content, &question);
        prop_assert!(!plain[0].content.contains(&context));
        prop_assert_eq!(&plain[1].content, &answer);
        let shadow = Format { context_prefix: true }.turns(&context, &question, &answer);
        prop_assert!(shadow[0].content.starts_with(&context));
        prop_assert!(shadow[0].content.ends_with(&question));
        prop_assert_eq!(&shadow[1].content, &answer);
    }

    #[test]
    fn a_text_supports_itself_and_its_questions_answer_from_it(
        text in prop::collection::vec(sentence(), 1..5).prop_map(|s| s.join(" ")),
    ) {
        prop_assert!(unsupported_facts(&text, &text).is_empty());
        for q in text_questions(&text) {
            prop_assert!(text.contains(&q.answer));
            prop_assert!(q.question.ends_with('?'));
            prop_assert!(unsupported_facts(&q.answer, &text).is_empty());
        }
        prop_assert!(near_duplicate(&text, &text, 0.8));
    }

    #[test]
    fn the_filters_never_panic(s in "\\PC{0,80}") {
        let _ = degenerate(&s);
        let _ = unsupported_facts(&s, "A source with 3 names like Ada Lovelace.");
        let _ = text_questions(&s);
        let _ = engram_replay::text::clean_generation(&s, 2, false);
    }
}
