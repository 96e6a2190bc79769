//! The dequantised SmolLM2 written as a Hugging Face folder loads back to identical logits, and the folder's
//! tokenizer.json gives the same ids as the GGUF's own vocabulary.

use engram_model::{
    Device, Logits, export_hf_folder, left_padded_batch, load_model, open_model_files,
};

#[test]
fn gguf_exported_as_hf_folder_reloads_to_identical_logits() {
    let gguf = engram_fetch::ensure_model(&engram_fetch::DEFAULT_MODEL, &mut |_| {})
        .expect("default model");
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("smollm2-hf");
    {
        let (weights, tokenizer) = open_model_files(&gguf).unwrap();
        export_hf_folder(weights.as_ref(), &tokenizer, &folder).unwrap();
    }
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(folder.join(f).is_file(), "{f} written");
    }
    let device = Device::flex();
    let from_gguf = load_model(&gguf, &device, &mut |_, _| {}).unwrap();
    let from_hf = load_model(&folder, &device, &mut |_, _| {}).unwrap();
    assert_eq!(from_gguf.model.config(), from_hf.model.config());

    let text = "<|im_start|>user\nName a planet.<|im_end|>\n<|im_start|>assistant\n";
    let ids = from_gguf.tokenizer.encode(text).unwrap();
    assert_eq!(
        ids,
        from_hf.tokenizer.encode(text).unwrap(),
        "tokenizers agree"
    );
    let logits = |m: &engram_model::LoadedModel| {
        let b = left_padded_batch(std::slice::from_ref(&ids), 2, &device).unwrap();
        m.model
            .forward(b.input, None, Logits::All)
            .try_into_vec_as::<f32>()
            .unwrap()
    };
    assert_eq!(logits(&from_gguf), logits(&from_hf), "bit-identical logits");
}
