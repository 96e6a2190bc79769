//! Named f32 tensors in Hugging Face naming and layout: the one currency between file formats and the model.

use std::path::Path;

use crate::{FormatError, ModelConfig};

/// A dense f32 tensor, row-major, dimensions in PyTorch order (`[out, in]` for a linear weight).
#[derive(Clone, Debug, PartialEq)]
pub struct TensorF32 {
    /// Size of each dimension, outermost first.
    pub shape: Vec<usize>,
    /// The elements in row-major order; `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

impl TensorF32 {
    /// Checks that `data` holds exactly the elements `shape` implies.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self, FormatError> {
        let n: usize = shape.iter().product();
        if n != data.len() {
            return Err(FormatError::ShapeMismatch {
                what: format!("tensor of shape {shape:?}"),
                expected: n,
                found: data.len(),
            });
        }
        Ok(Self { shape, data })
    }

    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The transpose of a 2-D tensor (`[rows, cols]` to `[cols, rows]`), e.g. Hugging Face's `[out, in]` linear
    /// weights to the `[in, out]` layout Burn multiplies. Panics on another rank.
    pub fn transposed(&self) -> TensorF32 {
        let [rows, cols] = self.shape[..] else {
            panic!(
                "transposed() needs a 2-D tensor, got shape {:?}",
                self.shape
            );
        };
        let mut out = vec![0f32; rows * cols];
        // Blocked: a naive transpose strides through memory on the write side.
        const B: usize = 32;
        for r0 in (0..rows).step_by(B) {
            for c0 in (0..cols).step_by(B) {
                for r in r0..(r0 + B).min(rows) {
                    for c in c0..(c0 + B).min(cols) {
                        out[c * rows + r] = self.data[r * cols + c];
                    }
                }
            }
        }
        TensorF32 {
            shape: vec![cols, rows],
            data: out,
        }
    }
}

/// Hugging Face module names of one decoder layer's weights (`model.layers.{i}.<name>.weight`).
pub const LAYER_LINEARS: [&str; 7] = [
    "self_attn.q_proj",
    "self_attn.k_proj",
    "self_attn.v_proj",
    "self_attn.o_proj",
    "mlp.gate_proj",
    "mlp.up_proj",
    "mlp.down_proj",
];

/// Where a model's weights come from: a GGUF file or a Hugging Face folder.
///
/// Every source answers in Hugging Face names (`model.layers.0.self_attn.q_proj.weight`) and layout
/// (q/k rows in rotate-half order), so the model code has one convention to follow.
pub trait WeightSource: Send + Sync {
    /// The model's hyper-parameters.
    fn config(&self) -> &ModelConfig;
    /// The file or folder the weights are read from (for error messages).
    fn path(&self) -> &Path;
    /// Hugging Face names of every tensor the source holds.
    fn tensor_names(&self) -> Vec<String>;
    /// Reads (and dequantises) one tensor.
    fn tensor(&self, name: &str) -> Result<TensorF32, FormatError>;
    /// Storage type of one tensor as the file holds it (`Q4_1`, `F32`, `BF16`, ...), for `engram info`.
    fn stored_dtype(&self, name: &str) -> Option<String>;
}
