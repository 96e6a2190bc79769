//! ggml tensor storage types: ids as GGUF stores them, names as llama.cpp prints them, block geometry.

use std::fmt;

/// Storage type of one GGUF tensor (`ggml_type` in ggml.h).
///
/// Ids ggml has retired (4, 5, 31–33, 36–38) and ids newer than this list are kept as [`GgmlType::Other`],
/// so a file using them still opens; only reading that tensor's data fails.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// IEEE 754 single precision.
    F32,
    /// IEEE 754 half precision.
    F16,
    /// bfloat16.
    BF16,
    /// IEEE 754 double precision.
    F64,
    /// 32 weights: f16 scale, 4-bit quants.
    Q4_0,
    /// 32 weights: f16 scale and minimum, 4-bit quants.
    Q4_1,
    /// 32 weights: f16 scale, 5-bit quants.
    Q5_0,
    /// 32 weights: f16 scale and minimum, 5-bit quants.
    Q5_1,
    /// 32 weights: f16 scale, 8-bit quants.
    Q8_0,
    /// 32 weights: f16 scale and sum, 8-bit quants (an activation format, rare in files).
    Q8_1,
    /// 256-weight super-block, 2-bit quants with 4-bit scales and minimums.
    Q2_K,
    /// 256-weight super-block, 3-bit quants with 6-bit scales.
    Q3_K,
    /// 256-weight super-block, 4-bit quants with 6-bit scales and minimums.
    Q4_K,
    /// 256-weight super-block, 5-bit quants with 6-bit scales and minimums.
    Q5_K,
    /// 256-weight super-block, 6-bit quants with 8-bit scales.
    Q6_K,
    /// 256-weight super-block, f32 scale, 8-bit quants (an activation format, rare in files).
    Q8_K,
    /// Importance-matrix 2-bit lattice quants.
    IQ2_XXS,
    /// Importance-matrix 2-bit lattice quants.
    IQ2_XS,
    /// Importance-matrix 3-bit lattice quants.
    IQ3_XXS,
    /// Importance-matrix 1-bit lattice quants.
    IQ1_S,
    /// 32 weights: f16 scale, 4-bit indices into a non-linear table.
    IQ4_NL,
    /// Importance-matrix 3-bit lattice quants.
    IQ3_S,
    /// Importance-matrix 2-bit lattice quants.
    IQ2_S,
    /// 256-weight super-block, 6-bit scales, 4-bit indices into the IQ4_NL table.
    IQ4_XS,
    /// 8-bit integer.
    I8,
    /// 16-bit integer.
    I16,
    /// 32-bit integer.
    I32,
    /// 64-bit integer.
    I64,
    /// Importance-matrix 1-bit lattice quants.
    IQ1_M,
    /// Ternary quants, base-3 packed.
    TQ1_0,
    /// Ternary quants, 2 bits each.
    TQ2_0,
    /// Microscaling FP4 (e2m1 values, e8m0 shared exponent).
    MXFP4,
    /// A type id engram does not know (or that ggml has retired).
    Other(u32),
}

impl GgmlType {
    /// The type for a `ggml_type` id as stored in a GGUF tensor info.
    pub fn from_id(id: u32) -> Self {
        use GgmlType::*;
        match id {
            0 => F32,
            1 => F16,
            2 => Q4_0,
            3 => Q4_1,
            6 => Q5_0,
            7 => Q5_1,
            8 => Q8_0,
            9 => Q8_1,
            10 => Q2_K,
            11 => Q3_K,
            12 => Q4_K,
            13 => Q5_K,
            14 => Q6_K,
            15 => Q8_K,
            16 => IQ2_XXS,
            17 => IQ2_XS,
            18 => IQ3_XXS,
            19 => IQ1_S,
            20 => IQ4_NL,
            21 => IQ3_S,
            22 => IQ2_S,
            23 => IQ4_XS,
            24 => I8,
            25 => I16,
            26 => I32,
            27 => I64,
            28 => F64,
            29 => IQ1_M,
            30 => BF16,
            34 => TQ1_0,
            35 => TQ2_0,
            39 => MXFP4,
            other => Other(other),
        }
    }

    /// The `ggml_type` id, as written to a GGUF tensor info.
    pub fn id(self) -> u32 {
        use GgmlType::*;
        match self {
            F32 => 0,
            F16 => 1,
            Q4_0 => 2,
            Q4_1 => 3,
            Q5_0 => 6,
            Q5_1 => 7,
            Q8_0 => 8,
            Q8_1 => 9,
            Q2_K => 10,
            Q3_K => 11,
            Q4_K => 12,
            Q5_K => 13,
            Q6_K => 14,
            Q8_K => 15,
            IQ2_XXS => 16,
            IQ2_XS => 17,
            IQ3_XXS => 18,
            IQ1_S => 19,
            IQ4_NL => 20,
            IQ3_S => 21,
            IQ2_S => 22,
            IQ4_XS => 23,
            I8 => 24,
            I16 => 25,
            I32 => 26,
            I64 => 27,
            F64 => 28,
            IQ1_M => 29,
            BF16 => 30,
            TQ1_0 => 34,
            TQ2_0 => 35,
            MXFP4 => 39,
            Other(id) => id,
        }
    }

    /// `(elements per block, bytes per block)` as ggml defines them; `None` for [`GgmlType::Other`].
    ///
    /// Sizes follow ggml's `type_traits` (not ggml-quants' structs, whose `Q8K` uses an f16 scale where ggml
    /// stores f32).
    pub fn block_geometry(self) -> Option<(usize, usize)> {
        use GgmlType::*;
        const QK_K: usize = 256;
        Some(match self {
            F32 => (1, 4),
            F16 | BF16 => (1, 2),
            F64 => (1, 8),
            I8 => (1, 1),
            I16 => (1, 2),
            I32 => (1, 4),
            I64 => (1, 8),
            Q4_0 => (32, 18),
            Q4_1 => (32, 20),
            Q5_0 => (32, 22),
            Q5_1 => (32, 24),
            Q8_0 => (32, 34),
            Q8_1 => (32, 36),
            Q2_K => (QK_K, 84),
            Q3_K => (QK_K, 110),
            Q4_K => (QK_K, 144),
            Q5_K => (QK_K, 176),
            Q6_K => (QK_K, 210),
            Q8_K => (QK_K, 292),
            IQ2_XXS => (QK_K, 66),
            IQ2_XS => (QK_K, 74),
            IQ3_XXS => (QK_K, 98),
            IQ1_S => (QK_K, 50),
            IQ4_NL => (32, 18),
            IQ3_S => (QK_K, 110),
            IQ2_S => (QK_K, 82),
            IQ4_XS => (QK_K, 136),
            IQ1_M => (QK_K, 56),
            TQ1_0 => (QK_K, 54),
            TQ2_0 => (QK_K, 66),
            MXFP4 => (32, 17),
            Other(_) => return None,
        })
    }

    /// Elements per block (1 for plain types); `None` for [`GgmlType::Other`].
    pub fn block_size(self) -> Option<usize> {
        self.block_geometry().map(|(n, _)| n)
    }

    /// Bytes per block; `None` for [`GgmlType::Other`].
    pub fn type_size(self) -> Option<usize> {
        self.block_geometry().map(|(_, b)| b)
    }

    /// Whether engram can turn this type into f32 (see [`GgufFile::dequantize`](super::GgufFile::dequantize)).
    pub fn can_dequantize(self) -> bool {
        use GgmlType::*;
        matches!(
            self,
            F32 | F16
                | BF16
                | F64
                | Q4_0
                | Q4_1
                | Q5_0
                | Q5_1
                | Q8_0
                | Q8_1
                | Q2_K
                | Q3_K
                | Q4_K
                | Q5_K
                | Q6_K
                | Q8_K
                | IQ4_NL
                | IQ4_XS
        )
    }

    /// Name as llama.cpp and gguf-py print it (`Q4_1`, `Q6_K`, `BF16`).
    pub fn name(self) -> Option<&'static str> {
        use GgmlType::*;
        Some(match self {
            F32 => "F32",
            F16 => "F16",
            BF16 => "BF16",
            F64 => "F64",
            Q4_0 => "Q4_0",
            Q4_1 => "Q4_1",
            Q5_0 => "Q5_0",
            Q5_1 => "Q5_1",
            Q8_0 => "Q8_0",
            Q8_1 => "Q8_1",
            Q2_K => "Q2_K",
            Q3_K => "Q3_K",
            Q4_K => "Q4_K",
            Q5_K => "Q5_K",
            Q6_K => "Q6_K",
            Q8_K => "Q8_K",
            IQ2_XXS => "IQ2_XXS",
            IQ2_XS => "IQ2_XS",
            IQ3_XXS => "IQ3_XXS",
            IQ1_S => "IQ1_S",
            IQ4_NL => "IQ4_NL",
            IQ3_S => "IQ3_S",
            IQ2_S => "IQ2_S",
            IQ4_XS => "IQ4_XS",
            I8 => "I8",
            I16 => "I16",
            I32 => "I32",
            I64 => "I64",
            IQ1_M => "IQ1_M",
            TQ1_0 => "TQ1_0",
            TQ2_0 => "TQ2_0",
            MXFP4 => "MXFP4",
            Other(_) => return None,
        })
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.name(), self) {
            (Some(name), _) => f.write_str(name),
            (None, GgmlType::Other(id)) => write!(f, "ggml type #{id}"),
            (None, _) => write!(f, "ggml type #{}", self.id()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in 0..64 {
            assert_eq!(GgmlType::from_id(id).id(), id);
        }
        assert_eq!(GgmlType::from_id(4), GgmlType::Other(4));
        assert_eq!(GgmlType::Q4_1.to_string(), "Q4_1");
        assert_eq!(GgmlType::Other(99).to_string(), "ggml type #99");
    }

    #[test]
    fn legacy_sizes_match_ggml_quants_structs() {
        use std::mem::size_of;
        assert_eq!(
            GgmlType::Q4_0.type_size(),
            Some(size_of::<ggml_quants::Q4_0>())
        );
        assert_eq!(
            GgmlType::Q4_1.type_size(),
            Some(size_of::<ggml_quants::Q4_1>())
        );
        assert_eq!(
            GgmlType::Q5_0.type_size(),
            Some(size_of::<ggml_quants::Q5_0>())
        );
        assert_eq!(
            GgmlType::Q5_1.type_size(),
            Some(size_of::<ggml_quants::Q5_1>())
        );
        assert_eq!(
            GgmlType::Q8_0.type_size(),
            Some(size_of::<ggml_quants::Q8_0>())
        );
        assert_eq!(
            GgmlType::Q8_1.type_size(),
            Some(size_of::<ggml_quants::Q8_1>())
        );
        assert_eq!(
            GgmlType::Q4_K.type_size(),
            Some(size_of::<ggml_quants::Q4K>())
        );
        assert_eq!(
            GgmlType::Q5_K.type_size(),
            Some(size_of::<ggml_quants::Q5K>())
        );
        assert_eq!(
            GgmlType::Q6_K.type_size(),
            Some(size_of::<ggml_quants::Q6K>())
        );
    }
}
