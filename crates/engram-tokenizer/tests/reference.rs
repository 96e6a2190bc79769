//! The tokenizer against the reference ids that transformers produced for SmolLM2-135M-Instruct,
//! through both routes: its `tokenizer.json` and its GGUF vocabulary.

mod common;

use std::time::Instant;

use common::{fixture, gguf, gguf_vocab, hf, prompt, read_fixture, reference};
use engram_tokenizer::{ChatTemplate, Message, Tokenizer};

#[test]
fn reference_prompts_encode_to_reference_ids_from_tokenizer_json() {
    let prompts = reference().prompts;
    assert_eq!(prompts.len(), 3);
    for p in prompts {
        let ids = hf().encode(&p.text).unwrap();
        assert_eq!(ids.len(), p.n_tokens, "{}", p.name);
        assert_eq!(ids, p.input_ids, "prompt {:?}", p.name);
    }
}

#[test]
fn reference_prompts_encode_to_reference_ids_from_gguf_vocab() {
    for p in reference().prompts {
        assert_eq!(
            gguf().encode(&p.text).unwrap(),
            p.input_ids,
            "prompt {:?}",
            p.name
        );
    }
}

#[test]
fn reference_ids_decode_back_to_the_prompts() {
    for p in reference().prompts {
        for t in [hf(), gguf()] {
            assert_eq!(t.decode(&p.input_ids, false).unwrap(), p.text, "{}", p.name);
        }
    }
    // Skipping special tokens removes exactly the ChatML markers.
    let chat = prompt("chat");
    let text = gguf().decode(&chat.input_ids, true).unwrap();
    assert_eq!(
        text,
        chat.text
            .replace("<|im_start|>", "")
            .replace("<|im_end|>", "")
    );
}

#[test]
fn batch_encoding_matches_single_encoding() {
    let prompts = reference().prompts;
    let texts: Vec<&str> = prompts.iter().map(|p| p.text.as_str()).collect();
    for t in [hf(), gguf()] {
        let batch = t.encode_batch(&texts).unwrap();
        let expected: Vec<Vec<u32>> = prompts.iter().map(|p| p.input_ids.clone()).collect();
        assert_eq!(batch, expected);
    }
    assert_eq!(gguf().encode_batch(&[]).unwrap(), Vec::<Vec<u32>>::new());
}

#[test]
fn special_ids_and_vocabulary_agree() {
    for t in [hf(), gguf()] {
        assert_eq!(t.vocab_size(), 49152);
        assert_eq!(t.bos_id(), Some(1));
        assert!(!t.add_bos(), "SmolLM2 adds no BOS");
        assert_eq!(t.eos_ids(), &[2]);
        assert_eq!(t.pad_id(), Some(2));
        assert_eq!(t.token_to_id("<|im_start|>"), Some(1));
        assert_eq!(t.token_to_id("<|im_end|>"), Some(2));
        assert_eq!(t.id_to_token(504).as_deref(), Some("The"));
        assert_eq!(t.id_to_token(3575).as_deref(), Some("Ġcapital"));
        assert_eq!(t.id_to_token(49152), None);
        assert_eq!(t.token_to_id("no such token"), None);
    }
    let vocab = gguf_vocab();
    for id in (0..vocab.tokens.len()).step_by(97) {
        assert_eq!(hf().id_to_token(id as u32), Some(vocab.tokens[id].clone()));
        assert_eq!(gguf().token_to_id(&vocab.tokens[id]), Some(id as u32));
    }
}

#[test]
fn kind_summaries_describe_the_tokenizer() {
    assert_eq!(
        gguf().kind_summary(),
        "BPE (byte-level), 49152 tokens, pre=smollm"
    );
    assert_eq!(
        hf().kind_summary(),
        "BPE (byte-level), 49152 tokens, tokenizer.json"
    );
}

#[test]
fn chatml_renders_the_reference_chat_prompt_exactly() {
    let chat = prompt("chat");
    let messages = [Message::user(
        "What is the boiling point of water at sea level in Celsius?",
    )];
    let builtin = ChatTemplate::chatml();
    assert_eq!(builtin.name(), "chatml");
    assert_eq!(builtin.render(&messages, true).unwrap(), chat.text);

    let jinja = read_fixture("chat_template.jinja");
    let from_file = ChatTemplate::from_jinja(&jinja, "<|im_start|>", "<|im_end|>").unwrap();
    assert_eq!(from_file.render(&messages, true).unwrap(), chat.text);
    assert_eq!(from_file.name(), "chatml");
    // The built-in source is SmolLM2's, byte for byte.
    assert_eq!(builtin.source(), jinja.trim_end_matches('\n'));

    // The templates the tokenizers carry: tokenizer.json's side file and the GGUF metadata.
    for t in [hf(), gguf()] {
        let template = t.chat_template().expect("SmolLM2 ships a chat template");
        assert_eq!(template.render(&messages, true).unwrap(), chat.text);
        assert_eq!(template.stop_strings(), vec!["<|im_end|>".to_owned()]);
        assert!(t.chat_template_error().is_none());
        // And the rendered prompt encodes to the reference ids.
        assert_eq!(
            t.encode(&template.render(&messages, true).unwrap())
                .unwrap(),
            chat.input_ids
        );
    }
}

#[test]
fn gguf_tokenizer_serialises_like_the_reference_tokenizer_json() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    gguf().save(&path).unwrap();
    let ours: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let theirs: serde_json::Value = serde_json::from_str(&read_fixture("tokenizer.json")).unwrap();
    for key in [
        "normalizer",
        "pre_tokenizer",
        "post_processor",
        "decoder",
        "added_tokens",
        "model",
    ] {
        assert_eq!(
            ours[key], theirs[key],
            "tokenizer.json section {key:?} differs"
        );
    }
    // No temporary file is left beside it, and the saved file loads and encodes the same.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("tokenizer.json")]);
    let reloaded = Tokenizer::from_file(&path).unwrap();
    for p in reference().prompts {
        assert_eq!(reloaded.encode(&p.text).unwrap(), p.input_ids);
    }
}

#[test]
fn bos_is_prepended_once_when_the_model_asks_for_it() {
    let mut vocab = gguf_vocab();
    vocab.add_bos = true;
    let t = Tokenizer::from_gguf_vocab(&vocab).unwrap();
    assert!(t.add_bos());
    let plain = prompt("plain");
    let mut expected = vec![1];
    expected.extend(&plain.input_ids);
    assert_eq!(t.encode(&plain.text).unwrap(), expected);
    assert_eq!(t.encode("").unwrap(), vec![1]);
    // Text that already starts with BOS (a rendered Llama 3 prompt does) gets no second one.
    let chat = prompt("chat");
    assert_eq!(t.encode(&chat.text).unwrap(), chat.input_ids);
    assert_eq!(
        t.encode_batch(&[plain.text.as_str()]).unwrap(),
        vec![expected]
    );
    // The saved tokenizer.json carries the BOS in its post-processor, and loads back with add_bos.
    let dir = tempfile::tempdir().unwrap();
    t.save(dir.path().join("tokenizer.json")).unwrap();
    let reloaded = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    assert!(reloaded.add_bos());
    assert_eq!(reloaded.bos_id(), Some(1));
    assert_eq!(reloaded.encode(&plain.text).unwrap()[0], 1);
}

#[test]
fn encoding_the_paragraph_is_fast() {
    let paragraph = prompt("paragraph");
    assert_eq!(paragraph.n_tokens, 209);

    let start = Instant::now();
    let fresh = Tokenizer::from_gguf_vocab(&gguf_vocab()).unwrap();
    let build_gguf = start.elapsed();
    let start = Instant::now();
    let _ = Tokenizer::from_file(fixture("tokenizer.json")).unwrap();
    let build_json = start.elapsed();

    let start = Instant::now();
    let ids = fresh.encode(&paragraph.text).unwrap();
    let cold = start.elapsed();
    assert_eq!(ids, paragraph.input_ids);

    // Minimum and median over many runs: the minimum is the best estimate on a busy machine.
    let mut runs: Vec<_> = (0..300)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(fresh.encode(std::hint::black_box(&paragraph.text)).unwrap());
            start.elapsed()
        })
        .collect();
    runs.sort();
    let (min, median) = (runs[0], runs[runs.len() / 2]);
    eprintln!(
        "paragraph (209 tokens): first encode {cold:?}, warm encode min {min:?} / median {median:?}; \
         build from GGUF vocab {build_gguf:?}, from tokenizer.json {build_json:?}"
    );
    assert!(
        cold.as_millis() < 500 && median.as_millis() < 100,
        "encoding is pathologically slow"
    );
}
