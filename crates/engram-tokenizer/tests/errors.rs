//! Bad input gives clear errors, never panics.

mod common;

use common::{fixture, gguf, gguf_vocab, read_fixture};
use engram_tokenizer::{GgufVocab, Tokenizer, TokenizerError};

#[test]
fn corrupt_tokenizer_json_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    for content in [
        "{ this is not json".to_owned(),
        read_fixture("tokenizer.json")[..5000].to_owned(),
        r#"{"model": {"type": "NoSuchModel"}}"#.to_owned(),
        String::new(),
    ] {
        std::fs::write(&path, &content).unwrap();
        let err = Tokenizer::from_file(&path).unwrap_err();
        assert!(
            matches!(&err, TokenizerError::InvalidFile { path: p, what: "tokenizer.json", .. } if p == &path),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("not a valid tokenizer.json"), "{msg}");
    }
}

#[test]
fn missing_tokenizer_json_is_an_io_error_naming_it() {
    let path = fixture("does-not-exist/tokenizer.json");
    let err = Tokenizer::from_file(&path).unwrap_err();
    assert!(matches!(err, TokenizerError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("does-not-exist"), "{err}");
}

#[test]
fn corrupt_side_file_names_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(fixture("tokenizer.json"), dir.path().join("tokenizer.json")).unwrap();
    std::fs::write(dir.path().join("tokenizer_config.json"), "{\"bos_token\": ").unwrap();
    let err = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("tokenizer_config.json"), "{msg}");
}

#[test]
fn garbage_json_bytes_are_rejected() {
    let err = Tokenizer::from_json_bytes(b"\xff\xfe garbage").unwrap_err();
    assert!(matches!(err, TokenizerError::InvalidJson(_)), "{err:?}");
}

#[test]
fn unknown_gguf_model_is_unsupported_and_named() {
    for model in ["llama", "bert", "", "t5"] {
        let vocab = GgufVocab {
            model: model.into(),
            tokens: vec!["a".into(), "b".into()],
            ..GgufVocab::default()
        };
        let err = Tokenizer::from_gguf_vocab(&vocab).unwrap_err();
        match &err {
            TokenizerError::Unsupported { value, .. } => assert_eq!(value, model),
            other => panic!("expected Unsupported, got {other:?}"),
        }
        assert!(err.to_string().contains(&format!("{model:?}")), "{err}");
        assert!(err.to_string().contains("tokenizer.ggml.model"), "{err}");
    }
}

#[test]
fn unknown_pre_tokenizer_is_unsupported_and_named() {
    let mut vocab = gguf_vocab();
    vocab.pre = Some("mystery-pre".into());
    let err = Tokenizer::from_gguf_vocab(&vocab).unwrap_err();
    assert!(
        matches!(&err, TokenizerError::Unsupported { value, .. } if value == "mystery-pre"),
        "{err:?}"
    );
    assert!(err.to_string().contains("tokenizer.ggml.pre"));
}

fn tiny_vocab() -> GgufVocab {
    GgufVocab {
        model: "gpt2".into(),
        pre: Some("gpt2".into()),
        tokens: ["a", "b", "ab", "<|end|>"].map(String::from).to_vec(),
        token_types: vec![1, 1, 1, 3],
        merges: vec!["a b".into()],
        eos_id: Some(3),
        ..GgufVocab::default()
    }
}

#[test]
fn inconsistent_gguf_vocabularies_are_rejected_with_the_culprit() {
    let ok = Tokenizer::from_gguf_vocab(&tiny_vocab()).unwrap();
    assert_eq!(ok.encode("ab<|end|>").unwrap(), vec![2, 3]);
    assert_eq!(ok.eos_ids(), &[3]);

    let cases: Vec<(GgufVocab, &str)> = vec![
        (
            GgufVocab {
                merges: vec!["ab".into()],
                ..tiny_vocab()
            },
            "merge #0 \"ab\"",
        ),
        (
            GgufVocab {
                merges: vec!["a c".into()],
                ..tiny_vocab()
            },
            "\"c\" is not in tokenizer.ggml.tokens",
        ),
        (
            GgufVocab {
                merges: vec!["b a".into()],
                ..tiny_vocab()
            },
            "\"ba\" is not in",
        ),
        (
            GgufVocab {
                token_types: vec![1, 1],
                ..tiny_vocab()
            },
            "2 entries for 4 tokens",
        ),
        (
            GgufVocab {
                tokens: vec![],
                token_types: vec![],
                merges: vec![],
                ..tiny_vocab()
            },
            "empty",
        ),
    ];
    for (vocab, needle) in cases {
        let err = Tokenizer::from_gguf_vocab(&vocab).unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidVocab(_)), "{err:?}");
        assert!(
            err.to_string().contains(needle),
            "{err} should mention {needle}"
        );
    }
}

#[test]
fn out_of_range_special_ids_are_dropped_not_trusted() {
    let vocab = GgufVocab {
        bos_id: Some(99),
        eos_id: Some(1000),
        pad_id: Some(u32::MAX),
        add_bos: true,
        ..tiny_vocab()
    };
    let t = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    assert_eq!(t.bos_id(), None);
    assert!(!t.add_bos());
    assert!(t.eos_ids().is_empty());
    assert_eq!(t.pad_id(), None);
    assert_eq!(t.encode("ab").unwrap(), vec![2]);
}

#[test]
fn unknown_ids_decode_to_nothing() {
    let t = gguf();
    assert_eq!(
        t.decode(&[u32::MAX, 49152, 504, 1 << 30], false).unwrap(),
        "The"
    );
    let mut stream = t.decode_stream(false);
    assert_eq!(stream.push(u32::MAX), None);
    assert_eq!(stream.push(504).as_deref(), Some("The"));
    assert_eq!(stream.finish(), None);
}

#[test]
fn a_broken_gguf_chat_template_does_not_break_the_tokenizer() {
    let mut vocab = gguf_vocab();
    vocab.chat_template = Some("{% for m in messages %}{{ m.content }".into());
    let t = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    assert!(t.chat_template().is_none());
    let why = t.chat_template_error().expect("error kept");
    assert!(why.contains("syntax error"), "{why}");
    assert_eq!(
        t.encode("The capital of France is").unwrap(),
        vec![504, 3575, 282, 4649, 314]
    );
}

#[test]
fn tokenizer_and_templates_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Tokenizer>();
    assert_send_sync::<engram_tokenizer::ChatTemplate>();
    let t = gguf().clone();
    let handle = std::thread::spawn(move || t.encode("The capital of France is").unwrap());
    assert_eq!(handle.join().unwrap(), vec![504, 3575, 282, 4649, 314]);
}

mod fuzz {
    use super::*;
    use proptest::prelude::*;

    const SMALL_JSON: &str = r#"{"version":"1.0","truncation":null,"padding":null,"added_tokens":[{"id":3,"content":"<|end|>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}],"normalizer":null,"pre_tokenizer":{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true},"post_processor":null,"decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true},"model":{"type":"BPE","dropout":null,"unk_token":null,"continuing_subword_prefix":null,"end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":false,"vocab":{"a":0,"b":1,"ab":2,"<|end|>":3},"merges":[["a","b"]]}}"#;

    #[test]
    fn a_truncated_decoder_section_is_an_error_not_a_panic() {
        // tokenizers 0.22 itself panics ("Helper") on this input.
        let cut = SMALL_JSON.find(r#""decoder":"#).unwrap() + r#""decoder":{"type":"#.len();
        let err = Tokenizer::from_json_bytes(&SMALL_JSON.as_bytes()[..cut]).unwrap_err();
        assert!(matches!(err, TokenizerError::InvalidJson(_)), "{err:?}");
        assert!(Tokenizer::from_json_bytes(SMALL_JSON.as_bytes()).is_ok());
    }

    #[test]
    fn a_template_post_processor_naming_an_undefined_special_token_is_refused() {
        // tokenizers 0.22 loads this, then panics ("no entry found for key") on the first encode that adds
        // special tokens, which loading itself does (found by the tokenizer_json fuzz target).
        let template = |single: &str, specials: &str| {
            SMALL_JSON.replace(
                r#""post_processor":null"#,
                &format!(
                    r#""post_processor":{{"type":"Sequence","processors":[{{"type":"TemplateProcessing","single":[{single},{{"Sequence":{{"id":"A","type_id":0}}}}],"pair":[],"special_tokens":{specials}}}]}}"#
                ),
            )
        };
        let defined = r#"{"<|end|>":{"id":"<|end|>","ids":[3],"tokens":["<|end|>"]}}"#;
        let uses = |id: &str| format!(r#"{{"SpecialToken":{{"id":"{id}","type_id":0}}}}"#);
        let good =
            Tokenizer::from_json_bytes(template(&uses("<|end|>"), defined).as_bytes()).unwrap();
        assert_eq!(good.bos_id(), Some(3), "the template's special token leads");

        let err = Tokenizer::from_json_bytes(template(&uses("<|nope|>"), defined).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("post_processor.processors[0].single") && err.contains("<|nope|>"),
            "{err}"
        );
        // tokenizers reads post-processors untagged: a misspelt type still loads as a template.
        let misspelt =
            template(&uses("<|nope|>"), defined).replace("TemplateProcessing", "Templ;ate");
        let err = Tokenizer::from_json_bytes(misspelt.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("<|nope|>"), "{err}");
        let uneven = r#"{"<|end|>":{"id":"<|end|>","ids":[3, 3],"tokens":["<|end|>"]}}"#;
        let err = Tokenizer::from_json_bytes(template(&uses("<|end|>"), uneven).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(err.contains("differ in length"), "{err}");
    }

    #[test]
    fn a_strip_decoder_cutting_at_the_end_is_refused() {
        // tokenizers 0.22 indexes out of bounds decoding a token shorter than what it strips (found by the
        // tokenizer_json fuzz target); stripping only at the start (Llama's) loads.
        let strip = |stop: u32| {
            SMALL_JSON.replace(
                r#""decoder":{"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true}"#,
                &format!(
                    r#""decoder":{{"type":"Sequence","decoders":[{{"type":"Strip","content":"a","start":1,"stop":{stop}}}]}}"#
                ),
            )
        };
        let t = Tokenizer::from_json_bytes(strip(0).as_bytes()).unwrap();
        assert_eq!(t.decode(&[0], false).unwrap(), "");
        let err = Tokenizer::from_json_bytes(strip(5).as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("decoder.decoders[0]") && err.contains("Strip"),
            "{err}"
        );
    }

    #[test]
    fn the_files_padding_and_truncation_are_dropped() {
        // tokenizers 0.22 panics on the first encode with a stride not below max_length, and pads to any
        // declared length (found by the tokenizer_json fuzz target); engram keeps neither setting.
        let json = SMALL_JSON
            .replace(
                r#""truncation":null"#,
                r#""truncation":{"direction":"Right","max_length":1,"strategy":"LongestFirst","stride":1}"#,
            )
            .replace(
                r#""padding":null"#,
                r#""padding":{"strategy":{"Fixed":1099511627776},"direction":"Right","pad_to_multiple_of":null,"pad_id":0,"pad_type_id":0,"pad_token":"a"}"#,
            );
        let t = Tokenizer::from_json_bytes(json.as_bytes()).unwrap();
        assert_eq!(t.encode("abab<|end|>").unwrap(), vec![2, 2, 3]);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn damaged_json_never_panics(cut in 0..SMALL_JSON.len(), flip in 0..SMALL_JSON.len(), byte in any::<u8>()) {
            let mut bytes = SMALL_JSON.as_bytes().to_vec();
            bytes[flip] = byte;
            let _ = Tokenizer::from_json_bytes(&bytes);
            let _ = Tokenizer::from_json_bytes(&bytes[..cut]);
        }

        #[test]
        fn arbitrary_gguf_vocabularies_never_panic(
            tokens in proptest::collection::vec("[abĠ<>|]{0,3}", 0..12),
            merges in proptest::collection::vec((0usize..12, 0usize..12), 0..8),
            types in proptest::collection::vec(0i32..7, 0..12),
            ids in proptest::collection::vec(proptest::option::of(0u32..16), 4),
            text in "[ab <>|Ġé]{0,12}",
        ) {
            let merges = merges
                .iter()
                .filter_map(|&(l, r)| Some(format!("{} {}", tokens.get(l)?, tokens.get(r)?)))
                .collect();
            let vocab = GgufVocab {
                model: "gpt2".into(),
                pre: None,
                token_types: if types.len() == tokens.len() { types } else { vec![] },
                tokens,
                merges,
                bos_id: ids[0],
                eos_id: ids[1],
                pad_id: ids[2],
                unk_id: ids[3],
                add_bos: ids[0].is_some(),
                chat_template: Some("{{ messages[0].content }}".into()),
            };
            if let Ok(t) = Tokenizer::from_gguf_vocab(&vocab) {
                if let Ok(ids) = t.encode(&text) {
                    let _ = t.decode(&ids, true);
                    let mut stream = t.decode_stream(false);
                    for id in ids {
                        let _ = stream.push(id);
                    }
                    let _ = stream.finish();
                }
                let _ = t.kind_summary();
            }
        }
    }
}
