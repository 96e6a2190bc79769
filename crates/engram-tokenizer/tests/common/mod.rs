//! Fixtures shared by the integration tests: SmolLM2-135M-Instruct's tokenizer files, the
//! tokenizer metadata of its GGUF file, and the reference token ids made with transformers.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use engram_tokenizer::{GgufVocab, Tokenizer};
use serde::Deserialize;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn read_fixture(name: &str) -> String {
    std::fs::read_to_string(fixture(name)).expect("fixture readable")
}

/// The `tokenizer.ggml.*` vectors of SmolLM2-135M-Instruct.Q4_1.gguf, extracted with the `gguf`
/// Python package.
pub fn gguf_vocab() -> GgufVocab {
    let bytes = std::fs::read(fixture("smollm2_gguf_vocab.json")).expect("fixture readable");
    serde_json::from_slice(&bytes).expect("valid GgufVocab JSON")
}

/// The tokenizer loaded from the reference `tokenizer.json` (with its side files).
pub fn hf() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| {
        Tokenizer::from_file(fixture("tokenizer.json")).expect("reference tokenizer.json loads")
    })
}

/// The tokenizer built from the GGUF vocabulary.
pub fn gguf() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| Tokenizer::from_gguf_vocab(&gguf_vocab()).expect("GGUF vocabulary builds"))
}

#[derive(Deserialize)]
pub struct Reference {
    pub prompts: Vec<RefPrompt>,
}

#[derive(Deserialize)]
pub struct RefPrompt {
    pub name: String,
    pub text: String,
    pub n_tokens: usize,
    pub input_ids: Vec<u32>,
}

pub fn reference() -> Reference {
    serde_json::from_str(&read_fixture("reference.json")).expect("reference.json parses")
}

pub fn prompt(name: &str) -> RefPrompt {
    reference()
        .prompts
        .into_iter()
        .find(|p| p.name == name)
        .expect("prompt present")
}
