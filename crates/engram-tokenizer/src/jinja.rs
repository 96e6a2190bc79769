//! The Jinja environment chat templates run in: minijinja set up to behave like the sandbox that
//! Hugging Face `transformers` renders `apply_chat_template` in (`trim_blocks`, `lstrip_blocks`,
//! `raise_exception`, `strftime_now`, a Python-style `tojson`, and the common Python `str`/`dict`
//! methods that templates call, such as `.strip()` or `.items()`).

use std::io;
use std::ops::Range;
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value, ValueKind, from_args};
use minijinja::{Environment, Error, ErrorKind, State};

use crate::TokenizerError;

/// The name the single template of a [`crate::ChatTemplate`] is registered under.
pub(crate) const TEMPLATE_NAME: &str = "chat_template";

/// A fresh environment with the HF-compatible settings and helpers.
pub(crate) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    // transformers: ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True); Jinja2
    // also drops one trailing newline of the source by default.
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_keep_trailing_newline(false);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env.set_unknown_method_callback(python_method);
    env
}

/// Compiles `source` into a new environment; errors name the template and the line.
pub(crate) fn compile(name: &str, source: &str) -> Result<Environment<'static>, TokenizerError> {
    let mut env = environment();
    env.add_template_owned(TEMPLATE_NAME, source.to_owned())
        .map_err(|e| template_error(name, source, &e))?;
    Ok(env)
}

/// Converts a minijinja error into a [`TokenizerError::Template`] quoting the offending source.
pub(crate) fn template_error(name: &str, source: &str, err: &Error) -> TokenizerError {
    let mut message = err.kind().to_string();
    if let Some(detail) = err.detail() {
        message.push_str(": ");
        message.push_str(detail);
    }
    // An error raised inside a called function carries its cause one level down.
    let mut cause = std::error::Error::source(err);
    while let Some(c) = cause {
        message.push_str(": ");
        message.push_str(&c.to_string());
        cause = c.source();
    }
    if let Some(snippet) = snippet(source, err.range(), err.line()) {
        message.push_str(&format!(" (at `{snippet}`)"));
    }
    TokenizerError::Template {
        template: name.to_owned(),
        line: err.line(),
        message,
    }
}

/// The source text around an error: its byte range widened a little, or else its whole line,
/// on one line and at most ~100 characters.
fn snippet(source: &str, range: Option<Range<usize>>, line: Option<usize>) -> Option<String> {
    const CONTEXT: usize = 30;
    let text = match range {
        Some(r) if r.start <= source.len() => {
            let start = floor_char_boundary(source, r.start.saturating_sub(CONTEXT));
            let end = floor_char_boundary(source, r.end.saturating_add(CONTEXT).min(source.len()));
            source.get(start..end.max(start))?
        }
        _ => source.lines().nth(line?.checked_sub(1)?)?,
    };
    let flat: String = text
        .chars()
        .map(|c| if c == '\n' { '⏎' } else { c })
        .take(100)
        .collect();
    let flat = flat.trim();
    (!flat.is_empty()).then(|| flat.to_owned())
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    i = i.min(s.len());
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// `raise_exception(msg)`: templates call it to reject a conversation (e.g. roles that do not
/// alternate); it aborts rendering with `msg`.
fn raise_exception(message: String) -> Result<Value, Error> {
    Err(Error::new(ErrorKind::InvalidOperation, message))
}

/// `strftime_now(format)`: the current UTC date/time formatted with the usual `%` codes
/// (Llama 3.x templates print today's date with it).
fn strftime_now(format: String) -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    strftime(&format, secs)
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats a Unix time (UTC) with a subset of C `strftime` codes; unknown codes are kept as is.
pub(crate) fn strftime(format: &str, unix_secs: u64) -> String {
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    let (year, month, day) = civil_from_days(days);
    // 1970-01-01 was a Thursday (index 3 from Monday).
    let weekday = ((days + 3) % 7) as usize;
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = DAYS[weekday];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&year.to_string()),
            Some('y') => out.push_str(&format!("{:02}", year % 100)),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!("{:02}", (hour + 11) % 12 + 1)),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('B') => out.push_str(month_name),
            Some('b') => out.push_str(&month_name[..3]),
            Some('A') => out.push_str(day_name),
            Some('a') => out.push_str(&day_name[..3]),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 -> (year, month 1..=12, day 1..=31), proleptic Gregorian
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// `x | tojson(indent=None, ensure_ascii=False, separators=None, sort_keys=False)` with the output
/// of Python's `json.dumps` (what transformers registers), e.g. `{"a": 1, "b": [1, 2]}`.
fn tojson(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    kwargs.assert_all_used()?;

    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => match (v.as_i64(), v.as_str()) {
            (Some(n), _) => Some(" ".repeat(usize::try_from(n).unwrap_or(0))),
            (None, Some(s)) => Some(s.to_owned()),
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidOperation,
                    "tojson: indent must be an integer or a string",
                ));
            }
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() && !v.is_undefined() => {
            let (a, b): (String, String) =
                from_args(&[v.get_item(&Value::from(0))?, v.get_item(&Value::from(1))?]).map_err(
                    |_| {
                        Error::new(
                            ErrorKind::InvalidOperation,
                            "tojson: separators must be a pair of strings",
                        )
                    },
                )?;
            (a, b)
        }
        _ if indent.is_some() => (",".to_owned(), ": ".to_owned()),
        _ => (", ".to_owned(), ": ".to_owned()),
    };
    let formatter = PyJsonFormatter {
        indent,
        item_sep,
        key_sep,
        level: 0,
        has_value: false,
    };
    let mut buf = Vec::new();
    let result = if sort_keys.unwrap_or(false) {
        // serde_json's own map is ordered by key.
        let sorted = serde_json::to_value(&value)
            .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
        serde::Serialize::serialize(
            &sorted,
            &mut serde_json::Serializer::with_formatter(&mut buf, formatter),
        )
    } else {
        serde::Serialize::serialize(
            &value,
            &mut serde_json::Serializer::with_formatter(&mut buf, formatter),
        )
    };
    result.map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let json = String::from_utf8(buf)
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(if ensure_ascii.unwrap_or(false) {
        escape_non_ascii(&json)
    } else {
        json
    })
}

/// Python's `ensure_ascii=True`: every character outside ASCII (and DEL) as `\uXXXX`, astral
/// characters as surrogate pairs. Safe on whole JSON text: such characters only occur in strings.
fn escape_non_ascii(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if (c as u32) < 0x7F {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// A serde_json formatter that writes what Python's `json.dumps` writes for the same
/// `indent`/`separators`.
struct PyJsonFormatter {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    level: usize,
    has_value: bool,
}

impl PyJsonFormatter {
    fn newline<W: ?Sized + io::Write>(&self, w: &mut W) -> io::Result<()> {
        if let Some(indent) = &self.indent {
            w.write_all(b"\n")?;
            for _ in 0..self.level {
                w.write_all(indent.as_bytes())?;
            }
        }
        Ok(())
    }

    fn open<W: ?Sized + io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    fn close<W: ?Sized + io::Write>(&mut self, w: &mut W, bracket: &[u8]) -> io::Result<()> {
        self.level = self.level.saturating_sub(1);
        if self.has_value {
            self.newline(w)?;
        }
        w.write_all(bracket)
    }

    fn item<W: ?Sized + io::Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        if !first {
            w.write_all(self.item_sep.as_bytes())?;
        }
        self.newline(w)
    }
}

impl serde_json::ser::Formatter for PyJsonFormatter {
    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"[")
    }
    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"]")
    }
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn end_array_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.open(w, b"{")
    }
    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.close(w, b"}")
    }
    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        self.item(w, first)
    }
    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        w.write_all(self.key_sep.as_bytes())
    }
    fn end_object_value<W: ?Sized + io::Write>(&mut self, _w: &mut W) -> io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Python methods that HF templates call on strings and dicts, which minijinja lacks.
fn python_method(
    _state: &State<'_, '_>,
    value: &Value,
    method: &str,
    args: &[Value],
) -> Result<Value, Error> {
    if let Some(s) = value.as_str() {
        return str_method(s, method, args);
    }
    if value.kind() == ValueKind::Map {
        return map_method(value, method, args);
    }
    Err(Error::from(ErrorKind::UnknownMethod))
}

fn str_method(s: &str, method: &str, args: &[Value]) -> Result<Value, Error> {
    match method {
        "strip" | "lstrip" | "rstrip" => {
            let (chars,): (Option<&str>,) = from_args(args)?;
            let pred = |c: char| chars.map_or(c.is_whitespace(), |set| set.contains(c));
            Ok(Value::from(match method {
                "strip" => s.trim_matches(pred),
                "lstrip" => s.trim_start_matches(pred),
                _ => s.trim_end_matches(pred),
            }))
        }
        "startswith" | "endswith" => {
            let (arg,): (Value,) = from_args(args)?;
            let test = |p: &str| {
                if method == "startswith" {
                    s.starts_with(p)
                } else {
                    s.ends_with(p)
                }
            };
            if let Some(p) = arg.as_str() {
                return Ok(Value::from(test(p)));
            }
            // A tuple/list of candidates.
            let mut any = false;
            for p in arg.try_iter()? {
                any |= p.as_str().is_some_and(test);
            }
            Ok(Value::from(any))
        }
        "upper" => no_args(args, s.to_uppercase()),
        "lower" => no_args(args, s.to_lowercase()),
        "title" => no_args(args, title_case(s)),
        "capitalize" => {
            let mut chars = s.chars();
            let out = match chars.next() {
                Some(first) => first
                    .to_uppercase()
                    .chain(chars.as_str().to_lowercase().chars())
                    .collect(),
                None => String::new(),
            };
            no_args(args, out)
        }
        "split" => {
            let (sep, maxsplit): (Option<&str>, Option<i64>) = from_args(args)?;
            let limit = maxsplit.filter(|&n| n >= 0).map(|n| n as usize);
            let parts: Vec<Value> = match sep {
                Some("") => {
                    return Err(Error::new(
                        ErrorKind::InvalidOperation,
                        "split: empty separator",
                    ));
                }
                Some(sep) => match limit {
                    Some(n) => s.splitn(n + 1, sep).map(Value::from).collect(),
                    None => s.split(sep).map(Value::from).collect(),
                },
                None => split_whitespace(s, limit)
                    .into_iter()
                    .map(Value::from)
                    .collect(),
            };
            Ok(Value::from(parts))
        }
        "replace" => {
            let (old, new, count): (&str, &str, Option<i64>) = from_args(args)?;
            Ok(Value::from(match count.filter(|&n| n >= 0) {
                Some(n) => s.replacen(old, new, n as usize),
                None => s.replace(old, new),
            }))
        }
        "find" => {
            let (sub,): (&str,) = from_args(args)?;
            Ok(Value::from(
                s.find(sub).map_or(-1, |b| s[..b].chars().count() as i64),
            ))
        }
        "count" => {
            let (sub,): (&str,) = from_args(args)?;
            let n = if sub.is_empty() {
                s.chars().count() + 1
            } else {
                s.matches(sub).count()
            };
            Ok(Value::from(n))
        }
        "join" => {
            let (items,): (Value,) = from_args(args)?;
            let parts: Vec<String> = items.try_iter()?.map(|v| v.to_string()).collect();
            Ok(Value::from(parts.join(s)))
        }
        "isdigit" => no_args(args, !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())),
        "isalpha" => no_args(args, !s.is_empty() && s.chars().all(char::is_alphabetic)),
        "isalnum" => no_args(args, !s.is_empty() && s.chars().all(char::is_alphanumeric)),
        "isspace" => no_args(args, !s.is_empty() && s.chars().all(char::is_whitespace)),
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

fn no_args(args: &[Value], result: impl Into<Value>) -> Result<Value, Error> {
    let () = from_args(args)?;
    Ok(result.into())
}

fn title_case(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_word = false;
    for c in s.chars() {
        if c.is_alphabetic() {
            if in_word {
                out.extend(c.to_lowercase());
            } else {
                out.extend(c.to_uppercase());
            }
            in_word = true;
        } else {
            out.push(c);
            in_word = false;
        }
    }
    out
}

/// Python's `str.split()` without a separator: runs of whitespace, no empty parts.
fn split_whitespace(s: &str, limit: Option<usize>) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        if limit.is_some_and(|n| parts.len() == n) {
            parts.push(rest);
            break;
        }
        let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
        parts.push(&rest[..end]);
        rest = rest[end..].trim_start();
    }
    parts
}

fn map_method(map: &Value, method: &str, args: &[Value]) -> Result<Value, Error> {
    match method {
        "items" => {
            let () = from_args(args)?;
            let mut pairs = Vec::new();
            for key in map.try_iter()? {
                let value = map.get_item(&key)?;
                pairs.push(Value::from(vec![key, value]));
            }
            Ok(Value::from(pairs))
        }
        "keys" => {
            let () = from_args(args)?;
            Ok(Value::from(map.try_iter()?.collect::<Vec<_>>()))
        }
        "values" => {
            let () = from_args(args)?;
            let mut values = Vec::new();
            for key in map.try_iter()? {
                values.push(map.get_item(&key)?);
            }
            Ok(Value::from(values))
        }
        "get" => {
            let (key, default): (Value, Option<Value>) = from_args(args)?;
            let value = map.get_item(&key)?;
            Ok(if value.is_undefined() {
                default.unwrap_or(Value::from(()))
            } else {
                value
            })
        }
        _ => Err(Error::from(ErrorKind::UnknownMethod)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_formats_known_dates() {
        // 2024-07-26 00:00:00 UTC, a Friday.
        assert_eq!(strftime("%d %b %Y", 1_721_952_000), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %e, %H:%M:%S %%", 1_721_952_000 + 3661),
            "Friday July 26, 01:01:01 %"
        );
        assert_eq!(strftime("%Y-%m-%d", 0), "1970-01-01");
        assert_eq!(strftime("%Y-%m-%d", 951_782_400), "2000-02-29");
    }

    #[test]
    fn python_like_helpers() {
        let env = compile(
            "t",
            "{{ '  a b  '.strip() }}|{{ 'abc'.startswith('ab') }}|{{ 'a,b,c'.split(',', 1) }}|{{ ' x  y '.split() }}|{{ {'k': 1}.get('z', 7) }}|{{ {'k': 1}.items() | list }}|{{ 'hello world'.title() }}",
        )
        .unwrap();
        let out = env.get_template(TEMPLATE_NAME).unwrap().render(()).unwrap();
        assert_eq!(
            out,
            r#"a b|True|["a", "b,c"]|["x", "y"]|7|[["k", 1]]|Hello World"#
        );
    }

    #[test]
    fn tojson_matches_python_json_dumps() {
        let env = compile(
            "t",
            "{{ x | tojson }}\n{{ x | tojson(indent=2) }}\n{{ 'é' | tojson }}|{{ 'é' | tojson(ensure_ascii=true) }}|{{ [] | tojson(indent=2) }}",
        )
        .unwrap();
        let x = Value::from_serialize(serde_json::json!({"a": 1, "b": [true, null, "q\"\n"]}));
        let out = env
            .get_template(TEMPLATE_NAME)
            .unwrap()
            .render(minijinja::context! { x => x })
            .unwrap();
        assert_eq!(
            out,
            "{\"a\": 1, \"b\": [true, null, \"q\\\"\\n\"]}\n{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null,\n    \"q\\\"\\n\"\n  ]\n}\n\"é\"|\"\\u00e9\"|[]"
        );
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        let src = "line one\n{% for x in %}\nline three";
        assert_eq!(
            snippet(src, None, Some(2)).as_deref(),
            Some("{% for x in %}")
        );
        let long = "x".repeat(500);
        assert!(snippet(&long, Some(200..201), None).unwrap().len() <= 100);
    }
}
