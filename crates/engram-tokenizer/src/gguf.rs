//! Building a tokenizer from the `tokenizer.ggml.*` metadata of a GGUF file.

use serde::{Deserialize, Serialize};
use serde_json::json;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
    TokenizerBuilder,
};

use crate::TokenizerError;

/// The tokenizer part of a GGUF file's metadata, as plain vectors (the model crate reads the file;
/// this crate never touches GGUF itself).
///
/// Field by field: `tokenizer.ggml.model`, `.pre`, `.tokens`, `.token_type`, `.merges`,
/// `.bos_token_id`, `.eos_token_id`, `.padding_token_id`, `.unknown_token_id`, `.add_bos_token`,
/// and `tokenizer.chat_template`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GgufVocab {
    /// Tokenizer kind: `gpt2` is byte-level BPE (the only kind supported); `llama` is SentencePiece.
    pub model: String,
    /// Pre-tokenizer name chosen by llama.cpp's converter (`smollm`, `llama-bpe`, `qwen2`, ...).
    pub pre: Option<String>,
    /// Token strings; a token's id is its index.
    pub tokens: Vec<String>,
    /// One type per token (1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte); may
    /// be empty, meaning all normal.
    pub token_types: Vec<i32>,
    /// BPE merges in priority order, each `"left right"`.
    pub merges: Vec<String>,
    /// Beginning-of-sequence token id.
    pub bos_id: Option<u32>,
    /// End-of-sequence token id.
    pub eos_id: Option<u32>,
    /// Padding token id.
    pub pad_id: Option<u32>,
    /// Unknown-token id (unused by byte-level BPE, which can spell every byte).
    pub unk_id: Option<u32>,
    /// Whether encoding prepends BOS.
    pub add_bos: bool,
    /// The model's Jinja chat template.
    pub chat_template: Option<String>,
}

/// GGUF token types that become added tokens (matched whole in text before BPE runs).
const TOKEN_TYPE_CONTROL: i32 = 3;
const TOKEN_TYPE_USER_DEFINED: i32 = 4;

/// The split regex of Llama 3's `tokenizer.json` (meta-llama/Meta-Llama-3-8B, `pre_tokenizer`
/// Split pattern; llama.cpp `llama-vocab.cpp` quotes it for `LLAMA_VOCAB_PRE_TYPE_LLAMA3`).
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// The split regex of Qwen2/Qwen2.5's `tokenizer.json` (Qwen/Qwen2.5-0.5B-Instruct, `pre_tokenizer`
/// Split pattern; llama.cpp quotes it for `LLAMA_VOCAB_PRE_TYPE_QWEN2`). Unlike Llama 3 it isolates
/// every digit (`\p{N}` instead of `\p{N}{1,3}`).
const QWEN2_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

const UNSUPPORTED_MODEL_HINT: &str = "only byte-level BPE (\"gpt2\") is supported; \
    SentencePiece (\"llama\"), WordPiece (\"bert\") and others are not";

/// The pre-tokenization schemes of the byte-level BPE vocabularies we support.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PreTokenizerStyle {
    /// GPT-2's regex inside `ByteLevel` (`'s|'t|... ?\p{L}+| ?\p{N}+|...`).
    Gpt2,
    /// GPT-2's regex after isolating each digit (`Digits(individual_digits)`), as StarCoder-family
    /// tokenizers do.
    Gpt2Digits,
    /// Llama 3's split regex, then `ByteLevel` without its own regex; `ignore_merges`.
    Llama3,
    /// Qwen2's split regex with NFC normalisation, then `ByteLevel` without its own regex.
    Qwen2,
}

impl PreTokenizerStyle {
    /// Maps `tokenizer.ggml.pre` to a style.
    ///
    /// `smollm` deliberately maps to plain [`Self::Gpt2`]: that is the `tokenizer.json` transformers
    /// derives from SmolLM2's GGUF (our reference ids). llama.cpp instead treats `smollm` like
    /// `starcoder` (each digit isolated); the two differ only for a run of 2+ whitespace characters
    /// (or a newline followed by a space) right before a number, e.g. `"a  1"`.
    pub(crate) fn from_gguf(pre: Option<&str>) -> Result<Self, TokenizerError> {
        match pre.unwrap_or("default") {
            "default" | "gpt2" | "gpt-2" | "smollm" => Ok(Self::Gpt2),
            "starcoder" | "refact" | "codeshell" => Ok(Self::Gpt2Digits),
            "llama-bpe" | "llama3" | "llama-v3" => Ok(Self::Llama3),
            "qwen2" => Ok(Self::Qwen2),
            other => Err(TokenizerError::Unsupported {
                what: "GGUF pre-tokenizer (tokenizer.ggml.pre)",
                value: other.to_owned(),
                hint: "supported: default, gpt2, smollm, starcoder, refact, codeshell, llama-bpe, qwen2"
                    .to_owned(),
            }),
        }
    }

    fn normalizer(self) -> serde_json::Value {
        match self {
            Self::Qwen2 => json!({"type": "NFC"}),
            _ => serde_json::Value::Null,
        }
    }

    fn pre_tokenizer(self) -> serde_json::Value {
        let byte_level = |trim_offsets: bool, use_regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim_offsets, "use_regex": use_regex});
        let split = |regex: &str| json!({"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false});
        match self {
            // Exactly SmolLM2's tokenizer.json (as transformers writes it for the GGUF).
            Self::Gpt2 => byte_level(true, true),
            Self::Gpt2Digits => json!({"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": true},
                byte_level(true, true),
            ]}),
            Self::Llama3 => {
                json!({"type": "Sequence", "pretokenizers": [split(LLAMA3_SPLIT), byte_level(true, false)]})
            }
            Self::Qwen2 => {
                json!({"type": "Sequence", "pretokenizers": [split(QWEN2_SPLIT), byte_level(false, false)]})
            }
        }
    }

    fn decoder(self) -> serde_json::Value {
        match self {
            Self::Qwen2 => {
                json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false})
            }
            _ => {
                json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true})
            }
        }
    }
}

/// `$A` (and `$A $B:1`), with `bos` in front of each sequence when the model adds BOS. Encoding in
/// this crate adds BOS itself; the post-processor matters for a saved `tokenizer.json`.
fn post_processor(bos: Option<(&str, u32)>) -> serde_json::Value {
    let seq = |id: &str, type_id: u32| json!({"Sequence": {"id": id, "type_id": type_id}});
    match bos {
        None => json!({
            "type": "TemplateProcessing",
            "single": [seq("A", 0)],
            "pair": [seq("A", 0), seq("B", 1)],
            "special_tokens": {},
        }),
        Some((token, id)) => {
            let special = |type_id: u32| json!({"SpecialToken": {"id": token, "type_id": type_id}});
            json!({
                "type": "TemplateProcessing",
                "single": [special(0), seq("A", 0)],
                "pair": [special(0), seq("A", 0), special(1), seq("B", 1)],
                "special_tokens": {token: {"id": token, "ids": [id], "tokens": [token]}},
            })
        }
    }
}

fn component<T: serde::de::DeserializeOwned>(
    what: &str,
    value: serde_json::Value,
) -> Result<Option<T>, TokenizerError> {
    if value.is_null() {
        return Ok(None);
    }
    serde_json::from_value(value)
        .map(Some)
        .map_err(|e| TokenizerError::InvalidVocab(format!("cannot build the {what}: {e}")))
}

/// A validated special-token id: inside the vocabulary, or dropped (as llama.cpp does).
pub(crate) fn checked_id(v: &GgufVocab, id: Option<u32>) -> Option<u32> {
    id.filter(|&i| (i as usize) < v.tokens.len())
}

/// Builds the `tokenizers` pipeline for a byte-level BPE vocabulary from GGUF vectors.
pub(crate) fn build(v: &GgufVocab) -> Result<tokenizers::Tokenizer, TokenizerError> {
    if v.model != "gpt2" {
        return Err(TokenizerError::Unsupported {
            what: "GGUF tokenizer model (tokenizer.ggml.model)",
            value: v.model.clone(),
            hint: UNSUPPORTED_MODEL_HINT.to_owned(),
        });
    }
    let style = PreTokenizerStyle::from_gguf(v.pre.as_deref())?;
    if v.tokens.is_empty() {
        return Err(TokenizerError::InvalidVocab(
            "tokenizer.ggml.tokens is empty".into(),
        ));
    }
    if u32::try_from(v.tokens.len()).is_err() {
        return Err(TokenizerError::InvalidVocab(format!(
            "{} tokens do not fit u32 ids",
            v.tokens.len()
        )));
    }
    if !v.token_types.is_empty() && v.token_types.len() != v.tokens.len() {
        return Err(TokenizerError::InvalidVocab(format!(
            "tokenizer.ggml.token_type has {} entries for {} tokens",
            v.token_types.len(),
            v.tokens.len()
        )));
    }

    // Vocabulary: id = index. A duplicated string keeps its first id.
    let mut vocab = Vocab::with_capacity(v.tokens.len());
    for (id, token) in v.tokens.iter().enumerate() {
        vocab.entry(token.clone()).or_insert(id as u32);
    }

    let mut merges = Vec::with_capacity(v.merges.len());
    for (i, merge) in v.merges.iter().enumerate() {
        let Some((left, right)) = merge.split_once(' ') else {
            return Err(TokenizerError::InvalidVocab(format!(
                "merge #{i} {merge:?} is not two tokens separated by a space"
            )));
        };
        for part in [left, right, &format!("{left}{right}")] {
            if !vocab.contains_key(part) {
                return Err(TokenizerError::InvalidVocab(format!(
                    "merge #{i} {merge:?}: {part:?} is not in tokenizer.ggml.tokens"
                )));
            }
        }
        merges.push((left.to_owned(), right.to_owned()));
    }

    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .continuing_subword_prefix(String::new())
        .end_of_word_suffix(String::new())
        .fuse_unk(false)
        .byte_fallback(false)
        .ignore_merges(style == PreTokenizerStyle::Llama3)
        .build()
        .map_err(|e| TokenizerError::InvalidVocab(format!("cannot build BPE: {e}")))?;

    let bos = checked_id(v, v.bos_id)
        .filter(|_| v.add_bos)
        .map(|id| (v.tokens[id as usize].as_str(), id));
    let hf = TokenizerBuilder::<
        _,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(bpe)
    .with_normalizer(component("normalizer", style.normalizer())?)
    .with_pre_tokenizer(component("pre-tokenizer", style.pre_tokenizer())?)
    .with_post_processor(component("post-processor", post_processor(bos))?)
    .with_decoder(component("decoder", style.decoder())?)
    .build()
    .map_err(|e| TokenizerError::InvalidVocab(format!("cannot build tokenizer: {e}")))?;
    let mut hf: tokenizers::Tokenizer = hf.into();

    // Control and user-defined tokens are matched whole in the text (so "<|im_start|>" is one
    // token); only control tokens count as special (dropped by `decode(.., skip_special=true)`).
    let added: Vec<AddedToken> = v
        .token_types
        .iter()
        .zip(&v.tokens)
        .filter_map(|(&ty, token)| match ty {
            TOKEN_TYPE_CONTROL if !token.is_empty() => Some(AddedToken::from(token.clone(), true)),
            TOKEN_TYPE_USER_DEFINED if !token.is_empty() => {
                Some(AddedToken::from(token.clone(), false).normalized(false))
            }
            _ => None,
        })
        .collect();
    let (special, normal): (Vec<_>, Vec<_>) = added.into_iter().partition(|t| t.special);
    hf.add_special_tokens(&special);
    hf.add_tokens(&normal);
    Ok(hf)
}
