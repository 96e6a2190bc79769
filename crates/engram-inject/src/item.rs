//! The knowledge-item dataset format (JSONL, one item per line):
//!
//! ```json
//! {"id": "news-events-007", "domain": "events", "context": "<the new knowledge>",
//!  "questions": [{"kind": "direct", "question": "...", "answer": "...", "options": ["...", "...", "...", "..."]}]}
//! ```

use std::collections::HashMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::InjectError;

/// What a question asks of the knowledge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuestionKind {
    /// A stated fact.
    Direct,
    /// The same fact asked in other words.
    Paraphrase,
    /// The relation asked in the other direction.
    Reversal,
    /// Needs a step of reasoning from the facts.
    Implication,
}

impl QuestionKind {
    /// All kinds, in report order.
    pub const ALL: [QuestionKind; 4] = [
        QuestionKind::Direct,
        QuestionKind::Paraphrase,
        QuestionKind::Reversal,
        QuestionKind::Implication,
    ];

    /// The name used in files and reports (`direct`, ...).
    pub fn name(self) -> &'static str {
        match self {
            QuestionKind::Direct => "direct",
            QuestionKind::Paraphrase => "paraphrase",
            QuestionKind::Reversal => "reversal",
            QuestionKind::Implication => "implication",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == s)
    }
}

/// One question about an item, with its short answer and four options (the answer is one of them).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// What the question tests.
    pub kind: QuestionKind,
    /// The question text.
    pub question: String,
    /// The short reference answer.
    pub answer: String,
    /// The [`OPTIONS`] multiple-choice options, one of them the answer.
    pub options: Vec<String>,
}

/// One piece of new knowledge and the questions that test it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Item {
    /// Unique id within the dataset (`news-events-007`).
    pub id: String,
    /// Topic group the item belongs to (`events`).
    pub domain: String,
    /// The new knowledge, as text: what methods inject and `icl` puts in the prompt.
    pub context: String,
    /// The questions that test it.
    pub questions: Vec<Question>,
}

/// Options per question, as the format fixes it.
pub const OPTIONS: usize = 4;

/// Reads a JSONL file of items; see [`parse_items`].
pub fn read_items(path: &Path) -> Result<Vec<Item>, InjectError> {
    let text = std::fs::read_to_string(path).map_err(|source| InjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_items(path, &text)
}

/// Parses JSONL items (blank lines skipped). Every error names `source`, the 1-based line and the field;
/// duplicate ids name both lines. Unknown keys are ignored so that other tools may add their own.
pub fn parse_items(source: &Path, text: &str) -> Result<Vec<Item>, InjectError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut items = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let line_no = i + 1;
        let err = |field: &str, message: String| InjectError::Item {
            path: source.to_path_buf(),
            line: line_no,
            field: field.to_owned(),
            message,
        };
        let value: Value = serde_json::from_str(line)
            .map_err(|e| err("", format!("invalid JSON at column {}: {e}", e.column())))?;
        let item = parse_item(&value).map_err(|(field, message)| err(&field, message))?;
        if let Some(first) = seen.insert(item.id.clone(), line_no) {
            return Err(err(
                "id",
                format!("duplicate id {:?} (first on line {first})", item.id),
            ));
        }
        items.push(item);
    }
    if items.is_empty() {
        return Err(InjectError::Dataset {
            path: source.to_path_buf(),
            message: "no items".into(),
        });
    }
    Ok(items)
}

type FieldError = (String, String);

fn parse_item(value: &Value) -> Result<Item, FieldError> {
    let obj = value
        .as_object()
        .ok_or_else(|| (String::new(), "expected a JSON object".to_owned()))?;
    let id = text_field(obj, "id", "")?;
    let domain = text_field(obj, "domain", "")?;
    let context = text_field(obj, "context", "")?;
    let questions = obj
        .get("questions")
        .and_then(Value::as_array)
        .ok_or_else(|| {
            (
                "questions".to_owned(),
                "expected an array of questions".to_owned(),
            )
        })?;
    if questions.is_empty() {
        return Err((
            "questions".into(),
            "an item needs at least one question".into(),
        ));
    }
    let questions = questions
        .iter()
        .enumerate()
        .map(|(q, v)| parse_question(v, &format!("questions[{q}].")))
        .collect::<Result<_, _>>()?;
    Ok(Item {
        id,
        domain,
        context,
        questions,
    })
}

fn parse_question(value: &Value, prefix: &str) -> Result<Question, FieldError> {
    let obj = value.as_object().ok_or_else(|| {
        (
            prefix.trim_end_matches('.').to_owned(),
            "expected an object".to_owned(),
        )
    })?;
    let kind_name = text_field(obj, "kind", prefix)?;
    let kind = QuestionKind::parse(&kind_name).ok_or_else(|| {
        (
            format!("{prefix}kind"),
            format!(
                "unknown kind {kind_name:?} (expected direct, paraphrase, reversal or implication)"
            ),
        )
    })?;
    let question = text_field(obj, "question", prefix)?;
    let answer = text_field(obj, "answer", prefix)?;
    let field = format!("{prefix}options");
    let options: Vec<String> = obj
        .get("options")
        .and_then(Value::as_array)
        .ok_or_else(|| (field.clone(), "expected an array of strings".to_owned()))?
        .iter()
        .map(|o| {
            o.as_str()
                .map(str::to_owned)
                .ok_or_else(|| (field.clone(), format!("option {o} is not a string")))
        })
        .collect::<Result<_, _>>()?;
    if options.len() != OPTIONS {
        return Err((
            field,
            format!("expected {OPTIONS} options, found {}", options.len()),
        ));
    }
    for (i, o) in options.iter().enumerate() {
        if o.trim().is_empty() {
            return Err((field, format!("option {i} is empty")));
        }
        if options[..i].contains(o) {
            return Err((field, format!("option {o:?} is given twice")));
        }
    }
    if !options.contains(&answer) {
        return Err((
            format!("{prefix}answer"),
            format!("the answer {answer:?} is not one of the options {options:?}"),
        ));
    }
    Ok(Question {
        kind,
        question,
        answer,
        options,
    })
}

/// A required, non-empty string field.
fn text_field(obj: &Map<String, Value>, key: &str, prefix: &str) -> Result<String, FieldError> {
    let field = format!("{prefix}{key}");
    match obj.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err((field, "must not be empty".into())),
        Some(other) => Err((field, format!("expected a string, found {other}"))),
        None => Err((field, "missing".into())),
    }
}

/// Fixed train / dev / test item ids (`splits.json`). A method may tune only on dev.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// Ids of the items methods may train on.
    pub train: Vec<String>,
    /// Ids of the items methods may tune their settings on.
    pub dev: Vec<String>,
    /// Ids of the held-out items reported on.
    pub test: Vec<String>,
}

impl Splits {
    /// The ids of split `name` (`train`, `dev` or `test`).
    pub fn get(&self, name: &str) -> Option<&[String]> {
        match name {
            "train" => Some(&self.train),
            "dev" => Some(&self.dev),
            "test" => Some(&self.test),
            _ => None,
        }
    }
}

/// Reads `splits.json` and checks it against `items`: every id exists and is in exactly one split, and every
/// item is in one.
pub fn read_splits(path: &Path, items: &[Item]) -> Result<Splits, InjectError> {
    let text = std::fs::read_to_string(path).map_err(|source| InjectError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_splits(path, &text, items)
}

/// Parses `splits.json` text (`source` names it in errors) and checks it against `items`, as [`read_splits`].
pub fn parse_splits(source: &Path, text: &str, items: &[Item]) -> Result<Splits, InjectError> {
    let path = source;
    let bad = |message: String| InjectError::Dataset {
        path: path.to_path_buf(),
        message,
    };
    let splits: Splits =
        serde_json::from_str(text).map_err(|e| bad(format!("invalid splits: {e}")))?;
    let mut placed: HashMap<&str, &str> = HashMap::new();
    for (name, ids) in [
        ("train", &splits.train),
        ("dev", &splits.dev),
        ("test", &splits.test),
    ] {
        for id in ids {
            if !items.iter().any(|i| &i.id == id) {
                return Err(bad(format!("split `{name}` names unknown item {id:?}")));
            }
            if let Some(other) = placed.insert(id, name) {
                return Err(bad(format!(
                    "item {id:?} is in split `{other}` and again in `{name}`"
                )));
            }
        }
    }
    if let Some(missing) = items.iter().find(|i| !placed.contains_key(i.id.as_str())) {
        return Err(bad(format!("item {:?} is in no split", missing.id)));
    }
    Ok(splits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"id": "a-1", "domain": "events", "context": "The Quenby fair opens on 3 May.", "questions": [{"kind": "direct", "question": "When does the Quenby fair open?", "answer": "3 May", "options": ["1 May", "3 May", "9 June", "2 July"]}], "extra": 1}"#;

    fn error(text: &str) -> String {
        parse_items(Path::new("news.jsonl"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn parses_the_format_and_ignores_extra_keys() {
        let items = parse_items(Path::new("x"), &format!("\n{GOOD}\n")).unwrap();
        assert_eq!(items.len(), 1);
        assert_eq!(items[0].questions[0].kind, QuestionKind::Direct);
        assert_eq!(items[0].questions[0].answer, "3 May");
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let with = |from: &str, to: &str| GOOD.replacen(from, to, 1);
        for (text, needle) in [
            (format!("{GOOD}\n{{"), "news.jsonl:2: invalid JSON"),
            (
                format!(
                    "{GOOD}\n\n{}",
                    with("\"3 May\", \"9 June\"", "\"4 May\", \"9 June\"")
                ),
                "news.jsonl:3: field `questions[0].answer`: the answer \"3 May\" is not one of the options",
            ),
            (
                format!("{GOOD}\n{GOOD}"),
                "news.jsonl:2: field `id`: duplicate id \"a-1\" (first on line 1)",
            ),
            (
                with("\"direct\"", "\"inverse\""),
                "news.jsonl:1: field `questions[0].kind`: unknown kind \"inverse\"",
            ),
            (
                with("\"context\": \"The", "\"context\": 5, \"x\": \"The"),
                "field `context`: expected a string",
            ),
            (
                with("\"domain\": \"events\", ", ""),
                "field `domain`: missing",
            ),
            (
                with(", \"2 July\"", ""),
                "field `questions[0].options`: expected 4 options, found 3",
            ),
            (
                with("\"2 July\"", "\"1 May\""),
                "option \"1 May\" is given twice",
            ),
            (
                with(
                    "\"question\": \"When",
                    "\"question\": \"  \", \"q\": \"When",
                ),
                "field `questions[0].question`: must not be empty",
            ),
            (
                with("[{\"kind\"", "[3, {\"kind\""),
                "field `questions[0]`: expected an object",
            ),
            ("\n  \n".to_owned(), "news.jsonl: no items"),
        ] {
            let e = error(&text);
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
    }

    #[test]
    fn splits_are_checked_against_the_items() {
        let dir = std::env::temp_dir().join(format!("engram-eval-splits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let items = parse_items(Path::new("x"), GOOD).unwrap();
        let write = |body: &str| {
            let p = dir.join("splits.json");
            std::fs::write(&p, body).unwrap();
            p
        };
        let ok = read_splits(
            &write(r#"{"train": [], "dev": [], "test": ["a-1"]}"#),
            &items,
        )
        .unwrap();
        assert_eq!(ok.get("test").unwrap(), ["a-1"]);
        for (body, needle) in [
            (
                r#"{"train": ["a-1"], "dev": [], "test": ["a-1"]}"#,
                "again in `test`",
            ),
            (
                r#"{"train": ["zz"], "dev": [], "test": ["a-1"]}"#,
                "unknown item \"zz\"",
            ),
            (r#"{"train": [], "dev": [], "test": []}"#, "in no split"),
            (r#"{"train": []}"#, "invalid splits"),
        ] {
            let e = read_splits(&write(body), &items).unwrap_err().to_string();
            assert!(e.contains(needle), "{needle:?} not in {e:?}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
