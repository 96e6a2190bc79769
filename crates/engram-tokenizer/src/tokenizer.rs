//! [`Tokenizer`]: text <-> token ids for a model, from a `tokenizer.json` or a GGUF vocabulary.

use std::fs;
use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use tokenizers::{DecoderWrapper, ModelWrapper};

use crate::gguf::{self, GgufVocab};
use crate::hf_config::HfConfig;
use crate::{ChatTemplate, DecodeStream, TokenizerError};

/// Where a tokenizer came from, for [`Tokenizer::kind_summary`].
#[derive(Clone, Debug)]
enum Origin {
    /// A `tokenizer.json` (file or bytes).
    Json,
    /// GGUF metadata, with its `tokenizer.ggml.pre`.
    Gguf { pre: String },
}

/// A model's tokenizer: encodes prompts to token ids, decodes generated ids to text, and carries
/// the special ids (BOS/EOS/PAD) and the chat template that belong to it.
///
/// Wraps a Hugging Face `tokenizers` pipeline, so a tokenizer built from a GGUF file's vocabulary
/// gives the same ids as the `tokenizer.json` of the same model.
#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    eos_ids: Vec<u32>,
    pad_id: Option<u32>,
    add_bos: bool,
    chat_template: Option<ChatTemplate>,
    chat_template_error: Option<String>,
    byte_level: bool,
    vocab_size: usize,
    /// The longest token's text in bytes: no token covers more bytes of input (see [`Self::max_token_bytes`]).
    max_token_bytes: usize,
    origin: Origin,
}

/// Well-known end-of-sequence tokens, used only when no config names one.
const FALLBACK_EOS: [&str; 6] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|endoftext|>",
    "</s>",
    "<end_of_turn>",
];

impl Tokenizer {
    /// Loads a Hugging Face `tokenizer.json`. The files beside it complete it when present:
    /// `tokenizer_config.json` (BOS/EOS/PAD tokens, `add_bos_token`, `chat_template`),
    /// `chat_template.jinja` and `generation_config.json` (extra EOS ids).
    ///
    /// The file's `padding` and `truncation` settings are dropped: [`Tokenizer::encode`] returns
    /// every id of the text, and batches are padded by their users.
    ///
    /// Errors name the file: [`TokenizerError::Io`] when it cannot be read,
    /// [`TokenizerError::InvalidFile`] when it is not a valid tokenizer.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, TokenizerError> {
        let path = path.as_ref();
        let bytes = fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
        let inner = parse_json(&bytes).map_err(|message| TokenizerError::InvalidFile {
            path: path.to_path_buf(),
            what: "tokenizer.json",
            message,
        })?;
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let config = HfConfig::read_dir(&dir)?;
        Ok(Self::from_parts(inner, &config, Origin::Json))
    }

    /// Loads a `tokenizer.json` held in memory (no side files: BOS comes from its post-processor,
    /// EOS is guessed among well-known end tokens, no chat template). As with
    /// [`Tokenizer::from_file`], the file's `padding` and `truncation` settings are dropped.
    pub fn from_json_bytes(bytes: &[u8]) -> Result<Self, TokenizerError> {
        let inner = parse_json(bytes).map_err(TokenizerError::InvalidJson)?;
        Ok(Self::from_parts(inner, &HfConfig::default(), Origin::Json))
    }

    /// Builds the tokenizer from a GGUF file's vocabulary (`tokenizer.ggml.*`).
    ///
    /// Only byte-level BPE (`model == "gpt2"`) is supported; its pre-tokenizer follows
    /// `pre` (`smollm`/`gpt2`/default: GPT-2's regex; `llama-bpe`: Llama 3's; `qwen2`: Qwen2's).
    /// Control (type 3) and user-defined (type 4) tokens are matched whole in text. Another
    /// `model` or `pre` is [`TokenizerError::Unsupported`] naming it. A chat template that fails
    /// to compile does not fail the tokenizer: [`Tokenizer::chat_template`] is then `None` and
    /// [`Tokenizer::chat_template_error`] says why.
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Self, TokenizerError> {
        let inner = gguf::build(v)?;
        let token_str = |id: Option<u32>| {
            gguf::checked_id(v, id)
                .map(|i| v.tokens[i as usize].clone())
                .unwrap_or_default()
        };
        let (chat_template, chat_template_error) = match &v.chat_template {
            Some(source) => {
                match ChatTemplate::from_jinja(source, &token_str(v.bos_id), &token_str(v.eos_id)) {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
            None => (None, None),
        };
        let bos_id = gguf::checked_id(v, v.bos_id);
        let mut tokenizer = Self {
            vocab_size: v.tokens.len(),
            max_token_bytes: longest_token(&inner),
            byte_level: true,
            inner,
            bos_id,
            eos_ids: Vec::new(),
            pad_id: gguf::checked_id(v, v.pad_id),
            add_bos: v.add_bos && bos_id.is_some(),
            chat_template,
            chat_template_error,
            origin: Origin::Gguf {
                pre: v.pre.clone().unwrap_or_else(|| "default".into()),
            },
        };
        tokenizer.eos_ids = tokenizer.collect_eos(gguf::checked_id(v, v.eos_id), &[]);
        Ok(tokenizer)
    }

    fn from_parts(inner: tokenizers::Tokenizer, config: &HfConfig, origin: Origin) -> Self {
        let id_of = |t: &Option<String>| t.as_deref().and_then(|t| inner.token_to_id(t));
        // Does the file's own post-processor put a special token in front (Llama 3 style)?
        let post_bos = match (inner.encode_fast("a", true), inner.encode_fast("a", false)) {
            (Ok(with), Ok(without)) if with.get_ids().len() > without.get_ids().len() => {
                with.get_ids().first().copied().filter(|&id| {
                    inner
                        .id_to_token(id)
                        .is_some_and(|t| inner.get_added_vocabulary().is_special_token(&t))
                })
            }
            _ => None,
        };
        let bos_id = id_of(&config.bos_token).or(post_bos);
        let add_bos = config.add_bos_token.unwrap_or(post_bos.is_some()) && bos_id.is_some();
        let (chat_template, chat_template_error) = match &config.chat_template {
            Some(source) => {
                let bos = config.bos_token.as_deref().unwrap_or_default();
                let eos = config.eos_token.as_deref().unwrap_or_default();
                match ChatTemplate::from_jinja(source, bos, eos) {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(e.to_string())),
                }
            }
            None => (None, None),
        };
        let vocab_size = inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&m| m as usize + 1);
        let byte_level = matches!(inner.get_decoder(), Some(DecoderWrapper::ByteLevel(_)));
        let pad_id = id_of(&config.pad_token);
        let mut eos = id_of(&config.eos_token);
        let mut tokenizer = Self {
            bos_id,
            eos_ids: Vec::new(),
            pad_id,
            add_bos,
            chat_template,
            chat_template_error,
            byte_level,
            vocab_size,
            max_token_bytes: longest_token(&inner),
            origin,
            inner,
        };
        if eos.is_none() && config.generation_eos_ids.is_empty() {
            eos = FALLBACK_EOS.iter().find_map(|t| {
                let id = tokenizer.inner.token_to_id(t)?;
                tokenizer.is_special_token(t).then_some(id)
            });
        }
        tokenizer.eos_ids = tokenizer.collect_eos(eos, &config.generation_eos_ids);
        tokenizer
    }

    /// EOS first, then other configured EOS ids, then single-token stop strings of the chat
    /// template (e.g. `<|eot_id|>` when EOS is `<|end_of_text|>`), without duplicates.
    fn collect_eos(&self, eos: Option<u32>, extra: &[u32]) -> Vec<u32> {
        let mut ids: Vec<u32> = eos.into_iter().chain(extra.iter().copied()).collect();
        if let Some(t) = &self.chat_template {
            ids.extend(
                t.stop_strings()
                    .iter()
                    .filter_map(|s| self.inner.token_to_id(s)),
            );
        }
        let mut seen = Vec::with_capacity(ids.len());
        for id in ids {
            if !seen.contains(&id) && (id as usize) < self.vocab_size {
                seen.push(id);
            }
        }
        seen
    }

    /// Encodes `text` to token ids. Special tokens written in the text (`<|im_start|>`) become
    /// their ids; BOS is prepended only if the model asks for it ([`Tokenizer::add_bos`]) and the
    /// text does not already start with it (a rendered Llama 3 prompt does).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(self.with_bos(encoding.get_ids()))
    }

    /// Encodes `text` like [`Tokenizer::encode`] (same ids, same BOS rule) and also returns, per
    /// token, its byte range `(start, end)` in `text`; a prepended BOS gets `(0, 0)`.
    ///
    /// Slower than [`Tokenizer::encode`], which skips offset tracking: use it where tokens must be
    /// mapped back to the text (e.g. to find which tokens belong to an assistant turn). With
    /// byte-level BPE, every token holding a byte of a multi-byte character spans that whole
    /// character, so ranges always fall on character boundaries and may overlap. (A
    /// `tokenizer.json` whose post-processor is `ByteLevel` with `trim_offsets` shrinks ranges to
    /// leave out leading and trailing spaces; SmolLM2's and GGUF-built tokenizers do not.)
    // The plain pair reads better at call sites than a named type would.
    #[allow(clippy::type_complexity)]
    pub fn encode_with_offsets(
        &self,
        text: &str,
    ) -> Result<(Vec<u32>, Vec<(usize, usize)>), TokenizerError> {
        // `encode` (not `encode_fast`) tracks offsets, in bytes of the original text.
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        let ids = self.with_bos(encoding.get_ids());
        let mut offsets = Vec::with_capacity(ids.len());
        if ids.len() > encoding.get_ids().len() {
            offsets.push((0, 0));
        }
        offsets.extend_from_slice(encoding.get_offsets());
        Ok((ids, offsets))
    }

    /// Encodes several texts (in parallel where `tokenizers` allows), each as [`Tokenizer::encode`].
    pub fn encode_batch(&self, texts: &[&str]) -> Result<Vec<Vec<u32>>, TokenizerError> {
        let encodings = self
            .inner
            .encode_batch_fast(texts.to_vec(), false)
            .map_err(|e| TokenizerError::Encode(e.to_string()))?;
        Ok(encodings
            .iter()
            .map(|e| self.with_bos(e.get_ids()))
            .collect())
    }

    fn with_bos(&self, ids: &[u32]) -> Vec<u32> {
        match self.bos_id {
            Some(bos) if self.add_bos && ids.first() != Some(&bos) => {
                let mut out = Vec::with_capacity(ids.len() + 1);
                out.push(bos);
                out.extend_from_slice(ids);
                out
            }
            _ => ids.to_vec(),
        }
    }

    /// Decodes ids to text; with `skip_special`, special tokens (`<|im_end|>`, ...) are left out.
    /// Ids outside the vocabulary are skipped, and bytes that are not valid UTF-8 become U+FFFD.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, TokenizerError> {
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| TokenizerError::Decode(e.to_string()))
    }

    /// Starts incremental decoding, for showing generated text as it comes; see [`DecodeStream`].
    pub fn decode_stream(&self, skip_special: bool) -> DecodeStream<'_> {
        DecodeStream::new(self, skip_special)
    }

    /// The most bytes of input one token can stand for (its vocabulary text's length in UTF-8, which is at
    /// least the bytes it decodes to for byte-level and SentencePiece vocabularies): `n` tokens never cover
    /// more than `n * max_token_bytes()` bytes, so a text can be cut to that before tokenizing its first `n`.
    pub fn max_token_bytes(&self) -> usize {
        self.max_token_bytes
    }

    /// Number of token ids (one more than the largest id), added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The id of a token string (in the tokenizer's own spelling, e.g. `Ġthe` for " the").
    pub fn token_to_id(&self, s: &str) -> Option<u32> {
        self.inner.token_to_id(s)
    }

    /// The token string of an id (in the tokenizer's own spelling, e.g. `Ġthe`).
    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The beginning-of-sequence id, if the model has one (whether or not it is added).
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether [`Tokenizer::encode`] prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end generation: EOS first, then other end-of-turn tokens of the model.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The padding id, if the model defines one.
    pub fn pad_id(&self) -> Option<u32> {
        self.pad_id
    }

    /// The id to pad batches with: the padding id, else the first end-of-sequence id, else 0 (padded positions
    /// are masked, so only a valid id is needed).
    pub fn padding_id(&self) -> u32 {
        self.pad_id
            .or_else(|| self.eos_ids.first().copied())
            .unwrap_or(0)
    }

    /// The model's own chat template, if it ships one that compiles.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.chat_template.as_ref()
    }

    /// Why the model's chat template was not usable, if it shipped one that failed to compile.
    pub fn chat_template_error(&self) -> Option<&str> {
        self.chat_template_error.as_deref()
    }

    /// Writes the tokenizer as a Hugging Face `tokenizer.json` (for exporting a model folder).
    /// The file is written to a temporary name beside `path` and renamed, so a reader never sees
    /// half a file.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<(), TokenizerError> {
        let path = path.as_ref();
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| TokenizerError::InvalidFile {
                path: path.to_path_buf(),
                what: "tokenizer.json",
                message: format!("cannot serialise the tokenizer: {e}"),
            })?;
        write_atomically(path, json.as_bytes())
    }

    /// One line describing the tokenizer for `engram info`, e.g.
    /// `BPE (byte-level), 49152 tokens, pre=smollm`.
    pub fn kind_summary(&self) -> String {
        let model = match self.inner.get_model() {
            ModelWrapper::BPE(_) => "BPE",
            ModelWrapper::WordPiece(_) => "WordPiece",
            ModelWrapper::WordLevel(_) => "WordLevel",
            ModelWrapper::Unigram(_) => "Unigram",
        };
        let level = if self.byte_level { " (byte-level)" } else { "" };
        let source = match &self.origin {
            Origin::Gguf { pre } => format!("pre={pre}"),
            Origin::Json => "tokenizer.json".to_owned(),
        };
        format!("{model}{level}, {} tokens, {source}", self.vocab_size)
    }

    pub(crate) fn is_byte_level(&self) -> bool {
        self.byte_level
    }

    pub(crate) fn is_special_token(&self, token: &str) -> bool {
        self.inner.get_added_vocabulary().is_special_token(token)
    }
}

/// Parses tokenizer JSON without ever panicking.
///
/// `tokenizers` 0.22 panics (`expect("Helper")`) on some syntax errors inside the `decoder`
/// section, so the JSON syntax is checked first (which also gives a line/column for truncated
/// files), and any panic left is caught and reported as an error. A post-processor that would
/// panic on the first encode is refused here too (see [`check_post_processor`]).
fn parse_json(bytes: &[u8]) -> Result<tokenizers::Tokenizer, String> {
    #[derive(serde::Deserialize)]
    struct Checked {
        #[serde(default)]
        post_processor: serde_json::Value,
        #[serde(default)]
        decoder: serde_json::Value,
    }
    let head: Checked = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    check_post_processor(&head.post_processor, "post_processor")?;
    check_decoder(&head.decoder, "decoder")?;
    match std::panic::catch_unwind(AssertUnwindSafe(|| {
        tokenizers::Tokenizer::from_bytes(bytes)
    })) {
        Ok(Ok(mut tokenizer)) => {
            // engram encodes one text at a time and pads and cuts batches itself; the file's own padding
            // would put pad ids into prompts and its truncation would cut them silently. Both are also
            // unchecked in tokenizers 0.22: a `stride` not below `max_length` panics on the first encode,
            // and a `Fixed` padding length of 2^40 allocates that much (found by the tokenizer_json fuzz
            // target). So neither is kept.
            tokenizer.with_padding(None);
            tokenizer
                .with_truncation(None)
                .map_err(|e| format!("cannot turn truncation off: {e}"))?;
            Ok(tokenizer)
        }
        Ok(Err(e)) => Err(e.to_string()),
        Err(panic) => {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown reason");
            Err(format!("the tokenizers library rejected it: {why}"))
        }
    }
}

/// Checks what `tokenizers` 0.22 takes on trust in a `TemplateProcessing` post-processor (alone or
/// inside a `Sequence`): it loads templates naming a special token that its `special_tokens` map
/// lacks, or one whose `ids` and `tokens` differ in length, and then panics (`no entry found for
/// key`) or builds inconsistent encodings on the first encode that adds special tokens (found by
/// the `tokenizer_json` fuzz target). `at` names the JSON path in the error.
///
/// The checks go by shape, not by `type`: the library reads post-processors untagged, so a
/// template with a misspelt `type` still loads as one (the fuzzer found that too).
fn check_post_processor(value: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value;
    let processors = value.get("processors").and_then(Value::as_array);
    for (i, p) in processors.into_iter().flatten().enumerate() {
        check_post_processor(p, &format!("{at}.processors[{i}]"))?;
    }
    let specials = value.get("special_tokens").and_then(Value::as_object);
    for (name, token) in specials.into_iter().flatten() {
        let len = |k: &str| token.get(k).and_then(Value::as_array).map(Vec::len);
        if len("ids") != len("tokens") {
            return Err(format!(
                "{at}.special_tokens[{name:?}]: `ids` and `tokens` differ in length"
            ));
        }
    }
    for template in ["single", "pair"] {
        let pieces = value.get(template).and_then(Value::as_array);
        for piece in pieces.into_iter().flatten() {
            let Some(id) = piece
                .get("SpecialToken")
                .and_then(|t| t.get("id"))
                .and_then(Value::as_str)
            else {
                continue;
            };
            if !specials.is_some_and(|s| s.contains_key(id)) {
                return Err(format!(
                    "{at}.{template}: special token {id:?} is not defined in its `special_tokens`"
                ));
            }
        }
    }
    Ok(())
}

/// Refuses a `Strip` decoder (alone or inside a `Sequence`) with `stop` above 0: tokenizers 0.22
/// indexes out of bounds (a panic in every later decode) on a token made only of its `content`
/// character, or shorter than `start` + `stop` (found by the `tokenizer_json` fuzz target). Real
/// tokenizers strip at the start only (Llama's `start: 1, stop: 0`), which is safe. Goes by shape,
/// as [`check_post_processor`] does.
fn check_decoder(value: &serde_json::Value, at: &str) -> Result<(), String> {
    use serde_json::Value;
    let decoders = value.get("decoders").and_then(Value::as_array);
    for (i, d) in decoders.into_iter().flatten().enumerate() {
        check_decoder(d, &format!("{at}.decoders[{i}]"))?;
    }
    let stop = value.get("stop").and_then(Value::as_u64);
    if value.get("content").is_some() && stop.is_some_and(|n| n > 0) {
        return Err(format!(
            "{at}: a Strip decoder with `stop` {} is not supported (tokenizers 0.22 panics on short tokens; only `stop: 0` is safe)",
            stop.unwrap_or_default()
        ));
    }
    Ok(())
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), TokenizerError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "tokenizer.json".into());
    let tmp = dir.join(format!(
        ".{name}.tmp.{}.{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        TokenizerError::io(path, e)
    })
}

/// The longest vocabulary entry (added tokens included) in bytes, at least 1.
fn longest_token(inner: &tokenizers::Tokenizer) -> usize {
    inner
        .get_vocab(true)
        .keys()
        .map(String::len)
        .max()
        .unwrap_or(1)
        .max(1)
}
