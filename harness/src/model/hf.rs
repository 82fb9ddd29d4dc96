//! Hugging Face checkpoints of BitNet b1.58 (`model_type` "bitnet"): a
//! directory with `config.json` and `model.safetensors` (memory-mapped).
//!
//! Two weight layouts are read:
//! - master weights (bf16/f16/f32), ternarized at load with BitNet's absmean
//!   rule, which is what transformers does at every forward in "online" mode;
//! - the packed layout of microsoft/bitnet-b1.58-2B-4T ("offline",
//!   `linear_class` bitlinear): a uint8 tensor of shape (out/4, in) whose bits
//!   2i..2i+1 at [r, c] hold the code w+1 of row r + i*(out/4), column c, and a
//!   one-element `weight_scale` that is the *inverse* scale 1/mean|W|
//!   (transformers' BitLinear divides by it).
//!
//! Names follow transformers' BitNetForCausalLM; the embedding is tied to the
//! lm_head. transformers never quantizes the lm_head; here it runs through
//! the f16/q8_0/q4_0/q6_k kernel chosen for the lm_head (f16 by default).

use super::config::{FfnActivation, ModelConfig};
use super::safetensors::{Dtype, SafeTensors};
use super::weights::WeightSource;
use anyhow::{bail, Context};
use serde_json::Value;
use std::path::{Path, PathBuf};
use ternbench_kernels::formats::{DenseMatrix, TernaryMatrix, Weights};

/// Largest config.json accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// How the linear layers are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinearLayout {
    /// Real-valued master weights, ternarized at load.
    Master,
    /// uint8 codes packed along the output dimension plus an inverse weight_scale.
    Packed,
}

pub struct HfCheckpoint {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub layout: LinearLayout,
    tensors: SafeTensors,
}

fn usize_field(cfg: &Value, file: &Path, key: &str) -> anyhow::Result<Option<usize>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .filter(|&n| n <= u32::MAX as u64)
            .map(|n| Some(n as usize))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{}: field '{key}' = {v}; expected a non-negative integer",
                    file.display()
                )
            }),
    }
}

fn f32_field(cfg: &Value, key: &str) -> Option<f32> {
    cfg.get(key).and_then(Value::as_f64).map(|v| v as f32)
}

/// Maps a transformers `config.json` onto a [`ModelConfig`].
pub fn parse_config(
    text: &str,
    file: &Path,
    name: &str,
) -> anyhow::Result<(ModelConfig, Option<Value>)> {
    let cfg: Value = serde_json::from_str(text)
        .with_context(|| format!("{}: not valid JSON", file.display()))?;
    let need = |key: &str| -> anyhow::Result<usize> {
        usize_field(&cfg, file, key)?
            .ok_or_else(|| anyhow::anyhow!("{}: field '{key}' is missing", file.display()))
    };
    if let Some(t) = cfg.get("model_type").and_then(Value::as_str) {
        if t != "bitnet" {
            bail!(
                "{}: model_type = \"{t}\"; expected \"bitnet\"",
                file.display()
            );
        }
    }
    let hidden = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    let kv_heads = usize_field(&cfg, file, "num_key_value_heads")?.unwrap_or(heads);
    let head_dim =
        usize_field(&cfg, file, "head_dim")?.unwrap_or(hidden.checked_div(heads).unwrap_or(0));
    let ffn_activation = match cfg.get("hidden_act").and_then(Value::as_str) {
        Some("relu2") => FfnActivation::Relu2Gated,
        Some("silu") => FfnActivation::SiluGated,
        other => bail!(
            "{}: hidden_act = {other:?}; expected \"relu2\" or \"silu\"",
            file.display()
        ),
    };
    // transformers 5 nests rope_theta in rope_parameters; 4.x has it at the top.
    let rope_theta = cfg
        .get("rope_parameters")
        .and_then(|r| f32_field(r, "rope_theta"))
        .or_else(|| f32_field(&cfg, "rope_theta"))
        .unwrap_or(10000.0);
    let tied = cfg
        .get("tie_word_embeddings")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    if !tied {
        bail!(
            "{}: tie_word_embeddings = false; only tied embeddings are supported",
            file.display()
        );
    }
    let config = ModelConfig {
        name: name.to_string(),
        hidden,
        ffn: need("intermediate_size")?,
        layers: need("num_hidden_layers")?,
        heads,
        kv_heads,
        head_dim,
        vocab: need("vocab_size")?,
        ffn_activation,
        rope_theta,
        norm_eps: f32_field(&cfg, "rms_norm_eps").unwrap_or(1e-5),
        tied_embeddings: true,
    };
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    if config.q_dim() != hidden {
        bail!(
            "{}: heads x head_dim = {} differs from hidden_size = {hidden}; transformers' attn_sub_norm needs them equal",
            file.display(),
            config.q_dim()
        );
    }
    Ok((config, cfg.get("quantization_config").cloned()))
}

impl HfCheckpoint {
    /// Opens a checkpoint directory (or its config.json).
    pub fn open(path: &Path) -> anyhow::Result<HfCheckpoint> {
        let dir = if path.is_dir() {
            path.to_path_buf()
        } else {
            path.parent().unwrap_or(Path::new(".")).to_path_buf()
        };
        let config_path = dir.join("config.json");
        let meta = std::fs::metadata(&config_path)
            .with_context(|| format!("{}: cannot read", config_path.display()))?;
        if meta.len() > MAX_CONFIG_BYTES {
            bail!(
                "{}: {} bytes; expected at most {MAX_CONFIG_BYTES}",
                config_path.display(),
                meta.len()
            );
        }
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("{}: cannot read", config_path.display()))?;
        let name = dir
            .file_name()
            .map_or("checkpoint".into(), |n| n.to_string_lossy().into_owned());
        let (config, quant) = parse_config(&text, &config_path, &name)?;
        let tensors = SafeTensors::open(&dir.join("model.safetensors"))?;
        let q_proj = "model.layers.0.self_attn.q_proj.weight";
        let layout = match tensors.info(q_proj).map(|i| i.dtype) {
            Some(Dtype::U8) => LinearLayout::Packed,
            Some(Dtype::BF16 | Dtype::F16 | Dtype::F32) => LinearLayout::Master,
            Some(other) => bail!(
                "{}: tensor '{q_proj}' has dtype {other:?}; expected U8 (packed) or BF16/F16/F32",
                tensors.path().display()
            ),
            None => bail!(
                "{}: tensor '{q_proj}' is missing; is this a BitNet checkpoint?",
                tensors.path().display()
            ),
        };
        if let Some(q) = &quant {
            let class = q
                .get("linear_class")
                .and_then(Value::as_str)
                .unwrap_or("bitlinear");
            if layout == LinearLayout::Packed && class == "autobitlinear" {
                // AutoBitLinear in offline mode multiplies by weight_scale where BitLinear divides:
                // the two conventions disagree on the same tensor, so refuse to guess.
                bail!(
                    "{}: packed weights with linear_class \"autobitlinear\" multiply by weight_scale where \"bitlinear\" divides; only \"bitlinear\" is supported for packed checkpoints",
                    config_path.display()
                );
            }
        }
        Ok(HfCheckpoint {
            dir,
            config,
            layout,
            tensors,
        })
    }

    /// Checks that every tensor the config needs is present with the right shape
    /// (before anything is unpacked, so a mismatch is reported as bad input).
    pub fn check_shapes(&self) -> anyhow::Result<()> {
        let c = &self.config;
        let mut want: Vec<(String, Vec<usize>)> = vec![
            ("model.embed_tokens.weight".into(), vec![c.vocab, c.hidden]),
            ("model.norm.weight".into(), vec![c.hidden]),
        ];
        for l in 0..c.layers {
            for (name, rows, cols) in c.linear_shapes() {
                let key = format!(
                    "model.layers.{l}.{}.{name}.weight",
                    Self::layer_prefix(name)
                );
                let rows = match self.layout {
                    LinearLayout::Master => rows,
                    LinearLayout::Packed => rows / 4,
                };
                want.push((key, vec![rows, cols]));
            }
            want.push((
                format!("model.layers.{l}.input_layernorm.weight"),
                vec![c.hidden],
            ));
            want.push((
                format!("model.layers.{l}.post_attention_layernorm.weight"),
                vec![c.hidden],
            ));
            want.push((
                format!("model.layers.{l}.self_attn.attn_sub_norm.weight"),
                vec![c.q_dim()],
            ));
            want.push((
                format!("model.layers.{l}.mlp.ffn_sub_norm.weight"),
                vec![c.ffn],
            ));
        }
        for (key, shape) in want {
            match self.tensors.info(&key) {
                None => bail!(
                    "{}: tensor '{key}' is missing",
                    self.tensors.path().display()
                ),
                Some(i) if i.shape != shape => bail!(
                    "{}: tensor '{key}' has shape {:?}; expected {shape:?} for {}",
                    self.tensors.path().display(),
                    i.shape,
                    c
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    fn layer_prefix(name: &str) -> &'static str {
        match name {
            "q_proj" | "k_proj" | "v_proj" | "o_proj" | "attn_sub_norm" => "self_attn",
            _ => "mlp",
        }
    }
}

impl WeightSource for HfCheckpoint {
    fn describe(&self) -> String {
        self.dir.display().to_string()
    }

    fn linear(&self, layer: usize, name: &str) -> anyhow::Result<Weights> {
        let (_, rows, cols) = *self
            .config
            .linear_shapes()
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| anyhow::anyhow!("no linear layer called {name}"))?;
        let key = format!(
            "model.layers.{layer}.{}.{name}.weight",
            Self::layer_prefix(name)
        );
        match self.layout {
            LinearLayout::Master => {
                let values = self.tensors.f32_values(&key, &[rows, cols])?;
                Ok(Weights::Ternary(TernaryMatrix::from_absmean(
                    &DenseMatrix::new(rows, cols, values)?,
                )))
            }
            LinearLayout::Packed => {
                if rows % 4 != 0 {
                    bail!("{}: {key}: {rows} output rows are not a multiple of 4, which the packed layout needs", self.describe());
                }
                let quarter = rows / 4;
                let (info, bytes) = self.tensors.get(&key, &[quarter, cols])?;
                if info.dtype != Dtype::U8 {
                    bail!(
                        "{}: {key}: dtype {:?}; expected U8",
                        self.tensors.path().display(),
                        info.dtype
                    );
                }
                let scale_key = format!(
                    "model.layers.{layer}.{}.{name}.weight_scale",
                    Self::layer_prefix(name)
                );
                let inv = self.tensors.f32_values(&scale_key, &[1])?[0];
                if !(inv.is_finite() && inv > 0.0) {
                    bail!(
                        "{}: {scale_key} = {inv}; expected a positive inverse scale",
                        self.tensors.path().display()
                    );
                }
                let mut values = vec![0i8; rows * cols];
                for (r, packed_row) in bytes.chunks_exact(cols).enumerate() {
                    for (c, &byte) in packed_row.iter().enumerate() {
                        for i in 0..4 {
                            let code = (byte >> (2 * i)) & 3;
                            if code == 3 {
                                bail!("{}: {key}[{r}, {c}] holds code 3 in bits {}..{}; expected codes 0, 1 or 2", self.tensors.path().display(), 2 * i, 2 * i + 1);
                            }
                            values[(r + i * quarter) * cols + c] = code as i8 - 1;
                        }
                    }
                }
                Ok(Weights::Ternary(TernaryMatrix::new(
                    rows,
                    cols,
                    values,
                    1.0 / inv,
                )?))
            }
        }
    }

    fn norm(&self, layer: Option<usize>, name: &str) -> anyhow::Result<Vec<f32>> {
        let c = &self.config;
        let (key, len) = match (layer, name) {
            (None, "norm") => ("model.norm.weight".to_string(), c.hidden),
            (Some(l), "input_layernorm" | "post_attention_layernorm") => {
                (format!("model.layers.{l}.{name}.weight"), c.hidden)
            }
            (Some(l), "attn_sub_norm") => (
                format!("model.layers.{l}.self_attn.attn_sub_norm.weight"),
                c.q_dim(),
            ),
            (Some(l), "ffn_sub_norm") => {
                (format!("model.layers.{l}.mlp.ffn_sub_norm.weight"), c.ffn)
            }
            _ => bail!("no norm called {name}"),
        };
        Ok(self.tensors.f32_values(&key, &[len])?)
    }

    fn embedding(&self) -> anyhow::Result<DenseMatrix> {
        let (v, h) = (self.config.vocab, self.config.hidden);
        let values = self
            .tensors
            .f32_values("model.embed_tokens.weight", &[v, h])?;
        Ok(DenseMatrix::new(v, h, values)?)
    }
}
