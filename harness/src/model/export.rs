//! `ternbench export-gguf`: a model (a preset or TOML shape with seeded
//! synthetic weights) written as a GGUF file in llama.cpp's `bitnet`
//! architecture, so the same weights can be run in llama.cpp side by side.
//!
//! Linear layers are written in the chosen type: F16 (the ternary values
//! times the tensor scale), TQ1_0/TQ2_0 (every block carries the tensor
//! scale), Q8_0/Q4_0 (llama.cpp's quantizers applied to the scaled ternary
//! values), or the bitnet.cpp fork's I2_S (then `general.file_type` = 40
//! marks the dialect). Norms are F32; the embedding (the tied lm_head) is
//! F16, F32, Q8_0, Q4_0 or Q6_K. The metadata carries what llama.cpp's loader reads
//! for `bitnet` (`bitnet.*` hyperparameters, `bitnet.hidden_activation`) and
//! a synthetic SentencePiece-style vocabulary (`<unk>`, `<s>`, `</s>`, the
//! 256 byte tokens, then placeholders), because llama.cpp refuses a model
//! without one. ggml cannot pad rows, so every row length must be a multiple
//! of the type's block (256 for TQ1_0/TQ2_0/Q6_K, 128 for I2_S, 32 for Q8_0/Q4_0).

use super::config::{FfnActivation, ModelConfig};
use super::gguf::{self, GgmlType, TensorSpec, Value};
use super::gguf_model::{gguf_linear_name, gguf_norm_name};
use super::weights::{SyntheticSource, WeightSource};
use clap::Args;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use ternbench_kernels::formats::f16::F16Matrix;
use ternbench_kernels::formats::i2s::I2sMatrix;
use ternbench_kernels::formats::q4_0::Q4_0Matrix;
use ternbench_kernels::formats::q6_k::Q6KMatrix;
use ternbench_kernels::formats::q8_0::Q8_0Matrix;
use ternbench_kernels::formats::tq1::Tq1Matrix;
use ternbench_kernels::formats::tq2::Tq2Matrix;
use ternbench_kernels::formats::{DenseMatrix, TernaryMatrix, Weights};

/// Weight type of the linear layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum WeightType {
    #[value(name = "f16")]
    F16,
    #[value(name = "tq1_0")]
    Tq1_0,
    #[value(name = "tq2_0")]
    Tq2_0,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    /// bitnet.cpp's I2_S (type id 36 in its dialect; not loadable by upstream llama.cpp).
    #[value(name = "i2_s")]
    I2S,
}

impl WeightType {
    pub fn ggml(self) -> GgmlType {
        match self {
            WeightType::F16 => GgmlType::F16,
            WeightType::Tq1_0 => GgmlType::Tq1_0,
            WeightType::Tq2_0 => GgmlType::Tq2_0,
            WeightType::Q8_0 => GgmlType::Q8_0,
            WeightType::Q4_0 => GgmlType::Q4_0,
            WeightType::I2S => GgmlType::I2S,
        }
    }

    /// `general.file_type` (llama.cpp's LLAMA_FTYPE_MOSTLY_*, and 40 for the fork's I2_S).
    pub fn file_type(self) -> u32 {
        match self {
            WeightType::F16 => 1,
            WeightType::Q4_0 => 2,
            WeightType::Q8_0 => 7,
            WeightType::Tq1_0 => 36,
            WeightType::Tq2_0 => 37,
            WeightType::I2S => gguf::FILE_TYPE_I2S as u32,
        }
    }
}

/// Type of the token embedding / tied lm_head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EmbdType {
    #[value(name = "f16")]
    F16,
    #[value(name = "f32")]
    F32,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q4_0")]
    Q4_0,
    /// llama.cpp's Q6_K (its default for the output matrix; needs hidden a multiple of 256).
    #[value(name = "q6_k")]
    Q6K,
}

impl EmbdType {
    pub fn ggml(self) -> GgmlType {
        match self {
            EmbdType::F16 => GgmlType::F16,
            EmbdType::F32 => GgmlType::F32,
            EmbdType::Q8_0 => GgmlType::Q8_0,
            EmbdType::Q4_0 => GgmlType::Q4_0,
            EmbdType::Q6K => GgmlType::Q6K,
        }
    }
}

/// What each tensor of the file holds.
#[derive(Clone, Debug, PartialEq)]
enum Item {
    Embedding,
    Norm(Option<usize>, &'static str),
    Linear(usize, &'static str),
}

/// A file's metadata, its tensors, and what each tensor holds.
pub type Plan = (Vec<(String, Value)>, Vec<TensorSpec>, Vec<ItemRef>);

/// The metadata and tensor list of a model in llama.cpp's `bitnet` layout.
pub fn plan(config: &ModelConfig, wtype: WeightType, embd: EmbdType) -> Result<Plan, String> {
    let c = config;
    if c.q_dim() != c.hidden {
        return Err(format!(
            "{}: heads x head_dim = {} differs from hidden = {}; llama.cpp's bitnet architecture needs them equal",
            c.name,
            c.q_dim(),
            c.hidden
        ));
    }
    let a = "bitnet";
    let u = |v: usize| Value::U32(v as u32);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::Str(a.into())),
        ("general.name".into(), Value::Str(c.name.clone())),
        ("general.file_type".into(), Value::U32(wtype.file_type())),
        ("general.quantization_version".into(), Value::U32(2)),
        ("general.alignment".into(), Value::U32(32)),
        (format!("{a}.vocab_size"), u(c.vocab)),
        (format!("{a}.context_length"), u(4096)),
        (format!("{a}.embedding_length"), u(c.hidden)),
        (format!("{a}.feed_forward_length"), u(c.ffn)),
        (format!("{a}.block_count"), u(c.layers)),
        (format!("{a}.attention.head_count"), u(c.heads)),
        (format!("{a}.attention.head_count_kv"), u(c.kv_heads)),
        (format!("{a}.attention.key_length"), u(c.head_dim)),
        (format!("{a}.attention.value_length"), u(c.head_dim)),
        (format!("{a}.rope.dimension_count"), u(c.head_dim)),
        (format!("{a}.rope.freq_base"), Value::F32(c.rope_theta)),
        (
            format!("{a}.attention.layer_norm_rms_epsilon"),
            Value::F32(c.norm_eps),
        ),
        (
            format!("{a}.hidden_activation"),
            Value::Str(
                match c.ffn_activation {
                    FfnActivation::Relu2Gated => "relu2",
                    FfnActivation::SiluGated => "silu",
                }
                .into(),
            ),
        ),
    ];
    meta.extend(synthetic_vocab(c.vocab));
    let mut specs = Vec::new();
    let mut items = Vec::new();
    let mut push = |name: String, dims: Vec<u64>, ty: GgmlType, item: Item| {
        specs.push(TensorSpec { name, dims, ty });
        items.push(ItemRef(item));
    };
    push(
        "token_embd.weight".into(),
        vec![c.hidden as u64, c.vocab as u64],
        embd.ggml(),
        Item::Embedding,
    );
    push(
        "output_norm.weight".into(),
        vec![c.hidden as u64],
        GgmlType::F32,
        Item::Norm(None, "norm"),
    );
    for l in 0..c.layers {
        for (norm, len) in [
            ("input_layernorm", c.hidden),
            ("attn_sub_norm", c.q_dim()),
            ("post_attention_layernorm", c.hidden),
            ("ffn_sub_norm", c.ffn),
        ] {
            push(
                format!("blk.{l}.{}.weight", gguf_norm_name(norm).unwrap()),
                vec![len as u64],
                GgmlType::F32,
                Item::Norm(Some(l), norm),
            );
        }
        for (name, rows, cols) in c.linear_shapes() {
            push(
                format!("blk.{l}.{}.weight", gguf_linear_name(name).unwrap()),
                vec![cols as u64, rows as u64],
                wtype.ggml(),
                Item::Linear(l, name),
            );
        }
    }
    for t in &specs {
        t.ty.nbytes(&t.dims).map_err(|m| {
            format!(
                "{}: tensor '{}' cannot be {}: {m} (ggml cannot pad rows); choose another --wtype/--embd-type",
                c.name,
                t.name,
                t.ty.name()
            )
        })?;
    }
    Ok((meta, specs, items))
}

/// An opaque tensor role (see [`plan`]).
#[derive(Clone, Debug, PartialEq)]
pub struct ItemRef(Item);

/// `<unk>`, `<s>`, `</s>`, byte tokens `<0x00>`.. `<0xFF>` (as far as the vocabulary reaches), then `<t{i}>`.
fn synthetic_vocab(vocab: usize) -> Vec<(String, Value)> {
    let mut tokens = Vec::with_capacity(vocab);
    let mut types = Vec::with_capacity(vocab);
    for i in 0..vocab {
        let (t, ty) = match i {
            0 => ("<unk>".to_string(), 2),
            1 => ("<s>".to_string(), 3),
            2 => ("</s>".to_string(), 3),
            3..=258 => (format!("<0x{:02X}>", i - 3), 6),
            _ => (format!("<t{i}>"), 1),
        };
        tokens.push(t);
        types.push(ty);
    }
    let scores = (0..vocab).map(|i| -(i as f32)).collect();
    vec![
        ("tokenizer.ggml.model".into(), Value::Str("llama".into())),
        ("tokenizer.ggml.tokens".into(), Value::StrArray(tokens)),
        ("tokenizer.ggml.scores".into(), Value::F32Array(scores)),
        ("tokenizer.ggml.token_type".into(), Value::I32Array(types)),
        ("tokenizer.ggml.unknown_token_id".into(), Value::U32(0)),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(1)),
        ("tokenizer.ggml.eos_token_id".into(), Value::U32(2)),
    ]
}

fn ternary(w: Weights) -> TernaryMatrix {
    match w {
        Weights::Ternary(t) => t,
        Weights::Dense(d) => TernaryMatrix::from_absmean(&d),
    }
}

fn dense_bytes(d: &DenseMatrix, ty: GgmlType) -> anyhow::Result<Vec<u8>> {
    Ok(match ty {
        GgmlType::F32 => d.values().iter().flat_map(|v| v.to_le_bytes()).collect(),
        GgmlType::F16 => F16Matrix::pack(d).to_bytes(),
        GgmlType::Q8_0 => Q8_0Matrix::pack_dense(d).to_bytes(),
        GgmlType::Q4_0 => Q4_0Matrix::pack_dense(d).to_bytes(),
        GgmlType::Q6K => Q6KMatrix::pack_dense(d)?.to_bytes(),
        other => anyhow::bail!("{} is not a dense type", other.name()),
    })
}

/// The bytes of one tensor.
fn tensor_bytes(
    source: &dyn WeightSource,
    spec: &TensorSpec,
    item: &ItemRef,
) -> anyhow::Result<Vec<u8>> {
    Ok(match &item.0 {
        Item::Embedding => dense_bytes(&source.embedding()?, spec.ty)?,
        Item::Norm(layer, name) => source
            .norm(*layer, name)?
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect(),
        Item::Linear(layer, name) => {
            let t = ternary(source.linear(*layer, name)?);
            match spec.ty {
                GgmlType::Tq2_0 => Tq2Matrix::pack_ternary(&t).to_bytes(),
                GgmlType::Tq1_0 => Tq1Matrix::pack_ternary(&t).to_bytes(),
                GgmlType::I2S => I2sMatrix::pack(&t).to_bytes(),
                ty => dense_bytes(&t.dequantized(), ty)?,
            }
        }
    })
}

/// Writes `config` with weights from `source` to `out`; returns the file size.
pub fn export(
    config: &ModelConfig,
    source: &dyn WeightSource,
    wtype: WeightType,
    embd: EmbdType,
    out: &Path,
    mut progress: impl FnMut(usize, usize, &str),
) -> anyhow::Result<u64> {
    let (meta, specs, items) = plan(config, wtype, embd).map_err(anyhow::Error::msg)?;
    let file = std::fs::File::create(out)
        .map_err(|e| anyhow::anyhow!("{}: cannot create: {e}", out.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    gguf::write(&mut w, &meta, &specs, gguf::DEFAULT_ALIGNMENT, |i| {
        progress(i, specs.len(), &specs[i].name);
        tensor_bytes(source, &specs[i], &items[i])
    })
    .map_err(|e| anyhow::anyhow!("{}: {e:#}", out.display()))?;
    drop(w);
    Ok(std::fs::metadata(out)?.len())
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// A preset or a TOML file with a custom shape (synthetic, seeded weights).
    #[arg(long)]
    model: String,
    /// Type of the linear layers.
    #[arg(long, value_enum)]
    wtype: WeightType,
    /// Type of the token embedding (the tied lm_head).
    #[arg(long, value_enum, default_value_t = EmbdType::F16)]
    embd_type: EmbdType,
    /// Seed of the synthetic weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The .gguf file to write.
    out: PathBuf,
}

pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let config = match super::cli::load_config(&args.model) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    if let Err(e) = plan(&config, args.wtype, args.embd_type) {
        eprintln!("error: {e}");
        return Ok(ExitCode::from(2));
    }
    let source = SyntheticSource {
        config: config.clone(),
        seed: args.seed,
    };
    let start = std::time::Instant::now();
    let mut last = std::time::Instant::now();
    let bytes = export(
        &config,
        &source,
        args.wtype,
        args.embd_type,
        &args.out,
        |i, n, name| {
            if last.elapsed().as_secs_f64() > 2.0 {
                eprintln!("  tensor {}/{n}: {name}", i + 1);
                last = std::time::Instant::now();
            }
        },
    )?;
    eprintln!(
        "wrote {} ({}, {:?} linear layers, {:?} embedding): {bytes} bytes in {:.1} s",
        args.out.display(),
        config,
        args.wtype,
        args.embd_type,
        start.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::gguf::Dialect;
    use crate::model::gguf_model::GgufModel;
    use ternbench_kernels::formats::Format;

    fn tiny() -> ModelConfig {
        ModelConfig::from_toml(
            "name = \"tiny\"\nhidden = 256\nffn = 512\nlayers = 2\nheads = 4\nkv_heads = 2\nhead_dim = 64\nvocab = 300\nffn_activation = \"relu2-gated\"\nrope_theta = 500000.0\n",
            "tiny.toml",
        )
        .unwrap()
    }

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("ternbench-export-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(name)
    }

    #[test]
    fn write_then_read_gives_the_same_weights() {
        let config = tiny();
        let source = SyntheticSource {
            config: config.clone(),
            seed: 3,
        };
        for wtype in [
            WeightType::F16,
            WeightType::Tq1_0,
            WeightType::Tq2_0,
            WeightType::Q8_0,
            WeightType::Q4_0,
            WeightType::I2S,
        ] {
            let path = temp(&format!("{wtype:?}.gguf"));
            export(&config, &source, wtype, EmbdType::F32, &path, |_, _, _| {}).unwrap();
            let dialect = (wtype == WeightType::I2S).then_some(Dialect::BitnetCpp);
            let m = GgufModel::open(&path, None).unwrap_or_else(|e| panic!("{wtype:?}: {e}"));
            assert_eq!(m.file.dialect.as_ref().map(|d| d.0), dialect);
            let mut want = config.clone();
            want.name = "tiny".into();
            assert_eq!(m.config, want, "{wtype:?}");
            for layer in 0..config.layers {
                for (name, _, _) in config.linear_shapes() {
                    let (Weights::Ternary(a), Weights::Ternary(b)) = (
                        source.linear(layer, name).unwrap(),
                        m.linear(layer, name).unwrap(),
                    ) else {
                        panic!("ternary weights expected")
                    };
                    assert_eq!(a.values(), b.values(), "{wtype:?} {layer} {name}");
                    let rel = (a.scale() - b.scale()).abs() / a.scale();
                    // f16 scales round to 2^-11; Q4_0 of ternary values is lossy (-7/8 of the
                    // scale on one side of each block), so absmean recovers the scale only roughly.
                    let tol = if wtype == WeightType::Q4_0 { 0.1 } else { 1e-3 };
                    assert!(
                        rel < tol,
                        "{wtype:?} {layer} {name}: scale {} vs {}",
                        a.scale(),
                        b.scale()
                    );
                    if wtype == WeightType::I2S {
                        assert_eq!(a.scale(), b.scale());
                    }
                }
                for norm in [
                    "input_layernorm",
                    "post_attention_layernorm",
                    "attn_sub_norm",
                    "ffn_sub_norm",
                ] {
                    assert_eq!(
                        m.norm(Some(layer), norm).unwrap(),
                        source.norm(Some(layer), norm).unwrap()
                    );
                }
            }
            assert_eq!(m.embedding().unwrap(), source.embedding().unwrap());
        }
    }

    #[test]
    fn q6_k_embedding_round_trips_through_the_file() {
        let config = tiny();
        let source = SyntheticSource {
            config: config.clone(),
            seed: 4,
        };
        let path = temp("q6_k-embd.gguf");
        export(
            &config,
            &source,
            WeightType::Tq2_0,
            EmbdType::Q6K,
            &path,
            |_, _, _| {},
        )
        .unwrap();
        let m = GgufModel::open(&path, None).unwrap();
        let t = m.file.tensor("token_embd.weight").unwrap();
        assert_eq!(t.ty, GgmlType::Q6K);
        assert_eq!(
            m.file.data(t).len(),
            config.vocab * config.hidden / 256 * 210
        );
        // What we read back is exactly our quantizer's output, dequantized,
        // and close to the source (6-bit codes).
        let src = source.embedding().unwrap();
        let want = Q6KMatrix::pack_dense(&src).unwrap().dequantize();
        let got = m.embedding().unwrap();
        assert_eq!(got.values(), &want[..]);
        let amax = src.values().iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for (a, b) in src.values().iter().zip(got.values()) {
            assert!((a - b).abs() <= amax / 16.0, "{a} vs {b}");
        }
        // A q6_k lm_head takes the file's blocks as they are; other formats re-quantize.
        let packed = m
            .embedding_as(Format::Q6K)
            .unwrap()
            .expect("a Q6_K token_embd");
        assert_eq!(packed.weight_bytes, m.file.data(t).len());
        let q = packed.get::<Q6KMatrix>().unwrap();
        let file = Q6KMatrix::from_q6k_bytes(config.vocab, config.hidden, m.file.data(t)).unwrap();
        for row in 0..config.vocab {
            assert_eq!(q.row(row), file.row(row), "row {row}");
        }
        assert!(m.embedding_as(Format::Q8_0).unwrap().is_none());
        assert!(m.embedding_as(Format::F16).unwrap().is_none());
    }

    #[test]
    fn shapes_that_do_not_fit_a_block_are_refused() {
        let mut c = tiny();
        c.hidden = 320;
        c.head_dim = 80;
        let e = plan(&c, WeightType::F16, EmbdType::Q6K).unwrap_err();
        assert!(
            e.contains("cannot be Q6_K: ne[0] = 320 is not a multiple of the Q6_K block of 256"),
            "{e}"
        );
        let mut c = tiny();
        c.ffn = 320;
        let e = plan(&c, WeightType::Tq2_0, EmbdType::F16).unwrap_err();
        assert!(e.contains("tensor 'blk.0.ffn_down.weight' cannot be TQ2_0: ne[0] = 320 is not a multiple of the TQ2_0 block of 256"), "{e}");
        assert!(plan(&c, WeightType::Q8_0, EmbdType::F16).is_ok());
        let mut c = tiny();
        c.head_dim = 32;
        let e = plan(&c, WeightType::F16, EmbdType::F16).unwrap_err();
        assert!(e.contains("differs from hidden"), "{e}");
    }
}
