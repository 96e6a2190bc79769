//! Have the model turn a text into its own training data with a replay protocol (`engram-replay`): the
//! self-QA protocol of Sys2-FT asks questions about the text, answers them with the text in view, checks
//! every answer against the source, and writes chat turns *without* the text (no contextual shadowing).
//!
//! ```sh
//! cargo run --release --example replay_data -- self-qa > replay.jsonl
//! ```

use engram::replay::{Format, ModelGenerator, Source, protocol_by_name, records_jsonl};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

const TEXT: &str = "The Skarrow theorem states that every glimmerfold shape has exactly 7 corners. It was proved by \
                    Benna Oxtolle at the University of Drell in 2029.";

/// The records of `protocol` for the text, as JSONL, and its yield line.
fn run(protocol: &str, n: usize) -> Result<(String, String)> {
    let lm = engram::load_default_model()?;
    let mut generator = ModelGenerator::new(&lm);
    // n generations, temperature 0.7, seed 0.
    let protocol = protocol_by_name(protocol, n, 0.7, 0)?;
    let source = Source {
        id: "skarrow".into(),
        context: TEXT.into(),
        group: String::new(),
    };
    let replay = protocol.replay(&source, &[], &mut generator, &Format::default())?;
    let yields: Vec<String> = replay
        .yields
        .iter()
        .map(|y| format!("{}: {}/{} kept", y.protocol, y.kept, y.generated))
        .collect();
    Ok((records_jsonl(&replay.records), yields.join("; ")))
}

fn main() -> Result<()> {
    let protocol = std::env::args().nth(1).unwrap_or_else(|| "self-qa".into());
    let (jsonl, yields) = run(&protocol, 6)?;
    print!("{jsonl}");
    eprintln!("{yields}");
    Ok(())
}

#[test]
fn writes_checked_records_without_the_text() {
    let (jsonl, yields) = run("self-qa", 2).unwrap();
    assert!(yields.contains("self-qa"), "{yields}");
    assert!(
        !jsonl.is_empty(),
        "self-QA always keeps the questions made from the text itself"
    );
    for line in jsonl.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let user = v["messages"][0]["content"].as_str().unwrap();
        assert!(
            !user.contains("University of Drell in 2029."),
            "no context prefix: {user}"
        );
    }
}
