//! The files that sit beside a `tokenizer.json` in a Hugging Face folder and complete it:
//! `tokenizer_config.json` (special tokens, BOS policy, chat template), `chat_template.jinja`
//! (where newer transformers versions put the template) and `generation_config.json` (EOS ids).

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::TokenizerError;

/// What we use from the side files; everything optional.
#[derive(Debug, Default)]
pub(crate) struct HfConfig {
    pub bos_token: Option<String>,
    pub eos_token: Option<String>,
    pub pad_token: Option<String>,
    pub add_bos_token: Option<bool>,
    pub chat_template: Option<String>,
    /// `eos_token_id` of generation_config.json (a number or a list).
    pub generation_eos_ids: Vec<u32>,
}

impl HfConfig {
    /// Reads whichever side files exist in `dir`. A file that exists but is corrupt is an error
    /// naming it; a missing one is not.
    pub(crate) fn read_dir(dir: &Path) -> Result<Self, TokenizerError> {
        let mut config = Self::default();
        if let Some(json) = read_json(&dir.join("tokenizer_config.json"), "tokenizer_config.json")?
        {
            config.bos_token = token_field(&json, "bos_token");
            config.eos_token = token_field(&json, "eos_token");
            config.pad_token = token_field(&json, "pad_token");
            config.add_bos_token = json.get("add_bos_token").and_then(Value::as_bool);
            config.chat_template = chat_template_field(json.get("chat_template"));
        }
        let jinja = dir.join("chat_template.jinja");
        if config.chat_template.is_none() && jinja.is_file() {
            let source = fs::read_to_string(&jinja).map_err(|e| TokenizerError::io(&jinja, e))?;
            config.chat_template = Some(source);
        }
        if let Some(json) = read_json(
            &dir.join("generation_config.json"),
            "generation_config.json",
        )? {
            config.generation_eos_ids = match json.get("eos_token_id") {
                Some(Value::Array(ids)) => ids.iter().filter_map(as_u32).collect(),
                Some(v) => as_u32(v).into_iter().collect(),
                None => Vec::new(),
            };
        }
        Ok(config)
    }
}

fn as_u32(v: &Value) -> Option<u32> {
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

fn read_json(path: &Path, what: &'static str) -> Result<Option<Value>, TokenizerError> {
    if !path.is_file() {
        return Ok(None);
    }
    let bytes = fs::read(path).map_err(|e| TokenizerError::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| TokenizerError::InvalidFile {
            path: path.to_path_buf(),
            what,
            message: e.to_string(),
        })
}

/// A special-token field: a plain string or an `AddedToken` object with `content`.
fn token_field(json: &Value, key: &str) -> Option<String> {
    match json.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// `chat_template`: a string, or a list of `{name, template}` of which we take `default`
/// (else the first).
fn chat_template_field(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) => Some(s.clone()),
        Value::Array(list) => {
            let named = |n: &str| {
                list.iter()
                    .find(|t| t.get("name").and_then(Value::as_str) == Some(n))
            };
            named("default")
                .or_else(|| list.first())
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_owned)
        }
        _ => None,
    }
}
