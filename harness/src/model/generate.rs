//! `ternbench generate`: greedy decoding from a checkpoint (a Hugging Face
//! directory, a .gguf file, or a preset / TOML shape with synthetic weights).
//!
//! The prompt is given as token ids (`--prompt-ids 1,2,3`) or as text
//! (`--prompt`), which needs a `tokenizer.json` (next to the checkpoint, or
//! `--tokenizer`) and a binary built with the `tokenizers` cargo feature.
//! stdout gets the generated text when a tokenizer is loaded, the generated
//! token ids (comma-separated) otherwise; stderr gets the ids and timings.

use super::cli::load_model;
use super::engine::{argmax, Breakdown, Model, ModelSpec};
use super::gguf::Dialect;
use clap::Args;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;
use ternbench_kernels::formats::Format;
use ternbench_kernels::parallel::{Executor, Threading};
use ternbench_kernels::{registry, Kernel};

fn parse_kernel(s: &str) -> Result<&'static dyn Kernel, String> {
    let ks = registry::resolve(s).map_err(|e| e.to_string())?;
    match ks.as_slice() {
        [k] => Ok(*k),
        _ => Err(format!("'{s}' names {} kernels; expected one", ks.len())),
    }
}

/// Comma-separated token ids (one clap value).
#[derive(Clone, Debug)]
pub struct Ids(Vec<u32>);

fn parse_ids(s: &str) -> Result<Ids, String> {
    s.split(',')
        .map(|t| {
            t.trim()
                .parse::<u32>()
                .map_err(|_| format!("'{t}': expected a token id (a non-negative integer)"))
        })
        .collect::<Result<Vec<u32>, String>>()
        .map(Ids)
}

fn parse_lm_head(s: &str) -> Result<Format, String> {
    match Format::from_name(s) {
        Some(f @ (Format::F16 | Format::Q8_0 | Format::Q4_0 | Format::Q6K)) => Ok(f),
        _ => Err(format!("'{s}': expected f16, q8_0, q4_0 or q6_k")),
    }
}

#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// A Hugging Face checkpoint directory, a .gguf file, or a preset / TOML shape (synthetic weights).
    #[arg(long)]
    model: String,
    /// Prompt text (needs a tokenizer.json and the `tokenizers` feature).
    #[arg(
        long,
        conflicts_with = "prompt_ids",
        required_unless_present = "prompt_ids"
    )]
    prompt: Option<String>,
    /// Prompt as comma-separated token ids.
    #[arg(long, value_parser = parse_ids)]
    prompt_ids: Option<Ids>,
    /// Tokens to generate.
    #[arg(short = 'n', long = "n-gen", default_value_t = 32)]
    n_gen: usize,
    /// Kernel of the linear layers (one name, or FORMAT-auto).
    #[arg(long, default_value = "i2s-auto", value_parser = parse_kernel)]
    kernel: &'static dyn Kernel,
    /// Weight type of the lm_head: f16, q8_0, q4_0 or q6_k.
    #[arg(long, default_value = "f16", value_parser = parse_lm_head)]
    lm_head: Format,
    #[arg(long, short = 't', default_value_t = 1)]
    threads: usize,
    /// A tokenizer.json; by default the one next to the checkpoint, if any.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Meaning of GGUF type id 36 (see `ternbench model --help`).
    #[arg(long, value_enum)]
    gguf_dialect: Option<Dialect>,
    /// Seed of synthetic weights (presets and TOML shapes only).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Also print the K largest logits of every step on stderr (`step S: id:logit ...`),
    /// to compare with another engine on the same file.
    #[arg(long, value_name = "K", default_value_t = 0)]
    top_logits: usize,
}

/// Largest KV cache `generate` allocates.
const MAX_KV_BYTES: u64 = 16 << 30;

/// Text <-> token ids.
pub trait Tokenizer {
    fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>>;
    fn decode(&self, ids: &[u32]) -> anyhow::Result<String>;
}

#[cfg(feature = "tokenizers")]
struct HfTokenizer(tokenizers::Tokenizer);

#[cfg(feature = "tokenizers")]
impl Tokenizer for HfTokenizer {
    fn encode(&self, text: &str) -> anyhow::Result<Vec<u32>> {
        Ok(self
            .0
            .encode(text, true)
            .map_err(|e| anyhow::anyhow!("tokenizing the prompt: {e}"))?
            .get_ids()
            .to_vec())
    }
    fn decode(&self, ids: &[u32]) -> anyhow::Result<String> {
        self.0
            .decode(ids, true)
            .map_err(|e| anyhow::anyhow!("decoding tokens: {e}"))
    }
}

/// Loads `path` as a tokenizer, or says why it cannot.
pub fn load_tokenizer(path: &Path) -> anyhow::Result<Box<dyn Tokenizer>> {
    #[cfg(feature = "tokenizers")]
    {
        let t = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow::anyhow!("{}: not a usable tokenizer.json: {e}", path.display()))?;
        Ok(Box::new(HfTokenizer(t)))
    }
    #[cfg(not(feature = "tokenizers"))]
    {
        anyhow::bail!(
            "{}: this ternbench was built without the `tokenizers` feature (cargo build --release --features tokenizers); pass --prompt-ids instead",
            path.display()
        )
    }
}

/// The tokenizer.json that belongs to a checkpoint: in its directory, or beside the .gguf file.
fn default_tokenizer(model: &str) -> Option<PathBuf> {
    let p = Path::new(model);
    let dir = if p.is_dir() { p } else { p.parent()? };
    let t = dir.join("tokenizer.json");
    (p.exists() && t.is_file()).then_some(t)
}

/// Greedy continuation of `prompt`: `n` tokens. `on_logits` sees the logits
/// each step chooses from.
pub fn greedy(
    model: &Model,
    exec: &Executor,
    prompt: &[u32],
    n: usize,
    mut on_logits: impl FnMut(usize, &[f32]),
) -> anyhow::Result<Vec<u32>> {
    let mut session = model.session(prompt.len() + n, false);
    let mut bd = Breakdown::default();
    let mut logits = Vec::new();
    model.forward(&mut session, prompt, exec, Some(&mut logits), &mut bd)?;
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        on_logits(i, &logits);
        let next = argmax(&logits);
        out.push(next);
        if i + 1 < n {
            model.forward(&mut session, &[next], exec, Some(&mut logits), &mut bd)?;
        }
    }
    Ok(out)
}

/// The `k` largest logits as `id:logit`, largest first (ties: lower id first).
fn top_logits(logits: &[f32], k: usize) -> String {
    let mut ids: Vec<usize> = (0..logits.len()).collect();
    ids.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    ids.iter()
        .take(k)
        .map(|&i| format!("{i}:{:.4}", logits[i]))
        .collect::<Vec<_>>()
        .join(" ")
}

fn join(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let bad = |e: anyhow::Error| {
        eprintln!("error: {e:#}");
        Ok(ExitCode::from(2))
    };
    if args.threads == 0 {
        return bad(anyhow::anyhow!("--threads 0; expected at least 1"));
    }
    let tokenizer_path = args
        .tokenizer
        .clone()
        .or_else(|| default_tokenizer(&args.model));
    let tokenizer = match (&tokenizer_path, &args.prompt) {
        (Some(p), _) => match load_tokenizer(p) {
            Ok(t) => Some(t),
            // Without the feature a tokenizer is only needed for --prompt.
            Err(e) if args.prompt.is_some() || args.tokenizer.is_some() => return bad(e),
            Err(_) => None,
        },
        (None, Some(_)) => {
            return bad(anyhow::anyhow!(
                "--prompt needs a tokenizer: no tokenizer.json beside {} (pass --tokenizer FILE, or --prompt-ids)",
                args.model
            ))
        }
        (None, None) => None,
    };
    let prompt = match (&args.prompt, &args.prompt_ids) {
        (Some(text), _) => match tokenizer.as_ref().expect("checked above").encode(text) {
            Ok(ids) => ids,
            Err(e) => return bad(e),
        },
        (None, Some(ids)) => ids.0.clone(),
        (None, None) => unreachable!("clap requires --prompt or --prompt-ids"),
    };
    if prompt.is_empty() {
        return bad(anyhow::anyhow!(
            "the prompt has no tokens; expected at least one"
        ));
    }
    let (config, source) = match load_model(&args.model, args.seed, args.gguf_dialect) {
        Ok(m) => m,
        Err(e) => return bad(e),
    };
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= config.vocab) {
        return bad(anyhow::anyhow!(
            "prompt token id {t} is outside the vocabulary of {} tokens",
            config.vocab
        ));
    }
    let positions = prompt.len().saturating_add(args.n_gen);
    let kv_bytes = [2, config.layers, config.kv_dim(), 4, positions]
        .iter()
        .fold(1u64, |a, &b| a.saturating_mul(b as u64));
    if kv_bytes > MAX_KV_BYTES {
        return bad(anyhow::anyhow!(
            "-n {}: a KV cache of {positions} positions takes {:.1} GiB; expected at most {} GiB",
            args.n_gen,
            kv_bytes as f64 / (1u64 << 30) as f64,
            MAX_KV_BYTES >> 30
        ));
    }
    if let Err(f) = registry::availability(args.kernel) {
        return bad(anyhow::anyhow!(
            "kernel {} needs CPU feature {f:?}, which this CPU lacks; expected a kernel this CPU can run (see `ternbench kernels`)",
            args.kernel.info().name
        ));
    }
    let spec = ModelSpec {
        kernel: args.kernel,
        lm_head: registry::auto(args.lm_head),
    };
    let start = Instant::now();
    let model =
        Model::build_many(&config, source.as_ref(), &[spec], config.layers, |_| {})?.remove(0);
    let built = start.elapsed().as_secs_f64();
    let exec = Executor::new(Threading::Pool, args.threads, false)?;
    let start = Instant::now();
    let ids = greedy(&model, &exec, &prompt, args.n_gen, |step, logits| {
        if args.top_logits > 0 {
            eprintln!("step {step}: {}", top_logits(logits, args.top_logits));
        }
    })?;
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{} ({}), kernel {}: prompt {} tokens [{}] -> {} generated [{}]; built in {built:.1} s, {:.2} s for prompt and generation",
        config.name,
        model.weights_source,
        args.kernel.info().name,
        prompt.len(),
        join(&prompt),
        ids.len(),
        join(&ids),
        secs
    );
    match &tokenizer {
        Some(t) => println!("{}", t.decode(&ids)?),
        None => println!("{}", join(&ids)),
    }
    Ok(ExitCode::SUCCESS)
}
