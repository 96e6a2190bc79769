//! `config.json` to [`ModelConfig`] and back.
//!
//! Reading accepts what transformers 4 and 5 write for `LlamaForCausalLM` and `Qwen2ForCausalLM`: RoPE given as
//! top-level `rope_theta` / `rope_scaling` (transformers 4) or as `rope_parameters` (transformers 5), `eos_token_id`
//! as one id or a list, `head_dim` present or implied by `hidden_size / num_attention_heads`. Anything engram's
//! llama block cannot run faithfully (another RoPE type, o_proj or MLP biases, sliding-window attention, an
//! activation other than SiLU) is refused with a [`FormatError::BadConfig`] naming the field, never run wrongly.

use std::collections::HashMap;
use std::path::Path;

use serde_json::{Map, Value, json};

use crate::{Architecture, FormatError, Llama3RopeScaling, ModelConfig};

/// Parses the text of a Hugging Face `config.json`; `path` is only used in error messages.
///
/// Errors: [`FormatError::Json`] (with line and column) for text that is not JSON,
/// [`FormatError::UnknownArchitecture`] for a model other than llama or qwen2, and [`FormatError::BadConfig`]
/// naming the field for a missing required field (`vocab_size`, `hidden_size`, `intermediate_size`,
/// `num_hidden_layers`, `num_attention_heads`), a field of the wrong type, a zero or negative size, heads that do
/// not divide `hidden_size` when `head_dim` is absent, `num_attention_heads` not a multiple of
/// `num_key_value_heads`, or a feature engram does not run (RoPE other than `default`/`llama3`, ...).
///
/// Absent optional fields take the transformers defaults of the architecture (`rope_theta` 10000,
/// `rms_norm_eps` 1e-6, `tie_word_embeddings` false, `max_position_embeddings` 2048 for llama and 32768 for qwen2,
/// `num_key_value_heads` = `num_attention_heads`); absent or `null` token ids are `None` / empty, and so is
/// `pad_token_id: -1` (old configs' way of saying "no padding token"). Qwen2 always has q/k/v biases.
pub fn parse_config(path: &Path, json: &str) -> Result<ModelConfig, FormatError> {
    let value: Value = serde_json::from_str(json).map_err(|source| FormatError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    let Value::Object(obj) = &value else {
        return Err(bad(
            path,
            "(top level)",
            format!("expected a JSON object, found {}", describe(&value)),
        ));
    };
    let floats = ExactFloats::scan(json);
    let f = Fields {
        path,
        obj,
        prefix: String::new(),
        floats: &floats,
    };

    let architecture = architecture(&f)?;

    let vocab_size = f.req_size("vocab_size")?;
    let hidden_size = f.req_size("hidden_size")?;
    let intermediate_size = f.req_size("intermediate_size")?;
    let num_hidden_layers = f.req_size("num_hidden_layers")?;
    let num_attention_heads = f.req_size("num_attention_heads")?;
    let num_key_value_heads = f
        .opt_size("num_key_value_heads")?
        .unwrap_or(num_attention_heads);
    if !num_attention_heads.is_multiple_of(num_key_value_heads) {
        return Err(bad(
            path,
            "num_key_value_heads",
            format!(
                "num_attention_heads ({num_attention_heads}) is not a multiple of num_key_value_heads ({num_key_value_heads})"
            ),
        ));
    }
    let head_dim = match f.opt_size("head_dim")? {
        Some(d) => d,
        None if hidden_size.is_multiple_of(num_attention_heads) => {
            hidden_size / num_attention_heads
        }
        None => {
            return Err(bad(
                path,
                "head_dim",
                format!(
                    "absent, and hidden_size ({hidden_size}) is not divisible by num_attention_heads ({num_attention_heads})"
                ),
            ));
        }
    };

    let rms_norm_eps = f.opt_positive_f64("rms_norm_eps")?.unwrap_or(1e-6);
    let (rope_theta, rope_scaling) = rope(&f)?;
    let max_position_embeddings =
        f.opt_size("max_position_embeddings")?
            .unwrap_or(match architecture {
                Architecture::Llama => 2048,
                Architecture::Qwen2 => 32768,
            });
    let tie_word_embeddings = f.opt_bool("tie_word_embeddings")?.unwrap_or(false);

    if let Some(act) = f.opt_str("hidden_act")?
        && act != "silu"
    {
        return Err(bad(
            path,
            "hidden_act",
            format!("activation `{act}` is not supported (engram's MLP is SiLU-gated)"),
        ));
    }
    if f.opt_bool("mlp_bias")? == Some(true) {
        return Err(bad(
            path,
            "mlp_bias",
            "MLP biases are not supported by engram's llama block",
        ));
    }
    let attention_bias = match architecture {
        Architecture::Llama => {
            if f.opt_bool("attention_bias")? == Some(true) {
                return Err(bad(
                    path,
                    "attention_bias",
                    "llama attention_bias puts a bias on o_proj too, which engram's llama block does not have",
                ));
            }
            false
        }
        // Qwen2's q/k/v projections always carry biases (transformers has no switch for it).
        Architecture::Qwen2 => {
            if f.opt_bool("use_sliding_window")? == Some(true) {
                return Err(bad(
                    path,
                    "use_sliding_window",
                    "sliding-window attention is not supported",
                ));
            }
            true
        }
    };

    let bos_token_id = f.opt_token("bos_token_id", false)?;
    let pad_token_id = f.opt_token("pad_token_id", true)?;
    let eos_token_ids = f.eos_tokens("eos_token_id")?;

    Ok(ModelConfig {
        architecture,
        vocab_size,
        hidden_size,
        intermediate_size,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads,
        head_dim,
        rms_norm_eps,
        rope_theta,
        rope_scaling,
        max_position_embeddings,
        tie_word_embeddings,
        attention_bias,
        bos_token_id,
        eos_token_ids,
        pad_token_id,
    })
}

/// Reads and parses a `config.json` file (see [`parse_config`]); a missing or unreadable file is
/// [`FormatError::Io`] naming it.
pub fn read_config(path: impl AsRef<Path>) -> Result<ModelConfig, FormatError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| FormatError::io(path, e))?;
    parse_config(path, &text)
}

/// The `config.json` object for `config`, transformers-style (both the transformers-4 top-level `rope_theta` /
/// `rope_scaling` and the transformers-5 `rope_parameters`, with identical values). Refuses (BadConfig) a config
/// that transformers could not represent or that [`parse_config`] would not read back equal.
pub(crate) fn config_to_json(path: &Path, c: &ModelConfig) -> Result<Value, FormatError> {
    validate(path, c)?;
    let mut m = Map::new();
    m.insert("architectures".into(), json!([c.architecture.hf_name()]));
    m.insert("model_type".into(), json!(c.architecture.model_type()));
    m.insert("vocab_size".into(), json!(c.vocab_size));
    m.insert("hidden_size".into(), json!(c.hidden_size));
    m.insert("intermediate_size".into(), json!(c.intermediate_size));
    m.insert("num_hidden_layers".into(), json!(c.num_hidden_layers));
    m.insert("num_attention_heads".into(), json!(c.num_attention_heads));
    m.insert("num_key_value_heads".into(), json!(c.num_key_value_heads));
    m.insert("head_dim".into(), json!(c.head_dim));
    m.insert("hidden_act".into(), json!("silu"));
    m.insert("rms_norm_eps".into(), json!(c.rms_norm_eps));
    m.insert(
        "max_position_embeddings".into(),
        json!(c.max_position_embeddings),
    );
    m.insert("tie_word_embeddings".into(), json!(c.tie_word_embeddings));
    m.insert("attention_dropout".into(), json!(0.0));
    m.insert("initializer_range".into(), json!(0.02));
    m.insert("use_cache".into(), json!(true));
    m.insert("torch_dtype".into(), json!("float32"));
    m.insert("dtype".into(), json!("float32"));
    match c.architecture {
        Architecture::Llama => {
            m.insert("attention_bias".into(), json!(false));
            m.insert("mlp_bias".into(), json!(false));
            m.insert("pretraining_tp".into(), json!(1));
        }
        Architecture::Qwen2 => {
            m.insert("use_sliding_window".into(), json!(false));
            m.insert("sliding_window".into(), Value::Null);
            m.insert("max_window_layers".into(), json!(c.num_hidden_layers));
        }
    }
    m.insert("bos_token_id".into(), json!(c.bos_token_id));
    m.insert("eos_token_id".into(), eos_json(&c.eos_token_ids));
    m.insert("pad_token_id".into(), json!(c.pad_token_id));

    // transformers 4 (and llama.cpp's converter) read these ...
    m.insert("rope_theta".into(), json!(c.rope_theta));
    let mut rope_parameters = Map::new();
    rope_parameters.insert("rope_theta".into(), json!(c.rope_theta));
    if let Some(s) = &c.rope_scaling {
        let scaling = json!({
            "rope_type": "llama3",
            "factor": s.factor,
            "low_freq_factor": s.low_freq_factor,
            "high_freq_factor": s.high_freq_factor,
            "original_max_position_embeddings": s.original_max_position_embeddings,
        });
        if let Value::Object(fields) = &scaling {
            rope_parameters.extend(fields.clone());
        }
        m.insert("rope_scaling".into(), scaling);
    } else {
        rope_parameters.insert("rope_type".into(), json!("default"));
    }
    // ... and transformers 5 this.
    m.insert("rope_parameters".into(), Value::Object(rope_parameters));
    Ok(Value::Object(m))
}

/// The `generation_config.json` object for `config`: its token ids (those that are set).
pub(crate) fn generation_config_json(c: &ModelConfig) -> Value {
    let mut m = Map::new();
    m.insert("_from_model_config".into(), json!(true));
    if let Some(bos) = c.bos_token_id {
        m.insert("bos_token_id".into(), json!(bos));
    }
    if !c.eos_token_ids.is_empty() {
        m.insert("eos_token_id".into(), eos_json(&c.eos_token_ids));
    }
    if let Some(pad) = c.pad_token_id {
        m.insert("pad_token_id".into(), json!(pad));
    }
    Value::Object(m)
}

/// One id as a number (what transformers writes), several as a list, none as `null`.
fn eos_json(ids: &[u32]) -> Value {
    match ids {
        [] => Value::Null,
        [one] => json!(one),
        many => json!(many),
    }
}

/// Checks what `config_to_json` needs: everything `parse_config` would check on the way back in.
fn validate(path: &Path, c: &ModelConfig) -> Result<(), FormatError> {
    let sizes = [
        ("vocab_size", c.vocab_size),
        ("hidden_size", c.hidden_size),
        ("intermediate_size", c.intermediate_size),
        ("num_hidden_layers", c.num_hidden_layers),
        ("num_attention_heads", c.num_attention_heads),
        ("num_key_value_heads", c.num_key_value_heads),
        ("head_dim", c.head_dim),
        ("max_position_embeddings", c.max_position_embeddings),
    ];
    for (field, v) in sizes {
        if v == 0 {
            return Err(bad(path, field, "must be positive, found 0"));
        }
    }
    if !c.num_attention_heads.is_multiple_of(c.num_key_value_heads) {
        return Err(bad(
            path,
            "num_key_value_heads",
            format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                c.num_attention_heads, c.num_key_value_heads
            ),
        ));
    }
    let floats = [
        ("rms_norm_eps", c.rms_norm_eps),
        ("rope_theta", c.rope_theta),
    ];
    for (field, v) in floats {
        check_positive_f64(path, field, v)?;
    }
    if let Some(s) = &c.rope_scaling {
        check_positive_f64(path, "rope_scaling.factor", s.factor)?;
        check_positive_f64(path, "rope_scaling.low_freq_factor", s.low_freq_factor)?;
        check_positive_f64(path, "rope_scaling.high_freq_factor", s.high_freq_factor)?;
        if s.original_max_position_embeddings == 0 {
            return Err(bad(
                path,
                "rope_scaling.original_max_position_embeddings",
                "must be positive, found 0",
            ));
        }
    }
    match (c.architecture, c.attention_bias) {
        (Architecture::Llama, true) => Err(bad(
            path,
            "attention_bias",
            "a llama config cannot express q/k/v-only biases (transformers' attention_bias also biases o_proj)",
        )),
        (Architecture::Qwen2, false) => Err(bad(
            path,
            "attention_bias",
            "Qwen2ForCausalLM always has q/k/v biases; a qwen2 config without them cannot be written",
        )),
        _ => Ok(()),
    }
}

fn check_positive_f64(path: &Path, field: &str, v: f64) -> Result<(), FormatError> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(bad(
            path,
            field,
            format!("must be a positive finite number, found {v}"),
        ))
    }
}

fn bad(path: &Path, field: &str, message: impl Into<String>) -> FormatError {
    FormatError::BadConfig {
        path: path.to_path_buf(),
        field: field.to_string(),
        message: message.into(),
    }
}

/// A short description of a JSON value for "expected X, found Y" messages.
fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) if s.chars().count() > 40 => {
            let head: String = s.chars().take(40).collect();
            format!("string {head:?}...")
        }
        Value::String(s) => format!("string {s:?}"),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// `architectures[0]` if given, else `model_type`.
fn architecture(f: &Fields) -> Result<Architecture, FormatError> {
    let unknown = |name: &str| FormatError::UnknownArchitecture {
        path: f.path.to_path_buf(),
        name: name.to_string(),
    };
    match f.get("architectures") {
        Some(Value::Array(list)) if !list.is_empty() => {
            let Some(name) = list[0].as_str() else {
                return Err(f.bad(
                    "architectures",
                    format!("expected a list of strings, found {}", describe(&list[0])),
                ));
            };
            return match name {
                "LlamaForCausalLM" => Ok(Architecture::Llama),
                "Qwen2ForCausalLM" => Ok(Architecture::Qwen2),
                other => Err(unknown(other)),
            };
        }
        Some(Value::Array(_)) | None => {}
        Some(other) => {
            return Err(f.bad(
                "architectures",
                format!("expected a list of strings, found {}", describe(other)),
            ));
        }
    }
    match f.opt_str("model_type")? {
        Some("llama") => Ok(Architecture::Llama),
        Some("qwen2") => Ok(Architecture::Qwen2),
        Some(other) => Err(unknown(other)),
        None => Err(f.bad(
            "architectures",
            "missing (and no `model_type` either): cannot tell which model this is",
        )),
    }
}

/// RoPE base and scaling from `rope_parameters` (transformers 5) and/or `rope_theta` + `rope_scaling`
/// (transformers 4). Where both styles are present they must agree.
fn rope(f: &Fields) -> Result<(f64, Option<Llama3RopeScaling>), FormatError> {
    let params = f.opt_object("rope_parameters")?;
    let legacy_scaling = f.opt_object("rope_scaling")?;
    let legacy_theta = f.opt_positive_f64("rope_theta")?;

    let params_theta = match &params {
        Some(p) => p.opt_positive_f64("rope_theta")?,
        None => None,
    };
    let rope_theta = match (params_theta, legacy_theta) {
        (Some(a), Some(b)) if a != b => {
            return Err(f.bad(
                "rope_theta",
                format!("{b} disagrees with rope_parameters.rope_theta ({a})"),
            ));
        }
        (Some(a), _) | (None, Some(a)) => a,
        (None, None) => 10000.0,
    };

    let from_params = match &params {
        Some(p) => rope_scaling(p)?,
        None => None,
    };
    let from_legacy = match &legacy_scaling {
        Some(s) => rope_scaling(s)?,
        None => None,
    };
    let scaling = match (&params, &legacy_scaling) {
        (Some(_), Some(_)) if from_params != from_legacy => {
            return Err(f.bad(
                "rope_scaling",
                "disagrees with rope_parameters (give one, or the same RoPE in both)",
            ));
        }
        (Some(_), _) => from_params,
        (None, _) => from_legacy,
    };
    Ok((rope_theta, scaling))
}

/// One RoPE dictionary (`rope_parameters` or `rope_scaling`): `default` is no scaling, `llama3` its four fields.
fn rope_scaling(d: &Fields) -> Result<Option<Llama3RopeScaling>, FormatError> {
    let (key, ty) = match d.opt_str("rope_type")? {
        Some(t) => ("rope_type", t),
        None => ("type", d.opt_str("type")?.unwrap_or("default")),
    };
    match ty {
        "default" => Ok(None),
        "llama3" => Ok(Some(Llama3RopeScaling {
            factor: d.req_positive_f64("factor")?,
            low_freq_factor: d.req_positive_f64("low_freq_factor")?,
            high_freq_factor: d.req_positive_f64("high_freq_factor")?,
            original_max_position_embeddings: d.req_size("original_max_position_embeddings")?,
        })),
        other => Err(d.bad(
            key,
            format!("RoPE type `{other}` is not supported (engram runs `default` and `llama3`)"),
        )),
    }
}

/// Typed access to one JSON object's fields, with errors naming `prefix` + field.
struct Fields<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
    /// Prepended to field names in errors (`rope_scaling.` for fields of that object).
    prefix: String,
    floats: &'a ExactFloats,
}

impl<'a> Fields<'a> {
    fn name(&self, field: &str) -> String {
        format!("{}{field}", self.prefix)
    }

    fn bad(&self, field: &str, message: impl Into<String>) -> FormatError {
        bad(self.path, &self.name(field), message)
    }

    /// The field's value; `null` counts as absent (transformers writes `null` for unset options).
    fn get(&self, field: &str) -> Option<&'a Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn missing(&self, field: &str) -> FormatError {
        self.bad(field, "missing required field")
    }

    fn opt_size(&self, field: &str) -> Result<Option<usize>, FormatError> {
        let Some(v) = self.get(field) else {
            return Ok(None);
        };
        let wrong = || {
            self.bad(
                field,
                format!("expected a positive integer, found {}", describe(v)),
            )
        };
        let Value::Number(n) = v else {
            return Err(wrong());
        };
        let u = if let Some(u) = n.as_u64() {
            u
        } else if n.as_i64().is_some() {
            return Err(self.bad(field, format!("must be positive, found {n}")));
        } else {
            // A float: accept it only when it is a whole number (some tools write `2048.0`).
            match n.as_f64() {
                Some(x) if x.fract() == 0.0 && x < 0.0 => {
                    return Err(self.bad(field, format!("must be positive, found {n}")));
                }
                Some(x) if x.fract() == 0.0 && (0.0..9.0e15).contains(&x) => x as u64,
                _ => return Err(wrong()),
            }
        };
        if u == 0 {
            return Err(self.bad(field, "must be positive, found 0"));
        }
        usize::try_from(u)
            .map(Some)
            .map_err(|_| self.bad(field, format!("{u} is too large")))
    }

    fn req_size(&self, field: &str) -> Result<usize, FormatError> {
        self.opt_size(field)?.ok_or_else(|| self.missing(field))
    }

    fn opt_positive_f64(&self, field: &str) -> Result<Option<f64>, FormatError> {
        let Some(v) = self.get(field) else {
            return Ok(None);
        };
        match v.as_f64().map(|x| self.floats.exact(x)) {
            Some(x) if x.is_finite() && x > 0.0 => Ok(Some(x)),
            Some(x) => Err(self.bad(field, format!("must be positive, found {x}"))),
            None => Err(self.bad(field, format!("expected a number, found {}", describe(v)))),
        }
    }

    fn req_positive_f64(&self, field: &str) -> Result<f64, FormatError> {
        self.opt_positive_f64(field)?
            .ok_or_else(|| self.missing(field))
    }

    fn opt_bool(&self, field: &str) -> Result<Option<bool>, FormatError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(
                field,
                format!("expected true or false, found {}", describe(v)),
            )),
        }
    }

    fn opt_str(&self, field: &str) -> Result<Option<&'a str>, FormatError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(field, format!("expected a string, found {}", describe(v)))),
        }
    }

    fn opt_object(&self, field: &str) -> Result<Option<Fields<'a>>, FormatError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::Object(obj)) => Ok(Some(Fields {
                path: self.path,
                obj,
                prefix: format!("{}.", self.name(field)),
                floats: self.floats,
            })),
            Some(v) => Err(self.bad(field, format!("expected an object, found {}", describe(v)))),
        }
    }

    /// A token id: a non-negative integer that fits u32. With `negative_is_none`, a negative id (old configs write
    /// `pad_token_id: -1` for "no padding token") reads as `None`.
    fn token(
        &self,
        field: &str,
        v: &Value,
        negative_is_none: bool,
    ) -> Result<Option<u32>, FormatError> {
        let wrong = || self.bad(field, format!("expected a token id, found {}", describe(v)));
        let Value::Number(n) = v else {
            return Err(wrong());
        };
        if let Some(u) = n.as_u64() {
            return u32::try_from(u)
                .map(Some)
                .map_err(|_| self.bad(field, format!("token id {u} does not fit in 32 bits")));
        }
        match n.as_i64() {
            Some(_) if negative_is_none => Ok(None),
            Some(i) => Err(self.bad(field, format!("token ids cannot be negative, found {i}"))),
            None => Err(wrong()),
        }
    }

    fn opt_token(&self, field: &str, negative_is_none: bool) -> Result<Option<u32>, FormatError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => self.token(field, v, negative_is_none),
        }
    }

    /// `eos_token_id`: one id, a list of ids, or absent/null (none).
    fn eos_tokens(&self, field: &str) -> Result<Vec<u32>, FormatError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => {
                let mut ids = Vec::with_capacity(items.len());
                for (i, item) in items.iter().enumerate() {
                    let name = format!("{field}[{i}]");
                    if let Some(id) = self.token(&name, item, false)? {
                        ids.push(id);
                    }
                }
                Ok(ids)
            }
            Some(v) => Ok(self.token(field, v, false)?.into_iter().collect()),
        }
    }
}

/// Correctly rounded values of the JSON text's decimal numbers.
///
/// Without its `float_roundtrip` feature, serde_json may parse a decimal to a neighbour of the nearest f64 (1 ULP
/// off), so `config.json` written from a [`ModelConfig`] would not always read back equal. This maps each float
/// serde_json produced for a number token of the text to the exact value of that token (`str::parse` rounds
/// correctly); floats two different tokens would share stay as serde_json parsed them.
struct ExactFloats(HashMap<u64, Option<f64>>);

impl ExactFloats {
    fn scan(text: &str) -> Self {
        let bytes = text.as_bytes();
        let mut map: HashMap<u64, Option<f64>> = HashMap::new();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            match b {
                b'"' => {
                    i += 1;
                    while let Some(&c) = bytes.get(i) {
                        i += if c == b'\\' { 2 } else { 1 };
                        if c == b'"' {
                            break;
                        }
                    }
                }
                b'-' | b'0'..=b'9' => {
                    let start = i;
                    while bytes.get(i).is_some_and(|c| {
                        matches!(c, b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
                    }) {
                        i += 1;
                    }
                    let token = text.get(start..i).unwrap_or_default();
                    if let (Ok(approx), Ok(exact)) =
                        (serde_json::from_str::<f64>(token), token.parse::<f64>())
                    {
                        map.entry(approx.to_bits())
                            .and_modify(|e| {
                                if *e != Some(exact) {
                                    *e = None;
                                }
                            })
                            .or_insert(Some(exact));
                    }
                }
                _ => i += 1,
            }
        }
        ExactFloats(map)
    }

    /// The exact value of the token serde_json parsed as `x`, or `x` itself.
    fn exact(&self, x: f64) -> f64 {
        match self.0.get(&x.to_bits()) {
            Some(Some(e)) => *e,
            _ => x,
        }
    }
}
