//! JSON Lines, the format every stage of engram writes between stages (training data, replay records,
//! distillation targets, evaluation rows), so that any stage can be inspected and rerun alone.
//!
//! Errors name the file and the 1-based line. [`read_jsonl`] treats a missing file as empty and drops a last
//! line cut short by an interruption (one not ending in a newline): that is what [`append_jsonl`] can leave
//! behind, and a resumed run redoes that unit.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::atomic::write_file_atomically;

/// Reading or writing a JSONL file failed.
#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    /// The file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A line is not a valid row.
    #[error("{}:{line}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        message: String,
    },
}

/// Rows as JSONL text, one per line, each ending in a newline.
pub fn to_jsonl<T: Serialize>(rows: &[T]) -> String {
    let mut text = String::new();
    for r in rows {
        // Plain data types (no maps with non-string keys) always serialize.
        text.push_str(&serde_json::to_string(r).expect("rows serialize"));
        text.push('\n');
    }
    text
}

/// Parses JSONL text, blank lines skipped; a bad line is `Err((its 1-based number, message))`, for a caller
/// that names its source in its own error type.
pub fn parse_jsonl<T: DeserializeOwned>(text: &str) -> Result<Vec<T>, (usize, String)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).map_err(|e| (i + 1, e.to_string())))
        .collect()
}

/// Reads a whole JSONL file; every line must parse (the file must exist).
pub fn read_jsonl_strict<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    let text = std::fs::read_to_string(path).map_err(|source| JsonlError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse_named(path, &text)
}

/// Reads the complete rows of a JSONL file that is appended to: a missing file is empty, and a last line
/// without its newline (cut short by an interruption) is dropped. Any other bad line is an error naming it.
pub fn read_jsonl<T: DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(JsonlError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let complete = match text.rfind('\n') {
        Some(i) => &text[..=i],
        None => "",
    };
    parse_named(path, complete)
}

fn parse_named<T: DeserializeOwned>(path: &Path, text: &str) -> Result<Vec<T>, JsonlError> {
    parse_jsonl(text).map_err(|(line, message)| JsonlError::Parse {
        path: path.to_path_buf(),
        line,
        message,
    })
}

/// Replaces `path` with `rows`, atomically.
pub fn write_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), JsonlError> {
    write_file_atomically(path, to_jsonl(rows).as_bytes()).map_err(|source| JsonlError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Appends `rows` to `path` (created if missing) in one write, synced: an interruption leaves at most one
/// partial last line, which [`read_jsonl`] drops.
pub fn append_jsonl<T: Serialize>(path: &Path, rows: &[T]) -> Result<(), JsonlError> {
    let io = |source| JsonlError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io)?;
    f.write_all(to_jsonl(rows).as_bytes()).map_err(io)?;
    f.sync_data().map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Row {
        a: u32,
    }

    #[test]
    fn appended_rows_read_back_and_a_cut_line_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        assert!(
            read_jsonl::<Row>(&path).unwrap().is_empty(),
            "missing = empty"
        );
        append_jsonl(&path, &[Row { a: 1 }, Row { a: 2 }]).unwrap();
        append_jsonl(&path, &[Row { a: 3 }]).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("{\"a\": 4");
        std::fs::write(&path, &text).unwrap();
        let rows: Vec<Row> = read_jsonl(&path).unwrap();
        assert_eq!(rows, [Row { a: 1 }, Row { a: 2 }, Row { a: 3 }]);
        let err = read_jsonl_strict::<Row>(&path).unwrap_err().to_string();
        assert!(err.contains("rows.jsonl:4"), "{err}");
    }

    #[test]
    fn a_bad_line_in_the_middle_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rows.jsonl");
        std::fs::write(&path, "{\"a\": 1}\n\n{\"b\": 2}\n{\"a\": 3}\n").unwrap();
        let err = read_jsonl::<Row>(&path).unwrap_err().to_string();
        assert!(
            err.contains("rows.jsonl:3") && err.contains("missing field"),
            "{err}"
        );
        write_jsonl(&path, &[Row { a: 7 }]).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"a\":7}\n");
    }
}
