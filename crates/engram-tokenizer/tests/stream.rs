//! Streaming decode: chunks never split a character, and they add up to the full decode.

mod common;

use common::{gguf, hf, prompt};
use engram_tokenizer::Tokenizer;

const MULTIBYTE: &str = "Hi 👋🏽! 你好，世界。日本語のテキスト 🇯🇵 — ça va? 𝔘𝔫𝔦𝔠𝔬𝔡𝔢 ☃ 🧑‍🤝‍🧑 한국어";

/// Pushes every id, returning the chunks and how many pushes produced nothing.
fn chunks(t: &Tokenizer, ids: &[u32], skip_special: bool) -> (Vec<String>, usize) {
    let mut stream = t.decode_stream(skip_special);
    let mut out = Vec::new();
    let mut waits = 0;
    for &id in ids {
        match stream.push(id) {
            Some(c) => out.push(c),
            None => waits += 1,
        }
    }
    if let Some(rest) = stream.finish() {
        out.push(rest);
    }
    (out, waits)
}

#[test]
fn multibyte_text_streams_whole_characters() {
    for t in [hf(), gguf()] {
        let ids = t.encode(MULTIBYTE).unwrap();
        let (chunks, waits) = chunks(t, &ids, false);
        // Some tokens hold only part of a character, so the stream had to wait.
        assert!(waits > 0, "expected split characters among {ids:?}");
        assert!(ids.len() > chunks.len());
        for c in &chunks {
            assert!(
                !c.contains('\u{FFFD}'),
                "chunk {c:?} holds a broken character"
            );
            assert!(std::str::from_utf8(c.as_bytes()).is_ok());
        }
        assert_eq!(chunks.concat(), t.decode(&ids, false).unwrap());
        assert_eq!(chunks.concat(), MULTIBYTE);
    }
}

#[test]
fn each_emoji_arrives_in_one_chunk() {
    let t = gguf();
    let text = "😀😃😄😁🤖🦀";
    let ids = t.encode(text).unwrap();
    let (chunks, _) = chunks(t, &ids, false);
    for c in &chunks {
        assert!(c.chars().count() >= 1);
        assert!(text.contains(c.as_str()));
    }
    assert_eq!(chunks.concat(), text);
}

#[test]
fn special_tokens_are_skipped_or_kept_like_decode() {
    let chat = prompt("chat");
    for skip in [false, true] {
        let (chunks, _) = chunks(gguf(), &chat.input_ids, skip);
        let text = chunks.concat();
        assert_eq!(text, gguf().decode(&chat.input_ids, skip).unwrap());
        assert_eq!(text.contains("<|im_start|>"), !skip);
    }
}

#[test]
fn an_unfinished_character_is_flushed_as_a_replacement() {
    let t = gguf();
    let ids = t.encode("a😀").unwrap();
    assert!(
        ids.len() >= 3,
        "the emoji should take several byte tokens: {ids:?}"
    );
    let cut = &ids[..ids.len() - 1];
    let mut stream = t.decode_stream(false);
    let shown: String = cut.iter().filter_map(|&id| stream.push(id)).collect();
    assert_eq!(shown, "a");
    let rest = stream.finish().expect("the partial emoji is flushed");
    assert_eq!(rest, "\u{FFFD}");
    assert_eq!(format!("{shown}{rest}"), t.decode(cut, false).unwrap());
    // The stream is reset and usable again.
    assert_eq!(stream.push(ids[0]).as_deref(), Some("a"));
}

/// A Llama-2-style SentencePiece BPE (Metaspace spelling, byte fallback): not byte-level, so the
/// stream uses its re-decoding window.
fn sentencepiece_like() -> Tokenizer {
    let mut vocab = serde_json::Map::new();
    for (i, t) in ["<unk>", "<s>", "</s>"].iter().enumerate() {
        vocab.insert((*t).into(), i.into());
    }
    for b in 0..=255u32 {
        vocab.insert(format!("<0x{b:02X}>"), (3 + b).into());
    }
    let pieces = ["▁", "H", "e", "l", "o", "w", "r", "d", "▁H", "ll", "▁w"];
    for (i, p) in pieces.iter().enumerate() {
        vocab.insert((*p).into(), (259 + i).into());
    }
    let json = serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [
            {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
            {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
        ],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "▁"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
        ]},
        "pre_tokenizer": null,
        "post_processor": null,
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}
        ]},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>",
            "continuing_subword_prefix": null, "end_of_word_suffix": null,
            "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab,
            "merges": [["▁", "H"], ["l", "l"], ["▁", "w"]]
        }
    });
    Tokenizer::from_json_bytes(json.to_string().as_bytes()).unwrap()
}

#[test]
fn non_byte_level_tokenizers_stream_through_a_window() {
    let t = sentencepiece_like();
    assert_eq!(t.kind_summary(), "BPE, 270 tokens, tokenizer.json");
    assert_eq!(
        t.eos_ids(),
        &[2],
        "</s> is recognised as EOS without a config"
    );
    let text = "Hello world 👋 中文 Hello";
    let ids = t.encode(text).unwrap();
    assert!(
        ids.iter().any(|&id| (3..259).contains(&id)),
        "byte fallback used"
    );
    assert_eq!(t.decode(&ids, false).unwrap(), text);
    let (chunks, waits) = chunks(&t, &ids, false);
    assert!(waits > 0);
    for c in &chunks {
        assert!(!c.contains('\u{FFFD}'), "{c:?}");
    }
    assert_eq!(chunks.concat(), text);
    // The leading space of each word survives, except the very first one that the decoder strips.
    assert_eq!(chunks[0], "H");
}
