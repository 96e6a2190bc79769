//! `Tokenizer::encode_with_offsets`: the same ids as `encode`, and byte ranges that point at the
//! text each token came from, also for multi-byte characters and special tokens.

mod common;

use common::{gguf, gguf_vocab, hf};
use engram_tokenizer::Tokenizer;
use proptest::prelude::*;

#[test]
fn offsets_are_byte_ranges_into_the_text() {
    // "é" and "ö" are two bytes each: character offsets would give (1, 2) for "é".
    let text = "héllo wörld";
    let (ids, offsets) = hf().encode_with_offsets(text).unwrap();
    assert_eq!(ids, hf().encode(text).unwrap());
    assert_eq!(
        offsets,
        vec![(0, 1), (1, 3), (3, 6), (6, 8), (8, 11), (11, 13)]
    );
    let pieces: Vec<&str> = offsets.iter().map(|&(s, e)| &text[s..e]).collect();
    assert_eq!(pieces, ["h", "é", "llo", " w", "ör", "ld"]);
}

#[test]
fn tokens_holding_part_of_a_character_span_the_whole_character() {
    // "語" is one character in three bytes and three byte-level tokens.
    let text = "日本語 text";
    let (ids, offsets) = hf().encode_with_offsets(text).unwrap();
    assert_eq!(ids, hf().encode(text).unwrap());
    assert_eq!(ids.len(), 7);
    assert_eq!(
        offsets,
        vec![(0, 3), (0, 3), (3, 6), (6, 9), (6, 9), (6, 9), (9, 14)]
    );
}

#[test]
fn special_tokens_span_their_own_text() {
    let text = "<|im_start|>user\nÉté<|im_end|>\n";
    let (ids, offsets) = hf().encode_with_offsets(text).unwrap();
    assert_eq!(ids, hf().encode(text).unwrap());
    assert_eq!(ids[0], 1);
    assert_eq!(offsets[0], (0, 12));
    let end = ids.iter().position(|&id| id == 2).unwrap();
    assert_eq!(&text[offsets[end].0..offsets[end].1], "<|im_end|>");
    assert_eq!(offsets.last(), Some(&(text.len() - 1, text.len())));
}

#[test]
fn bos_is_prepended_with_an_empty_range_as_encode_does() {
    let mut vocab = gguf_vocab();
    vocab.add_bos = true;
    let t = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    let (ids, offsets) = t.encode_with_offsets("Hi there").unwrap();
    assert_eq!(ids, t.encode("Hi there").unwrap());
    assert_eq!(ids[0], 1);
    assert_eq!(offsets, vec![(0, 0), (0, 2), (2, 8)]);
    // Text already starting with BOS gets no second one, so no empty range either.
    let (ids, offsets) = t.encode_with_offsets("<|im_start|>x").unwrap();
    assert_eq!(ids, t.encode("<|im_start|>x").unwrap());
    assert_eq!(offsets, vec![(0, 12), (12, 13)]);
    assert_eq!(t.encode_with_offsets("").unwrap(), (vec![1], vec![(0, 0)]));
}

const PIECES: &[&str] = &[
    " ",
    "  ",
    "\n",
    "\r\n",
    "\t",
    "1",
    " 23",
    "'s",
    "don't",
    "Hello",
    " world",
    "é",
    "e\u{301}",
    "中文",
    "😀",
    "👋🏽",
    "\u{200d}",
    "<|im_start|>",
    "<|im_end|>",
    "<|im_start",
    "Ġ",
    "Ċ",
    "\0",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        proptest::collection::vec(proptest::sample::select(PIECES), 0..24).prop_map(|p| p.concat()),
    ]
}

/// Ids equal `encode`'s; ranges are in bounds, on character boundaries, non-empty, in order, and
/// together cover the whole text.
fn check(t: &Tokenizer, text: &str) -> Result<(), TestCaseError> {
    let (ids, offsets) = t.encode_with_offsets(text).unwrap();
    prop_assert_eq!(&ids, &t.encode(text).unwrap());
    prop_assert_eq!(ids.len(), offsets.len());
    let mut covered = 0;
    let mut last = (0, 0);
    for &(s, e) in &offsets {
        prop_assert!(
            s < e && e <= text.len(),
            "{:?} out of {}",
            (s, e),
            text.len()
        );
        prop_assert!(text.is_char_boundary(s) && text.is_char_boundary(e));
        prop_assert!(s >= last.0 && e >= last.1, "{:?} after {:?}", (s, e), last);
        prop_assert!(s <= covered, "gap before {:?}", (s, e));
        covered = covered.max(e);
        last = (s, e);
    }
    prop_assert_eq!(covered, text.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn offsets_tile_the_text_for_tokenizer_json(text in text()) {
        check(hf(), &text)?;
    }

    #[test]
    fn offsets_tile_the_text_for_gguf_vocab(text in text()) {
        check(gguf(), &text)?;
    }
}
