//! The pre-tokenizer styles selected by `tokenizer.ggml.pre`.

mod common;

use common::{gguf, gguf_vocab};
use engram_tokenizer::Tokenizer;

fn with_pre(pre: &str) -> Tokenizer {
    let mut vocab = gguf_vocab();
    vocab.pre = Some(pre.into());
    Tokenizer::from_gguf_vocab(&vocab).unwrap()
}

fn tokens(t: &Tokenizer, text: &str) -> Vec<String> {
    t.encode(text)
        .unwrap()
        .into_iter()
        .map(|id| t.id_to_token(id).unwrap())
        .collect()
}

#[test]
fn smollm_follows_transformers_and_starcoder_isolates_digits() {
    let starcoder = with_pre("starcoder");
    assert_eq!(
        starcoder.kind_summary(),
        "BPE (byte-level), 49152 tokens, pre=starcoder"
    );
    // GPT-2's regex attaches one space to the number; isolating digits first leaves the spaces
    // together.
    assert_eq!(tokens(gguf(), "a  1"), ["a", "Ġ", "Ġ", "1"]);
    assert_eq!(tokens(&starcoder, "a  1"), ["a", "ĠĠ", "1"]);
    // Elsewhere they agree (the vocabulary has no multi-digit tokens).
    for text in ["The year 1822 and 280 BC.", "x = 12345;\nok", "a 1 b"] {
        assert_eq!(
            starcoder.encode(text).unwrap(),
            gguf().encode(text).unwrap(),
            "{text}"
        );
    }
    assert_eq!(
        starcoder
            .decode(&starcoder.encode("a  1").unwrap(), false)
            .unwrap(),
        "a  1"
    );
    assert_eq!(
        with_pre("gpt2").encode("a  1").unwrap(),
        gguf().encode("a  1").unwrap()
    );
}

#[test]
fn llama3_and_qwen2_styles_split_with_their_regexes() {
    let llama = with_pre("llama-bpe");
    let qwen = with_pre("qwen2");
    assert_eq!(
        llama.kind_summary(),
        "BPE (byte-level), 49152 tokens, pre=llama-bpe"
    );
    let text = "Hello  world's\n\n  x=1;\tdone";
    for t in [&llama, &qwen] {
        assert_eq!(t.decode(&t.encode(text).unwrap(), false).unwrap(), text);
        assert_eq!(t.encode("<|im_start|>user").unwrap()[0], 1);
    }
    // Llama 3's and Qwen2's `\s*[\r\n]+` keeps a newline run apart from the spaces after it,
    // where GPT-2's `\s+(?!\S)` takes the newlines and all spaces but the last.
    assert_eq!(tokens(gguf(), "x\n\n  y"), ["x", "ĊĊĠ", "Ġy"]);
    assert_eq!(tokens(&llama, "x\n\n  y"), ["x", "ĊĊ", "Ġ", "Ġy"]);
    assert_eq!(tokens(&qwen, "x\n\n  y"), ["x", "ĊĊ", "Ġ", "Ġy"]);
    // Qwen2 normalises to NFC: a decomposed é encodes like the composed one.
    assert_eq!(
        qwen.encode("e\u{301}").unwrap(),
        qwen.encode("\u{e9}").unwrap()
    );
    assert_ne!(
        gguf().encode("e\u{301}").unwrap(),
        gguf().encode("\u{e9}").unwrap()
    );
}
