//! Model architectures: the presets of `configs/model-presets.csv`
//! (embedded) and custom shapes from a TOML file.
//!
//! Every model is a BitNet b1.58 decoder: RMSNorm, attention with RoPE
//! (rotate-half pairing), an `attn_sub_norm` before o_proj, a gated FFN
//! (squared ReLU for 2B4T, SiLU for the llama-like 1bitLLM models) with an
//! `ffn_sub_norm` before down_proj, a final norm and a tied lm_head.

use serde::Deserialize;
use std::fmt;

/// The presets, copied from the published configs (see the `source` column).
pub const PRESETS_CSV: &str = include_str!("../../../configs/model-presets.csv");

/// The gate activation of the FFN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FfnActivation {
    /// relu(gate)^2 * up (BitNet b1.58 2B4T).
    Relu2Gated,
    /// silu(gate) * up (llama-like).
    SiluGated,
}

impl FfnActivation {
    pub fn name(self) -> &'static str {
        match self {
            FfnActivation::Relu2Gated => "relu2-gated",
            FfnActivation::SiluGated => "silu-gated",
        }
    }
}

/// A decoder-only BitNet b1.58 architecture.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub hidden: usize,
    pub ffn: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub ffn_activation: FfnActivation,
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f32,
    #[serde(default = "default_norm_eps")]
    pub norm_eps: f32,
    #[serde(default = "default_true")]
    pub tied_embeddings: bool,
}

fn default_rope_theta() -> f32 {
    10000.0
}
fn default_norm_eps() -> f32 {
    1e-5
}
fn default_true() -> bool {
    true
}

/// Errors from presets and model config files.
#[derive(Debug, thiserror::Error)]
pub enum ModelConfigError {
    #[error("unknown model '{name}'; expected a preset ({presets}) or a .toml/.gguf file or checkpoint directory")]
    UnknownPreset { name: String, presets: String },
    #[error("{file}: {message}")]
    Invalid { file: String, message: String },
}

impl ModelConfig {
    /// Every preset, in file order.
    pub fn presets() -> Vec<ModelConfig> {
        let mut reader = csv::Reader::from_reader(PRESETS_CSV.as_bytes());
        reader
            .records()
            .map(|r| {
                let r = r.expect("the embedded presets file is valid CSV");
                let num = |i: usize| -> usize {
                    r[i].parse().expect("embedded preset numbers are valid")
                };
                ModelConfig {
                    name: r[0].to_string(),
                    hidden: num(1),
                    ffn: num(2),
                    layers: num(3),
                    heads: num(4),
                    kv_heads: num(5),
                    head_dim: num(6),
                    vocab: num(7),
                    ffn_activation: match &r[8] {
                        "relu2-gated" => FfnActivation::Relu2Gated,
                        "silu-gated" => FfnActivation::SiluGated,
                        other => panic!("embedded preset has unknown activation {other}"),
                    },
                    rope_theta: r[10].parse().expect("embedded rope_theta is valid"),
                    norm_eps: 1e-5,
                    tied_embeddings: &r[11] == "true",
                }
            })
            .collect()
    }

    /// The preset called `name` (exact match).
    pub fn preset(name: &str) -> Result<ModelConfig, ModelConfigError> {
        let presets = Self::presets();
        presets
            .iter()
            .find(|p| p.name == name)
            .cloned()
            .ok_or_else(|| ModelConfigError::UnknownPreset {
                name: name.to_string(),
                presets: presets
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// A custom architecture from TOML (the fields of [`ModelConfig`]).
    pub fn from_toml(text: &str, file: &str) -> Result<ModelConfig, ModelConfigError> {
        let config: ModelConfig = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            ModelConfigError::Invalid {
                file: file.to_string(),
                message: format!("line {line}: {}", e.message()),
            }
        })?;
        config
            .validate()
            .map_err(|message| ModelConfigError::Invalid {
                file: file.to_string(),
                message,
            })?;
        Ok(config)
    }

    /// Checks the shape is consistent and not absurd.
    pub fn validate(&self) -> Result<(), String> {
        let positive = [
            ("hidden", self.hidden),
            ("ffn", self.ffn),
            ("layers", self.layers),
            ("heads", self.heads),
            ("kv_heads", self.kv_heads),
            ("head_dim", self.head_dim),
            ("vocab", self.vocab),
        ];
        for (name, v) in positive {
            if v == 0 {
                return Err(format!("{name} = 0; expected at least 1"));
            }
            if v > 1 << 20 {
                return Err(format!("{name} = {v}; expected at most {}", 1 << 20));
            }
        }
        if !self.heads.is_multiple_of(self.kv_heads) {
            return Err(format!(
                "heads = {} is not a multiple of kv_heads = {}; expected kv_heads to divide heads",
                self.heads, self.kv_heads
            ));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err(format!(
                "head_dim = {} is odd; expected an even size for RoPE",
                self.head_dim
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(format!(
                "rope_theta = {}; expected a positive number",
                self.rope_theta
            ));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(format!(
                "norm_eps = {}; expected a positive number",
                self.norm_eps
            ));
        }
        if !self.tied_embeddings {
            return Err("tied_embeddings = false is not supported; expected true".into());
        }
        Ok(())
    }

    /// Output rows of q_proj (heads x head_dim).
    pub fn q_dim(&self) -> usize {
        self.heads * self.head_dim
    }

    /// Output rows of k_proj and v_proj (kv_heads x head_dim).
    pub fn kv_dim(&self) -> usize {
        self.kv_heads * self.head_dim
    }

    /// The seven linear layers of a block: (name, rows, cols).
    pub fn linear_shapes(&self) -> [(&'static str, usize, usize); 7] {
        let (h, f, q, kv) = (self.hidden, self.ffn, self.q_dim(), self.kv_dim());
        [
            ("q_proj", q, h),
            ("k_proj", kv, h),
            ("v_proj", kv, h),
            ("o_proj", h, q),
            ("gate_proj", f, h),
            ("up_proj", f, h),
            ("down_proj", h, f),
        ]
    }

    /// Weights of the linear layers of one block.
    pub fn params_per_layer(&self) -> u64 {
        self.linear_shapes()
            .iter()
            .map(|(_, r, c)| (*r * *c) as u64)
            .sum()
    }

    /// All parameters: linear layers plus the (tied) embedding; norms are negligible and counted too.
    pub fn n_params(&self) -> u64 {
        let norms =
            (self.layers * (2 * self.hidden + self.q_dim() + self.ffn) + self.hidden) as u64;
        self.params_per_layer() * self.layers as u64 + (self.vocab * self.hidden) as u64 + norms
    }
}

impl fmt::Display for ModelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: hidden {}, ffn {} ({}), {} layers, {} heads / {} kv heads of {}, vocab {}",
            self.name,
            self.hidden,
            self.ffn,
            self.ffn_activation.name(),
            self.layers,
            self.heads,
            self.kv_heads,
            self.head_dim,
            self.vocab
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_parse_and_are_consistent() {
        let presets = ModelConfig::presets();
        assert_eq!(presets.len(), 15);
        for p in &presets {
            p.validate().unwrap_or_else(|e| panic!("{}: {e}", p.name));
        }
        let b = ModelConfig::preset("bitnet-b1.58-2b4t").unwrap();
        assert_eq!(
            (b.heads, b.kv_heads, b.q_dim(), b.kv_dim()),
            (20, 5, 2560, 640)
        );
        assert_eq!(b.ffn_activation, FfnActivation::Relu2Gated);
        assert_eq!(b.rope_theta, 500000.0);
        // About 2.4 B parameters, a third of them (328 M) in the tied embedding.
        let n = b.n_params() as f64;
        assert!((2.3e9..2.5e9).contains(&n), "{n}");
    }

    #[test]
    fn dummy_100b_is_about_100b() {
        let n = ModelConfig::preset("dummy-100B").unwrap().n_params() as f64;
        assert!((0.95e11..1.05e11).contains(&n), "{n}");
    }

    #[test]
    fn unknown_preset_lists_the_known_ones() {
        let e = ModelConfig::preset("llama-7b").unwrap_err().to_string();
        assert!(e.contains("dummy-700M") && e.contains("llama-7b"), "{e}");
    }

    #[test]
    fn custom_toml_is_validated() {
        let ok = "name = \"tiny\"\nhidden = 64\nffn = 128\nlayers = 2\nheads = 4\nkv_heads = 2\nhead_dim = 16\nvocab = 100\nffn_activation = \"relu2-gated\"\n";
        let c = ModelConfig::from_toml(ok, "tiny.toml").unwrap();
        assert_eq!((c.rope_theta, c.norm_eps), (10000.0, 1e-5));
        let e = ModelConfig::from_toml(&ok.replace("kv_heads = 2", "kv_heads = 3"), "t.toml")
            .unwrap_err();
        assert!(e.to_string().contains("multiple of kv_heads"), "{e}");
        let e =
            ModelConfig::from_toml(&ok.replace("layers = 2", "layerz = 2"), "t.toml").unwrap_err();
        assert!(e.to_string().starts_with("t.toml: line 4"), "{e}");
    }
}
