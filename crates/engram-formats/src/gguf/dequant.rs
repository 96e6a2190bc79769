//! Turning a tensor's stored blocks into f32, in parallel over blocks.
//!
//! # Sources of truth
//!
//! - Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1 use `ggml-quants`' block types and their `dequantize`.
//! - Q2_K … Q6_K, Q8_K, IQ4_NL and IQ4_XS are written here from ggml's reference `dequantize_row_*` (ggml-quants.c):
//!   `ggml-quants` 0.1.0 declares the K-quant block structs, but their `dequantize` is `todo!()` (it panics), and its
//!   `Q8K` stores an f16 scale where ggml stores f32. The tests check these against values computed by gguf-py.
//!
//! # Alignment
//!
//! A tensor's bytes come straight from the memory map (or a `Vec<u8>`) at whatever offset the file chose, so they
//! are not aligned for the `f16` fields of ggml-quants' `#[repr(C)]` blocks. No block is ever cast from the bytes:
//! every field is decoded with `from_le_bytes` from a `&[u8; TYPE_SIZE]` and the block struct is then built by
//! value, so there is no `unsafe`, no alignment requirement and no dependence on host byte order.

use half::{bf16, f16};
use rayon::prelude::*;

use ggml_quants::{DeltaMin, Quantize};

use super::GgmlType;

/// Elements per K-quant super-block.
const QK_K: usize = 256;

/// Why a dequantisation could not run (the caller adds the file path and tensor name).
#[derive(Debug)]
pub(super) enum DequantError {
    /// engram has no decoder for this type.
    Unsupported,
    /// The byte count does not match the element count (callers check this first; kept so no path panics).
    SizeMismatch,
}

/// Whether [`dequantize_into`] has a decoder for `ty`.
pub(super) fn decodable(ty: GgmlType) -> bool {
    use GgmlType as T;
    matches!(
        ty,
        T::F32
            | T::F16
            | T::BF16
            | T::F64
            | T::Q4_0
            | T::Q4_1
            | T::Q5_0
            | T::Q5_1
            | T::Q8_0
            | T::Q8_1
            | T::Q2_K
            | T::Q3_K
            | T::Q4_K
            | T::Q5_K
            | T::Q6_K
            | T::Q8_K
            | T::IQ4_NL
            | T::IQ4_XS
    )
}

/// Decodes `src` (a whole tensor of type `ty`) into `dst`, which must hold exactly the tensor's element count.
pub(super) fn dequantize_into(
    ty: GgmlType,
    src: &[u8],
    dst: &mut [f32],
) -> Result<(), DequantError> {
    use GgmlType as T;
    match ty {
        T::F32 => blocks::<4, 1>(src, dst, |b, o| o[0] = f32::from_le_bytes(*b)),
        T::F16 => blocks::<2, 1>(src, dst, |b, o| o[0] = f16::from_le_bytes(*b).to_f32()),
        T::BF16 => blocks::<2, 1>(src, dst, |b, o| o[0] = bf16::from_le_bytes(*b).to_f32()),
        T::F64 => blocks::<8, 1>(src, dst, |b, o| o[0] = f64::from_le_bytes(*b) as f32),
        T::Q4_0 => blocks::<18, 32>(src, dst, |b, o| *o = q4_0(b).dequantize()),
        T::Q4_1 => blocks::<20, 32>(src, dst, |b, o| *o = q4_1(b).dequantize()),
        T::Q5_0 => blocks::<22, 32>(src, dst, |b, o| *o = q5_0(b).dequantize()),
        T::Q5_1 => blocks::<24, 32>(src, dst, |b, o| *o = q5_1(b).dequantize()),
        T::Q8_0 => blocks::<34, 32>(src, dst, |b, o| *o = q8_0(b).dequantize()),
        T::Q8_1 => blocks::<36, 32>(src, dst, |b, o| *o = q8_1(b).dequantize()),
        T::Q2_K => blocks::<84, QK_K>(src, dst, q2_k),
        T::Q3_K => blocks::<110, QK_K>(src, dst, q3_k),
        T::Q4_K => blocks::<144, QK_K>(src, dst, q4_k),
        T::Q5_K => blocks::<176, QK_K>(src, dst, q5_k),
        T::Q6_K => blocks::<210, QK_K>(src, dst, q6_k),
        T::Q8_K => blocks::<292, QK_K>(src, dst, q8_k),
        T::IQ4_NL => blocks::<18, 32>(src, dst, iq4_nl),
        T::IQ4_XS => blocks::<136, QK_K>(src, dst, iq4_xs),
        _ => Err(DequantError::Unsupported),
    }
}

/// Elements per rayon task for plain (block size 1) types: large enough that scheduling costs nothing.
const MIN_ELEMENTS_PER_TASK: usize = 1 << 14;

/// Runs `f` on every `B`-byte block of `src` and its `N` outputs in `dst`, in parallel.
fn blocks<const B: usize, const N: usize>(
    src: &[u8],
    dst: &mut [f32],
    f: impl Fn(&[u8; B], &mut [f32; N]) + Sync,
) -> Result<(), DequantError> {
    let (src_blocks, src_rest) = src.as_chunks::<B>();
    let (dst_blocks, dst_rest) = dst.as_chunks_mut::<N>();
    if !src_rest.is_empty() || !dst_rest.is_empty() || src_blocks.len() != dst_blocks.len() {
        return Err(DequantError::SizeMismatch);
    }
    let min_len = MIN_ELEMENTS_PER_TASK.div_ceil(N);
    src_blocks
        .par_iter()
        .zip(dst_blocks.par_iter_mut())
        .with_min_len(min_len)
        .for_each(|(b, o)| f(b, o));
    Ok(())
}

fn half(lo: u8, hi: u8) -> f16 {
    f16::from_le_bytes([lo, hi])
}

fn q4_0(b: &[u8; 18]) -> ggml_quants::Q4_0 {
    let [d0, d1, quants @ ..] = *b;
    ggml_quants::Q4_0 {
        delta: half(d0, d1),
        quants,
    }
}

fn q4_1(b: &[u8; 20]) -> ggml_quants::Q4_1 {
    let [d0, d1, m0, m1, quants @ ..] = *b;
    ggml_quants::Q4_1 {
        delta_min: DeltaMin {
            delta: half(d0, d1),
            min: half(m0, m1),
        },
        quants,
    }
}

fn q5_0(b: &[u8; 22]) -> ggml_quants::Q5_0 {
    let [d0, d1, h0, h1, h2, h3, ql @ ..] = *b;
    ggml_quants::Q5_0 {
        delta: half(d0, d1),
        qh: [h0, h1, h2, h3],
        ql,
    }
}

fn q5_1(b: &[u8; 24]) -> ggml_quants::Q5_1 {
    let [d0, d1, m0, m1, h0, h1, h2, h3, ql @ ..] = *b;
    ggml_quants::Q5_1 {
        delta_min: DeltaMin {
            delta: half(d0, d1),
            min: half(m0, m1),
        },
        qh: [h0, h1, h2, h3],
        ql,
    }
}

fn q8_0(b: &[u8; 34]) -> ggml_quants::Q8_0 {
    let [d0, d1, quants @ ..] = *b;
    ggml_quants::Q8_0 {
        delta: half(d0, d1),
        quants: quants.map(|q| q as i8),
    }
}

fn q8_1(b: &[u8; 36]) -> ggml_quants::Q8_1 {
    let [d0, d1, s0, s1, quants @ ..] = *b;
    ggml_quants::Q8_1 {
        delta: half(d0, d1),
        sum: half(s0, s1),
        quants: quants.map(|q| q as i8),
    }
}

/// `block_q2_K`: scales[16] (low nibble scale, high nibble min), qs[64] (2-bit), d, dmin.
fn q2_k(b: &[u8; 84], y: &mut [f32; QK_K]) {
    let (scales, rest) = b.split_at(16);
    let (qs, rest) = rest.split_at(64);
    let d = half(rest[0], rest[1]).to_f32();
    let dmin = half(rest[2], rest[3]).to_f32();
    let mut out = 0;
    let mut is = 0;
    for q in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for half_q in q.chunks_exact(16) {
                let sc = scales[is];
                is += 1;
                let dl = d * f32::from(sc & 0xF);
                let ml = dmin * f32::from(sc >> 4);
                for &x in half_q {
                    y[out] = dl * f32::from((x >> shift) & 3) - ml;
                    out += 1;
                }
            }
        }
    }
}

/// `block_q3_K`: hmask[32] (high bit, set = no offset), qs[64] (low 2 bits), scales[12] (16 × 6-bit), d.
fn q3_k(b: &[u8; 110], y: &mut [f32; QK_K]) {
    let (hmask, rest) = b.split_at(32);
    let (qs, rest) = rest.split_at(64);
    let (packed, d) = rest.split_at(12);
    let d_all = half(d[0], d[1]).to_f32();
    let mut scales = [0i8; 16];
    for (k, s) in scales.iter_mut().enumerate() {
        let low = if k < 8 {
            packed[k] & 0xF
        } else {
            packed[k - 8] >> 4
        };
        let high = (packed[8 + k % 4] >> (2 * (k / 4))) & 3;
        *s = (low | (high << 4)) as i8 - 32;
    }
    let mut out = 0;
    let mut is = 0;
    let mut m = 1u8;
    for q in qs.chunks_exact(32) {
        for shift in [0, 2, 4, 6] {
            for (half_q, half_h) in q.chunks_exact(16).zip(hmask.chunks_exact(16)) {
                let dl = d_all * f32::from(scales[is]);
                is += 1;
                for (&x, &h) in half_q.iter().zip(half_h) {
                    let low = ((x >> shift) & 3) as i8;
                    let q = if h & m != 0 { low } else { low - 4 };
                    y[out] = dl * f32::from(q);
                    out += 1;
                }
            }
            m <<= 1;
        }
    }
}

/// The 6-bit scale and min of sub-block `j` (0..8) of Q4_K/Q5_K (`get_scale_min_k4`).
fn scale_min_k4(j: usize, q: &[u8]) -> (u8, u8) {
    if j < 4 {
        (q[j] & 63, q[j + 4] & 63)
    } else {
        (
            (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4),
            (q[j + 4] >> 4) | ((q[j] >> 6) << 4),
        )
    }
}

/// `block_q4_K`: d, dmin, scales[12] (8 × 6-bit scale + min), qs[128] (4-bit).
fn q4_k(b: &[u8; 144], y: &mut [f32; QK_K]) {
    let d = half(b[0], b[1]).to_f32();
    let dmin = half(b[2], b[3]).to_f32();
    let (scales, qs) = b[4..].split_at(12);
    for (k, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * k, scales);
        let (sc2, m2) = scale_min_k4(2 * k + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (lo, hi) = out.split_at_mut(32);
        for ((&x, l), h) in q.iter().zip(lo).zip(hi) {
            *l = d1 * f32::from(x & 0xF) - m1;
            *h = d2 * f32::from(x >> 4) - m2;
        }
    }
}

/// `block_q5_K`: d, dmin, scales[12], qh[32] (fifth bits), qs[128] (low 4 bits).
fn q5_k(b: &[u8; 176], y: &mut [f32; QK_K]) {
    let d = half(b[0], b[1]).to_f32();
    let dmin = half(b[2], b[3]).to_f32();
    let (scales, rest) = b[4..].split_at(12);
    let (qh, qs) = rest.split_at(32);
    for (k, (q, out)) in qs.chunks_exact(32).zip(y.chunks_exact_mut(64)).enumerate() {
        let (sc1, m1) = scale_min_k4(2 * k, scales);
        let (sc2, m2) = scale_min_k4(2 * k + 1, scales);
        let (d1, m1) = (d * f32::from(sc1), dmin * f32::from(m1));
        let (d2, m2) = (d * f32::from(sc2), dmin * f32::from(m2));
        let (u1, u2) = (1u8 << (2 * k), 2u8 << (2 * k));
        let (lo, hi) = out.split_at_mut(32);
        for (((&x, &h), l), hv) in q.iter().zip(qh).zip(lo).zip(hi) {
            let q1 = (x & 0xF) + if h & u1 != 0 { 16 } else { 0 };
            let q2 = (x >> 4) + if h & u2 != 0 { 16 } else { 0 };
            *l = d1 * f32::from(q1) - m1;
            *hv = d2 * f32::from(q2) - m2;
        }
    }
}

/// `block_q6_K`: ql[128] (low 4 bits), qh[64] (high 2 bits), scales[16] (i8), d.
fn q6_k(b: &[u8; 210], y: &mut [f32; QK_K]) {
    let (ql, rest) = b.split_at(128);
    let (qh, rest) = rest.split_at(64);
    let (scales, d) = rest.split_at(16);
    let d = half(d[0], d[1]).to_f32();
    for (n, out) in y.chunks_exact_mut(128).enumerate() {
        let ql = &ql[64 * n..64 * n + 64];
        let qh = &qh[32 * n..32 * n + 32];
        let sc = &scales[8 * n..8 * n + 8];
        for l in 0..32 {
            let is = l / 16;
            let q1 = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            let q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            let q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            let q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
            out[l] = d * f32::from(sc[is] as i8) * f32::from(q1);
            out[l + 32] = d * f32::from(sc[is + 2] as i8) * f32::from(q2);
            out[l + 64] = d * f32::from(sc[is + 4] as i8) * f32::from(q3);
            out[l + 96] = d * f32::from(sc[is + 6] as i8) * f32::from(q4);
        }
    }
}

/// `block_q8_K`: d (f32), qs[256] (i8), bsums[16] (i16, unused here).
fn q8_k(b: &[u8; 292], y: &mut [f32; QK_K]) {
    let d = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    for (o, &q) in y.iter_mut().zip(&b[4..4 + QK_K]) {
        *o = d * f32::from(q as i8);
    }
}

/// ggml's `kvalues_iq4nl`: the non-linear 4-bit code book of IQ4_NL and IQ4_XS.
const KVALUES_IQ4NL: [i8; 16] = [
    -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113,
];

/// `block_iq4_nl`: d, qs[16] (4-bit indices into [`KVALUES_IQ4NL`]).
fn iq4_nl(b: &[u8; 18], y: &mut [f32; 32]) {
    let d = half(b[0], b[1]).to_f32();
    let (lo, hi) = y.split_at_mut(16);
    for ((&x, l), h) in b[2..].iter().zip(lo).zip(hi) {
        *l = d * f32::from(KVALUES_IQ4NL[usize::from(x & 0xF)]);
        *h = d * f32::from(KVALUES_IQ4NL[usize::from(x >> 4)]);
    }
}

/// `block_iq4_xs`: d, scales_h (u16, 2 high bits per sub-block), scales_l[4] (4 low bits), qs[128].
fn iq4_xs(b: &[u8; 136], y: &mut [f32; QK_K]) {
    let d = half(b[0], b[1]).to_f32();
    let scales_h = u16::from_le_bytes([b[2], b[3]]);
    let scales_l = &b[4..8];
    let qs = &b[8..];
    for (ib, (q, out)) in qs.chunks_exact(16).zip(y.chunks_exact_mut(32)).enumerate() {
        let low = (scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF;
        let high = ((scales_h >> (2 * ib)) & 3) as u8;
        let dl = d * f32::from((low | (high << 4)) as i8 - 32);
        let (lo, hi) = out.split_at_mut(16);
        for ((&x, l), h) in q.iter().zip(lo).zip(hi) {
            *l = dl * f32::from(KVALUES_IQ4NL[usize::from(x & 0xF)]);
            *h = dl * f32::from(KVALUES_IQ4NL[usize::from(x >> 4)]);
        }
    }
}
