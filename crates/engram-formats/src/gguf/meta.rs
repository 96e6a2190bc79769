//! GGUF metadata values, owned (the file's bytes may be a memory map we do not want to borrow from).

use std::fmt;

/// One metadata value, exactly as the file typed it (GGUF value types 0–12).
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    /// GGUF type 0.
    U8(u8),
    /// GGUF type 1.
    I8(i8),
    /// GGUF type 2.
    U16(u16),
    /// GGUF type 3.
    I16(i16),
    /// GGUF type 4.
    U32(u32),
    /// GGUF type 5.
    I32(i32),
    /// GGUF type 10.
    U64(u64),
    /// GGUF type 11.
    I64(i64),
    /// GGUF type 6.
    F32(f32),
    /// GGUF type 12.
    F64(f64),
    /// GGUF type 7 (a byte that must be 0 or 1).
    Bool(bool),
    /// GGUF type 8. Bytes that are not UTF-8 are replaced with U+FFFD (llama.cpp treats strings as raw bytes, so
    /// such files exist and must still open).
    String(String),
    /// GGUF type 9: elements all of one type (checked when parsing).
    Array(Vec<MetaValue>),
}

impl MetaValue {
    /// The GGUF value type id (`gguf_type` in gguf.h): 0 for u8 ... 12 for f64.
    pub fn type_id(&self) -> u32 {
        match self {
            MetaValue::U8(_) => 0,
            MetaValue::I8(_) => 1,
            MetaValue::U16(_) => 2,
            MetaValue::I16(_) => 3,
            MetaValue::U32(_) => 4,
            MetaValue::I32(_) => 5,
            MetaValue::F32(_) => 6,
            MetaValue::Bool(_) => 7,
            MetaValue::String(_) => 8,
            MetaValue::Array(_) => 9,
            MetaValue::U64(_) => 10,
            MetaValue::I64(_) => 11,
            MetaValue::F64(_) => 12,
        }
    }

    /// Short type name for error messages (`u32`, `str`, `array of str`).
    pub fn type_name(&self) -> String {
        match self {
            MetaValue::Array(items) => match items.first() {
                Some(first) => format!("array of {}", first.type_name()),
                None => "empty array".to_string(),
            },
            other => other.scalar_type_name().to_string(),
        }
    }

    fn scalar_type_name(&self) -> &'static str {
        match self {
            MetaValue::U8(_) => "u8",
            MetaValue::I8(_) => "i8",
            MetaValue::U16(_) => "u16",
            MetaValue::I16(_) => "i16",
            MetaValue::U32(_) => "u32",
            MetaValue::I32(_) => "i32",
            MetaValue::U64(_) => "u64",
            MetaValue::I64(_) => "i64",
            MetaValue::F32(_) => "f32",
            MetaValue::F64(_) => "f64",
            MetaValue::Bool(_) => "bool",
            MetaValue::String(_) => "str",
            MetaValue::Array(_) => "array",
        }
    }

    /// The value as a signed integer, for any integer type whose value fits in i128 (all of them).
    fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            MetaValue::U8(v) => v.into(),
            MetaValue::I8(v) => v.into(),
            MetaValue::U16(v) => v.into(),
            MetaValue::I16(v) => v.into(),
            MetaValue::U32(v) => v.into(),
            MetaValue::I32(v) => v.into(),
            MetaValue::U64(v) => v.into(),
            MetaValue::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as u64 if it is an integer of any width that is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        self.as_i128().and_then(|v| u64::try_from(v).ok())
    }

    /// The value as i64 if it is an integer of any width that fits.
    pub fn as_i64(&self) -> Option<i64> {
        self.as_i128().and_then(|v| i64::try_from(v).ok())
    }

    /// The value as f64 if it is a float or an integer (large integers round to the nearest f64).
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            ref other => other.as_i128().map(|v| v as f64),
        }
    }

    /// The value if it is a bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(v) => Some(v),
            _ => None,
        }
    }

    /// The value if it is a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements if the value is an array.
    pub fn as_array(&self) -> Option<&[MetaValue]> {
        match self {
            MetaValue::Array(items) => Some(items),
            _ => None,
        }
    }
}

/// Longest string shown whole by [`MetaValue`]'s `Display`; longer ones (chat templates) are cut.
const DISPLAY_STR_CHARS: usize = 60;
/// Arrays up to this length are shown whole; longer ones (vocabularies) show their head and length.
const DISPLAY_ARRAY_ITEMS: usize = 8;

/// A one-line rendering for `engram info`: long strings and arrays are abbreviated.
impl fmt::Display for MetaValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::String(s) => {
                let mut chars = s.chars();
                let head: String = chars.by_ref().take(DISPLAY_STR_CHARS).collect();
                if chars.next().is_some() {
                    write!(f, "{head:?}… ({} chars)", s.chars().count())
                } else {
                    write!(f, "{head:?}")
                }
            }
            MetaValue::Array(items) => {
                let shown = if items.len() <= DISPLAY_ARRAY_ITEMS {
                    items.len()
                } else {
                    3
                };
                f.write_str("[")?;
                for (i, item) in items.iter().take(shown).enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                if shown < items.len() {
                    write!(
                        f,
                        ", …] ({} × {})",
                        items.len(),
                        self.type_name().trim_start_matches("array of ")
                    )
                } else {
                    f.write_str("]")
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_short() {
        assert_eq!(MetaValue::U32(7).to_string(), "7");
        assert_eq!(MetaValue::String("llama".into()).to_string(), "\"llama\"");
        let long = MetaValue::String("x".repeat(500));
        assert!(long.to_string().len() < 100, "{long}");
        let vocab = MetaValue::Array(
            (0..49152)
                .map(|i| MetaValue::String(format!("t{i}")))
                .collect(),
        );
        assert_eq!(
            vocab.to_string(),
            "[\"t0\", \"t1\", \"t2\", …] (49152 × str)"
        );
        let small = MetaValue::Array(vec![MetaValue::I32(1), MetaValue::I32(-2)]);
        assert_eq!(small.to_string(), "[1, -2]");
    }

    #[test]
    fn integer_conversions() {
        assert_eq!(MetaValue::I32(-1).as_u64(), None);
        assert_eq!(MetaValue::I32(5).as_u64(), Some(5));
        assert_eq!(MetaValue::U64(u64::MAX).as_i64(), None);
        assert_eq!(MetaValue::U8(3).as_f64(), Some(3.0));
        assert_eq!(MetaValue::F32(0.5).as_u64(), None);
        assert_eq!(MetaValue::Bool(true).as_u64(), None);
    }
}
