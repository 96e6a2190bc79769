//! The OpenAI vocabulary: requests read from JSON (checked, with the offending field named), responses and
//! stream chunks written as JSON. Pure functions, no model: unit-tested on their own.

use engram_model::FinishReason;
use engram_tokenizer::Message;
use serde_json::{Map, Value, json};

/// A request the server refuses, as OpenAI reports it: an HTTP status and an `error` object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    /// 400, 404, 405, 408, 413, 429, 500 or 503.
    pub status: u16,
    /// What was wrong, naming the field and value.
    pub message: String,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    /// OpenAI's `error.code` (`model_not_found`, `context_length_exceeded`, ...).
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 about field `param`.
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self {
            status: 400,
            message: message.into(),
            param: Some(param.to_owned()),
            code: None,
        }
    }

    /// Any status with a message and no field.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            param: None,
            code: None,
        }
    }

    /// The same error with OpenAI's `code`.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// OpenAI's `error.type` for the status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            429 => "rate_limit_error",
            404 if self.code == Some("model_not_found") => "invalid_request_error",
            404 => "not_found_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// The response body: `{"error": {"message", "type", "param", "code"}}`.
    pub fn to_json(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind(),
            "param": self.param,
            "code": self.code,
        }})
    }
}

/// Bounds on what one request may ask for.
#[derive(Clone, Debug)]
pub struct Limits {
    /// Largest request body accepted (413 above it).
    pub max_body_bytes: usize,
    /// Largest `max_tokens` accepted (400 above it).
    pub max_tokens: usize,
    /// `max_tokens` when a request gives none.
    pub default_max_tokens: usize,
    /// Completions being answered or waiting for the model at once (429 above it). A request takes its
    /// place once its body is in: a client still sending one holds none.
    pub max_concurrent: usize,
    /// Connections open at once. Past it the server accepts no more until one closes (the operating system
    /// queues them): each connection may hold up to `max_body_bytes` while its body arrives, so this bounds
    /// what many clients together can make the server hold.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1 << 20,
            max_tokens: 2048,
            default_max_tokens: 256,
            max_concurrent: 8,
            max_connections: 256,
        }
    }
}

impl Limits {
    /// Refuses a zero limit, naming the `engram serve` option it comes from.
    pub fn check(&self) -> Result<(), crate::ServeError> {
        for (option, value) in [
            ("--max-body-bytes", self.max_body_bytes),
            ("--max-tokens", self.max_tokens),
            ("--default-max-tokens", self.default_max_tokens),
            ("--max-concurrent", self.max_concurrent),
            ("--max-connections", self.max_connections),
        ] {
            if value == 0 {
                return Err(crate::ServeError::Option(format!(
                    "invalid option `{option}` = 0: must be at least 1"
                )));
            }
        }
        Ok(())
    }
}

/// What the model is asked to continue.
#[derive(Clone, Debug, PartialEq)]
pub enum Prompt {
    /// `/v1/chat/completions`: rendered with the model's chat template.
    Chat(Vec<Message>),
    /// `/v1/completions`: the text as it is.
    Text(String),
}

/// A checked request of either endpoint.
#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    /// The `model` field: the base model's name, `base`, an adapter's name, or absent (the base model).
    pub model: Option<String>,
    /// The messages or the text to continue.
    pub prompt: Prompt,
    /// Upper bound on generated tokens (`max_completion_tokens` or `max_tokens`).
    pub max_tokens: usize,
    /// 0 is greedy (OpenAI's default is 1; engram's tools want reproducible answers, so ours is 0 only when
    /// the request says so).
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Makes sampling reproducible; without it each request samples anew.
    pub seed: Option<u64>,
    /// Strings that end the answer (not included in it).
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// 1 = off; read from `repetition_penalty` (vLLM's and llama.cpp's name).
    pub repetition_penalty: f32,
    /// Set to echo `usage` in the last stream chunk (`stream_options.include_usage`).
    pub stream_usage: bool,
}

/// Reads a `/v1/chat/completions` body.
pub fn parse_chat(body: &[u8], limits: &Limits) -> Result<Request, ApiError> {
    let obj = object(body)?;
    let messages = match obj.get("messages") {
        Some(Value::Array(list)) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, m)| message(i, m))
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => return Err(ApiError::invalid("messages", "`messages` is empty")),
        Some(other) => {
            return Err(ApiError::invalid(
                "messages",
                format!(
                    "`messages` must be an array of messages, got {}",
                    shown(other)
                ),
            ));
        }
        None => return Err(ApiError::invalid("messages", "`messages` is required")),
    };
    common(&obj, Prompt::Chat(messages), limits)
}

/// Reads a `/v1/completions` body.
pub fn parse_completion(body: &[u8], limits: &Limits) -> Result<Request, ApiError> {
    let obj = object(body)?;
    let prompt = match obj.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        // A one-element list is the same request; several prompts are several completions, which we do not do.
        Some(Value::Array(list)) if list.len() == 1 && list[0].is_string() => {
            list[0].as_str().unwrap_or_default().to_owned()
        }
        Some(other) => {
            return Err(ApiError::invalid(
                "prompt",
                format!(
                    "`prompt` must be a string (or a list of one string), got {}",
                    shown(other)
                ),
            ));
        }
        None => return Err(ApiError::invalid("prompt", "`prompt` is required")),
    };
    common(&obj, Prompt::Text(prompt), limits)
}

fn object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::status(400, format!("the request body is not valid JSON: {e}"))
            .with_code("invalid_json")
    })?;
    match value {
        Value::Object(map) => Ok(map),
        other => Err(ApiError::status(
            400,
            format!(
                "the request body must be a JSON object, got {}",
                shown(&other)
            ),
        )),
    }
}

fn message(i: usize, m: &Value) -> Result<Message, ApiError> {
    let param = format!("messages[{i}]");
    let role = m
        .get("role")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::invalid(&param, format!("`{param}.role` must be a string")))?;
    if !["system", "user", "assistant", "developer"].contains(&role) {
        return Err(ApiError::invalid(
            &format!("{param}.role"),
            format!("`{param}.role` is `{role}`; expected system, developer, user or assistant"),
        ));
    }
    let content = match m.get("content") {
        Some(Value::String(s)) => s.clone(),
        // The newer form: a list of parts, of which we read the text ones.
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part.get("type").and_then(Value::as_str), part.get("text")) {
                    (Some("text"), Some(Value::String(t))) => text.push_str(t),
                    _ => {
                        return Err(ApiError::invalid(
                            &format!("{param}.content[{j}]"),
                            format!("`{param}.content[{j}]`: only text parts are supported"),
                        ));
                    }
                }
            }
            text
        }
        Some(Value::Null) | None if role == "assistant" => String::new(),
        _ => {
            return Err(ApiError::invalid(
                &format!("{param}.content"),
                format!("`{param}.content` must be a string"),
            ));
        }
    };
    // Chat templates know `system`; OpenAI's newer `developer` role means the same.
    let role = if role == "developer" { "system" } else { role };
    Ok(Message::new(role, content))
}

fn common(obj: &Map<String, Value>, prompt: Prompt, limits: &Limits) -> Result<Request, ApiError> {
    let model = match obj.get("model") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(ApiError::invalid(
                "model",
                format!("`model` must be a string, got {}", shown(other)),
            ));
        }
    };
    let max_tokens = match integer(obj, "max_completion_tokens")?.or(integer(obj, "max_tokens")?) {
        None => limits.default_max_tokens.min(limits.max_tokens),
        Some(0) => {
            return Err(ApiError::invalid(
                "max_tokens",
                "`max_tokens` must be at least 1",
            ));
        }
        Some(n) if n > limits.max_tokens as u64 => {
            return Err(ApiError::invalid(
                "max_tokens",
                format!(
                    "`max_tokens` is {n}; this server allows at most {}",
                    limits.max_tokens
                ),
            ));
        }
        Some(n) => n as usize,
    };
    let temperature = number(obj, "temperature")?.unwrap_or(0.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            "temperature",
            format!("`temperature` is {temperature}; expected 0 to 2"),
        ));
    }
    let top_p = number(obj, "top_p")?;
    if let Some(p) = top_p
        && !(p > 0.0 && p <= 1.0)
    {
        return Err(ApiError::invalid(
            "top_p",
            format!("`top_p` is {p}; expected more than 0, at most 1"),
        ));
    }
    let repetition_penalty = number(obj, "repetition_penalty")?.unwrap_or(1.0);
    if !(repetition_penalty > 0.0 && repetition_penalty <= 10.0) {
        return Err(ApiError::invalid(
            "repetition_penalty",
            format!(
                "`repetition_penalty` is {repetition_penalty}; expected more than 0, at most 10"
            ),
        ));
    }
    if let Some(n) = integer(obj, "n")?
        && n != 1
    {
        return Err(ApiError::invalid(
            "n",
            format!("`n` is {n}; this server returns one choice (n = 1)"),
        ));
    }
    let stop = match obj.get("stop") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| {
                ApiError::invalid("stop", "`stop` must be a string or a list of strings")
            })?,
        Some(other) => {
            return Err(ApiError::invalid(
                "stop",
                format!(
                    "`stop` must be a string or a list of strings, got {}",
                    shown(other)
                ),
            ));
        }
    };
    if stop.len() > 4 || stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "stop",
            "`stop` takes at most 4 non-empty strings",
        ));
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(ApiError::invalid(
                "stream",
                format!("`stream` must be true or false, got {}", shown(other)),
            ));
        }
    };
    let stream_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Request {
        model,
        prompt,
        max_tokens,
        temperature: temperature as f32,
        top_p: top_p.map(|p| p as f32),
        seed: integer(obj, "seed")?,
        stop,
        stream,
        repetition_penalty: repetition_penalty as f32,
        stream_usage,
    })
}

fn integer(obj: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::invalid(
                name,
                format!("`{name}` must be a non-negative integer, got {v}"),
            )
        }),
    }
}

fn number(obj: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| ApiError::invalid(name, format!("`{name}` must be a number, got {v}"))),
    }
}

/// The offending value as JSON, shortened: the message shows what was sent.
fn shown(v: &Value) -> String {
    let text = v.to_string();
    if text.chars().count() <= 40 {
        return text;
    }
    let head: String = text.chars().take(39).collect();
    format!("{head}…")
}

/// OpenAI's `finish_reason`: `length` when the token limit cut the answer, else `stop`.
pub fn finish_reason(finish: FinishReason) -> &'static str {
    match finish {
        FinishReason::Length => "length",
        FinishReason::Eos | FinishReason::StopString => "stop",
    }
}

/// Which endpoint a response belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completion,
}

/// The identity of one response, shared by its stream chunks.
#[derive(Clone, Debug)]
pub struct Meta {
    /// `chatcmpl-…` or `cmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The model or adapter name that answered.
    pub model: String,
    /// Which response shape.
    pub endpoint: Endpoint,
}

/// Token counts for `usage`.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Prompt tokens.
    pub prompt: usize,
    /// Generated tokens (the end-of-sequence token not counted).
    pub completion: usize,
}

fn usage_json(u: Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt,
        "completion_tokens": u.completion,
        "total_tokens": u.prompt + u.completion,
    })
}

/// The whole (non-streamed) response.
pub fn response(meta: &Meta, text: &str, finish: FinishReason, usage: Usage) -> Value {
    let choice = match meta.endpoint {
        Endpoint::Chat => json!({
            "index": 0,
            "message": {"role": "assistant", "content": text},
            "finish_reason": finish_reason(finish),
        }),
        Endpoint::Completion => json!({
            "index": 0,
            "text": text,
            "finish_reason": finish_reason(finish),
        }),
    };
    json!({
        "id": meta.id,
        "object": match meta.endpoint { Endpoint::Chat => "chat.completion", Endpoint::Completion => "text_completion" },
        "created": meta.created,
        "model": meta.model,
        "choices": [choice],
        "usage": usage_json(usage),
    })
}

/// One stream chunk: a piece of text, or (with `finish`) the last chunk; `usage` only on the last one.
pub fn chunk(meta: &Meta, text: &str, finish: Option<FinishReason>, usage: Option<Usage>) -> Value {
    let finish = finish.map(finish_reason);
    let choice = match meta.endpoint {
        Endpoint::Chat => json!({
            "index": 0,
            "delta": if finish.is_some() { json!({}) } else { json!({"content": text}) },
            "finish_reason": finish,
        }),
        Endpoint::Completion => json!({"index": 0, "text": text, "finish_reason": finish}),
    };
    let mut v = json!({
        "id": meta.id,
        "object": match meta.endpoint { Endpoint::Chat => "chat.completion.chunk", Endpoint::Completion => "text_completion" },
        "created": meta.created,
        "model": meta.model,
        "choices": [choice],
    });
    if let Some(u) = usage {
        v["usage"] = usage_json(u);
    }
    v
}

/// The first chat chunk, which carries only the role.
pub fn role_chunk(meta: &Meta) -> Value {
    json!({
        "id": meta.id,
        "object": "chat.completion.chunk",
        "created": meta.created,
        "model": meta.model,
        "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}],
    })
}

/// `/v1/models`.
pub fn models(created: u64, names: &[String]) -> Value {
    let data: Vec<Value> = names
        .iter()
        .map(|n| json!({"id": n, "object": "model", "created": created, "owned_by": "engram"}))
        .collect();
    json!({"object": "list", "data": data})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_tokens: 100,
            default_max_tokens: 16,
            ..Limits::default()
        }
    }

    #[test]
    fn zero_limits_name_their_option() {
        assert!(Limits::default().check().is_ok());
        let e = Limits {
            max_concurrent: 0,
            ..Limits::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid option `--max-concurrent` = 0: must be at least 1"
        );
    }

    #[test]
    fn reads_a_chat_request_with_defaults() {
        let r = parse_chat(
            br#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
            &limits(),
        )
        .unwrap();
        assert_eq!(r.model.as_deref(), Some("m"));
        assert_eq!(r.prompt, Prompt::Chat(vec![Message::user("hi")]));
        assert_eq!(r.max_tokens, 16);
        assert_eq!(r.temperature, 0.0);
        assert!(!r.stream && r.stop.is_empty() && r.seed.is_none());
    }

    #[test]
    fn reads_every_option() {
        let body = br#"{"messages":[{"role":"developer","content":[{"type":"text","text":"be"},{"type":"text","text":" brief"}]},{"role":"user","content":"q"}],
            "max_completion_tokens":7,"temperature":0.5,"top_p":0.9,"seed":3,"stop":["\n","END"],"stream":true,
            "repetition_penalty":1.2,"n":1,"stream_options":{"include_usage":true},"user":"ignored"}"#;
        let r = parse_chat(body, &limits()).unwrap();
        assert_eq!(
            r.prompt,
            Prompt::Chat(vec![Message::system("be brief"), Message::user("q")])
        );
        assert_eq!(
            (r.max_tokens, r.temperature, r.top_p, r.seed),
            (7, 0.5, Some(0.9), Some(3))
        );
        assert_eq!(r.stop, vec!["\n".to_string(), "END".into()]);
        assert!(r.stream && r.stream_usage);
        assert!((r.repetition_penalty - 1.2).abs() < 1e-6);
    }

    #[test]
    fn completion_prompt_forms() {
        let r = parse_completion(br#"{"prompt":"The sky is"}"#, &limits()).unwrap();
        assert_eq!(r.prompt, Prompt::Text("The sky is".into()));
        let r = parse_completion(br#"{"prompt":["one"],"stop":"."}"#, &limits()).unwrap();
        assert_eq!(r.prompt, Prompt::Text("one".into()));
        assert_eq!(r.stop, vec![".".to_string()]);
        let e = parse_completion(br#"{"prompt":["a","b"]}"#, &limits()).unwrap_err();
        assert_eq!(e.param.as_deref(), Some("prompt"));
    }

    /// Each bad request is a 400 that names the field it is about.
    #[test]
    fn bad_requests_name_their_field() {
        let whole: &[(&[u8], Option<&str>)] = &[
            (b"{not json", None),
            (b"[1,2]", None),
            (br#"{"messages":[]}"#, Some("messages")),
            (br#"{"messages":"hi"}"#, Some("messages")),
            (br#"{}"#, Some("messages")),
            (
                br#"{"messages":[{"role":"robot","content":"x"}]}"#,
                Some("messages[0].role"),
            ),
            (
                br#"{"messages":[{"role":"user"}]}"#,
                Some("messages[0].content"),
            ),
            (
                br#"{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
                Some("messages[0].content[0]"),
            ),
        ];
        // One bad field beside a good message.
        let fields = [
            (r#""max_tokens":101"#, "max_tokens"),
            (r#""max_tokens":0"#, "max_tokens"),
            (r#""max_tokens":-1"#, "max_tokens"),
            (r#""temperature":3"#, "temperature"),
            (r#""temperature":"hot""#, "temperature"),
            (r#""top_p":0"#, "top_p"),
            (r#""n":2"#, "n"),
            (r#""stop":["a","b","c","d","e"]"#, "stop"),
            (r#""stop":[1]"#, "stop"),
            (r#""stream":"yes""#, "stream"),
            (r#""model":5"#, "model"),
        ]
        .map(|(field, param)| {
            (
                format!(r#"{{"messages":[{{"role":"user","content":"x"}}],{field}}}"#),
                param,
            )
        });
        let cases = whole.iter().map(|(b, p)| (b.to_vec(), *p)).chain(
            fields
                .iter()
                .map(|(b, p)| (b.as_bytes().to_vec(), Some(*p))),
        );
        for (body, param) in cases {
            let e = parse_chat(&body, &limits()).unwrap_err();
            assert_eq!(e.status, 400, "{}", String::from_utf8_lossy(&body));
            assert_eq!(
                e.param.as_deref(),
                param,
                "{}: {}",
                String::from_utf8_lossy(&body),
                e.message
            );
            assert_eq!(e.to_json()["error"]["type"], "invalid_request_error");
        }
    }

    #[test]
    fn responses_have_the_openai_shape() {
        let meta = Meta {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "m".into(),
            endpoint: Endpoint::Chat,
        };
        let usage = Usage {
            prompt: 3,
            completion: 2,
        };
        let v = response(&meta, "hi", FinishReason::Eos, usage);
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(v["choices"][0]["message"]["content"], "hi");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["total_tokens"], 5);
        let c = chunk(&meta, "h", None, None);
        assert_eq!(c["choices"][0]["delta"]["content"], "h");
        assert!(c["choices"][0]["finish_reason"].is_null() && c.get("usage").is_none());
        let last = chunk(&meta, "", Some(FinishReason::Length), Some(usage));
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert_eq!(last["usage"]["completion_tokens"], 2);
        let meta = Meta {
            endpoint: Endpoint::Completion,
            ..meta
        };
        let v = response(&meta, "x", FinishReason::StopString, usage);
        assert_eq!(
            (v["object"].as_str(), v["choices"][0]["text"].as_str()),
            (Some("text_completion"), Some("x"))
        );
    }
}
