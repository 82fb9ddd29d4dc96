//! BitNet b1.58 models in GGUF files: llama.cpp's `bitnet` architecture
//! (and the bitnet.cpp fork's `bitnet-b1.58` / `bitnet-25`) mapped onto a
//! [`ModelConfig`] and served as a [`WeightSource`].
//!
//! Metadata: `{arch}.embedding_length`, `.feed_forward_length`,
//! `.block_count`, `.attention.head_count`, `.attention.head_count_kv`,
//! `.attention.key_length` (head_dim; hidden / heads when absent),
//! `.rope.freq_base`, `.attention.layer_norm_rms_epsilon`, `.vocab_size` (or
//! the embedding's rows) and `.hidden_activation` ("relu2"/"relu_sqr" for the
//! squared ReLU; SiLU when absent, llama.cpp's default for `bitnet`; the
//! fork's architectures always use the squared ReLU).
//!
//! Tensors: `token_embd` (tied lm_head), `output_norm`, and per block N
//! `blk.N.{attn_norm, attn_q, attn_k, attn_v, attn_sub_norm, attn_output,
//! ffn_norm, ffn_gate, ffn_up, ffn_sub_norm, ffn_down}.weight`, plus optional
//! one-element `blk.N.{..}.scale` tensors that multiply a linear layer's
//! output (llama.cpp's wq_s ...). RoPE pairs i with i + head_dim/2 in
//! llama.cpp's bitnet architecture (its NEOX rope type), as here, so q/k need
//! no permutation.
//!
//! Linear weights: TQ1_0/TQ2_0 blocks must share one scale (blocks whose
//! weights are all zero may carry any); I2_S carries its per-tensor scale in
//! its tail; F32/F16/Q8_0/Q4_0/Q6_K weights (the ternary values times the scale,
//! as llama.cpp's converter writes them) are read back by
//! [`ternary_from_dense`].

use super::config::{FfnActivation, ModelConfig};
use super::gguf::{Dialect, GgmlType, GgufError, GgufFile, TensorInfo, Value};
use super::weights::WeightSource;
use std::path::Path;
use ternbench_kernels::formats::i2s::I2sMatrix;
use ternbench_kernels::formats::q4_0::Q4_0Matrix;
use ternbench_kernels::formats::q6_k::Q6KMatrix;
use ternbench_kernels::formats::q8_0::Q8_0Matrix;
use ternbench_kernels::formats::tq1::{BlockTq1, Tq1Matrix};
use ternbench_kernels::formats::tq2::{BlockTq2, Tq2Matrix};
use ternbench_kernels::formats::{BlockMatrix, DenseMatrix, Format, TernaryMatrix, Weights};
use ternbench_kernels::PreparedWeights;

/// llama.cpp's tensor name of each linear layer.
pub fn gguf_linear_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "q_proj" => "attn_q",
        "k_proj" => "attn_k",
        "v_proj" => "attn_v",
        "o_proj" => "attn_output",
        "gate_proj" => "ffn_gate",
        "up_proj" => "ffn_up",
        "down_proj" => "ffn_down",
        _ => return None,
    })
}

/// llama.cpp's tensor name of each norm.
pub fn gguf_norm_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "attn_sub_norm" => "attn_sub_norm",
        "ffn_sub_norm" => "ffn_sub_norm",
        "norm" => "output_norm",
        _ => return None,
    })
}

/// The architecture names read.
pub const ARCHITECTURES: [&str; 3] = ["bitnet", "bitnet-b1.58", "bitnet-25"];

pub struct GgufModel {
    pub file: GgufFile,
    pub config: ModelConfig,
    pub architecture: String,
}

impl GgufModel {
    /// Opens a GGUF file and checks that every tensor the config needs is present with the right shape and a usable type.
    pub fn open(path: &Path, dialect: Option<Dialect>) -> Result<GgufModel, GgufError> {
        let file = GgufFile::open(path, dialect)?;
        let (config, architecture) = config_from(&file, path)?;
        let model = GgufModel {
            file,
            config,
            architecture,
        };
        model.check_tensors()?;
        Ok(model)
    }

    fn err(&self, m: String) -> GgufError {
        self.file.err(m)
    }

    /// The tensor `name` with shape (rows, cols) = dims [cols, rows] (or [len] for vectors).
    fn tensor(&self, name: &str, dims: &[u64]) -> Result<&TensorInfo, GgufError> {
        let t = self
            .file
            .tensor(name)
            .ok_or_else(|| self.err(format!("tensor '{name}' is missing")))?;
        if t.dims != dims {
            return Err(self.err(format!(
                "tensor '{name}' has dims {:?}; expected {dims:?} for {}",
                t.dims, self.config
            )));
        }
        Ok(t)
    }

    fn check_tensors(&self) -> Result<(), GgufError> {
        let c = &self.config;
        let emb = self.tensor("token_embd.weight", &[c.hidden as u64, c.vocab as u64])?;
        if !dense_type(emb.ty) {
            return Err(self.err(format!(
                "tensor 'token_embd.weight' is {}; expected F32, F16, Q8_0, Q4_0 or Q6_K",
                emb.ty.name()
            )));
        }
        if self.file.tensor("output.weight").is_some() {
            return Err(self.err(
                "tensor 'output.weight' is present (an untied lm_head); only models whose lm_head is tied to token_embd are supported".into(),
            ));
        }
        self.norm_tensor(None, "norm")?;
        for layer in 0..c.layers {
            for name in [
                "input_layernorm",
                "post_attention_layernorm",
                "attn_sub_norm",
                "ffn_sub_norm",
            ] {
                self.norm_tensor(Some(layer), name)?;
            }
            for (name, rows, cols) in c.linear_shapes() {
                let key = format!("blk.{layer}.{}.weight", gguf_linear_name(name).unwrap());
                let t = self.tensor(&key, &[cols as u64, rows as u64])?;
                if t.ty == GgmlType::I2S && cols % 128 != 0 {
                    return Err(self.err(format!(
                        "tensor '{key}' is I2_S with rows of {cols}; expected a multiple of 128"
                    )));
                }
                self.scale_of(layer, name)?;
            }
        }
        Ok(())
    }

    fn norm_tensor(&self, layer: Option<usize>, name: &str) -> Result<&TensorInfo, GgufError> {
        let c = &self.config;
        let len = match name {
            "attn_sub_norm" => c.q_dim(),
            "ffn_sub_norm" => c.ffn,
            _ => c.hidden,
        };
        let short =
            gguf_norm_name(name).ok_or_else(|| self.err(format!("no norm called {name}")))?;
        let key = match layer {
            Some(l) => format!("blk.{l}.{short}.weight"),
            None => format!("{short}.weight"),
        };
        let t = self.tensor(&key, &[len as u64])?;
        if !matches!(t.ty, GgmlType::F32 | GgmlType::F16) {
            return Err(self.err(format!(
                "tensor '{key}' is {}; expected F32 or F16",
                t.ty.name()
            )));
        }
        Ok(t)
    }

    /// The optional output scale of a linear layer (1 when absent).
    fn scale_of(&self, layer: usize, name: &str) -> Result<f32, GgufError> {
        let key = format!("blk.{layer}.{}.scale", gguf_linear_name(name).unwrap());
        let Some(t) = self.file.tensor(&key) else {
            return Ok(1.0);
        };
        if t.dims != [1] || !matches!(t.ty, GgmlType::F32 | GgmlType::F16) {
            return Err(self.err(format!(
                "tensor '{key}' is {} {:?}; expected one F32 or F16 value",
                t.ty.name(),
                t.dims
            )));
        }
        let v = self.floats(t)?[0];
        if !(v.is_finite() && v > 0.0) {
            return Err(self.err(format!("tensor '{key}' = {v}; expected a positive scale")));
        }
        Ok(v)
    }

    /// A dense tensor's values as f32 (rows x cols = dims[1] x dims[0]), refusing non-finite values.
    fn floats(&self, t: &TensorInfo) -> Result<Vec<f32>, GgufError> {
        let bytes = self.file.data(t);
        let cols = t.dims[0] as usize;
        let rows = t.dims[1..].iter().product::<u64>() as usize;
        let named = |e: ternbench_kernels::formats::FormatError| {
            self.err(format!("tensor '{}': {e}", t.name))
        };
        let values: Vec<f32> = match t.ty {
            GgmlType::F32 => bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            GgmlType::F16 => bytes
                .chunks_exact(2)
                .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            GgmlType::Q8_0 => Q8_0Matrix::from_bytes(rows, cols, bytes)
                .map_err(named)?
                .dequantize(),
            GgmlType::Q4_0 => Q4_0Matrix::from_bytes(rows, cols, bytes)
                .map_err(named)?
                .dequantize(),
            GgmlType::Q6K => Q6KMatrix::from_q6k_bytes(rows, cols, bytes)
                .map_err(named)?
                .dequantize(),
            other => {
                return Err(self.err(format!(
                    "tensor '{}' is {}; expected F32, F16, Q8_0, Q4_0 or Q6_K",
                    t.name,
                    other.name()
                )))
            }
        };
        if let Some(i) = values.iter().position(|v| !v.is_finite()) {
            return Err(self.err(format!(
                "tensor '{}' holds a non-finite value at index {i}",
                t.name
            )));
        }
        Ok(values)
    }
}

fn dense_type(t: GgmlType) -> bool {
    matches!(
        t,
        GgmlType::F32 | GgmlType::F16 | GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q6K
    )
}

/// The one scale shared by every block that holds a non-zero weight.
fn common_block_scale<B>(
    m: &BlockMatrix<B>,
    d: impl Fn(&B) -> half::f16,
    nonzero: impl Fn(&B) -> bool,
) -> Result<f32, String> {
    let mut scale: Option<half::f16> = None;
    for (i, b) in m.blocks.iter().enumerate() {
        if !nonzero(b) {
            continue;
        }
        match scale {
            None => scale = Some(d(b)),
            Some(s) if s == d(b) => {}
            Some(s) => {
                return Err(format!(
                    "block {i} has scale {} where earlier blocks have {s}; expected one scale per tensor (BitNet's absmean), which the ternary kernels need",
                    d(b)
                ))
            }
        }
    }
    Ok(scale.map_or(0.0, |s| s.to_f32()))
}

/// Real weights as ternary. GGUF files of BitNet models (llama.cpp's
/// converter) hold the already-ternarized values times the scale: exactly
/// {0, ±a} gives scale a; otherwise (lossy Q4_0, or master weights) the
/// values are ternarized with the absmean rule and the scale is the mean |w|
/// of the weights that stay non-zero, which reproduces those weights best
/// (absmean itself would shrink an already-ternary tensor by its share of zeros).
pub fn ternary_from_dense(rows: usize, cols: usize, values: Vec<f32>) -> TernaryMatrix {
    let a = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let t: Vec<i8> = if a > 0.0 && values.iter().all(|&v| v == 0.0 || v.abs() == a) {
        values
            .iter()
            .map(|&v| if v == 0.0 { 0 } else { v.signum() as i8 })
            .collect()
    } else {
        ternbench_kernels::quant::absmean_ternarize(&values).0
    };
    let (sum, n) = values
        .iter()
        .zip(&t)
        .filter(|(_, &q)| q != 0)
        .fold((0.0f64, 0usize), |(s, n), (v, _)| {
            (s + v.abs() as f64, n + 1)
        });
    let scale = if n == 0 { 0.0 } else { (sum / n as f64) as f32 };
    TernaryMatrix::new(rows, cols, t, scale).expect("values are ternary")
}

fn with_scale(t: TernaryMatrix, s: f32) -> TernaryMatrix {
    if s == 1.0 {
        return t;
    }
    let scale = t.scale() * s;
    TernaryMatrix::new(t.rows(), t.cols(), t.values().to_vec(), scale)
        .expect("a ternary matrix stays ternary")
}

fn config_from(file: &GgufFile, path: &Path) -> Result<(ModelConfig, String), GgufError> {
    let arch = match file.get("general.architecture") {
        Some(Value::Str(a)) if ARCHITECTURES.contains(&a.as_str()) => a.clone(),
        Some(v) => {
            return Err(file.err(format!(
                "field 'general.architecture' = {v:?}; expected one of {ARCHITECTURES:?}"
            )))
        }
        None => return Err(file.err("field 'general.architecture' is missing".into())),
    };
    let uint = |key: &str, required: bool| -> Result<Option<usize>, GgufError> {
        let full = format!("{arch}.{key}");
        match file.get(&full) {
            None if required => Err(file.err(format!("field '{full}' is missing"))),
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&n| (1..=1 << 20).contains(&n))
                .map(|n| Some(n as usize))
                .ok_or_else(|| {
                    file.err(format!(
                        "field '{full}' = {v:?}; expected an integer in 1..=1048576"
                    ))
                }),
        }
    };
    let float = |key: &str, default: f32| -> Result<f32, GgufError> {
        let full = format!("{arch}.{key}");
        match file.get(&full) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite() && *x > 0.0)
                .map(|x| x as f32)
                .ok_or_else(|| {
                    file.err(format!(
                        "field '{full}' = {v:?}; expected a positive number"
                    ))
                }),
        }
    };
    let hidden = uint("embedding_length", true)?.unwrap_or(0);
    let heads = uint("attention.head_count", true)?.unwrap_or(0);
    let kv_heads = uint("attention.head_count_kv", false)?.unwrap_or(heads);
    let head_dim = match uint("attention.key_length", false)? {
        Some(d) => d,
        None => hidden.checked_div(heads).unwrap_or(0),
    };
    let vocab = match uint("vocab_size", false)? {
        Some(v) => v,
        None => match file.tensor("token_embd.weight") {
            Some(t) if t.dims.len() == 2 && t.dims[1] <= 1 << 20 => t.dims[1] as usize,
            Some(t) => {
                return Err(file.err(format!(
                    "tensor 'token_embd.weight' has dims {:?}; expected [hidden, vocab] with vocab at most 1048576",
                    t.dims
                )))
            }
            None => return Err(file.err("tensor 'token_embd.weight' is missing".into())),
        },
    };
    let act_key = format!("{arch}.hidden_activation");
    let ffn_activation = match file.get(&act_key) {
        None if arch == "bitnet" => FfnActivation::SiluGated,
        None => FfnActivation::Relu2Gated,
        Some(Value::Str(s)) if s == "relu2" || s == "relu_sqr" || s == "relu_squared" => {
            FfnActivation::Relu2Gated
        }
        Some(Value::Str(s)) if s == "silu" || s == "swiglu" || s == "swish" => {
            FfnActivation::SiluGated
        }
        Some(v) => {
            return Err(file.err(format!(
                "field '{act_key}' = {v:?}; expected \"relu2\" or \"silu\""
            )))
        }
    };
    let name = match file.get("general.name") {
        Some(Value::Str(s)) => s.clone(),
        _ => path
            .file_stem()
            .map_or("gguf".into(), |s| s.to_string_lossy().into_owned()),
    };
    let config = ModelConfig {
        name,
        hidden,
        ffn: uint("feed_forward_length", true)?.unwrap_or(0),
        layers: uint("block_count", true)?.unwrap_or(0),
        heads,
        kv_heads,
        head_dim,
        vocab,
        ffn_activation,
        rope_theta: float("rope.freq_base", 10000.0)?,
        norm_eps: float("attention.layer_norm_rms_epsilon", 1e-5)?,
        tied_embeddings: true,
    };
    config.validate().map_err(|e| file.err(e))?;
    Ok((config, arch))
}

impl WeightSource for GgufModel {
    fn describe(&self) -> String {
        self.file.path().display().to_string()
    }

    fn linear(&self, layer: usize, name: &str) -> anyhow::Result<Weights> {
        let (_, rows, cols) = *self
            .config
            .linear_shapes()
            .iter()
            .find(|(n, _, _)| *n == name)
            .ok_or_else(|| anyhow::anyhow!("no linear layer called {name}"))?;
        let key = format!("blk.{layer}.{}.weight", gguf_linear_name(name).unwrap());
        let t = self.tensor(&key, &[cols as u64, rows as u64])?;
        let bytes = self.file.data(t);
        let named = |e: String| self.err(format!("tensor '{key}': {e}"));
        let ternary = match t.ty {
            GgmlType::Tq2_0 => {
                let m =
                    Tq2Matrix::from_bytes(rows, cols, bytes).map_err(|e| named(e.to_string()))?;
                let scale =
                    common_block_scale(&m, |b: &BlockTq2| b.d, |b| b.qs.iter().any(|&q| q != 0x55))
                        .map_err(named)?;
                TernaryMatrix::new(rows, cols, m.ternary_values(), scale)?
            }
            GgmlType::Tq1_0 => {
                let m =
                    Tq1Matrix::from_bytes(rows, cols, bytes).map_err(|e| named(e.to_string()))?;
                let scale = common_block_scale(
                    &m,
                    |b: &BlockTq1| b.d,
                    |b| {
                        let mut v = [0i8; 256];
                        b.unpack(&mut v);
                        v.iter().any(|&x| x != 0)
                    },
                )
                .map_err(named)?;
                TernaryMatrix::new(rows, cols, m.ternary_values(), scale)?
            }
            GgmlType::I2S => I2sMatrix::from_bytes(rows, cols, bytes)
                .map_err(|e| named(e.to_string()))?
                .unpack(),
            _ => ternary_from_dense(rows, cols, self.floats(t)?),
        };
        Ok(Weights::Ternary(with_scale(
            ternary,
            self.scale_of(layer, name)?,
        )))
    }

    fn norm(&self, layer: Option<usize>, name: &str) -> anyhow::Result<Vec<f32>> {
        let t = self.norm_tensor(layer, name)?;
        Ok(self.floats(t)?)
    }

    fn embedding(&self) -> anyhow::Result<DenseMatrix> {
        let c = &self.config;
        let t = self.tensor("token_embd.weight", &[c.hidden as u64, c.vocab as u64])?;
        Ok(DenseMatrix::new(c.vocab, c.hidden, self.floats(t)?)?)
    }

    fn embedding_as(&self, format: Format) -> anyhow::Result<Option<PreparedWeights>> {
        let c = &self.config;
        let t = self.tensor("token_embd.weight", &[c.hidden as u64, c.vocab as u64])?;
        let (rows, cols, bytes) = (c.vocab, c.hidden, self.file.data(t));
        let named = |e: ternbench_kernels::formats::FormatError| {
            self.err(format!("tensor '{}': {e}", t.name))
        };
        Ok(Some(match (t.ty, format) {
            (GgmlType::Q8_0, Format::Q8_0) => {
                let m = Q8_0Matrix::from_bytes(rows, cols, bytes).map_err(named)?;
                PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
            }
            (GgmlType::Q4_0, Format::Q4_0) => {
                let m = Q4_0Matrix::from_bytes(rows, cols, bytes).map_err(named)?;
                PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
            }
            (GgmlType::Q6K, Format::Q6K) => {
                let m = Q6KMatrix::from_q6k_bytes(rows, cols, bytes).map_err(named)?;
                PreparedWeights::new(format, rows, cols, m.weight_bytes(), m)
            }
            _ => return Ok(None),
        }))
    }
}
