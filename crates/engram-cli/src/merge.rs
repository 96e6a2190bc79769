//! `engram merge`: adapters folded into the weights, written as a Hugging Face folder.
//!
//! `engram_model::export_hf_folder` writes any [`WeightSource`]; [`ModelWeights`] is one over a loaded (and
//! merged) [`Llama`], answering in Hugging Face names and layouts.

use std::path::{Path, PathBuf};

use burn::tensor::Tensor;
use engram_formats::{FormatError, ModelConfig, TensorF32, WeightSource};
use engram_model::Llama;

/// The weights of a model in memory, read back from the device one tensor at a time.
pub(crate) struct ModelWeights<'a> {
    pub model: &'a Llama,
    /// Where the model was loaded from (for error messages).
    pub path: PathBuf,
}

/// Which tensor of the model a Hugging Face name is.
enum Slot<'a> {
    /// Stored as `[in, out]` by engram, `[out, in]` in Hugging Face files.
    Transposed(Tensor<2>),
    Plain2(Tensor<2>),
    Plain1(Tensor<1>),
    Missing(&'a str),
}

impl ModelWeights<'_> {
    fn slot<'n>(&self, name: &'n str) -> Slot<'n> {
        let m = self.model;
        match name {
            "model.embed_tokens.weight" => return Slot::Plain2(m.model.embed_tokens.weight.val()),
            "model.norm.weight" => return Slot::Plain1(m.model.norm.gamma.val()),
            "lm_head.weight" if !m.config().tie_word_embeddings => {
                return Slot::Transposed(m.lm_head.val());
            }
            _ => {}
        }
        let Some(rest) = name.strip_prefix("model.layers.") else {
            return Slot::Missing(name);
        };
        let Some((i, rest)) = rest.split_once('.') else {
            return Slot::Missing(name);
        };
        let Some(layer) = i.parse::<usize>().ok().and_then(|i| m.model.layers.get(i)) else {
            return Slot::Missing(name);
        };
        let (a, f) = (&layer.self_attn, &layer.mlp);
        let (module, param) = match rest.rsplit_once('.') {
            Some(x) => x,
            None => return Slot::Missing(name),
        };
        match (module, param) {
            ("input_layernorm", "weight") => {
                return Slot::Plain1(layer.input_layernorm.gamma.val());
            }
            ("post_attention_layernorm", "weight") => {
                return Slot::Plain1(layer.post_attention_layernorm.gamma.val());
            }
            _ => {}
        }
        let proj = match module {
            "self_attn.q_proj" => &a.q_proj,
            "self_attn.k_proj" => &a.k_proj,
            "self_attn.v_proj" => &a.v_proj,
            "self_attn.o_proj" => &a.o_proj,
            "mlp.gate_proj" => &f.gate_proj,
            "mlp.up_proj" => &f.up_proj,
            "mlp.down_proj" => &f.down_proj,
            _ => return Slot::Missing(name),
        };
        match (param, &proj.bias) {
            ("weight", _) => Slot::Transposed(proj.weight_f32()),
            ("bias", Some(b)) => Slot::Plain1(b.val()),
            _ => Slot::Missing(name),
        }
    }
}

impl WeightSource for ModelWeights<'_> {
    fn config(&self) -> &ModelConfig {
        self.model.config()
    }

    fn path(&self) -> &Path {
        &self.path
    }

    fn tensor_names(&self) -> Vec<String> {
        let m = self.model;
        let mut names = vec!["model.embed_tokens.weight".to_string()];
        for i in 0..m.model.layers.len() {
            names.push(format!("model.layers.{i}.input_layernorm.weight"));
            names.push(format!("model.layers.{i}.post_attention_layernorm.weight"));
        }
        for (module, proj) in m.projections() {
            names.push(format!("{module}.weight"));
            if proj.bias.is_some() {
                names.push(format!("{module}.bias"));
            }
        }
        names.push("model.norm.weight".into());
        if !m.config().tie_word_embeddings {
            names.push("lm_head.weight".into());
        }
        names
    }

    fn tensor(&self, name: &str) -> Result<TensorF32, FormatError> {
        let (shape, data) = match self.slot(name) {
            Slot::Transposed(t) => host(t.transpose()),
            Slot::Plain2(t) => host(t),
            Slot::Plain1(t) => host(t),
            Slot::Missing(n) => {
                return Err(FormatError::MissingTensor {
                    path: self.path.clone(),
                    tensor: n.to_string(),
                });
            }
        };
        let data = data.map_err(|reason| FormatError::Malformed {
            path: self.path.clone(),
            what: format!("tensor `{name}` cannot be read back from the device: {reason}"),
        })?;
        TensorF32::new(shape, data)
    }

    fn stored_dtype(&self, name: &str) -> Option<String> {
        (!matches!(self.slot(name), Slot::Missing(_))).then(|| "F32".to_string())
    }
}

/// A tensor's shape and f32 values, row-major, on the host.
fn host<const D: usize>(t: Tensor<D>) -> (Vec<usize>, Result<Vec<f32>, String>) {
    let shape = t.dims().to_vec();
    let data = t
        .into_data()
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| format!("{e:?}"));
    (shape, data)
}
