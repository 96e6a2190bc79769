//! Writing GGUF files (version 3): metadata, tensor infos and data, streamed one tensor at a time and renamed
//! into place only when complete.
//!
//! Our own writer rather than `ggus`'s: that one takes metadata values as pre-encoded bytes (the encoding is
//! most of a writer), panics on some inputs (`general.alignment` of the wrong type) and holds every tensor's
//! data until the end. Here a tensor's bytes are asked for when they are written, so a merged model never has
//! to exist twice in memory.

use std::io::{BufWriter, Write};
use std::path::Path;

use half::{bf16, f16};
use rayon::prelude::*;

use super::{GgmlType, MetaValue};
use crate::FormatError;

/// The alignment of the data section and of each tensor in it when the metadata sets none (GGUF's default).
pub const DEFAULT_ALIGNMENT: usize = 32;

/// One tensor of a file to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Shape in PyTorch order (`[out, in]` for a linear weight); written reversed, as ggml orders dimensions.
    pub shape: Vec<usize>,
    /// Storage type; [`encode`] produces its bytes from f32 values.
    pub ggml_type: GgmlType,
}

impl TensorSpec {
    fn nbytes(&self) -> Option<u64> {
        let info = super::TensorInfo {
            name: String::new(),
            dims: self.shape.iter().rev().map(|&d| d as u64).collect(),
            ggml_type: self.ggml_type,
            offset: 0,
        };
        info.nbytes()
    }
}

/// The types [`encode`] writes: the float types and ggml's legacy 32-weight blocks (the ones `ggml-quants`
/// quantises as ggml's reference code does).
pub const ENCODABLE: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q5_1,
    GgmlType::Q5_0,
    GgmlType::Q4_1,
    GgmlType::Q4_0,
];

/// `values` stored as `ty` (row-major, the first PyTorch dimension slowest). Block types need a multiple of 32
/// values per row; the caller checks rows, this checks the total. `Err` names what is wrong.
pub fn encode(values: &[f32], ty: GgmlType) -> Result<Vec<u8>, String> {
    use GgmlType as T;
    use ggml_quants::Quantize;
    fn blocks<B: Quantize<f32, 32> + Send>(
        values: &[f32],
        size: usize,
        bytes: impl Fn(&B, &mut [u8]) + Sync,
    ) -> Result<Vec<u8>, String> {
        if !values.len().is_multiple_of(32) {
            return Err(format!(
                "{} values are not a whole number of 32-value blocks",
                values.len()
            ));
        }
        let mut out = vec![0u8; values.len() / 32 * size];
        out.par_chunks_mut(size)
            .zip(values.par_chunks(32))
            .for_each(|(o, v)| {
                let v: &[f32; 32] = v.try_into().expect("chunks of 32");
                bytes(&B::quantize(v), o)
            });
        Ok(out)
    }
    fn put(o: &mut [u8], at: usize, b: &[u8]) {
        o[at..at + b.len()].copy_from_slice(b);
    }
    if let Some(bad) = values.iter().find(|v| !v.is_finite()) {
        return Err(format!("holds a non-finite value ({bad})"));
    }
    Ok(match ty {
        T::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        T::F16 => values
            .iter()
            .flat_map(|&v| f16::from_f32(v).to_le_bytes())
            .collect(),
        T::BF16 => values
            .iter()
            .flat_map(|&v| bf16::from_f32(v).to_le_bytes())
            .collect(),
        T::Q8_0 => blocks(values, 34, |b: &ggml_quants::Q8_0, o| {
            put(o, 0, &b.delta.to_le_bytes());
            put(o, 2, &b.quants.map(|q| q as u8));
        })?,
        T::Q4_0 => blocks(values, 18, |b: &ggml_quants::Q4_0, o| {
            put(o, 0, &b.delta.to_le_bytes());
            put(o, 2, &b.quants);
        })?,
        T::Q4_1 => blocks(values, 20, |b: &ggml_quants::Q4_1, o| {
            put(o, 0, &b.delta_min.delta.to_le_bytes());
            put(o, 2, &b.delta_min.min.to_le_bytes());
            put(o, 4, &b.quants);
        })?,
        T::Q5_0 => blocks(values, 22, |b: &ggml_quants::Q5_0, o| {
            put(o, 0, &b.delta.to_le_bytes());
            put(o, 2, &b.qh);
            put(o, 6, &b.ql);
        })?,
        T::Q5_1 => blocks(values, 24, |b: &ggml_quants::Q5_1, o| {
            put(o, 0, &b.delta_min.delta.to_le_bytes());
            put(o, 2, &b.delta_min.min.to_le_bytes());
            put(o, 4, &b.qh);
            put(o, 8, &b.ql);
        })?,
        other => return Err(format!("engram does not write {other} tensors")),
    })
}

/// Writes a GGUF file at `path`: `metadata` in order, then `tensors`, whose bytes `data(i)` gives for the i-th
/// (each must have the size its shape and type imply). The file is staged beside `path` and renamed over it
/// only once complete, so a failure (or a crash) leaves any earlier file there untouched.
///
/// A `general.alignment` key (u32, a power of two) sets the alignment; otherwise it is 32.
pub fn write_gguf(
    path: &Path,
    metadata: &[(String, MetaValue)],
    tensors: &[TensorSpec],
    data: &mut dyn FnMut(usize) -> Result<Vec<u8>, FormatError>,
) -> Result<(), FormatError> {
    let malformed = |what: String| FormatError::Malformed {
        path: path.to_path_buf(),
        what,
    };
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, MetaValue::U32(a))) if a.is_power_of_two() => *a as usize,
        Some((_, v)) => {
            return Err(malformed(format!(
                "general.alignment must be a power of two as u32, not {v:?}"
            )));
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (key, _) in metadata {
        if !seen.insert(key.as_str()) {
            return Err(malformed(format!("metadata key `{key}` given twice")));
        }
    }

    // Offsets first: the tensor infos precede the data and must say where each tensor will be.
    let mut offsets = Vec::with_capacity(tensors.len());
    let mut sizes = Vec::with_capacity(tensors.len());
    let mut end = 0u64;
    let mut names = std::collections::HashSet::new();
    for t in tensors {
        if !names.insert(t.name.as_str()) {
            return Err(malformed(format!("tensor `{}` given twice", t.name)));
        }
        let size = t.nbytes().filter(|_| !t.shape.is_empty()).ok_or_else(|| {
            malformed(format!(
                "tensor `{}`: shape {:?} cannot be stored as {} (rows must be whole blocks)",
                t.name, t.shape, t.ggml_type
            ))
        })?;
        let start = end.next_multiple_of(alignment as u64);
        offsets.push(start);
        sizes.push(size);
        end = start + size;
    }

    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let io = |e: std::io::Error| FormatError::io(path, e);
    let staged = crate::staged_file(dir).map_err(io)?;
    let mut w = Counting {
        inner: BufWriter::with_capacity(1 << 20, staged),
        written: 0,
    };
    w.put(b"GGUF").map_err(io)?;
    w.put(&3u32.to_le_bytes()).map_err(io)?;
    w.put(&(tensors.len() as u64).to_le_bytes()).map_err(io)?;
    w.put(&(metadata.len() as u64).to_le_bytes()).map_err(io)?;
    for (key, value) in metadata {
        put_string(&mut w, key).map_err(io)?;
        w.put(&value.type_id().to_le_bytes()).map_err(io)?;
        put_value(&mut w, value).map_err(io)?;
    }
    for (t, offset) in tensors.iter().zip(&offsets) {
        put_string(&mut w, &t.name).map_err(io)?;
        w.put(&(t.shape.len() as u32).to_le_bytes()).map_err(io)?;
        for &d in t.shape.iter().rev() {
            w.put(&(d as u64).to_le_bytes()).map_err(io)?;
        }
        w.put(&t.ggml_type.id().to_le_bytes()).map_err(io)?;
        w.put(&offset.to_le_bytes()).map_err(io)?;
    }
    w.pad(alignment).map_err(io)?;
    let data_start = w.written;
    for (i, t) in tensors.iter().enumerate() {
        w.pad(alignment).map_err(io)?;
        debug_assert_eq!(w.written - data_start, offsets[i]);
        let bytes = data(i)?;
        if bytes.len() as u64 != sizes[i] {
            return Err(malformed(format!(
                "tensor `{}`: {} bytes given, its shape {:?} as {} takes {}",
                t.name,
                bytes.len(),
                t.shape,
                t.ggml_type,
                sizes[i]
            )));
        }
        w.put(&bytes).map_err(io)?;
    }
    let staged = w
        .inner
        .into_inner()
        .map_err(|e| FormatError::io(path, e.into_error()))?;
    staged.as_file().sync_all().map_err(io)?;
    staged
        .persist(path)
        .map_err(|e| FormatError::io(path, e.error))?;
    Ok(())
}

/// A writer that counts its bytes, for padding and offsets.
struct Counting<W: Write> {
    inner: W,
    written: u64,
}

impl<W: Write> Counting<W> {
    fn put(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.inner.write_all(bytes)?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn pad(&mut self, alignment: usize) -> std::io::Result<()> {
        let n = self.written.next_multiple_of(alignment as u64) - self.written;
        self.put(&vec![0u8; n as usize])
    }
}

fn put_string<W: Write>(w: &mut Counting<W>, s: &str) -> std::io::Result<()> {
    w.put(&(s.len() as u64).to_le_bytes())?;
    w.put(s.as_bytes())
}

fn put_value<W: Write>(w: &mut Counting<W>, v: &MetaValue) -> std::io::Result<()> {
    match v {
        MetaValue::U8(x) => w.put(&x.to_le_bytes()),
        MetaValue::I8(x) => w.put(&x.to_le_bytes()),
        MetaValue::U16(x) => w.put(&x.to_le_bytes()),
        MetaValue::I16(x) => w.put(&x.to_le_bytes()),
        MetaValue::U32(x) => w.put(&x.to_le_bytes()),
        MetaValue::I32(x) => w.put(&x.to_le_bytes()),
        MetaValue::U64(x) => w.put(&x.to_le_bytes()),
        MetaValue::I64(x) => w.put(&x.to_le_bytes()),
        MetaValue::F32(x) => w.put(&x.to_le_bytes()),
        MetaValue::F64(x) => w.put(&x.to_le_bytes()),
        MetaValue::Bool(x) => w.put(&[u8::from(*x)]),
        MetaValue::String(s) => put_string(w, s),
        MetaValue::Array(items) => {
            // An empty array keeps no element type once parsed; any type reads back as the same empty array.
            let ty = items.first().map_or(0, MetaValue::type_id);
            if let Some(odd) = items.iter().find(|i| i.type_id() != ty) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!(
                        "an array mixes {} and {} values",
                        items[0].type_name(),
                        odd.type_name()
                    ),
                ));
            }
            w.put(&ty.to_le_bytes())?;
            w.put(&(items.len() as u64).to_le_bytes())?;
            items.iter().try_for_each(|i| put_value(w, i))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gguf::GgufFile;

    fn spec(name: &str, shape: &[usize], ty: GgmlType) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            shape: shape.to_vec(),
            ggml_type: ty,
        }
    }

    #[test]
    fn round_trips_metadata_and_every_encodable_type() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        let values: Vec<f32> = (0..64 * 3)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
            .collect();
        let metadata = vec![
            (
                "general.architecture".to_string(),
                MetaValue::String("llama".into()),
            ),
            ("a.u8".into(), MetaValue::U8(7)),
            ("a.i64".into(), MetaValue::I64(-3)),
            ("a.f64".into(), MetaValue::F64(0.25)),
            ("a.bool".into(), MetaValue::Bool(true)),
            (
                "a.strs".into(),
                MetaValue::Array(vec![
                    MetaValue::String("x".into()),
                    MetaValue::String("".into()),
                ]),
            ),
            (
                "a.nested".into(),
                MetaValue::Array(vec![MetaValue::Array(vec![MetaValue::I32(1)])]),
            ),
        ];
        let tensors: Vec<TensorSpec> = ENCODABLE
            .iter()
            .map(|&t| spec(&format!("w.{t}"), &[3, 64], t))
            .collect();
        write_gguf(&path, &metadata, &tensors, &mut |i| {
            Ok(encode(&values, tensors[i].ggml_type).unwrap())
        })
        .unwrap();

        let f = GgufFile::open(&path).unwrap();
        for (k, v) in &metadata {
            assert_eq!(f.get(k), Some(v), "{k}");
        }
        for t in &tensors {
            let back = f.dequantize(&t.name).unwrap();
            assert_eq!(back.shape, vec![3, 64]);
            // Error bounds at these magnitudes (|x| <= 7.2): half-precision rounding, then one quantisation
            // step (max/127 for q8, max/16 for q5, max/8 for q4: ggml clamps the far end of the range a step).
            let tol = match t.ggml_type {
                GgmlType::F32 => 0.0,
                GgmlType::F16 => 4e-3,
                GgmlType::BF16 => 3e-2,
                GgmlType::Q8_0 => 0.03,
                GgmlType::Q5_0 | GgmlType::Q5_1 => 0.5,
                _ => 1.0,
            };
            let worst = back
                .data
                .iter()
                .zip(&values)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst <= tol, "{}: max error {worst}", t.ggml_type);
        }
        // And an independent reader agrees on the layout.
        let bytes = std::fs::read(&path).unwrap();
        let g = ggus::GGuf::new(&bytes).unwrap();
        assert_eq!(g.tensors.len(), tensors.len());
        assert_eq!(g.meta_kvs.len(), metadata.len());
    }

    #[test]
    fn refuses_what_it_cannot_write_and_leaves_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.gguf");
        std::fs::write(&path, b"old").unwrap();
        let one = |ty, shape: &[usize]| vec![spec("w", shape, ty)];
        let mut zeros = |_: usize| Ok(vec![0u8; 4 * 40]);
        // 40 columns are not whole 32-value blocks.
        let err = write_gguf(&path, &[], &one(GgmlType::Q8_0, &[1, 40]), &mut zeros)
            .unwrap_err()
            .to_string();
        assert!(err.contains("`w`") && err.contains("whole blocks"), "{err}");
        // The data callback's size must match the shape.
        let err = write_gguf(&path, &[], &one(GgmlType::F32, &[2, 40]), &mut zeros)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("160 bytes given") && err.contains("320"),
            "{err}"
        );
        let err = write_gguf(
            &path,
            &[("general.alignment".into(), MetaValue::U32(3))],
            &[],
            &mut zeros,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("general.alignment"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
        assert!(
            encode(&[f32::NAN], GgmlType::F32)
                .unwrap_err()
                .contains("NaN")
        );
        assert!(encode(&[0.0; 32], GgmlType::Q4_K).is_err());
    }

    fn scalar() -> impl proptest::strategy::Strategy<Value = MetaValue> {
        use proptest::prelude::*;
        prop_oneof![
            any::<u8>().prop_map(MetaValue::U8),
            any::<i16>().prop_map(MetaValue::I16),
            any::<u32>().prop_map(MetaValue::U32),
            any::<i64>().prop_map(MetaValue::I64),
            any::<u64>().prop_map(MetaValue::U64),
            (-1e30f64..1e30).prop_map(MetaValue::F64),
            (-1e30f32..1e30).prop_map(MetaValue::F32),
            any::<bool>().prop_map(MetaValue::Bool),
            ".{0,12}".prop_map(MetaValue::String),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(48))]
        /// Whatever metadata and f32 tensors go in come back from our reader unchanged.
        #[test]
        fn any_metadata_and_tensors_read_back(
            kvs in proptest::collection::vec((scalar(), 0usize..4), 0..12),
            shapes in proptest::collection::vec(proptest::collection::vec(1usize..5, 1..4), 0..5),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("p.gguf");
            // Odd positions hold arrays of the scalar repeated, to cover type 9.
            let metadata: Vec<(String, MetaValue)> = kvs
                .into_iter()
                .enumerate()
                .map(|(i, (v, n))| {
                    let v = if i % 2 == 1 { MetaValue::Array(vec![v; n + 1]) } else { v };
                    (format!("k.{i}"), v)
                })
                .collect();
            let tensors: Vec<TensorSpec> = shapes
                .iter()
                .enumerate()
                .map(|(i, s)| spec(&format!("t{i}"), s, GgmlType::F32))
                .collect();
            let values = |i: usize| -> Vec<f32> {
                (0..tensors[i].shape.iter().product::<usize>()).map(|j| (i * 100 + j) as f32).collect()
            };
            write_gguf(&path, &metadata, &tensors, &mut |i| Ok(encode(&values(i), GgmlType::F32).unwrap()))
                .unwrap();
            let f = GgufFile::open(&path).unwrap();
            proptest::prop_assert_eq!(f.metadata().len(), metadata.len());
            for (k, v) in &metadata {
                proptest::prop_assert_eq!(f.get(k), Some(v));
            }
            for (i, t) in tensors.iter().enumerate() {
                let back = f.dequantize(&t.name).unwrap();
                proptest::prop_assert_eq!(&back.shape, &t.shape);
                proptest::prop_assert_eq!(back.data, values(i));
            }
        }
    }
}
