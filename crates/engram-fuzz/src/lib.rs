//! # engram-fuzz
//!
//! The entry points the fuzzer drives: one function per fuzz target, each feeding arbitrary bytes to the parsers
//! of one kind of user file or network input, the way engram reads it. They live in this ordinary workspace
//! crate, not in `fuzz/`, so that two things run exactly the same code:
//!
//! - the cargo-fuzz targets in `fuzz/fuzz_targets/` (coverage-guided, out of the main workspace), and
//! - this crate's test `tests/replay.rs`, which replays every seed and every regression input under
//!   `fuzz/seeds/<target>/` and `fuzz/regressions/<target>/` in a plain `cargo test`, on stable Rust.
//!
//! Like `engram-bench` it is a leaf (`publish = false`, nothing depends on it), so it sits above every crate whose
//! parser it drives, `engram-serve`'s request parser included.
//!
//! Each function returns `Ok` when the input parsed, `Err(message)` when a parser refused it, and panics when a
//! parser broke a promise: a panic inside a parser, or an error about a file that does not name the file. The
//! fuzzer reports such a panic as a crash.
//!
//! Work per input is bounded by the input itself (parsers must not allocate from a declared length), plus a few
//! explicit caps below on the follow-up work a target does with what parsed (how many tensors it decodes, how
//! large a vocabulary it builds a tokenizer from), so that one input costs milliseconds.
#![warn(missing_docs)]

use std::collections::BTreeMap;
use std::fmt::Display;
use std::path::Path;
use std::sync::OnceLock;

use engram_formats::gguf::GgufFile;
use engram_formats::hf::{HfWeights, parse_config, parse_weight_map};
use engram_formats::{TensorF32, WeightSource};
use engram_lora::LoraConfig;
use engram_serve::Limits;
use engram_tokenizer::{ChatTemplate, Message, Tokenizer};

/// What one input did: parsed (`Ok`), or was refused with this message.
pub type Outcome = Result<(), String>;

/// A fuzz target: its name (the folder of its corpora) and its entry point.
pub struct Target {
    /// `fuzz/seeds/<name>/`, `fuzz/regressions/<name>/`, `cargo fuzz run <name>`.
    pub name: &'static str,
    /// Feeds one input through the parsers.
    pub run: fn(&[u8]) -> Outcome,
}

/// Every target, in the order the README lists them.
pub const TARGETS: [Target; 9] = [
    Target {
        name: "gguf",
        run: gguf,
    },
    Target {
        name: "safetensors",
        run: safetensors,
    },
    Target {
        name: "hf_config",
        run: hf_config,
    },
    Target {
        name: "tokenizer_json",
        run: tokenizer_json,
    },
    Target {
        name: "chat_template",
        run: chat_template,
    },
    Target {
        name: "jsonl",
        run: jsonl,
    },
    Target {
        name: "dataset",
        run: dataset,
    },
    Target {
        name: "peft_adapter",
        run: peft_adapter,
    },
    Target {
        name: "serve_request",
        run: serve_request,
    },
];

/// At most this many tensors of one file are read back and decoded (each is bounded by the file's size; the
/// cap only keeps one input fast).
const MAX_TENSORS_DECODED: usize = 16;
/// A GGUF vocabulary larger than this is parsed but not built into a tokenizer (building one is linear in its
/// size and the parse is what is under test; real vocabularies are covered by the model tests).
const MAX_VOCAB_BUILT: usize = 4096;
/// Text encoded with every tokenizer that builds: special tokens, digits, spaces, non-ASCII.
const SAMPLE_TEXT: &str = "<|im_start|>user\nHello,  world 12345 héllo 🌍 \t<|im_end|></s>";

/// The message text of an error about `file`, which must name it: every parser here promises errors that say
/// which file is wrong.
fn names_file(err: impl Display, file: &str) -> String {
    let message = err.to_string();
    assert!(
        message.contains(file),
        "an error about `{file}` does not name it: {message}"
    );
    message
}

/// Splits an input in two at its first NUL byte (for targets that read two files); no NUL means all first.
fn split_nul(data: &[u8]) -> (&[u8], &[u8]) {
    match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[]),
    }
}

/// A decoded tensor must hold exactly the elements its shape says.
fn check_tensor(t: &TensorF32) {
    assert_eq!(
        t.shape.iter().product::<usize>(),
        t.data.len(),
        "tensor shape {:?} does not match its data",
        t.shape
    );
}

/// A GGUF file: header, metadata, tensor infos; then what engram reads from them (the model config, tensor
/// data, the `tokenizer.ggml.*` vocabulary and the tokenizer and chat template built from it).
pub fn gguf(data: &[u8]) -> Outcome {
    const FILE: &str = "fuzz.gguf";
    let file = GgufFile::from_bytes(FILE, data.to_vec()).map_err(|e| names_file(e, FILE))?;
    if let Err(e) = file.model_config() {
        names_file(e, FILE);
    }
    for value in file.metadata().values() {
        // Every value has a type name and converts (or not) without panicking.
        let _ = (
            value.type_name(),
            value.as_u64(),
            value.as_f64(),
            value.as_str(),
        );
    }
    rewrite_gguf(&file)?;
    let names: Vec<String> = file.tensors().iter().map(|t| t.name.clone()).collect();
    for name in names.iter().take(MAX_TENSORS_DECODED) {
        match file.dequantize(name) {
            Ok(t) => check_tensor(&t),
            Err(e) => {
                names_file(e, FILE);
            }
        }
    }
    let Ok(vocab) = engram_model::gguf_vocab(&file) else {
        return Ok(());
    };
    if vocab.tokens.len() > MAX_VOCAB_BUILT {
        return Ok(());
    }
    let Ok(tokenizer) = Tokenizer::from_gguf_vocab(&vocab) else {
        return Ok(());
    };
    exercise_tokenizer(&tokenizer);
    Ok(())
}

/// The writer's half of the GGUF fuzzing: a file the reader accepted is written back with `write_gguf` (its
/// metadata, and each tensor's stored bytes under its type) and read again, and must come back the same. The
/// writer may refuse (a type of unknown size, an alignment key it cannot honour), naming the file; it must not
/// write what the reader then reads differently.
fn rewrite_gguf(file: &GgufFile) -> Outcome {
    use engram_formats::gguf::{TensorSpec, write_gguf};
    if file.tensors().iter().any(|t| t.nbytes().is_none()) {
        return Ok(());
    }
    let dir = std::env::temp_dir().join(format!("engram-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    // One name per call: the replay test's threads rewrite at the same time.
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = dir.join(format!("rewrite-{n}.gguf"));
    let shown = path.display().to_string();
    let metadata: Vec<_> = file
        .metadata()
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let specs: Vec<TensorSpec> = file
        .tensors()
        .iter()
        .map(|t| TensorSpec {
            name: t.name.clone(),
            shape: t.shape(),
            ggml_type: t.ggml_type,
        })
        .collect();
    write_gguf(&path, &metadata, &specs, &mut |i| {
        Ok(file.tensor_bytes(&specs[i].name)?.to_vec())
    })
    .map_err(|e| names_file(e, &shown))?;
    let back = GgufFile::open(&path).map_err(|e| names_file(e, &shown));
    let _ = std::fs::remove_file(&path);
    let back = back?;
    // Debug text, so that a NaN float compares equal to itself.
    assert_eq!(
        format!("{:?}", back.metadata()),
        format!("{:?}", file.metadata()),
        "metadata written and read back differs"
    );
    assert_eq!(back.tensors().len(), file.tensors().len());
    for (a, b) in file.tensors().iter().zip(back.tensors()) {
        assert_eq!(
            (&a.name, &a.dims, a.ggml_type),
            (&b.name, &b.dims, b.ggml_type)
        );
        assert_eq!(
            file.tensor_bytes(&a.name).map_err(|e| e.to_string())?,
            back.tensor_bytes(&b.name).map_err(|e| e.to_string())?,
            "tensor `{}` written and read back differs",
            a.name
        );
    }
    Ok(())
}

/// Encodes and decodes sample text, streams the ids back, and renders the tokenizer's chat template if it has
/// one: what engram does with a tokenizer it has just loaded.
fn exercise_tokenizer(tokenizer: &Tokenizer) {
    if let Ok(ids) = tokenizer.encode(SAMPLE_TEXT) {
        let _ = tokenizer.decode(&ids, false);
        let _ = tokenizer.decode(&ids, true);
        let mut stream = tokenizer.decode_stream(false);
        for &id in &ids {
            let _ = stream.push(id);
        }
        let _ = stream.finish();
    }
    // Ids the model may produce that the vocabulary does not have must not panic either.
    let _ = tokenizer.decode(&[0, 1, u32::MAX], false);
    let _ = tokenizer.id_to_token(u32::MAX);
    if let Some(template) = tokenizer.chat_template() {
        let _ = template.render(&conversation("Hi"), true);
    }
}

/// A short conversation with `user` as the user's text.
fn conversation(user: &str) -> Vec<Message> {
    vec![
        Message::system("Be brief."),
        Message::user(user),
        Message::assistant("Sure."),
        Message::user(user),
    ]
}

/// A tiny llama `config.json` for [`safetensors`]: the weights are what is fuzzed there.
const TINY_CONFIG: &str = r#"{"architectures": ["LlamaForCausalLM"], "vocab_size": 16, "hidden_size": 8,
"intermediate_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1}"#;

/// A Hugging Face `model.safetensors` (with a fixed valid `config.json`): header, tensor offsets, every tensor
/// read back as f32.
pub fn safetensors(data: &[u8]) -> Outcome {
    const DIR: &str = "fuzz-model";
    let weights =
        HfWeights::from_bytes(DIR, TINY_CONFIG, data.to_vec()).map_err(|e| names_file(e, DIR))?;
    for name in weights.tensor_names().iter().take(MAX_TENSORS_DECODED) {
        match weights.tensor(name) {
            Ok(t) => check_tensor(&t),
            Err(e) => {
                names_file(e, DIR);
            }
        }
        let _ = weights.stored_dtype(name);
    }
    Ok(())
}

/// A Hugging Face `config.json`, and the same text read as a `model.safetensors.index.json`.
pub fn hf_config(data: &[u8]) -> Outcome {
    const FILE: &str = "config.json";
    const INDEX: &str = "model.safetensors.index.json";
    let text = String::from_utf8_lossy(data);
    if let Err(e) = parse_weight_map(Path::new(INDEX), &text) {
        names_file(e, INDEX);
    }
    parse_config(Path::new(FILE), &text)
        .map(drop)
        .map_err(|e| names_file(e, FILE))
}

/// A `tokenizer.json`, then sample text through the tokenizer it builds.
pub fn tokenizer_json(data: &[u8]) -> Outcome {
    let tokenizer = Tokenizer::from_json_bytes(data).map_err(|e| e.to_string())?;
    exercise_tokenizer(&tokenizer);
    Ok(())
}

/// A Jinja chat template (as a GGUF file or `tokenizer_config.json` carries it), compiled and rendered with a
/// conversation. Input: the template, then after a NUL byte the user's text.
pub fn chat_template(data: &[u8]) -> Outcome {
    let (source, user) = split_nul(data);
    let source = String::from_utf8_lossy(source);
    let user = String::from_utf8_lossy(user);
    let template = ChatTemplate::from_jinja(&source, "<s>", "</s>").map_err(|e| e.to_string())?;
    let _ = template.stop_strings();
    template
        .render(&conversation(&user), true)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The built-in ChatML template, compiled once (compiling it per input would dominate the target).
fn chatml() -> &'static ChatTemplate {
    static CHATML: OnceLock<ChatTemplate> = OnceLock::new();
    CHATML.get_or_init(ChatTemplate::chatml)
}

/// Training data: a JSONL file of examples (`{"messages": [...]}` / `{"text": ...}`), each chat rendered with
/// ChatML as training renders it; and the same text as the generic JSONL rows other stages read.
pub fn jsonl(data: &[u8]) -> Outcome {
    const FILE: &str = "train.jsonl";
    let text = String::from_utf8_lossy(data);
    let _ = engram_formats::jsonl::parse_jsonl::<serde_json::Value>(&text);
    let examples =
        engram_data::parse_jsonl(Path::new(FILE), &text).map_err(|e| names_file(e, FILE))?;
    for (i, example) in examples.iter().enumerate() {
        assert!(
            engram_data::line_of_example(&text, i + 1).is_some(),
            "example {} has no line",
            i + 1
        );
        if let engram_data::Example::Chat { messages } = example {
            let _ = chatml().render(messages, false);
        }
    }
    Ok(())
}

/// An evaluation dataset: items JSONL, then after a NUL byte its `splits.json`, checked against the items.
pub fn dataset(data: &[u8]) -> Outcome {
    const ITEMS: &str = "items.jsonl";
    const SPLITS: &str = "splits.json";
    let (items, splits) = split_nul(data);
    let items = engram_inject::parse_items(Path::new(ITEMS), &String::from_utf8_lossy(items))
        .map_err(|e| names_file(e, ITEMS))?;
    engram_inject::parse_splits(Path::new(SPLITS), &String::from_utf8_lossy(splits), &items)
        .map(drop)
        .map_err(|e| names_file(e, SPLITS))
}

/// The linear modules of a tiny two-layer llama (hidden 8, 2 heads of 4 with one kv head, MLP 16) as the
/// adapter loader sees a model: module name to `[in, out]`.
fn tiny_modules() -> &'static BTreeMap<String, [usize; 2]> {
    static DIMS: OnceLock<BTreeMap<String, [usize; 2]>> = OnceLock::new();
    DIMS.get_or_init(|| {
        let mut dims = BTreeMap::new();
        for layer in 0..2 {
            for (module, d) in [
                ("self_attn.q_proj", [8, 8]),
                ("self_attn.k_proj", [8, 4]),
                ("self_attn.v_proj", [8, 4]),
                ("self_attn.o_proj", [8, 8]),
                ("mlp.gate_proj", [8, 16]),
                ("mlp.up_proj", [8, 16]),
                ("mlp.down_proj", [16, 8]),
            ] {
                dims.insert(format!("model.layers.{layer}.{module}"), d);
            }
        }
        dims
    })
}

/// A PEFT adapter folder: `adapter_config.json`, then after a NUL byte `adapter_model.safetensors`, checked
/// against a tiny model. A config that does not parse is replaced by a valid one (r = 2, all linear modules), so
/// that every input also reaches the weights.
pub fn peft_adapter(data: &[u8]) -> Outcome {
    const CONFIG: &str = "adapter_config.json";
    const WEIGHTS: &str = "adapter_model.safetensors";
    let (config_text, weights) = split_nul(data);
    let parsed =
        engram_lora::parse_adapter_config(Path::new(CONFIG), &String::from_utf8_lossy(config_text))
            .map_err(|e| names_file(e, CONFIG));
    let config = match &parsed {
        Ok(c) => c.clone(),
        Err(_) => LoraConfig {
            r: 2,
            lora_alpha: 4.0,
            target_modules: engram_lora::TargetModules::AllLinear,
            ..LoraConfig::default()
        },
    };
    let tensors =
        engram_lora::read_adapter_tensors(Path::new(WEIGHTS), weights, &config, tiny_modules())
            .map_err(|e| names_file(e, WEIGHTS))?;
    for (module, (a, b)) in &tensors {
        let [d_in, d_out] = tiny_modules()[module];
        assert_eq!(a.shape, [d_in, config.r], "{module}: A");
        assert_eq!(b.shape, [config.r, d_out], "{module}: B");
        check_tensor(a);
        check_tensor(b);
    }
    parsed.map(drop)
}

/// An HTTP request body of the server: the first byte picks the endpoint (even: `/v1/chat/completions`, odd:
/// `/v1/completions`), the rest is the body. A refused request must make a well-formed OpenAI error.
pub fn serve_request(data: &[u8]) -> Outcome {
    let Some((&which, body)) = data.split_first() else {
        return Err("empty input".into());
    };
    let limits = Limits::default();
    let parsed = if which % 2 == 0 {
        engram_serve::api::parse_chat(body, &limits)
    } else {
        engram_serve::api::parse_completion(body, &limits)
    };
    match parsed {
        Ok(request) => {
            assert!(
                request.max_tokens <= limits.max_tokens,
                "max_tokens {} over the limit",
                request.max_tokens
            );
            Ok(())
        }
        Err(e) => {
            let json = e.to_json();
            assert!(json["error"]["message"].is_string(), "{json}");
            assert!(
                (400..600).contains(&e.status),
                "status {} for {}",
                e.status,
                e.message
            );
            Err(e.message)
        }
    }
}
