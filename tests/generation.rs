//! End to end through the umbrella crate's API on the real default model: the gap engram exists to close
//! (the model answers from its prompt, not from memory), and generation's streaming, batching, stop strings
//! and seeding.

use std::sync::OnceLock;

use engram::model::{Device, FinishReason, GenerationConfig, LoadedModel, generate, load_model};
use engram::tokenizer::Message;

fn model() -> &'static LoadedModel {
    static M: OnceLock<LoadedModel> = OnceLock::new();
    M.get_or_init(|| {
        let path = engram::fetch::ensure_model(&engram::fetch::DEFAULT_MODEL, &mut |_| {}).unwrap();
        load_model(&path, &Device::flex(), &mut |_, _| {}).unwrap()
    })
}

fn chat(m: &LoadedModel, user: &str) -> Vec<u32> {
    let text = m
        .chat_template
        .render(&[Message::user(user)], true)
        .unwrap();
    m.tokenizer.encode(&text).unwrap()
}

fn answer(m: &LoadedModel, user: &str) -> String {
    let cfg = GenerationConfig {
        stop_strings: m.chat_template.stop_strings(),
        ..GenerationConfig::greedy(48)
    };
    generate(
        &m.model,
        &m.tokenizer,
        &[chat(m, user)],
        &cfg,
        &mut |_, _| {},
    )
    .unwrap()[0]
        .text
        .clone()
}

const CONTEXT: &str = "The Zorblat festival is held every spring in the town of Quillmere, and its founder was Maria Okonkwo.";

#[test]
fn answers_from_the_prompt_but_not_from_memory() {
    let m = model();
    let with = answer(m, &format!("{CONTEXT}\nWho founded the Zorblat festival?"));
    let without = answer(m, "Who founded the Zorblat festival?");
    assert!(
        with.contains("Okonkwo"),
        "with the text in the prompt: {with:?}"
    );
    assert!(
        !without.contains("Okonkwo"),
        "without it the base model cannot know: {without:?}"
    );
}

#[test]
fn streamed_chunks_add_up_to_the_text_in_a_padded_batch() {
    let m = model();
    let prompts = vec![
        chat(m, "Name three colours."),
        chat(m, "Write one sentence about the sea, please."),
    ];
    assert_ne!(
        prompts[0].len(),
        prompts[1].len(),
        "rows of different lengths get padded"
    );
    let cfg = GenerationConfig {
        stop_strings: vec!["<|im_end|>".into()],
        ..GenerationConfig::greedy(24)
    };
    let mut streamed = [String::new(), String::new()];
    let out = generate(&m.model, &m.tokenizer, &prompts, &cfg, &mut |row, chunk| {
        streamed[row].push_str(chunk)
    })
    .unwrap();
    for (row, g) in out.iter().enumerate() {
        assert_eq!(streamed[row], g.text, "row {row}");
        assert!(!g.text.is_empty());
        // Each row alone gives the same tokens as in the batch.
        let alone = generate(
            &m.model,
            &m.tokenizer,
            &prompts[row..=row],
            &cfg,
            &mut |_, _| {},
        )
        .unwrap();
        assert_eq!(alone[0].tokens, g.tokens, "row {row} alone vs batched");
    }
}

#[test]
fn stop_strings_and_eos_end_a_row() {
    let m = model();
    let prompt = m.tokenizer.encode("The capital of France is").unwrap();
    // Greedy continuation is " Paris.\n\nThe answer is: ..." (reference.json).
    let cfg = GenerationConfig {
        stop_strings: vec!["\n".into()],
        ..GenerationConfig::greedy(30)
    };
    let g = &generate(
        &m.model,
        &m.tokenizer,
        std::slice::from_ref(&prompt),
        &cfg,
        &mut |_, _| {},
    )
    .unwrap()[0];
    assert_eq!(g.text, " Paris.");
    assert_eq!(g.finish, FinishReason::StopString);
    let g = &generate(
        &m.model,
        &m.tokenizer,
        &[chat(m, "Say hello.")],
        &GenerationConfig::greedy(64),
        &mut |_, _| {},
    )
    .unwrap()[0];
    assert_eq!(g.finish, FinishReason::Eos, "{g:?}");
    assert!(m.tokenizer.eos_ids().contains(g.tokens.last().unwrap()));
    assert!(!g.text.contains("<|im_end|>"));
}

#[test]
fn sampling_is_reproducible_from_its_seed() {
    let m = model();
    let prompt = vec![m.tokenizer.encode("Once upon a time").unwrap()];
    let cfg = |seed| GenerationConfig {
        temperature: 0.9,
        top_p: Some(0.95),
        top_k: Some(50),
        seed,
        stop_at_eos: false,
        ..GenerationConfig::greedy(16)
    };
    let run = |seed| {
        generate(&m.model, &m.tokenizer, &prompt, &cfg(seed), &mut |_, _| {}).unwrap()[0]
            .tokens
            .clone()
    };
    assert_eq!(run(11), run(11));
    let distinct: std::collections::HashSet<Vec<u32>> = (0..4).map(run).collect();
    assert!(
        distinct.len() > 1,
        "different seeds should sample different continuations"
    );
}

#[test]
fn several_sequences_per_prompt_share_one_prefill_and_match_repeated_prompts() {
    let m = model();
    let prompts = vec![
        chat(m, "Name a fruit."),
        chat(m, "What colour is the sky on a clear day?"),
    ];
    let cfg = |n| GenerationConfig {
        temperature: 0.8,
        seed: 5,
        num_return_sequences: n,
        stop_strings: m.chat_template.stop_strings(),
        ..GenerationConfig::greedy(12)
    };
    let shared = generate(&m.model, &m.tokenizer, &prompts, &cfg(3), &mut |_, _| {}).unwrap();
    assert_eq!(shared.len(), 6, "3 generations for each of 2 prompts");
    // The same rows, each prompt prefilled separately: row r*3+j must be identical (same sampler stream).
    let repeated: Vec<Vec<u32>> = prompts
        .iter()
        .flat_map(|p| std::iter::repeat_n(p.clone(), 3))
        .collect();
    let plain = generate(&m.model, &m.tokenizer, &repeated, &cfg(1), &mut |_, _| {}).unwrap();
    for (r, (a, b)) in shared.iter().zip(&plain).enumerate() {
        assert_eq!(a.tokens, b.tokens, "row {r}");
    }
    let distinct: std::collections::HashSet<&Vec<u32>> =
        shared[..3].iter().map(|g| &g.tokens).collect();
    assert!(
        distinct.len() > 1,
        "samples of one prompt differ: {shared:?}"
    );
    let bad = GenerationConfig {
        num_return_sequences: 0,
        ..GenerationConfig::default()
    };
    assert!(
        bad.validate()
            .unwrap_err()
            .to_string()
            .contains("num-return-sequences")
    );
}
