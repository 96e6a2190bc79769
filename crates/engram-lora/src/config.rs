//! LoRA hyper-parameters in PEFT's vocabulary, read from and written to PEFT's `adapter_config.json`.

use std::path::Path;

use serde_json::{Value, json};

use crate::LoraError;

/// The seven linear layers of a llama-family block, by Hugging Face module name.
pub const LINEAR_MODULES: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

/// Which linear layers get an adapter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TargetModules {
    /// These module names (`q_proj`, `v_proj`, ...).
    List(Vec<String>),
    /// PEFT's `"all-linear"`: every linear layer except the output head.
    AllLinear,
}

impl TargetModules {
    /// Parses a comma-separated list (`q_proj,v_proj`) or `all-linear`.
    pub fn parse(s: &str) -> Result<Self, LoraError> {
        let s = s.trim();
        if s == "all-linear" {
            return Ok(Self::AllLinear);
        }
        let list: Vec<String> = s
            .split(',')
            .map(|m| m.trim().to_owned())
            .filter(|m| !m.is_empty())
            .collect();
        let t = Self::List(list);
        t.validate()?;
        Ok(t)
    }

    /// Whether the module called `short` (`q_proj`) is targeted.
    pub fn matches(&self, short: &str) -> bool {
        match self {
            Self::AllLinear => LINEAR_MODULES.contains(&short),
            Self::List(l) => l.iter().any(|m| m == short),
        }
    }

    fn validate(&self) -> Result<(), LoraError> {
        if let Self::List(l) = self {
            if l.is_empty() {
                return Err(LoraError::invalid(
                    "target_modules",
                    "[]",
                    "name at least one module, or all-linear",
                ));
            }
            if let Some(bad) = l.iter().find(|m| !LINEAR_MODULES.contains(&m.as_str())) {
                return Err(LoraError::UnknownTarget(bad.clone()));
            }
        }
        Ok(())
    }

    fn to_json(&self) -> Value {
        match self {
            Self::AllLinear => json!("all-linear"),
            Self::List(l) => json!(l),
        }
    }
}

/// LoRA settings, named as in PEFT's `LoraConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct LoraConfig {
    /// Rank of the update.
    pub r: usize,
    /// Scale numerator: the update is multiplied by `lora_alpha / r` (or `/ sqrt(r)` with `use_rslora`).
    pub lora_alpha: f64,
    /// Dropout on the adapter's input during training, in `[0, 1)`.
    pub lora_dropout: f64,
    /// Rank-stabilised scaling `lora_alpha / sqrt(r)`.
    pub use_rslora: bool,
    /// Which linear layers of each block get an adapter.
    pub target_modules: TargetModules,
    /// Only these layer indices get adapters (`None`: all layers).
    pub layers_to_transform: Option<Vec<usize>>,
    /// Recorded in `adapter_config.json` (`base_model_name_or_path`).
    pub base_model: Option<String>,
}

impl Default for LoraConfig {
    /// r = 8, alpha = 16, no dropout, all seven projections: the setting the PyTorch reference used.
    fn default() -> Self {
        Self {
            r: 8,
            lora_alpha: 16.0,
            lora_dropout: 0.0,
            use_rslora: false,
            target_modules: TargetModules::AllLinear,
            layers_to_transform: None,
            base_model: None,
        }
    }
}

impl LoraConfig {
    /// The factor on `(x·A)·B`.
    pub fn scale(&self) -> f64 {
        if self.use_rslora {
            self.lora_alpha / (self.r as f64).sqrt()
        } else {
            self.lora_alpha / self.r as f64
        }
    }

    /// Checks ranges: `r` ≥ 1, finite `lora_alpha`, dropout in `[0, 1)`, known targets.
    pub fn validate(&self) -> Result<(), LoraError> {
        if self.r == 0 {
            return Err(LoraError::invalid("r", self.r, "must be at least 1"));
        }
        if !(self.lora_alpha.is_finite() && self.lora_alpha > 0.0) {
            return Err(LoraError::invalid(
                "lora_alpha",
                self.lora_alpha,
                "must be a positive number (the update is scaled by lora_alpha / r: 0 makes the adapter a \
                 no-op, a negative value only flips its sign)",
            ));
        }
        if !(0.0..1.0).contains(&self.lora_dropout) {
            return Err(LoraError::invalid(
                "lora_dropout",
                self.lora_dropout,
                "must be in [0, 1)",
            ));
        }
        self.target_modules.validate()
    }

    /// PEFT's `adapter_config.json` for this configuration (keys PEFT 0.21 reads; nothing it would reject).
    pub fn to_peft_json(&self) -> Value {
        json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": self.base_model,
            "r": self.r,
            "lora_alpha": number(self.lora_alpha),
            "lora_dropout": self.lora_dropout,
            "target_modules": self.target_modules.to_json(),
            "layers_to_transform": self.layers_to_transform,
            "use_rslora": self.use_rslora,
            "use_dora": false,
            "bias": "none",
            "fan_in_fan_out": false,
            "init_lora_weights": true,
            "inference_mode": true,
            "modules_to_save": null,
            "rank_pattern": {},
            "alpha_pattern": {},
            "revision": null,
        })
    }

    /// Reads a PEFT `adapter_config.json`. Settings engram does not implement (DoRA, bias training,
    /// per-module ranks, `modules_to_save`, another `peft_type`) are refused by name rather than ignored.
    pub fn from_peft_json(path: &Path, v: &Value) -> Result<Self, LoraError> {
        let bad = |reason: String| LoraError::Config {
            path: path.to_path_buf(),
            reason,
        };
        let obj = v
            .as_object()
            .ok_or_else(|| bad("expected a JSON object".into()))?;
        let peft_type = obj.get("peft_type").and_then(Value::as_str).unwrap_or("");
        if peft_type != "LORA" {
            return Err(bad(format!(
                "`peft_type` is {:?}; only LORA adapters are supported",
                obj.get("peft_type").unwrap_or(&Value::Null)
            )));
        }
        let truthy = |k: &str| obj.get(k).and_then(Value::as_bool).unwrap_or(false);
        for k in ["use_dora", "fan_in_fan_out", "lora_bias", "use_qalora"] {
            if truthy(k) {
                return Err(bad(format!("`{k}: true` is not supported")));
            }
        }
        if let Some(b) = obj.get("bias").and_then(Value::as_str)
            && b != "none"
        {
            return Err(bad(format!(
                "`bias: {b:?}` is not supported (only \"none\")"
            )));
        }
        for k in ["rank_pattern", "alpha_pattern"] {
            if obj
                .get(k)
                .and_then(Value::as_object)
                .is_some_and(|m| !m.is_empty())
            {
                return Err(bad(format!(
                    "`{k}` (per-module ranks/alphas) is not supported"
                )));
            }
        }
        if obj
            .get("modules_to_save")
            .is_some_and(|m| !m.is_null() && m.as_array().is_none_or(|a| !a.is_empty()))
        {
            return Err(bad("`modules_to_save` is not supported".into()));
        }
        let r = obj
            .get("r")
            .and_then(Value::as_u64)
            .ok_or_else(|| bad("`r` must be a positive integer".into()))? as usize;
        let lora_alpha = obj
            .get("lora_alpha")
            .and_then(Value::as_f64)
            .ok_or_else(|| bad("`lora_alpha` must be a number".into()))?;
        let lora_dropout = match obj.get("lora_dropout") {
            None | Some(Value::Null) => 0.0,
            Some(v) => v
                .as_f64()
                .ok_or_else(|| bad("`lora_dropout` must be a number".into()))?,
        };
        let target_modules = match obj.get("target_modules") {
            Some(Value::String(s)) if s == "all-linear" => TargetModules::AllLinear,
            Some(Value::String(s)) => {
                return Err(bad(format!(
                    "`target_modules` regex {s:?} is not supported; list the module names"
                )));
            }
            Some(Value::Array(a)) => TargetModules::List(
                a.iter()
                    .map(|m| {
                        m.as_str().map(str::to_owned).ok_or_else(|| {
                            bad(format!("`target_modules` entry {m} is not a string"))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(bad(format!(
                    "`target_modules` must be a list or \"all-linear\", found {}",
                    other.unwrap_or(&Value::Null)
                )));
            }
        };
        let layers_to_transform = match obj.get("layers_to_transform") {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(vec![
                n.as_u64()
                    .ok_or_else(|| bad(format!("`layers_to_transform` {n} is not a layer index")))?
                    as usize,
            ]),
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|n| {
                        n.as_u64().map(|n| n as usize).ok_or_else(|| {
                            bad(format!(
                                "`layers_to_transform` entry {n} is not a layer index"
                            ))
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Some(other) => {
                return Err(bad(format!(
                    "`layers_to_transform` must be a list of layer indices, found {other}"
                )));
            }
        };
        let config = Self {
            r,
            lora_alpha,
            lora_dropout,
            use_rslora: truthy("use_rslora"),
            target_modules,
            layers_to_transform,
            base_model: obj
                .get("base_model_name_or_path")
                .and_then(Value::as_str)
                .map(str::to_owned),
        };
        config.validate().map_err(|e| match e {
            LoraError::UnknownTarget(m) => bad(format!(
                "unknown target module `{m}` for a llama-family model (known: {})",
                LINEAR_MODULES.join(", ")
            )),
            other => bad(other.to_string()),
        })?;
        Ok(config)
    }
}

/// Integral alphas are written as integers, as PEFT writes them.
fn number(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peft_json_round_trips() {
        let c = LoraConfig {
            r: 4,
            lora_alpha: 8.0,
            lora_dropout: 0.05,
            use_rslora: true,
            target_modules: TargetModules::List(vec!["q_proj".into(), "down_proj".into()]),
            layers_to_transform: Some(vec![0, 3]),
            base_model: Some("SmolLM2".into()),
        };
        let v = c.to_peft_json();
        assert_eq!(v["lora_alpha"], json!(8));
        assert_eq!(LoraConfig::from_peft_json(Path::new("x"), &v).unwrap(), c);
        assert!((c.scale() - 4.0).abs() < 1e-12, "rslora: 8 / sqrt(4)");
    }

    #[test]
    fn refuses_what_it_cannot_do_by_name() {
        let base = LoraConfig::default().to_peft_json();
        for (key, value, needle) in [
            ("peft_type", json!("IA3"), "peft_type"),
            ("use_dora", json!(true), "use_dora"),
            ("bias", json!("all"), "bias"),
            ("rank_pattern", json!({"q_proj": 4}), "rank_pattern"),
            ("target_modules", json!(["c_attn"]), "c_attn"),
            ("target_modules", json!(".*proj"), "regex"),
            ("r", json!(0), "r"),
            ("lora_dropout", json!(1.5), "lora_dropout"),
            ("modules_to_save", json!(["lm_head"]), "modules_to_save"),
        ] {
            let mut v = base.clone();
            v[key] = value;
            let e = LoraConfig::from_peft_json(Path::new("cfg.json"), &v)
                .unwrap_err()
                .to_string();
            assert!(e.contains(needle) && e.contains("cfg.json"), "{key}: {e}");
        }
    }

    #[test]
    fn parses_target_lists() {
        assert_eq!(
            TargetModules::parse("all-linear").unwrap(),
            TargetModules::AllLinear
        );
        assert!(
            TargetModules::parse("q_proj, v_proj")
                .unwrap()
                .matches("v_proj")
        );
        assert!(matches!(
            TargetModules::parse("q_proj,qkv"),
            Err(LoraError::UnknownTarget(m)) if m == "qkv"
        ));
        assert!(TargetModules::parse("").is_err());
    }
}
