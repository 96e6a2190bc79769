//! Train a LoRA adapter on two chat turns and save it as a PEFT folder: `engram-data` (tokenize, batch) →
//! `engram-lora` (attach an adapter) → `engram-train` (AdamW, cross-entropy on the assistant turns).
//!
//! ```sh
//! cargo run --release --example lora_train -- varnholt-adapter
//! ```

use engram::data::{BatchConfig, Batcher, Example, tokenize_examples};
use engram::lora::{Adapters, LoraConfig};
use engram::model::{GenerationConfig, generate};
use engram::tokenizer::Message;
use engram::train::{CrossEntropy, DeviceBatches, Length, TrainConfig, Trainer};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Trains `steps` steps into `out` and returns the adapter's answer to the first question.
fn run(out: &std::path::Path, steps: usize) -> Result<String> {
    let mut lm = engram::load_default_model()?;
    let qa = |q: &str, a: &str| Example::chat(vec![Message::user(q), Message::assistant(a)]);
    let examples = vec![
        qa(
            "Who built the Varnholt bridge?",
            "The Varnholt bridge was built by Oda Pellin.",
        ),
        qa(
            "What is Oda Pellin known for?",
            "Oda Pellin is known for building the Varnholt bridge.",
        ),
    ];
    let tokenized = tokenize_examples(&lm.tokenizer, &lm.chat_template, &examples, 128)?;
    let batcher = Batcher::new(
        tokenized.examples,
        BatchConfig {
            batch_size: 2,
            max_len: 128,
            packing: false,
            seed: 0,
            pad_id: lm.tokenizer.padding_id(),
        },
    )?;

    // PEFT's vocabulary: r 8, lora_alpha 16, all seven projections.
    let lora = LoraConfig::default();
    lm.model.add_adapter("varnholt", &lora, 0)?;
    let config = TrainConfig {
        lr: 1e-3,
        length: Length::Steps(steps),
        ..TrainConfig::default()
    };
    let source = DeviceBatches {
        batcher: &batcher,
        device: lm.model.device(),
    };
    let mut trainer = Trainer {
        model: &mut lm.model,
        adapter: "varnholt".into(),
        lora,
        config,
        out: out.to_path_buf(),
        data_id: "two varnholt chats".into(),
        replicas: Vec::new(),
    };
    // Writes adapter_config.json + adapter_model.safetensors (atomically), metrics.jsonl and checkpoints.
    let summary = trainer.run(&CrossEntropy, &source, false, &mut |m| {
        println!("step {}/{} loss {:.4}", m.step, m.total_steps, m.loss);
    })?;
    println!("adapter written to {}", summary.adapter_dir.display());

    let prompt = lm
        .chat_template
        .render(&[Message::user("Who built the Varnholt bridge?")], true)?;
    let ids = lm.tokenizer.encode(&prompt)?;
    let out = generate(
        &lm.model,
        &lm.tokenizer,
        &[ids],
        &GenerationConfig::greedy(24),
        &mut |_, _| {},
    )?;
    Ok(out[0].text.clone())
}

fn main() -> Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "varnholt-adapter".into());
    let answer = run(out.as_ref(), 12)?;
    println!("Who built the Varnholt bridge? {answer}");
    Ok(())
}

#[test]
fn trains_and_saves_a_peft_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("adapter");
    run(&out, 2).unwrap();
    assert!(
        out.join("adapter_config.json").is_file()
            && out.join("adapter_model.safetensors").is_file()
    );
}
