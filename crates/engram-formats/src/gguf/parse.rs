//! A bounds-checked GGUF header parser.
//!
//! # Why not `ggus::GGuf::new`
//!
//! The project prefers `ggus` for GGUF parsing, and this module was first meant as a thin wrapper around it.
//! Probing `ggus` 0.5.1 with malformed files (truncations, absurd lengths, mutations; the test
//! `ggus_0_5_1_panics_where_engram_returns_errors` in `tests/gguf_file.rs` keeps four of them) showed that it is
//! not safe to hand untrusted bytes, and the checks needed in front of it would be a complete second parse:
//!
//! - **panics**: tensor data shorter than the tensor infos claim (`&data[..data_len]`, so every truncated
//!   download); `general.alignment = 0` (division by zero); an array or string length such as `u64::MAX`
//!   (`Layout::array(..).unwrap()`); a huge metadata count (`IndexMap::with_capacity`); a first dimension that is
//!   not a multiple of the block size (`assert_eq!`); a dimension product that overflows; retired type ids such as
//!   31 (`todo!()`);
//! - **aborts** (not even catchable): a tensor count such as 2^40 pre-allocates terabytes;
//! - **undefined behaviour**: value-type and tensor-type ids are read straight into `#[repr(u32)]` enums, so an
//!   unknown id (any corrupted byte there) is an invalid enum value; the header is read with an aligned
//!   `ptr::read` from a byte slice of any alignment; a 0-dimensional tensor calls `alloc` with a zero-size layout;
//! - it accepts only version 3 (engram also reads version 2, which has the same layout).
//!
//! So the container is parsed here, every length checked against the bytes actually left before anything is
//! allocated, every count bounded by the minimum size of its items, and every arithmetic step checked.
//! `ggus` is still used by the tests, as an independent GGUF writer and as a second reader of valid files.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use super::{DEFAULT_ALIGNMENT, GgmlType, MetaValue, TensorInfo};
use crate::FormatError;

/// GGUF's magic bytes.
const MAGIC: &[u8; 4] = b"GGUF";
/// ggml's `GGML_MAX_DIMS`: llama.cpp rejects tensors with more dimensions.
const MAX_DIMS: u32 = 4;
/// Deepest array-of-array nesting accepted: the spec allows nesting, real files use none, and an unbounded
/// depth would let a small file overflow the stack.
const MAX_ARRAY_DEPTH: u32 = 4;
/// Smallest possible metadata entry: key length (8) + value type (4) + a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest possible tensor info: name length (8) + dimension count (4) + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Everything before the tensor data.
pub(super) struct Parsed {
    pub version: u32,
    pub alignment: usize,
    pub metadata: BTreeMap<String, MetaValue>,
    pub tensors: Vec<TensorInfo>,
    /// Absolute file offset of the data section (tensor offsets are relative to it).
    pub data_start: usize,
}

/// A cursor over the file's bytes that turns every short read into [`FormatError::Truncated`].
struct Reader<'a> {
    path: &'a Path,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn truncated(&self, what: impl FnOnce() -> String) -> FormatError {
        FormatError::Truncated {
            path: self.path.to_path_buf(),
            what: format!(
                "{} (at byte {}, file has {} bytes)",
                what(),
                self.pos,
                self.bytes.len()
            ),
        }
    }

    fn malformed(&self, what: String) -> FormatError {
        FormatError::Malformed {
            path: self.path.to_path_buf(),
            what,
        }
    }

    fn take(&mut self, n: usize, what: impl FnOnce() -> String) -> Result<&'a [u8], FormatError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len());
        match end.and_then(|end| self.bytes.get(self.pos..end).map(|s| (s, end))) {
            Some((slice, end)) => {
                self.pos = end;
                Ok(slice)
            }
            None => Err(self.truncated(what)),
        }
    }

    fn array<const N: usize>(
        &mut self,
        what: impl FnOnce() -> String,
    ) -> Result<[u8; N], FormatError> {
        let pos = self.pos;
        let slice = self.take(N, what)?;
        slice.try_into().map_err(|_| FormatError::Malformed {
            path: self.path.to_path_buf(),
            what: format!("internal: short read at byte {pos}"),
        })
    }

    fn u32(&mut self, what: impl FnOnce() -> String) -> Result<u32, FormatError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: impl FnOnce() -> String) -> Result<u64, FormatError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Checks that `count` items of at least `min_size` bytes each can fit in what is left, before
    /// anything is allocated for them. A count no file could hold (over `isize::MAX` bytes) is
    /// malformed; one that merely runs past the end is truncated (the usual case: a cut download).
    fn check_count(
        &self,
        count: u64,
        min_size: u64,
        what: impl FnOnce() -> String,
    ) -> Result<usize, FormatError> {
        let needed = count
            .checked_mul(min_size)
            .filter(|&n| n <= isize::MAX as u64);
        let Some(needed) = needed else {
            return Err(self.malformed(format!("{}: absurd length {count}", what())));
        };
        if needed <= self.remaining() as u64 {
            usize::try_from(count)
                .map_err(|_| self.malformed(format!("{}: length {count} is too large", what())))
        } else {
            Err(self
                .truncated(|| format!("{}: length {count} runs past the end of the file", what())))
        }
    }

    /// A GGUF string's bytes (u64 length, then the bytes).
    fn string_bytes(&mut self, what: &dyn Fn() -> String) -> Result<&'a [u8], FormatError> {
        let len = self.u64(|| format!("{} (string length)", what()))?;
        let len = self.check_count(len, 1, what)?;
        self.take(len, what)
    }

    /// A string that must be UTF-8 (keys and tensor names: they are looked up by name).
    fn strict_string(&mut self, what: &dyn Fn() -> String) -> Result<String, FormatError> {
        let bytes = self.string_bytes(what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(self.malformed(format!("{} is not valid UTF-8 ({e})", what()))),
        }
    }

    /// One metadata value of GGUF type `ty`.
    fn value(
        &mut self,
        ty: u32,
        depth: u32,
        what: &dyn Fn() -> String,
    ) -> Result<MetaValue, FormatError> {
        Ok(match ty {
            0 => MetaValue::U8(u8::from_le_bytes(self.array(what)?)),
            1 => MetaValue::I8(i8::from_le_bytes(self.array(what)?)),
            2 => MetaValue::U16(u16::from_le_bytes(self.array(what)?)),
            3 => MetaValue::I16(i16::from_le_bytes(self.array(what)?)),
            4 => MetaValue::U32(u32::from_le_bytes(self.array(what)?)),
            5 => MetaValue::I32(i32::from_le_bytes(self.array(what)?)),
            6 => MetaValue::F32(f32::from_le_bytes(self.array(what)?)),
            7 => {
                let [b] = self.array(what)?;
                match b {
                    0 => MetaValue::Bool(false),
                    1 => MetaValue::Bool(true),
                    other => {
                        return Err(
                            self.malformed(format!("{}: bool byte is {other}, not 0 or 1", what()))
                        );
                    }
                }
            }
            8 => MetaValue::String(String::from_utf8_lossy(self.string_bytes(what)?).into_owned()),
            9 => {
                let elem_ty = self.u32(|| format!("{} (array element type)", what()))?;
                let len = self.u64(|| format!("{} (array length)", what()))?;
                let min_size = match value_min_size(elem_ty) {
                    Some(size) => size,
                    None => {
                        return Err(self.malformed(format!(
                            "{}: unknown array element type {elem_ty}",
                            what()
                        )));
                    }
                };
                if elem_ty == 9 && depth + 1 >= MAX_ARRAY_DEPTH {
                    return Err(self.malformed(format!(
                        "{}: arrays nested deeper than {MAX_ARRAY_DEPTH}",
                        what()
                    )));
                }
                let len = self.check_count(len, min_size, what)?;
                let mut items = Vec::with_capacity(len);
                for i in 0..len {
                    items.push(
                        self.value(elem_ty, depth + 1, &|| format!("{} element {i}", what()))?,
                    );
                }
                MetaValue::Array(items)
            }
            10 => MetaValue::U64(u64::from_le_bytes(self.array(what)?)),
            11 => MetaValue::I64(i64::from_le_bytes(self.array(what)?)),
            12 => MetaValue::F64(f64::from_le_bytes(self.array(what)?)),
            other => return Err(self.malformed(format!("{}: unknown value type {other}", what()))),
        })
    }
}

/// Fewest bytes a value of GGUF type `ty` can take; `None` for an unknown type.
fn value_min_size(ty: u32) -> Option<u64> {
    Some(match ty {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        8 => 8,
        9 => 12,
        10..=12 => 8,
        _ => return None,
    })
}

/// Parses the header, metadata and tensor infos of a GGUF file, and checks that every tensor of a known type lies
/// inside the file.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Parsed, FormatError> {
    let mut r = Reader {
        path,
        bytes,
        pos: 0,
    };

    let Some(magic) = bytes.get(..4) else {
        return Err(if MAGIC.starts_with(bytes) {
            r.truncated(|| "magic bytes".to_string())
        } else {
            FormatError::BadMagic {
                path: path.to_path_buf(),
                found: bytes.to_vec(),
            }
        });
    };
    if magic != MAGIC {
        return Err(FormatError::BadMagic {
            path: path.to_path_buf(),
            found: magic.to_vec(),
        });
    }
    r.pos = 4;

    let version = r.u32(|| "version".to_string())?;
    match version {
        2 | 3 => {}
        v if matches!(v.swap_bytes(), 1..=3) => {
            return Err(r.malformed(format!(
                "big-endian GGUF (version {} byte-swapped); engram reads little-endian files only",
                v.swap_bytes()
            )));
        }
        v => {
            return Err(FormatError::UnsupportedVersion {
                path: path.to_path_buf(),
                version: v,
            });
        }
    }

    let tensor_count = r.u64(|| "tensor count".to_string())?;
    let kv_count = r.u64(|| "metadata entry count".to_string())?;
    let kv_count = r.check_count(kv_count, MIN_KV_BYTES, || {
        "metadata entry count".to_string()
    })?;

    let mut metadata = BTreeMap::new();
    let mut alignment = DEFAULT_ALIGNMENT;
    for i in 0..kv_count {
        let key = r.strict_string(&|| format!("key of metadata entry {i}"))?;
        let what = || format!("metadata `{key}`");
        let ty = r.u32(|| format!("{} (value type)", what()))?;
        let value = r.value(ty, 0, &what)?;
        if key == "general.alignment" {
            alignment = check_alignment(&r, &value)?;
        }
        if metadata.contains_key(&key) {
            return Err(r.malformed(format!("metadata key `{key}` appears twice")));
        }
        metadata.insert(key, value);
    }

    let tensor_count = r.check_count(tensor_count, MIN_TENSOR_INFO_BYTES, || {
        "tensor count".to_string()
    })?;
    let mut tensors = Vec::with_capacity(tensor_count);
    let mut names = HashSet::with_capacity(tensor_count);
    for i in 0..tensor_count {
        let name = r.strict_string(&|| format!("name of tensor info {i}"))?;
        let what = || format!("tensor `{name}`");
        let n_dims = r.u32(|| format!("{} (dimension count)", what()))?;
        if n_dims > MAX_DIMS {
            return Err(r.malformed(format!(
                "{} has {n_dims} dimensions (ggml allows at most {MAX_DIMS})",
                what()
            )));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            dims.push(r.u64(|| format!("{} (dimension {d})", what()))?);
        }
        let ggml_type = GgmlType::from_id(r.u32(|| format!("{} (type)", what()))?);
        let offset = r.u64(|| format!("{} (data offset)", what()))?;
        let info = TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
        };
        check_shape(&r, &info)?;
        if !names.insert(info.name.clone()) {
            return Err(r.malformed(format!("tensor `{}` appears twice", info.name)));
        }
        tensors.push(info);
    }

    let data_start = r
        .pos
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| r.malformed(format!("alignment {alignment} overflows the file offset")))?;
    if !tensors.is_empty() && data_start > bytes.len() {
        return Err(r.truncated(|| "padding before the tensor data".to_string()));
    }

    for info in &tensors {
        check_bounds(path, bytes.len(), data_start, info)?;
    }

    Ok(Parsed {
        version,
        alignment,
        metadata,
        tensors,
        data_start,
    })
}

/// `general.alignment` must be an unsigned integer, a power of two (as llama.cpp requires): zero would divide by
/// zero, and other values are not what any writer produces.
fn check_alignment(r: &Reader<'_>, value: &MetaValue) -> Result<usize, FormatError> {
    let Some(a) = value.as_u64() else {
        return Err(FormatError::WrongType {
            path: r.path.to_path_buf(),
            key: "general.alignment".to_string(),
            expected: "unsigned integer".to_string(),
            found: value.type_name(),
        });
    };
    match usize::try_from(a) {
        Ok(a) if a.is_power_of_two() && a <= 1 << 30 => Ok(a),
        _ => Err(r.malformed(format!(
            "general.alignment is {a}, not a power of two up to 2^30"
        ))),
    }
}

/// Dimensions must multiply without overflow (ggml keeps them as i64), and for a known type the first one must be
/// a whole number of blocks (so [`TensorInfo::nbytes`] is `Some` for every known type after parsing).
fn check_shape(r: &Reader<'_>, info: &TensorInfo) -> Result<(), FormatError> {
    let numel = info
        .dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| i64::try_from(n).is_ok() && usize::try_from(n).is_ok());
    if numel.is_none() {
        return Err(r.malformed(format!(
            "tensor `{}` has dimensions {:?}, too many elements",
            info.name, info.dims
        )));
    }
    if let Some(block) = info.ggml_type.block_size()
        && info.nbytes().is_none()
    {
        return Err(r.malformed(format!(
            "tensor `{}` of type {} has dimensions {:?}: the first is not a multiple of the block size \
             {block}, or the data size overflows",
            info.name, info.ggml_type, info.dims
        )));
    }
    Ok(())
}

/// A tensor of a known type must lie inside the file; for unknown types the size is unknown and only reading the
/// data fails.
fn check_bounds(
    path: &Path,
    file_len: usize,
    data_start: usize,
    info: &TensorInfo,
) -> Result<(), FormatError> {
    let Some(nbytes) = info.nbytes() else {
        return Ok(());
    };
    let start = (data_start as u64).checked_add(info.offset);
    let end = start.and_then(|s| s.checked_add(nbytes));
    match (start, end) {
        (Some(_), Some(end)) if end <= file_len as u64 => Ok(()),
        _ => Err(FormatError::TensorOutOfBounds {
            path: path.to_path_buf(),
            tensor: info.name.clone(),
            start: start.unwrap_or(u64::MAX),
            end: end.unwrap_or(u64::MAX),
            file_len: file_len as u64,
        }),
    }
}
