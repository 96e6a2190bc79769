//! [`Example`]s and the JSONL files that hold them.

use std::path::Path;

use engram_tokenizer::Message;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::DataError;

/// Roles a chat message may have: what every chat template understands.
const ROLES: [&str; 3] = ["system", "user", "assistant"];

/// One training example, as users already write them.
///
/// Serializes to (and deserializes from) exactly the JSONL line it is read from:
/// `{"messages": [{"role": "user", "content": "..."}, ...]}` or `{"text": "..."}`. Deserializing
/// with serde does not validate; [`parse_jsonl`] does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Example {
    /// A conversation: the model learns the assistant turns, the rest is context.
    Chat {
        /// The turns, in order (`system`, `user`, `assistant`).
        messages: Vec<Message>,
    },
    /// A plain text: the model learns all of it (as a language-modelling document).
    Text {
        /// The text.
        text: String,
    },
}

impl Example {
    /// A chat example.
    pub fn chat(messages: Vec<Message>) -> Self {
        Self::Chat { messages }
    }

    /// A plain-text example.
    pub fn text(text: impl Into<String>) -> Self {
        Self::Text { text: text.into() }
    }
}

/// Reads a JSONL file of examples; see [`parse_jsonl`] for the format and the checks.
///
/// A file that cannot be read is [`DataError::Io`] naming it; a file that is not UTF-8 is a
/// [`DataError::Parse`] naming the line of the first bad byte.
pub fn read_jsonl(path: &Path) -> Result<Vec<Example>, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
        DataError::Parse {
            path: path.to_path_buf(),
            line: 1 + good.iter().filter(|&&b| b == b'\n').count(),
            message: "not valid UTF-8".into(),
        }
    })?;
    parse_jsonl(path, &text)
}

/// Parses JSONL text: one JSON object per line, blank lines skipped. `source_name` is only used
/// in error messages (the file it came from).
///
/// - `{"messages": [{"role": ..., "content": ...}, ...]}` is an [`Example::Chat`]: roles must be
///   `system`, `user` or `assistant`, contents strings, and at least one turn must be the
///   assistant's (it is what the model learns).
/// - `{"text": "..."}` is an [`Example::Text`]; the text must not be empty.
/// - Other keys (`"id"`, ...) are ignored, in the object and in its messages; an object with both
///   `messages` and `text`, or neither, is an error.
///
/// Every error is a [`DataError::Parse`] with the 1-based line (JSON syntax errors also give
/// serde's column); a text without any example is [`DataError::Empty`].
pub fn parse_jsonl(source_name: &Path, text: &str) -> Result<Vec<Example>, DataError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut examples = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let example = parse_line(line).map_err(|message| DataError::Parse {
            path: source_name.to_path_buf(),
            line: i + 1,
            message,
        })?;
        examples.push(example);
    }
    if examples.is_empty() {
        return Err(DataError::Empty {
            path: source_name.to_path_buf(),
        });
    }
    Ok(examples)
}

/// The 1-based file line of the `index`-th (1-based) example of `text` as [`parse_jsonl`] reads it (the
/// `index`-th non-blank line), to turn a [`DataError::Example`] into a `file:line` message.
pub fn line_of_example(text: &str, index: usize) -> Option<usize> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .nth(index.checked_sub(1)?)
        .map(|(i, _)| i + 1)
}

/// One line to an example, or the reason it is not one (without the location).
fn parse_line(line: &str) -> Result<Example, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| {
        // serde says "... at line 1 column 7"; the line is ours to give, the column is useful.
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let what = full.strip_suffix(&suffix).unwrap_or(&full);
        format!("invalid JSON at column {}: {what}", e.column())
    })?;
    let Value::Object(object) = value else {
        return Err(format!("expected a JSON object, found {}", kind_of(&value)));
    };
    match (object.get("messages"), object.get("text")) {
        (Some(_), Some(_)) => {
            Err("both \"messages\" and \"text\": an example is a chat or a text, not both".into())
        }
        (Some(messages), None) => parse_messages(messages),
        (None, Some(Value::String(text))) if text.is_empty() => Err("\"text\" is empty".into()),
        (None, Some(Value::String(text))) => Ok(Example::text(text.as_str())),
        (None, Some(other)) => Err(format!(
            "\"text\" must be a string, found {}",
            kind_of(other)
        )),
        (None, None) => Err("expected a \"messages\" array or a \"text\" string".into()),
    }
}

fn parse_messages(value: &Value) -> Result<Example, String> {
    let Value::Array(items) = value else {
        return Err(format!(
            "\"messages\" must be an array, found {}",
            kind_of(value)
        ));
    };
    if items.is_empty() {
        return Err("\"messages\" is empty".into());
    }
    let mut messages = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let n = i + 1;
        let Value::Object(m) = item else {
            return Err(format!(
                "message {n}: expected an object with \"role\" and \"content\", found {}",
                kind_of(item)
            ));
        };
        let role = match m.get("role") {
            Some(Value::String(r)) => r,
            Some(other) => {
                return Err(format!(
                    "message {n}: \"role\" must be a string, found {}",
                    kind_of(other)
                ));
            }
            None => return Err(format!("message {n}: missing \"role\"")),
        };
        if !ROLES.contains(&role.as_str()) {
            return Err(format!(
                "message {n}: unknown role {role:?} (expected \"system\", \"user\" or \"assistant\")"
            ));
        }
        let content = match m.get("content") {
            Some(Value::String(c)) => c,
            Some(other) => {
                return Err(format!(
                    "message {n}: \"content\" must be a string, found {}",
                    kind_of(other)
                ));
            }
            None => return Err(format!("message {n}: missing \"content\"")),
        };
        messages.push(Message::new(role.as_str(), content.as_str()));
    }
    if !messages.iter().any(|m| m.role == "assistant") {
        return Err(
            "no \"assistant\" message: a chat trains on its assistant turns, so it needs one"
                .into(),
        );
    }
    Ok(Example::chat(messages))
}

/// JSON's name for the kind of a value, for error messages.
fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod line_tests {
    #[test]
    fn example_indices_map_to_file_lines() {
        let text = "\u{feff}{\"text\": \"a\"}\n\n  \n{\"text\": \"b\"}\n{\"text\": \"c\"}\n";
        assert_eq!(super::line_of_example(text, 1), Some(1));
        assert_eq!(super::line_of_example(text, 2), Some(4));
        assert_eq!(super::line_of_example(text, 3), Some(5));
        assert_eq!(super::line_of_example(text, 4), None);
        assert_eq!(super::line_of_example(text, 0), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<Example>, DataError> {
        parse_jsonl(Path::new("data.jsonl"), text)
    }

    fn error(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn reads_chats_and_texts_skipping_blank_lines_and_extra_keys() {
        let text = "\u{feff}{\"id\": 1, \"messages\": [{\"role\": \"user\", \"content\": \"Hi\", \"name\": \"x\"}, {\"role\": \"assistant\", \"content\": \"Hello\"}]}\n\n   \r\n{\"text\": \"Plain\"}\r\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                Example::chat(vec![Message::user("Hi"), Message::assistant("Hello")]),
                Example::text("Plain"),
            ]
        );
    }

    #[test]
    fn examples_serialize_to_the_lines_they_are_read_from() {
        let examples = vec![
            Example::chat(vec![
                Message::system("Be brief."),
                Message::user("Où?"),
                Message::assistant("Ici \"là\".\n"),
            ]),
            Example::text("line one\nline two"),
        ];
        let jsonl: Vec<String> = examples
            .iter()
            .map(|e| serde_json::to_string(e).unwrap())
            .collect();
        assert_eq!(jsonl[1], r#"{"text":"line one\nline two"}"#);
        assert_eq!(parse(&jsonl.join("\n")).unwrap(), examples);
        let back: Example = serde_json::from_str(&jsonl[0]).unwrap();
        assert_eq!(back, examples[0]);
    }

    #[test]
    fn errors_name_the_file_and_line() {
        let good = r#"{"text": "ok"}"#;
        let text = format!("{good}\n\n{good}\n{{\"id\": 3}}\n");
        assert_eq!(
            error(&text),
            "data.jsonl:4: expected a \"messages\" array or a \"text\" string"
        );
    }

    #[test]
    fn invalid_json_gives_the_column() {
        assert_eq!(
            error("{\"text\": \"a\"}\n{\"text\": }"),
            "data.jsonl:2: invalid JSON at column 10: expected value"
        );
        assert_eq!(
            error("{\"text\": \"unterminated"),
            "data.jsonl:1: invalid JSON at column 22: EOF while parsing a string"
        );
    }

    #[test]
    fn each_malformed_line_is_reported() {
        let cases: &[(&str, &str)] = &[
            ("[1, 2]", "expected a JSON object, found an array"),
            (
                r#"{"messages": [], "text": "x"}"#,
                "both \"messages\" and \"text\"",
            ),
            (
                r#"{"text": 3}"#,
                "\"text\" must be a string, found a number",
            ),
            (r#"{"text": ""}"#, "\"text\" is empty"),
            (r#"{"messages": "hi"}"#, "\"messages\" must be an array"),
            (r#"{"messages": []}"#, "\"messages\" is empty"),
            (r#"{"messages": ["hi"]}"#, "message 1: expected an object"),
            (
                r#"{"messages": [{"role": "user", "content": "a"}, {"content": "b"}]}"#,
                "message 2: missing \"role\"",
            ),
            (
                r#"{"messages": [{"role": "assistant"}]}"#,
                "message 1: missing \"content\"",
            ),
            (
                r#"{"messages": [{"role": "assistant", "content": null}]}"#,
                "message 1: \"content\" must be a string, found null",
            ),
            (
                r#"{"messages": [{"role": "assistant", "content": ["a"]}]}"#,
                "message 1: \"content\" must be a string, found an array",
            ),
            (
                r#"{"messages": [{"role": 1, "content": "a"}]}"#,
                "message 1: \"role\" must be a string, found a number",
            ),
            (
                r#"{"messages": [{"role": "tool", "content": "a"}]}"#,
                "message 1: unknown role \"tool\"",
            ),
            (
                r#"{"messages": [{"role": "system", "content": "a"}, {"role": "user", "content": "b"}]}"#,
                "no \"assistant\" message",
            ),
        ];
        for (line, expected) in cases {
            // Put the bad line third, after a blank line, so the line number is checked too.
            let text = format!("{{\"text\": \"ok\"}}\n\n{line}\n{{\"text\": \"ok\"}}");
            let message = error(&text);
            assert!(
                message.starts_with(&format!("data.jsonl:3: {expected}")),
                "{line}: got {message:?}, expected {expected:?}"
            );
        }
    }

    #[test]
    fn a_file_without_examples_is_an_error() {
        for text in ["", "\n\n  \n", "\u{feff}"] {
            assert_eq!(
                error(text),
                "data.jsonl: no examples (the file is empty or has only blank lines)"
            );
        }
    }
}
