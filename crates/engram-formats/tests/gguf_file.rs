//! GGUF files built by the tests: metadata round trips, typed errors for every kind of damage, dequantisation
//! of every supported type, the q/k permutation, and fuzzing of the parser.

use std::path::Path;

use engram_formats::gguf::{
    GgmlType, GgufFile, GgufWeights, MetaValue, permute_qk_rows, unpermute_qk_rows,
};
use engram_formats::{Architecture, FormatError, TensorF32, WeightSource};
use half::{bf16, f16};
use proptest::prelude::*;

/// The name every in-memory test file goes by; each error's Display must contain it.
const PATH: &str = "/virtual/test-model.gguf";

// ---------------------------------------------------------------------------------------------------------
// A small GGUF writer (independent of the reader under test).
// ---------------------------------------------------------------------------------------------------------

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_u64(out: &mut Vec<u8>, v: u64) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    put_u64(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

fn put_value(out: &mut Vec<u8>, v: &MetaValue) {
    match v {
        MetaValue::U8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I8(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I16(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::U64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::I64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F32(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::F64(x) => out.extend_from_slice(&x.to_le_bytes()),
        MetaValue::Bool(x) => out.push(u8::from(*x)),
        MetaValue::String(s) => put_str(out, s),
        MetaValue::Array(items) => {
            put_u32(out, items.first().map_or(0, MetaValue::type_id));
            put_u64(out, items.len() as u64);
            for item in items {
                put_value(out, item);
            }
        }
    }
}

/// One tensor to write: data is written as given (so it may disagree with dims and type on purpose).
struct Tensor {
    name: String,
    dims: Vec<u64>,
    type_id: u32,
    data: Vec<u8>,
    /// Written instead of the computed offset when set.
    offset: Option<u64>,
}

fn tensor(name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Tensor {
    Tensor {
        name: name.into(),
        dims: dims.to_vec(),
        type_id: ty.id(),
        data,
        offset: None,
    }
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

struct Builder {
    version: u32,
    alignment: u64,
    kvs: Vec<(String, MetaValue)>,
    tensors: Vec<Tensor>,
}

impl Builder {
    fn new() -> Self {
        Self {
            version: 3,
            alignment: 32,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }

    fn kv(mut self, key: &str, value: MetaValue) -> Self {
        self.kvs.push((key.into(), value));
        self
    }

    fn tensor(mut self, t: Tensor) -> Self {
        self.tensors.push(t);
        self
    }

    /// The file's bytes; `general.alignment` (when written by the caller) must match `self.alignment`.
    fn build(&self) -> Vec<u8> {
        let align = self.alignment as usize;
        let mut out = b"GGUF".to_vec();
        put_u32(&mut out, self.version);
        put_u64(&mut out, self.tensors.len() as u64);
        put_u64(&mut out, self.kvs.len() as u64);
        for (k, v) in &self.kvs {
            put_str(&mut out, k);
            put_u32(&mut out, v.type_id());
            put_value(&mut out, v);
        }
        let mut offset = 0usize;
        let mut offsets = Vec::new();
        for t in &self.tensors {
            put_str(&mut out, &t.name);
            put_u32(&mut out, t.dims.len() as u32);
            for &d in &t.dims {
                put_u64(&mut out, d);
            }
            put_u32(&mut out, t.type_id);
            put_u64(&mut out, t.offset.unwrap_or(offset as u64));
            offsets.push(offset);
            offset = (offset + t.data.len()).next_multiple_of(align);
        }
        out.resize(out.len().next_multiple_of(align), 0);
        let data_start = out.len();
        for (t, off) in self.tensors.iter().zip(offsets) {
            out.resize(data_start + off, 0);
            out.extend_from_slice(&t.data);
        }
        out
    }

    fn open(&self) -> Result<GgufFile, FormatError> {
        GgufFile::from_bytes(PATH, self.build())
    }
}

/// A small valid file: a few metadata types (strings, arrays) and two tensors of different types.
fn small_file() -> Builder {
    Builder::new()
        .kv("general.architecture", MetaValue::String("llama".into()))
        .kv("general.alignment", MetaValue::U32(32))
        .kv("llama.block_count", MetaValue::U32(2))
        .kv(
            "tokenizer.ggml.tokens",
            MetaValue::Array(vec![
                MetaValue::String("<s>".into()),
                MetaValue::String("hé".into()),
            ]),
        )
        .kv(
            "tokenizer.ggml.scores",
            MetaValue::Array(vec![MetaValue::F32(0.5), MetaValue::F32(-1.0)]),
        )
        .tensor(tensor(
            "a.weight",
            &[4, 2],
            GgmlType::F32,
            f32_bytes(&[1., 2., 3., 4., 5., 6., 7., 8.]),
        ))
        .tensor(tensor("b.weight", &[32], GgmlType::Q8_0, {
            let mut block = f16::from_f32(0.5).to_le_bytes().to_vec();
            block.extend((0..32u8).map(|i| i.wrapping_sub(16)));
            block
        }))
}

fn assert_names_file(err: &FormatError) {
    let shown = err.to_string();
    assert!(
        shown.contains(PATH),
        "error does not name the file: {shown}"
    );
}

// ---------------------------------------------------------------------------------------------------------
// Metadata
// ---------------------------------------------------------------------------------------------------------

#[test]
fn every_value_type_round_trips() {
    let values = vec![
        ("u8", MetaValue::U8(200)),
        ("i8", MetaValue::I8(-5)),
        ("u16", MetaValue::U16(60000)),
        ("i16", MetaValue::I16(-300)),
        ("u32", MetaValue::U32(4_000_000_000)),
        ("i32", MetaValue::I32(-7)),
        ("u64", MetaValue::U64(u64::MAX)),
        ("i64", MetaValue::I64(i64::MIN)),
        ("f32", MetaValue::F32(1e-5)),
        ("f64", MetaValue::F64(0.1)),
        ("bool", MetaValue::Bool(true)),
        ("str", MetaValue::String("naïve 🦀".into())),
        (
            "ints",
            MetaValue::Array(vec![
                MetaValue::I32(1),
                MetaValue::I32(-2),
                MetaValue::I32(3),
            ]),
        ),
        (
            "u8s",
            MetaValue::Array(vec![MetaValue::U8(1), MetaValue::U8(255)]),
        ),
        (
            "nested",
            MetaValue::Array(vec![
                MetaValue::Array(vec![MetaValue::U16(1)]),
                MetaValue::Array(vec![MetaValue::U16(2), MetaValue::U16(3)]),
            ]),
        ),
        ("empty", MetaValue::Array(vec![])),
    ];
    let mut b = Builder::new();
    for (k, v) in &values {
        b = b.kv(k, v.clone());
    }
    let f = b.open().unwrap();
    assert_eq!(f.metadata().len(), values.len());
    for (k, v) in &values {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert_eq!(f.version(), 3);
    assert_eq!(f.alignment(), 32);
    assert!(f.tensors().is_empty());

    // Integers of any width that fit.
    assert_eq!(f.get_u64("u8").unwrap(), 200);
    assert_eq!(f.get_u64("u32").unwrap(), 4_000_000_000);
    assert_eq!(f.get_u64("u64").unwrap(), u64::MAX);
    assert_eq!(f.get_f64("f32").unwrap(), f64::from(1e-5f32));
    assert_eq!(f.get_f64("i16").unwrap(), -300.0);
    assert!(f.get_bool("bool").unwrap());
    assert_eq!(f.get_str("str").unwrap(), "naïve 🦀");
    assert_eq!(f.get_i64_array("ints").unwrap(), vec![1, -2, 3]);
    assert_eq!(f.get_i64_array("u8s").unwrap(), vec![1, 255]);
    assert_eq!(f.get_str_array("empty").unwrap(), Vec::<String>::new());

    // Wrong types and missing keys name the file, the key and both types.
    for err in [
        f.get_u64("i8").unwrap_err(),
        f.get_u64("str").unwrap_err(),
        f.get_u64("f32").unwrap_err(),
        f.get_str("u32").unwrap_err(),
        f.get_bool("u8").unwrap_err(),
        f.get_f64("bool").unwrap_err(),
        f.get_str_array("ints").unwrap_err(),
        f.get_i64_array("str").unwrap_err(),
        f.get_i64_array("nested").unwrap_err(),
    ] {
        assert!(matches!(err, FormatError::WrongType { .. }), "{err:?}");
        assert_names_file(&err);
    }
    let err = f.get_u64("i8").unwrap_err().to_string();
    assert!(err.contains("`i8`") && err.contains("i8 -5"), "{err}");
    let err = f.get_str("nope").unwrap_err();
    assert!(matches!(&err, FormatError::MissingKey { key, .. } if key == "nope"));
    assert_names_file(&err);
    assert!(matches!(
        f.architecture(),
        Err(FormatError::MissingKey { .. })
    ));
}

#[test]
fn version_2_reads_like_version_3() {
    let mut b = small_file();
    b.version = 2;
    let f = b.open().unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(
        f.dequantize("a.weight").unwrap().data,
        vec![1., 2., 3., 4., 5., 6., 7., 8.]
    );
}

#[test]
fn invalid_utf8_in_values_is_replaced_but_in_keys_is_an_error() {
    let mut bytes = Builder::new()
        .kv("k", MetaValue::String("ab".into()))
        .build();
    // Header (24) + key (8 + 1) + type (4) + length (8) + "a": the "b".
    bytes[24 + 9 + 4 + 8 + 1] = 0xFF;
    let f = GgufFile::from_bytes(PATH, bytes).unwrap();
    assert_eq!(f.get_str("k").unwrap(), "a\u{FFFD}");

    let mut bytes = Builder::new().kv("kk", MetaValue::U8(1)).build();
    let key_at = 4 + 4 + 8 + 8 + 8;
    bytes[key_at] = 0xFF;
    let err = GgufFile::from_bytes(PATH, bytes).unwrap_err();
    assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
}

/// Files written by `ggus`'s own writer read back with the same values.
#[test]
fn reads_files_written_by_ggus() {
    use ggus::{GGmlType as G, GGufFileHeader, GGufFileWriter, GGufMetaDataValueType as Ty};
    let mut out = Vec::new();
    let mut w = GGufFileWriter::new(&mut out, GGufFileHeader::new(3, 2, 3)).unwrap();
    let mut name = Vec::new();
    put_str(&mut name, "tiny");
    w.write_meta_kv("general.name", Ty::String, &name).unwrap();
    w.write_meta_kv("tiny.block_count", Ty::U32, &7u32.to_le_bytes())
        .unwrap();
    w.write_meta_kv("tiny.eps", Ty::F32, &1e-6f32.to_le_bytes())
        .unwrap();
    let mut t = w.finish::<Vec<u8>>(true);
    let weights: Vec<f32> = (0..6).map(|i| i as f32 * 0.25).collect();
    t.write_tensor("w", G::F32, &[3, 2], f32_bytes(&weights))
        .unwrap();
    let halves: Vec<u8> = weights
        .iter()
        .flat_map(|&x| f16::from_f32(x).to_le_bytes())
        .collect();
    t.write_tensor("h", G::F16, &[6], halves).unwrap();
    t.finish().unwrap();

    let f = GgufFile::from_bytes(PATH, out).unwrap();
    assert_eq!(f.get_str("general.name").unwrap(), "tiny");
    assert_eq!(f.get_u64("tiny.block_count").unwrap(), 7);
    assert_eq!(f.get_f64("tiny.eps").unwrap(), f64::from(1e-6f32));
    let w = f.dequantize("w").unwrap();
    assert_eq!(
        (w.shape.as_slice(), w.data.as_slice()),
        (&[2usize, 3][..], weights.as_slice())
    );
    assert_eq!(f.dequantize("h").unwrap().data, weights);
    assert_eq!(f.tensor_info("h").unwrap().ggml_type, GgmlType::F16);
}

// ---------------------------------------------------------------------------------------------------------
// Typed errors
// ---------------------------------------------------------------------------------------------------------

#[test]
fn wrong_magic_is_bad_magic() {
    let mut bytes = small_file().build();
    bytes[..4].copy_from_slice(b"GGML");
    let err = GgufFile::from_bytes(PATH, bytes).unwrap_err();
    assert!(
        matches!(&err, FormatError::BadMagic { found, .. } if found == b"GGML"),
        "{err:?}"
    );
    assert_names_file(&err);
    let err = GgufFile::from_bytes(PATH, b"PK".to_vec()).unwrap_err();
    assert!(matches!(err, FormatError::BadMagic { .. }), "{err:?}");
    // A safetensors file is not mistaken for GGUF.
    let err = GgufFile::from_bytes(PATH, b"\x10\0\0\0\0\0\0\0{\"a\":1}".to_vec()).unwrap_err();
    assert!(matches!(err, FormatError::BadMagic { .. }), "{err:?}");
}

#[test]
fn other_versions_are_unsupported() {
    for version in [0, 1, 4, 99, u32::MAX] {
        let mut b = small_file();
        b.version = version;
        let err = b.open().unwrap_err();
        assert!(
            matches!(err, FormatError::UnsupportedVersion { version: v, .. } if v == version),
            "{version}: {err:?}"
        );
        assert_names_file(&err);
    }
    // A big-endian file (version 3 byte-swapped) is named as such.
    let mut b = small_file();
    b.version = 3u32.swap_bytes();
    let err = b.open().unwrap_err();
    assert!(err.to_string().contains("big-endian"), "{err}");
}

#[test]
fn every_truncation_is_an_error() {
    let full = small_file().build();
    assert!(GgufFile::from_bytes(PATH, full.clone()).is_ok());
    for len in 0..full.len() {
        let result = GgufFile::from_bytes(PATH, full[..len].to_vec());
        let err = match result {
            Ok(_) => panic!("prefix of {len} of {} bytes parsed", full.len()),
            Err(e) => e,
        };
        assert!(
            matches!(
                err,
                FormatError::Truncated { .. } | FormatError::TensorOutOfBounds { .. }
            ),
            "prefix {len}: {err:?}"
        );
        assert_names_file(&err);
    }
}

#[test]
fn tensor_past_the_end_is_out_of_bounds() {
    let mut b = small_file();
    b.tensors[1].offset = Some(1 << 20);
    let err = b.open().unwrap_err();
    match &err {
        FormatError::TensorOutOfBounds {
            tensor,
            start,
            end,
            file_len,
            ..
        } => {
            assert_eq!(tensor, "b.weight");
            assert_eq!(end - start, 34);
            assert!(*end > *file_len);
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("b.weight"));
    assert_names_file(&err);

    // An offset so large that start + size overflows.
    let mut b = small_file();
    b.tensors[0].offset = Some(u64::MAX - 8);
    let err = b.open().unwrap_err();
    assert!(matches!(&err, FormatError::TensorOutOfBounds { tensor, .. } if tensor == "a.weight"));

    // Dimensions claiming more data than is there.
    let mut b = small_file();
    b.tensors[0].dims = vec![4, 2000];
    let err = b.open().unwrap_err();
    assert!(matches!(&err, FormatError::TensorOutOfBounds { tensor, .. } if tensor == "a.weight"));
}

#[test]
fn unknown_type_id_fails_only_that_tensor() {
    let mut b = small_file();
    b.tensors[0].type_id = 99;
    let f = b.open().unwrap();
    let info = f.tensor_info("a.weight").unwrap();
    assert_eq!(info.ggml_type, GgmlType::Other(99));
    assert_eq!(info.nbytes(), None);
    for err in [
        f.dequantize("a.weight").unwrap_err(),
        f.tensor_bytes("a.weight").unwrap_err(),
    ] {
        match &err {
            FormatError::UnsupportedTensorType { tensor, ty, .. } => {
                assert_eq!(tensor, "a.weight");
                assert_eq!(ty, "ggml type #99");
            }
            other => panic!("{other:?}"),
        }
        assert!(err.to_string().contains("a.weight"));
        assert_names_file(&err);
    }
    // The other tensor is unaffected.
    assert_eq!(f.dequantize("b.weight").unwrap().shape, vec![32]);
}

#[test]
fn known_but_undecodable_type_is_unsupported() {
    // IQ2_XXS: a valid block size (66 bytes per 256), but engram has no decoder for it.
    let f = Builder::new()
        .tensor(tensor("iq", &[256], GgmlType::IQ2_XXS, vec![0; 66]))
        .tensor(tensor("ints", &[2], GgmlType::I32, vec![0; 8]))
        .open()
        .unwrap();
    assert_eq!(f.tensor_bytes("iq").unwrap().len(), 66);
    for name in ["iq", "ints"] {
        let err = f.dequantize(name).unwrap_err();
        assert!(
            matches!(&err, FormatError::UnsupportedTensorType { tensor, .. } if tensor == name),
            "{err:?}"
        );
        assert_names_file(&err);
    }
    let err = f.dequantize("nope").unwrap_err();
    assert!(matches!(&err, FormatError::MissingTensor { tensor, .. } if tensor == "nope"));
    assert_names_file(&err);
}

/// Builds a file whose header is hand-written from `parts` (after the magic).
fn raw(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = b"GGUF".to_vec();
    for p in parts {
        out.extend_from_slice(p);
    }
    out
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

fn le64(v: u64) -> [u8; 8] {
    v.to_le_bytes()
}

#[test]
fn absurd_counts_and_lengths_are_errors_not_allocations() {
    let key = |k: &str| {
        let mut v = Vec::new();
        put_str(&mut v, k);
        v
    };
    let k = key("k");
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "kv count u64::MAX",
            raw(&[&le32(3), &le64(0), &le64(u64::MAX)]),
        ),
        (
            "tensor count u64::MAX",
            raw(&[&le32(3), &le64(u64::MAX), &le64(0)]),
        ),
        (
            "tensor count 2^40",
            raw(&[&le32(3), &le64(1 << 40), &le64(0)]),
        ),
        (
            "key length u64::MAX",
            raw(&[&le32(3), &le64(0), &le64(1), &le64(u64::MAX)]),
        ),
        (
            "string length u64::MAX",
            raw(&[&le32(3), &le64(0), &le64(1), &k, &le32(8), &le64(u64::MAX)]),
        ),
        (
            "string length 2^62",
            raw(&[&le32(3), &le64(0), &le64(1), &k, &le32(8), &le64(1 << 62)]),
        ),
        (
            "u8 array length u64::MAX",
            raw(&[
                &le32(3),
                &le64(0),
                &le64(1),
                &k,
                &le32(9),
                &le32(0),
                &le64(u64::MAX),
            ]),
        ),
        (
            "u64 array length 2^61",
            raw(&[
                &le32(3),
                &le64(0),
                &le64(1),
                &k,
                &le32(9),
                &le32(10),
                &le64(1 << 61),
            ]),
        ),
        (
            "string array length u64::MAX",
            raw(&[
                &le32(3),
                &le64(0),
                &le64(1),
                &k,
                &le32(9),
                &le32(8),
                &le64(u64::MAX),
            ]),
        ),
        (
            "array of arrays length u64::MAX",
            raw(&[
                &le32(3),
                &le64(0),
                &le64(1),
                &k,
                &le32(9),
                &le32(9),
                &le64(u64::MAX),
            ]),
        ),
        (
            "unknown value type",
            raw(&[&le32(3), &le64(0), &le64(1), &k, &le32(13), &le64(0)]),
        ),
        (
            "unknown array element type",
            raw(&[
                &le32(3),
                &le64(0),
                &le64(1),
                &k,
                &le32(9),
                &le32(77),
                &le64(1),
                &[0; 8],
            ]),
        ),
        (
            "bool byte 2",
            raw(&[&le32(3), &le64(0), &le64(1), &k, &le32(7), &[2]]),
        ),
        (
            "tensor with u32::MAX dimensions",
            raw(&[&le32(3), &le64(1), &le64(0), &k, &le32(u32::MAX), &[0; 64]]),
        ),
        (
            "tensor dimensions overflowing",
            raw(&[
                &le32(3),
                &le64(1),
                &le64(0),
                &k,
                &le32(2),
                &le64(u64::MAX),
                &le64(3),
                &le32(0),
                &le64(0),
            ]),
        ),
        (
            "tensor dimension not a whole block",
            raw(&[
                &le32(3),
                &le64(1),
                &le64(0),
                &k,
                &le32(1),
                &le64(33),
                &le32(2),
                &le64(0),
                &[0; 64],
            ]),
        ),
    ];
    for (what, bytes) in cases {
        let err = match GgufFile::from_bytes(PATH, bytes) {
            Ok(_) => panic!("{what}: parsed"),
            Err(e) => e,
        };
        assert!(
            matches!(
                err,
                FormatError::Truncated { .. } | FormatError::Malformed { .. }
            ),
            "{what}: {err:?}"
        );
        assert_names_file(&err);
    }

    // Deeply nested arrays (each level 12 bytes) must not recurse without bound.
    let mut nested = raw(&[&le32(3), &le64(0), &le64(1), &k, &le32(9)]);
    for _ in 0..100_000 {
        nested.extend_from_slice(&le32(9));
        nested.extend_from_slice(&le64(1));
    }
    let err = GgufFile::from_bytes(PATH, nested).unwrap_err();
    assert!(err.to_string().contains("nested"), "{err}");
}

/// Why `gguf/parse.rs` does not hand the bytes to `ggus::GGuf::new`: ggus 0.5.1 panics on damaged files
/// where engram returns typed errors. (Its undefined behaviour on unknown type ids cannot be tested.) If this
/// test fails after a ggus upgrade, ggus may have become safe to parse untrusted files with.
#[test]
fn ggus_0_5_1_panics_where_engram_returns_errors() {
    let k = {
        let mut v = Vec::new();
        put_str(&mut v, "k");
        v
    };
    let full = small_file().build();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("tensor data cut short", full[..full.len() - 10].to_vec()),
        (
            "general.alignment = 0",
            Builder::new()
                .kv("general.alignment", MetaValue::U32(0))
                .tensor(tensor("t", &[1], GgmlType::F32, vec![0; 4]))
                .build(),
        ),
        (
            "array length u64::MAX",
            raw(&[
                &le32(3),
                &le64(0),
                &le64(1),
                &k,
                &le32(9),
                &le32(10),
                &le64(u64::MAX),
            ]),
        ),
        (
            "Q4_0 tensor with 33 columns",
            raw(&[
                &le32(3),
                &le64(1),
                &le64(0),
                &k,
                &le32(1),
                &le64(33),
                &le32(2),
                &le64(0),
                &[0; 64],
            ]),
        ),
    ];
    for (what, bytes) in cases {
        assert!(GgufFile::from_bytes(PATH, bytes.clone()).is_err(), "{what}");
        let theirs = std::panic::catch_unwind(|| ggus::GGuf::new(&bytes).map(|g| g.tensors.len()));
        assert!(theirs.is_err(), "{what}: ggus no longer panics");
    }
}

#[test]
fn bad_alignment_and_duplicates_are_malformed() {
    for alignment in [
        MetaValue::U32(0),
        MetaValue::U32(3),
        MetaValue::U64(1 << 40),
    ] {
        let err = Builder::new()
            .kv("general.alignment", alignment.clone())
            .open()
            .unwrap_err();
        assert!(
            matches!(err, FormatError::Malformed { .. }),
            "{alignment:?}: {err:?}"
        );
        assert_names_file(&err);
    }
    let err = Builder::new()
        .kv("general.alignment", MetaValue::String("32".into()))
        .open()
        .unwrap_err();
    assert!(matches!(err, FormatError::WrongType { .. }), "{err:?}");

    let err = Builder::new()
        .kv("a", MetaValue::U8(1))
        .kv("a", MetaValue::U8(2))
        .open()
        .unwrap_err();
    assert!(err.to_string().contains("`a` appears twice"), "{err}");
    let err = Builder::new()
        .tensor(tensor("t", &[1], GgmlType::F32, vec![0; 4]))
        .tensor(tensor("t", &[1], GgmlType::F32, vec![0; 4]))
        .open()
        .unwrap_err();
    assert!(err.to_string().contains("`t` appears twice"), "{err}");
}

#[test]
fn other_alignments_and_unaligned_data_work() {
    // Alignment 1 puts tensor data at odd addresses: decoding must not depend on alignment.
    for alignment in [1u64, 8, 64] {
        let mut b = Builder::new().kv("general.alignment", MetaValue::U64(alignment));
        b.alignment = alignment;
        let b = b
            .kv("pad", MetaValue::U8(1))
            .tensor(tensor(
                "odd",
                &[3],
                GgmlType::F32,
                f32_bytes(&[1.5, -2.0, 3.25]),
            ))
            .tensor(tensor(
                "q",
                &[32],
                GgmlType::Q8_0,
                small_file().tensors[1].data.clone(),
            ))
            .tensor(tensor(
                "h",
                &[2],
                GgmlType::F16,
                [f16::ONE, f16::NEG_ONE]
                    .iter()
                    .flat_map(|h| h.to_le_bytes())
                    .collect(),
            ));
        let f = b.open().unwrap();
        assert_eq!(f.alignment(), alignment as usize);
        assert_eq!(f.dequantize("odd").unwrap().data, vec![1.5, -2.0, 3.25]);
        assert_eq!(f.dequantize("h").unwrap().data, vec![1.0, -1.0]);
        let q = f.dequantize("q").unwrap().data;
        assert_eq!(q[0], -8.0);
        assert_eq!(q[31], 7.5);
    }
}

#[test]
fn files_on_disk_are_memory_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.gguf");
    std::fs::write(&path, small_file().build()).unwrap();
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.path(), path.as_path());
    assert_eq!(f.dequantize("a.weight").unwrap().shape, vec![2, 4]);

    let empty = dir.path().join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let err = GgufFile::open(&empty).unwrap_err();
    assert!(matches!(err, FormatError::Truncated { .. }), "{err:?}");
    assert!(err.to_string().contains("empty.gguf"));

    let err = GgufFile::open(dir.path().join("missing.gguf")).unwrap_err();
    assert!(matches!(err, FormatError::Io { .. }), "{err:?}");
    assert!(err.to_string().contains("missing.gguf"));
}

// ---------------------------------------------------------------------------------------------------------
// Dequantisation
// ---------------------------------------------------------------------------------------------------------

/// Deterministic pseudo-random numbers (splitmix64), the same stream gguf-py was fed for the golden values.
struct SplitMix(u64);

impl SplitMix {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(n + 8);
        while out.len() < n {
            out.extend_from_slice(&self.next_u64().to_le_bytes());
        }
        out.truncate(n);
        out
    }

    /// Uniform in [-scale, scale).
    fn float(&mut self, scale: f32) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
}

/// Dequantises `data` (a 1-D tensor of `n` elements of type `ty`) through a GGUF file.
fn through_file(ty: GgmlType, n: usize, data: Vec<u8>) -> Vec<f32> {
    let f = Builder::new()
        .kv("x", MetaValue::U8(0))
        .tensor(tensor("t", &[n as u64], ty, data))
        .open()
        .unwrap();
    let t = f.dequantize("t").unwrap();
    assert_eq!(t.shape, vec![n]);
    t.data
}

/// RMS of the error relative to RMS of the data.
fn relative_rms_error(data: &[f32], approx: &[f32]) -> f32 {
    assert_eq!(data.len(), approx.len());
    let err: f32 = data
        .iter()
        .zip(approx)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    let norm: f32 = data.iter().map(|a| a * a).sum();
    (err / norm).sqrt()
}

#[test]
fn plain_types_are_exact() {
    let mut rng = SplitMix(1);
    let values: Vec<f32> = (0..1000).map(|_| rng.float(100.0)).collect();
    assert_eq!(
        through_file(GgmlType::F32, 1000, f32_bytes(&values)),
        values
    );

    let halves: Vec<f16> = values.iter().map(|&v| f16::from_f32(v)).collect();
    let got = through_file(
        GgmlType::F16,
        1000,
        halves.iter().flat_map(|h| h.to_le_bytes()).collect(),
    );
    assert_eq!(got, halves.iter().map(|h| h.to_f32()).collect::<Vec<_>>());

    let brains: Vec<bf16> = values.iter().map(|&v| bf16::from_f32(v)).collect();
    let got = through_file(
        GgmlType::BF16,
        1000,
        brains.iter().flat_map(|h| h.to_le_bytes()).collect(),
    );
    assert_eq!(got, brains.iter().map(|h| h.to_f32()).collect::<Vec<_>>());

    let doubles: Vec<f64> = values.iter().map(|&v| f64::from(v)).collect();
    let got = through_file(
        GgmlType::F64,
        1000,
        doubles.iter().flat_map(|d| d.to_le_bytes()).collect(),
    );
    assert_eq!(got, values);

    // Special values pass through.
    let special = [f32::INFINITY, f32::NEG_INFINITY, -0.0, f32::MIN_POSITIVE];
    assert_eq!(through_file(GgmlType::F32, 4, f32_bytes(&special)), special);
}

/// Quantises random data with ggml-quants' `quantize`, serialises each block field by field, and checks our
/// file path against the block's own `dequantize` (exactly) and against the data (approximately).
fn check_legacy<B, const TS: usize>(ty: GgmlType, encode: impl Fn(&B) -> [u8; TS], max_rel_err: f32)
where
    B: ggml_quants::Quantize<f32, 32>,
{
    assert_eq!(ty.type_size(), Some(TS));
    let mut rng = SplitMix(u64::from(ty.id()));
    let n = 32 * 257; // enough blocks for rayon to split the work
    let data: Vec<f32> = (0..n)
        .map(|i| rng.float(1.0) + if i % 64 < 32 { 0.3 } else { -2.0 })
        .collect();
    let mut bytes = Vec::new();
    let mut expected = Vec::new();
    for chunk in data.chunks_exact(32) {
        let block = B::quantize(chunk.try_into().unwrap());
        bytes.extend_from_slice(&encode(&block));
        expected.extend_from_slice(&block.dequantize());
    }
    let got = through_file(ty, n, bytes);
    assert_eq!(got, expected, "{ty}: differs from ggml-quants' dequantize");
    let rel = relative_rms_error(&data, &got);
    assert!(rel < max_rel_err, "{ty}: relative error {rel}");
}

#[test]
fn legacy_blocks_match_ggml_quants() {
    use ggml_quants::{Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1};
    fn cat<const N: usize>(parts: &[&[u8]]) -> [u8; N] {
        parts.concat().try_into().unwrap()
    }
    let quants_i8 = |q: &[i8; 32]| q.map(|x| x as u8);
    check_legacy::<Q4_0, 18>(
        GgmlType::Q4_0,
        |b| cat(&[&b.delta.to_le_bytes(), &b.quants]),
        0.12,
    );
    check_legacy::<Q4_1, 20>(
        GgmlType::Q4_1,
        |b| {
            cat(&[
                &b.delta_min.delta.to_le_bytes(),
                &b.delta_min.min.to_le_bytes(),
                &b.quants,
            ])
        },
        0.1,
    );
    check_legacy::<Q5_0, 22>(
        GgmlType::Q5_0,
        |b| cat(&[&b.delta.to_le_bytes(), &b.qh, &b.ql]),
        0.06,
    );
    check_legacy::<Q5_1, 24>(
        GgmlType::Q5_1,
        |b| {
            cat(&[
                &b.delta_min.delta.to_le_bytes(),
                &b.delta_min.min.to_le_bytes(),
                &b.qh,
                &b.ql,
            ])
        },
        0.05,
    );
    check_legacy::<Q8_0, 34>(
        GgmlType::Q8_0,
        |b| cat(&[&b.delta.to_le_bytes(), &quants_i8(&b.quants)]),
        0.01,
    );
    check_legacy::<Q8_1, 36>(
        GgmlType::Q8_1,
        |b| {
            cat(&[
                &b.delta.to_le_bytes(),
                &b.sum.to_le_bytes(),
                &quants_i8(&b.quants),
            ])
        },
        0.01,
    );
}

/// FNV-1a over the f32 bits, to compare whole outputs with gguf-py's bit for bit.
fn fnv1a(values: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for b in values.iter().flat_map(|v| v.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// gguf-py 0.19's numpy `dequantize` (an implementation independent of ggml's C and of ours) on 4 blocks of
/// splitmix64 bytes seeded with the type id, with each block's f16 scale set to `0x2000 + 37 * block` and f16
/// min to `0x2400 + 53 * block`: (type, FNV-1a of the f32 bits, sum, values at 0, 1, 17, 100 and the last).
/// Made with `pip install gguf==0.19.0` and this script:
///
/// ```python
/// import numpy as np, struct
/// from gguf import quants, GGMLQuantizationType as T
/// M = (1 << 64) - 1
/// def stream(seed):
///     s = seed
///     while True:
///         s = (s + 0x9E3779B97F4A7C15) & M
///         z = s
///         z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M
///         z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M
///         yield (z ^ (z >> 31))
/// def rand_bytes(seed, n):
///     out = bytearray(); g = stream(seed)
///     while len(out) < n: out += struct.pack('<Q', next(g))
///     return out[:n]
/// # (name, id, type_size, f16 scale positions (d, [dmin]))
/// types = [("Q4_0",2,18,[0]),("Q4_1",3,20,[0,2]),("Q5_0",6,22,[0]),("Q5_1",7,24,[0,2]),("Q8_0",8,34,[0]),
///          ("Q2_K",10,84,[80,82]),("Q3_K",11,110,[108]),("Q4_K",12,144,[0,2]),("Q5_K",13,176,[0,2]),("Q6_K",14,210,[208]),
///          ("IQ4_NL",20,18,[0]),("IQ4_XS",23,136,[0])]
/// NB = 4
/// def fnv(vals):
///     h = 0xcbf29ce484222325
///     for b in vals.astype('<f4').tobytes():
///         h ^= b; h = (h * 0x100000001b3) & M
///     return h
/// for name, tid, ts, pos in types:
///     data = rand_bytes(tid, NB * ts)
///     for b in range(NB):
///         for k, p in enumerate(pos):
///             bits = (0x2000 + 37 * b) if k == 0 else (0x2400 + 53 * b)
///             struct.pack_into('<H', data, b * ts + p, bits)
///     arr = np.frombuffer(bytes(data), dtype=np.uint8)
///     q = quants._type_traits[T(tid)]
///     q.init_grid()
///     y = q.dequantize_rows(arr.reshape(1, -1)).reshape(-1).astype(np.float32)
///     print(f'("{name}", 0x{fnv(y):016x}, {float(y.astype(np.float64).sum())!r}, [{", ".join(repr(float(v)) for v in y[[0,1,17,100,len(y)-1]])}]),')
/// ```
#[rustfmt::skip]
const GGUF_PY_GOLDEN: [(&str, u64, f64, [f64; 5]); 12] = [
    ("Q4_0", 0xff384e53d29894d3, 0.1368560791015625, [-0.0078125, 0.03125, -0.0546875, 0.0519561767578125, -0.034637451171875]),
    ("Q4_1", 0x9d15ccc604bd6d46, 10.422828674316406, [0.046875, 0.046875, 0.0234375, 0.0180511474609375, 0.1392822265625]),
    ("Q5_0", 0x5c88d9fc7d74bb60, 0.5472412109375, [0.03125, 0.1015625, -0.0390625, 0.07793426513671875, -0.12989044189453125]),
    ("Q5_1", 0x5f0e58ae73babdf0, 18.945556640625, [0.109375, 0.0625, 0.1875, 0.25185394287109375, 0.14794158935546875]),
    ("Q8_0", 0x98822d7d44080356, 7.9761505126953125, [-0.8359375, -0.1328125, 0.1640625, -1.0910797119140625, 0.0]),
    ("Q2_K", 0xe8864bfaba2911d7, -40.923973083496094, [-0.109375, -0.03125, -0.03125, -0.0703125, 0.1522064208984375]),
    ("Q3_K", 0x987479014c0eb4f2, -4.686698913574219, [0.0, -0.6328125, -0.078125, 0.0, 0.519561767578125]),
    ("Q4_K", 0x6aedd030ab2c4a7c, 1716.169448852539, [6.203125, 2.453125, 6.671875, 0.171875, -0.23858642578125]),
    ("Q5_K", 0x3dd8e8e048abe878, 3752.003486633301, [2.2421875, 0.09375, 8.6875, -0.578125, 0.513702392578125]),
    ("Q6_K", 0xfb90cd420536717f, -245.1720962524414, [0.234375, 3.046875, 3.65625, -11.875, -22.50568389892578]),
    ("IQ4_NL", 0x61453c372e35109d, -8.689437866210938, [-0.171875, 0.0078125, -0.3828125, 0.21648406982421875, -0.90057373046875]),
    ("IQ4_XS", 0x71118c469dcc545b, 559.8689422607422, [1.25, 4.375, -11.125, -5.640625, -7.317161560058594]),
];

/// Where each type keeps its f16 scale (and min) inside a block.
fn scale_positions(ty: GgmlType) -> &'static [usize] {
    match ty {
        GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q6_K => &[208],
        _ => &[0],
    }
}

#[test]
fn all_block_types_match_gguf_py_bit_for_bit() {
    for (name, hash, sum, samples) in GGUF_PY_GOLDEN {
        let ty = (0..64)
            .map(GgmlType::from_id)
            .find(|t| t.to_string() == name)
            .unwrap();
        let (block, type_size) = ty.block_geometry().unwrap();
        let mut bytes = SplitMix(u64::from(ty.id())).bytes(4 * type_size);
        for b in 0..4 {
            for (k, &pos) in scale_positions(ty).iter().enumerate() {
                let bits: u16 = if k == 0 {
                    0x2000 + 37 * b as u16
                } else {
                    0x2400 + 53 * b as u16
                };
                bytes[b * type_size + pos..][..2].copy_from_slice(&bits.to_le_bytes());
            }
        }
        let got = through_file(ty, 4 * block, bytes);
        let last = got.len() - 1;
        assert_eq!(
            [got[0], got[1], got[17], got[100], got[last]].map(f64::from),
            samples,
            "{name}: samples"
        );
        assert_eq!(
            got.iter().map(|&v| f64::from(v)).sum::<f64>(),
            sum,
            "{name}: sum"
        );
        assert_eq!(
            fnv1a(&got),
            hash,
            "{name}: hash of all {} values",
            got.len()
        );
    }
}

/// A simple reference quantiser for Q4_K/Q5_K (asymmetric, 8 sub-blocks of 32, 6-bit scales and mins).
fn quantize_k_asym(x: &[f32; 256], bits: u32) -> Vec<u8> {
    let levels = ((1u32 << bits) - 1) as f32;
    let mut scales = [0f32; 8];
    let mut mins = [0f32; 8];
    for (j, sub) in x.chunks_exact(32).enumerate() {
        let lo = sub.iter().cloned().fold(0f32, f32::min);
        let hi = sub.iter().cloned().fold(f32::MIN, f32::max);
        scales[j] = (hi - lo) / levels;
        mins[j] = -lo;
    }
    let d = f16::from_f32(scales.iter().cloned().fold(0., f32::max) / 63.0);
    let dmin = f16::from_f32(mins.iter().cloned().fold(0., f32::max) / 63.0);
    let q6 = |v: f32, unit: f16| {
        if unit.to_f32() > 0.0 {
            (v / unit.to_f32()).round().clamp(0., 63.) as u8
        } else {
            0
        }
    };
    let sc: Vec<u8> = scales.iter().map(|&s| q6(s, d)).collect();
    let mn: Vec<u8> = mins.iter().map(|&m| q6(m, dmin)).collect();
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 0xF) | ((mn[j + 4] & 0xF) << 4);
    }
    let q: Vec<u8> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let (step, offset) = (
                d.to_f32() * f32::from(sc[i / 32]),
                dmin.to_f32() * f32::from(mn[i / 32]),
            );
            if step > 0.0 {
                ((v + offset) / step).round().clamp(0., levels) as u8
            } else {
                0
            }
        })
        .collect();
    let mut out = [d.to_le_bytes(), dmin.to_le_bytes()].concat();
    out.extend_from_slice(&packed);
    if bits == 5 {
        let mut qh = [0u8; 32];
        for (k, chunk) in q.chunks_exact(64).enumerate() {
            for l in 0..32 {
                qh[l] |= ((chunk[l] >> 4) << (2 * k)) | ((chunk[l + 32] >> 4) << (2 * k + 1));
            }
        }
        out.extend_from_slice(&qh);
    }
    for chunk in q.chunks_exact(64) {
        out.extend((0..32).map(|l| (chunk[l] & 0xF) | ((chunk[l + 32] & 0xF) << 4)));
    }
    out
}

/// A simple reference quantiser for Q6_K (symmetric, 16 sub-blocks of 16, i8 scales).
fn quantize_q6_k(x: &[f32; 256]) -> Vec<u8> {
    let amax: Vec<f32> = x
        .chunks_exact(16)
        .map(|s| s.iter().fold(0f32, |m, v| m.max(v.abs())))
        .collect();
    let d = f16::from_f32(amax.iter().cloned().fold(0., f32::max) / 31.0 / 127.0);
    let sc: Vec<i8> = amax
        .iter()
        .map(|&a| {
            if d.to_f32() > 0.0 {
                (a / 31.0 / d.to_f32()).round().clamp(0., 127.) as i8
            } else {
                0
            }
        })
        .collect();
    let q: Vec<u8> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let step = d.to_f32() * f32::from(sc[i / 16]);
            let q = if step > 0.0 {
                (v / step).round().clamp(-32., 31.) as i32
            } else {
                0
            };
            (q + 32) as u8
        })
        .collect();
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for n in 0..2 {
        let y = &q[128 * n..];
        for l in 0..32 {
            let (q1, q2, q3, q4) = (y[l], y[l + 32], y[l + 64], y[l + 96]);
            ql[64 * n + l] = (q1 & 0xF) | ((q3 & 0xF) << 4);
            ql[64 * n + l + 32] = (q2 & 0xF) | ((q4 & 0xF) << 4);
            qh[32 * n + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
        }
    }
    let mut out = [ql.as_slice(), qh.as_slice()].concat();
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend_from_slice(&d.to_le_bytes());
    out
}

/// A reference quantiser of one 256-element super-block.
type KQuantizer = dyn Fn(&[f32; 256]) -> Vec<u8>;

#[test]
fn k_quants_round_trip_random_data() {
    let mut rng = SplitMix(7);
    let n = 256 * 40;
    let data: Vec<f32> = (0..n)
        .map(|i| rng.float(1.0) * if i % 512 < 256 { 1.0 } else { 0.05 } + 0.01)
        .collect();
    let cases: [(GgmlType, &KQuantizer, f32); 3] = [
        (GgmlType::Q4_K, &|x| quantize_k_asym(x, 4), 0.1),
        (GgmlType::Q5_K, &|x| quantize_k_asym(x, 5), 0.05),
        (GgmlType::Q6_K, &quantize_q6_k, 0.03),
    ];
    for (ty, quantize, max_rel) in cases {
        let mut bytes = Vec::new();
        for chunk in data.chunks_exact(256) {
            let block = quantize(chunk.try_into().unwrap());
            assert_eq!(Some(block.len()), ty.type_size());
            bytes.extend(block);
        }
        let got = through_file(ty, n, bytes);
        let rel = relative_rms_error(&data, &got);
        assert!(rel < max_rel, "{ty}: relative error {rel}");
        // Small and large sub-blocks alike: every block individually close.
        for (b, (d, g)) in data.chunks(256).zip(got.chunks(256)).enumerate() {
            let rel = relative_rms_error(d, g);
            assert!(rel < 2.0 * max_rel, "{ty} block {b}: relative error {rel}");
        }
    }
}

#[test]
fn q8_k_uses_an_f32_scale() {
    let mut block = 0.25f32.to_le_bytes().to_vec();
    block.extend((0..=255u8).map(|i| i.wrapping_sub(128)));
    block.extend([0u8; 32]); // bsums, unused
    let got = through_file(GgmlType::Q8_K, 256, block);
    let expected: Vec<f32> = (0..256).map(|i| (i as f32 - 128.0) * 0.25).collect();
    assert_eq!(got, expected);
}

// ---------------------------------------------------------------------------------------------------------
// GgufWeights on tiny synthetic models
// ---------------------------------------------------------------------------------------------------------

const H: u64 = 8;
const HEADS: u64 = 2;
const KV_HEADS: u64 = 1;
const HEAD_DIM: u64 = H / HEADS;
const FFN: u64 = 12;
const VOCAB: u64 = 5;

fn counting(n: u64, base: f32) -> Vec<f32> {
    (0..n).map(|i| base + i as f32).collect()
}

/// A two-layer model with F32 weights whose values are distinct, so every tensor can be identified.
fn tiny_model(arch: &str, with_output: bool, with_bias: bool) -> Builder {
    let mut b = Builder::new()
        .kv("general.architecture", MetaValue::String(arch.into()))
        .kv(&format!("{arch}.context_length"), MetaValue::U32(64))
        .kv(
            &format!("{arch}.embedding_length"),
            MetaValue::U32(H as u32),
        )
        .kv(&format!("{arch}.feed_forward_length"), MetaValue::U64(FFN))
        .kv(&format!("{arch}.block_count"), MetaValue::U32(2))
        .kv(
            &format!("{arch}.attention.head_count"),
            MetaValue::U32(HEADS as u32),
        )
        .kv(
            &format!("{arch}.attention.head_count_kv"),
            MetaValue::U32(KV_HEADS as u32),
        )
        .kv(
            &format!("{arch}.attention.layer_norm_rms_epsilon"),
            MetaValue::F32(1e-6),
        )
        .kv(
            "tokenizer.ggml.tokens",
            MetaValue::Array(
                (0..VOCAB)
                    .map(|i| MetaValue::String(format!("t{i}")))
                    .collect(),
            ),
        )
        .kv("tokenizer.ggml.bos_token_id", MetaValue::U32(1))
        .kv("tokenizer.ggml.eos_token_id", MetaValue::U32(2));
    let mut base = 0.0;
    let mut add = |b: Builder, name: &str, dims: &[u64]| {
        let n = dims.iter().product();
        base += 1000.0;
        b.tensor(tensor(
            name,
            dims,
            GgmlType::F32,
            f32_bytes(&counting(n, base)),
        ))
    };
    b = add(b, "token_embd.weight", &[H, VOCAB]);
    for i in 0..2 {
        b = add(b, &format!("blk.{i}.attn_norm.weight"), &[H]);
        b = add(b, &format!("blk.{i}.attn_q.weight"), &[H, HEADS * HEAD_DIM]);
        b = add(
            b,
            &format!("blk.{i}.attn_k.weight"),
            &[H, KV_HEADS * HEAD_DIM],
        );
        b = add(
            b,
            &format!("blk.{i}.attn_v.weight"),
            &[H, KV_HEADS * HEAD_DIM],
        );
        if with_bias {
            b = add(b, &format!("blk.{i}.attn_q.bias"), &[HEADS * HEAD_DIM]);
            b = add(b, &format!("blk.{i}.attn_k.bias"), &[KV_HEADS * HEAD_DIM]);
            b = add(b, &format!("blk.{i}.attn_v.bias"), &[KV_HEADS * HEAD_DIM]);
        }
        b = add(
            b,
            &format!("blk.{i}.attn_output.weight"),
            &[HEADS * HEAD_DIM, H],
        );
        b = add(b, &format!("blk.{i}.ffn_norm.weight"), &[H]);
        b = add(b, &format!("blk.{i}.ffn_gate.weight"), &[H, FFN]);
        b = add(b, &format!("blk.{i}.ffn_up.weight"), &[H, FFN]);
        b = add(b, &format!("blk.{i}.ffn_down.weight"), &[FFN, H]);
    }
    b = add(b, "output_norm.weight", &[H]);
    if with_output {
        b = add(b, "output.weight", &[H, VOCAB]);
    }
    // A tensor engram has no HF name for: it must pass through under its GGUF name.
    add(b, "custom_extra.weight", &[HEAD_DIM / 2])
}

fn weights(b: &Builder) -> GgufWeights {
    GgufWeights::from_file(b.open().unwrap()).unwrap()
}

#[test]
fn llama_weights_in_hf_names_with_q_k_unpermuted() {
    let w = weights(&tiny_model("llama", false, false));
    let c = w.config();
    assert_eq!(c.architecture, Architecture::Llama);
    assert_eq!(
        (c.vocab_size, c.hidden_size, c.intermediate_size),
        (5, 8, 12)
    );
    assert_eq!(
        (
            c.num_hidden_layers,
            c.num_attention_heads,
            c.num_key_value_heads,
            c.head_dim
        ),
        (2, 2, 1, 4)
    );
    assert_eq!((c.rope_theta, c.max_position_embeddings), (10000.0, 64));
    assert_eq!(c.rms_norm_eps, f64::from(1e-6f32));
    assert!(c.tie_word_embeddings && !c.attention_bias);
    assert_eq!(
        (c.bos_token_id, c.eos_token_ids.as_slice(), c.pad_token_id),
        (Some(1), &[2u32][..], None)
    );

    let names = w.tensor_names();
    assert_eq!(names[0], "model.embed_tokens.weight");
    assert!(names.contains(&"model.layers.1.mlp.down_proj.weight".to_string()));
    assert!(names.contains(&"model.norm.weight".to_string()));
    assert!(
        names.contains(&"custom_extra.weight".to_string()),
        "unknown tensors pass through"
    );
    assert!(!names.iter().any(|n| n.starts_with("blk.")));
    assert_eq!(
        w.gguf_name("model.layers.1.self_attn.o_proj.weight"),
        Some("blk.1.attn_output.weight")
    );
    assert_eq!(w.path(), Path::new(PATH));

    let f = w.file();
    for (hf, gguf, heads) in [
        (
            "model.layers.1.self_attn.q_proj.weight",
            "blk.1.attn_q.weight",
            Some(HEADS),
        ),
        (
            "model.layers.1.self_attn.k_proj.weight",
            "blk.1.attn_k.weight",
            Some(KV_HEADS),
        ),
        (
            "model.layers.1.self_attn.v_proj.weight",
            "blk.1.attn_v.weight",
            None,
        ),
        (
            "model.layers.0.mlp.gate_proj.weight",
            "blk.0.ffn_gate.weight",
            None,
        ),
        (
            "model.layers.0.input_layernorm.weight",
            "blk.0.attn_norm.weight",
            None,
        ),
        (
            "model.layers.0.post_attention_layernorm.weight",
            "blk.0.ffn_norm.weight",
            None,
        ),
    ] {
        let raw = f.dequantize(gguf).unwrap();
        let ours = w.tensor(hf).unwrap();
        match heads {
            Some(n) => {
                assert_ne!(ours, raw);
                assert_eq!(permute_qk_rows(&ours, n as usize).unwrap(), raw, "{hf}");
            }
            None => assert_eq!(ours, raw, "{hf}"),
        }
    }
    // q_proj is [out, in] = [8, 8]; row 1 of head 0 in HF order is GGUF row 2 (pairs interleaved).
    let q = w.tensor("model.layers.0.self_attn.q_proj.weight").unwrap();
    let raw = f.dequantize("blk.0.attn_q.weight").unwrap();
    assert_eq!(q.shape, vec![8, 8]);
    assert_eq!(&q.data[8..16], &raw.data[16..24]);
    assert_eq!(&q.data[16..24], &raw.data[8..16]);
    assert_eq!(w.stored_dtype("model.norm.weight").as_deref(), Some("F32"));
    assert_eq!(w.stored_dtype("nope"), None);
    assert!(matches!(
        w.tensor("lm_head.weight"),
        Err(FormatError::MissingTensor { .. })
    ));
}

#[test]
fn qwen2_is_not_permuted_and_has_biases() {
    let w = weights(&tiny_model("qwen2", true, true));
    let c = w.config();
    assert_eq!(c.architecture, Architecture::Qwen2);
    assert!(c.attention_bias && !c.tie_word_embeddings);
    let f = w.file();
    for (hf, gguf) in [
        (
            "model.layers.0.self_attn.q_proj.weight",
            "blk.0.attn_q.weight",
        ),
        ("model.layers.0.self_attn.q_proj.bias", "blk.0.attn_q.bias"),
        ("model.layers.1.self_attn.k_proj.bias", "blk.1.attn_k.bias"),
        ("lm_head.weight", "output.weight"),
    ] {
        assert_eq!(w.tensor(hf).unwrap(), f.dequantize(gguf).unwrap(), "{hf}");
    }
    assert_eq!(w.tensor("lm_head.weight").unwrap().shape, vec![5, 8]);
}

#[test]
fn llama_biases_are_unpermuted_too() {
    let w = weights(&tiny_model("llama", true, true));
    assert!(w.config().attention_bias && !w.config().tie_word_embeddings);
    let raw = w.file().dequantize("blk.0.attn_q.bias").unwrap();
    let ours = w.tensor("model.layers.0.self_attn.q_proj.bias").unwrap();
    assert_eq!(ours, unpermute_qk_rows(&raw, HEADS as usize).unwrap());
    assert_eq!(
        &ours.data[..4],
        &[raw.data[0], raw.data[2], raw.data[1], raw.data[3]]
    );
}

#[test]
fn config_errors_are_typed() {
    let err = GgufWeights::from_file(tiny_model("gpt2", false, false).open().unwrap()).unwrap_err();
    assert!(
        matches!(&err, FormatError::UnknownArchitecture { name, .. } if name == "gpt2"),
        "{err:?}"
    );
    assert_names_file(&err);

    let mut b = tiny_model("llama", false, false);
    b.kvs.retain(|(k, _)| k != "llama.block_count");
    let err = b.open().unwrap().model_config().unwrap_err();
    assert!(
        matches!(&err, FormatError::MissingKey { key, .. } if key == "llama.block_count"),
        "{err:?}"
    );

    let mut b = tiny_model("llama", false, false);
    for (k, v) in &mut b.kvs {
        if k == "llama.attention.head_count" {
            *v = MetaValue::I32(-2);
        }
    }
    let err = b.open().unwrap().model_config().unwrap_err();
    assert!(matches!(err, FormatError::WrongType { .. }), "{err:?}");

    let mut b = tiny_model("llama", false, false);
    for (k, v) in &mut b.kvs {
        if k == "llama.attention.head_count" {
            *v = MetaValue::U32(3);
        }
    }
    let err = b.open().unwrap().model_config().unwrap_err();
    assert!(matches!(err, FormatError::BadConfig { .. }), "{err:?}");

    // A zero size is blamed on its own key, not on one derived from it (embedding_length 0 used to blame
    // key_length); a block count the tensors disagree with (10^9 used to pass `engram info`) is refused.
    for (key, value) in [
        ("llama.embedding_length", 0u64),
        ("llama.feed_forward_length", 0),
        ("llama.context_length", 0),
        ("llama.block_count", 0),
        ("llama.block_count", 1_000_000_000),
        ("llama.block_count", 3),
    ] {
        let mut b = tiny_model("llama", false, false);
        for (k, v) in &mut b.kvs {
            if k == key {
                *v = MetaValue::U64(value);
            }
        }
        let err = b.open().unwrap().model_config().unwrap_err();
        assert!(
            matches!(&err, FormatError::BadConfig { field, .. } if field == key),
            "{key} = {value}: {err:?}"
        );
        assert!(err.to_string().contains(&value.to_string()), "{err}");
    }

    // A model tensor of a type engram cannot decode fails when the weights are opened (so `engram info`
    // fails too), naming the tensor; an extra tensor the model does not use may have any type.
    let mut b = tiny_model("llama", false, false);
    let q = b
        .tensors
        .iter()
        .position(|t| t.name == "blk.1.attn_q.weight")
        .unwrap();
    b.tensors[q].type_id = 99;
    let err = GgufWeights::from_file(b.open().unwrap()).unwrap_err();
    assert!(
        matches!(&err, FormatError::UnsupportedTensorType { tensor, .. } if tensor == "blk.1.attn_q.weight"),
        "{err:?}"
    );
    let mut b = tiny_model("llama", false, false);
    let extra = b.tensors.len() - 1;
    b.tensors[extra].type_id = 99;
    GgufWeights::from_file(b.open().unwrap()).unwrap();

    // Defaults: no kv head count means multi-head attention; no tokens means llama.vocab_size.
    let mut b = tiny_model("llama", false, false);
    b.kvs
        .retain(|(k, _)| k != "llama.attention.head_count_kv" && k != "tokenizer.ggml.tokens");
    b = b
        .kv("llama.vocab_size", MetaValue::U32(5))
        .kv("llama.rope.freq_base", MetaValue::F32(5e5));
    let c = b.open().unwrap().model_config().unwrap();
    assert_eq!(
        (c.num_key_value_heads, c.vocab_size, c.rope_theta),
        (2, 5, 500000.0)
    );
}

// ---------------------------------------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------------------------------------

/// The permutation as numpy spells it, with explicit indices:
/// `w.reshape(n_head, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)`.
fn numpy_permute(data: &[f32], n_head: usize, half: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; data.len()];
    for h in 0..n_head {
        for i in 0..half {
            for j in 0..2 {
                for c in 0..cols {
                    // out[h][i][j][c] = in[h][j][i][c]
                    out[((h * half + i) * 2 + j) * cols + c] =
                        data[((h * 2 + j) * half + i) * cols + c];
                }
            }
        }
    }
    out
}

fn arbitrary_matrix() -> impl Strategy<Value = (usize, TensorF32)> {
    (1usize..6, 1usize..6, 1usize..5).prop_flat_map(|(n_head, half, cols)| {
        let rows = n_head * 2 * half;
        proptest::collection::vec(-100f32..100f32, rows * cols).prop_map(move |data| {
            let shape = if cols == 1 {
                vec![rows]
            } else {
                vec![rows, cols]
            };
            (n_head, TensorF32::new(shape, data).unwrap())
        })
    })
}

proptest! {
    #[test]
    fn unpermute_inverts_permute((n_head, t) in arbitrary_matrix()) {
        let rows = t.shape[0];
        let cols = t.numel() / rows;
        let p = permute_qk_rows(&t, n_head).unwrap();
        prop_assert_eq!(&p.data, &numpy_permute(&t.data, n_head, rows / n_head / 2, cols));
        prop_assert_eq!(&unpermute_qk_rows(&p, n_head).unwrap(), &t);
        prop_assert_eq!(&permute_qk_rows(&unpermute_qk_rows(&t, n_head).unwrap(), n_head).unwrap(), &t);
    }

    #[test]
    fn permute_rejects_rows_not_split_by_heads(rows in 1usize..40, n_head in 1usize..8) {
        let t = TensorF32::new(vec![rows], vec![0.0; rows]).unwrap();
        let fits = rows.is_multiple_of(2 * n_head);
        prop_assert_eq!(permute_qk_rows(&t, n_head).is_some(), fits);
        prop_assert_eq!(unpermute_qk_rows(&t, n_head).is_some(), fits);
    }
}

/// Everything a caller might do with a parsed file; none of it may panic, whatever the bytes were.
fn exercise(f: &GgufFile) {
    for (k, v) in f.metadata() {
        let _ = v.to_string();
        let _ = (
            f.get_u64(k),
            f.get_str_array(k),
            f.get_i64_array(k),
            f.get_f64(k),
        );
    }
    for info in f.tensors() {
        let _ = (info.shape(), info.numel(), info.nbytes());
        if let Ok(t) = f.dequantize(&info.name) {
            assert_eq!(t.numel() as u64, info.numel());
        }
        let _ = f.tensor_bytes(&info.name);
    }
    let _ = f.model_config();
}

/// A valid tiny model and the length of its header (where mutations do the most damage).
fn fuzz_seed() -> (Vec<u8>, usize) {
    let bytes = tiny_model("llama", true, true).build();
    let header = GgufFile::from_bytes(PATH, bytes.clone())
        .unwrap()
        .data_start();
    (bytes, header)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512), magic in any::<bool>()) {
        if magic && bytes.len() >= 8 {
            bytes[..4].copy_from_slice(b"GGUF");
            bytes[4..8].copy_from_slice(&3u32.to_le_bytes());
        }
        if let Ok(f) = GgufFile::from_bytes(PATH, bytes) {
            exercise(&f);
        }
    }

    #[test]
    fn mutated_valid_files_never_panic(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in proptest::option::of(any::<prop::sample::Index>()),
        widen in proptest::option::of((any::<prop::sample::Index>(), 0usize..8)),
    ) {
        let (mut bytes, header) = fuzz_seed();
        for (n, (at, value)) in edits.into_iter().enumerate() {
            // Mostly in the header; the first edit anywhere.
            let i = at.index(if n == 0 { bytes.len() } else { header });
            bytes[i] = value;
        }
        // Make a length, count or dimension huge: set a high byte of some header field to 0xFF.
        if let Some((at, k)) = widen {
            let i = at.index(header - 8);
            bytes[i + k] = 0xFF;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        match GgufFile::from_bytes(PATH, bytes) {
            Ok(f) => {
                exercise(&f);
                if let Ok(w) = GgufWeights::from_file(f) {
                    for name in w.tensor_names() {
                        let _ = (w.tensor(&name), w.stored_dtype(&name));
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().contains(PATH)),
        }
    }
}

#[test]
fn scaled_rope_is_refused_rather_than_run_wrong() {
    let yarn = tiny_model("llama", false, false)
        .kv("llama.rope.scaling.type", MetaValue::String("yarn".into()));
    let err = yarn.open().unwrap().model_config().unwrap_err();
    assert!(
        matches!(&err, FormatError::BadConfig { field, .. } if field == "llama.rope.scaling.type"),
        "{err}"
    );
    assert_names_file(&err);
    let none = tiny_model("llama", false, false)
        .kv("llama.rope.scaling.type", MetaValue::String("none".into()));
    assert!(none.open().unwrap().model_config().is_ok());
    let freqs = tiny_model("llama", false, false).tensor(tensor(
        "rope_freqs.weight",
        &[4],
        GgmlType::F32,
        f32_bytes(&[1.0; 4]),
    ));
    let err = freqs.open().unwrap().model_config().unwrap_err();
    assert!(err.to_string().contains("rope_freqs.weight"), "{err}");
}
