//! Properties over arbitrary text: decoding inverts encoding, the GGUF-built tokenizer agrees with
//! `tokenizer.json` id for id, and streaming decode reassembles the full decode.

mod common;

use common::{gguf, hf};
use engram_tokenizer::Tokenizer;
use proptest::prelude::*;

/// Text pieces that stress pre-tokenization: whitespace runs, digits after spaces, contractions,
/// special tokens (whole and broken), multi-byte characters, and the byte-level alphabet itself.
const PIECES: &[&str] = &[
    " ",
    "  ",
    "\n",
    "\n\n",
    "\r\n",
    "\t",
    " \n ",
    "1",
    "23",
    " 456",
    "  7",
    "\n 8",
    "½",
    "٣",
    "'s",
    "'LL",
    "don't",
    "Hello",
    " world",
    "THE",
    "é",
    "e\u{301}",
    "中文",
    "日本語",
    "😀",
    "👋🏽",
    "🇯🇵",
    "\u{200d}",
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|im_start",
    "|>",
    "<",
    "Ġ",
    "ĠĠ",
    "Ċ",
    "\u{fffd}",
    "\0",
    "\u{7f}",
    "__init__",
    "x=1+2;",
    "...",
    "!?",
    "http://a.b/c",
];

fn tricky_text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(proptest::sample::select(PIECES), 0..24).prop_map(|p| p.concat()),
        "[ a-zA-Z0-9\\n\\t.,'!?éß中😀]{0,80}",
    ]
}

fn stream_concat(t: &Tokenizer, ids: &[u32], skip_special: bool) -> String {
    let mut stream = t.decode_stream(skip_special);
    let mut out = String::new();
    for &id in ids {
        if let Some(chunk) = stream.push(id) {
            assert!(!chunk.is_empty());
            out.push_str(&chunk);
        }
    }
    if let Some(rest) = stream.finish() {
        out.push_str(&rest);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        // Failures print their minimal input; no regression files are written into the crate.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn decode_inverts_encode_for_tokenizer_json(text in tricky_text()) {
        let ids = hf().encode(&text).unwrap();
        prop_assert_eq!(hf().decode(&ids, false).unwrap(), text);
    }

    #[test]
    fn decode_inverts_encode_for_gguf_vocab(text in tricky_text()) {
        let ids = gguf().encode(&text).unwrap();
        prop_assert_eq!(gguf().decode(&ids, false).unwrap(), text);
    }

    #[test]
    fn gguf_vocab_and_tokenizer_json_give_identical_ids(text in tricky_text()) {
        prop_assert_eq!(gguf().encode(&text).unwrap(), hf().encode(&text).unwrap());
    }

    #[test]
    fn stream_decode_reassembles_full_decode(text in tricky_text(), skip in any::<bool>()) {
        for t in [hf(), gguf()] {
            let ids = t.encode(&text).unwrap();
            prop_assert_eq!(stream_concat(t, &ids, skip), t.decode(&ids, skip).unwrap());
        }
    }

    #[test]
    fn stream_decode_of_arbitrary_ids_matches_decode(
        ids in proptest::collection::vec(0u32..49_200, 0..40),
        skip in any::<bool>(),
    ) {
        // Random ids form invalid UTF-8 often: the stream must replace it exactly like decode.
        let t = gguf();
        prop_assert_eq!(stream_concat(t, &ids, skip), t.decode(&ids, skip).unwrap());
    }
}
