//! Benchmark configurations (TOML): what `ternbench sweep --config FILE` and
//! `ternbench` with no arguments (the embedded `configs/default.toml`) run.
//!
//! A configuration is a cross product: kernels x thread counts x tests,
//! where a test is one linear layer of an explicit shape (`[layer] shapes`),
//! the linear-layer shapes of a model (`tests = ["layers"]`), or a whole
//! model (`ppN`, `tgN`, in each of `batch_modes`) for every entry of
//! `models` (presets or model TOML files). See `configs/default.toml` for
//! every key with its meaning.
//!
//! Parsing is strict: an unknown key, a value of the wrong type, an unknown
//! kernel or model, a malformed shape or test, or a zero count is refused
//! before anything runs, with the file, the line and what was expected.

use crate::layer::Shape;
use crate::measure::energy::{Node, POWERCAP_ROOT};
use crate::model::bench::{BatchMode, ModelTest};
use crate::model::config::ModelConfig;
use serde::Deserialize;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;
use ternbench_kernels::formats::Format;
use ternbench_kernels::parallel::Threading;
use ternbench_kernels::{registry, Kernel};
use toml::Spanned;

/// The configuration `ternbench` runs with no arguments.
pub const DEFAULT_CONFIG: &str = include_str!("../../configs/default.toml");
/// The name the embedded default is reported under.
pub const DEFAULT_CONFIG_NAME: &str = "configs/default.toml (embedded)";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    kernels: Vec<Spanned<String>>,
    threads: Vec<Spanned<ThreadCount>>,
    #[serde(default)]
    threading: Option<Spanned<String>>,
    #[serde(default)]
    pin: bool,
    #[serde(default = "default_reps")]
    reps: Spanned<usize>,
    #[serde(default = "default_warmup_ms")]
    warmup_ms: u64,
    #[serde(default = "default_min_sample_ms")]
    min_sample_ms: u64,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_baseline")]
    baseline: bool,
    #[serde(default)]
    models: Vec<Spanned<toml::Value>>,
    #[serde(default)]
    tests: Option<Spanned<Vec<Spanned<String>>>>,
    #[serde(default)]
    batch_modes: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    layer: Option<RawLayer>,
    #[serde(default)]
    model: Option<RawModelOptions>,
    #[serde(default)]
    energy: Option<RawEnergy>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    #[serde(default)]
    shapes: Vec<Spanned<String>>,
    #[serde(default = "default_batch")]
    batch: Vec<Spanned<usize>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModelOptions {
    #[serde(default)]
    kernels: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    reps: Option<Spanned<usize>>,
    #[serde(default)]
    lm_head: Option<Spanned<String>>,
    #[serde(default)]
    kv_f16: bool,
    #[serde(default)]
    breakdown: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEnergy {
    sources: Spanned<Vec<Spanned<String>>>,
    #[serde(default)]
    watts_per_core: Option<Spanned<f64>>,
    #[serde(default)]
    node: Option<Spanned<String>>,
    #[serde(default)]
    powercap_root: Option<String>,
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(untagged)]
enum ThreadCount {
    Count(usize),
    Word(AllWord),
}

#[derive(Debug, Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum AllWord {
    All,
}

fn default_reps() -> Spanned<usize> {
    Spanned::new(0..0, 10)
}
fn default_warmup_ms() -> u64 {
    100
}
fn default_min_sample_ms() -> u64 {
    5
}
fn default_seed() -> u64 {
    1
}
fn default_baseline() -> bool {
    true
}
fn default_batch() -> Vec<Spanned<usize>> {
    vec![Spanned::new(0..0, 1)]
}

/// How many distinct blocks of a model to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SampleLayers {
    /// Every layer.
    All,
    /// Hold this many distinct blocks and run every layer on them.
    Blocks(usize),
    /// Every layer when the run fits in memory, else as many blocks as fit.
    Auto,
}

/// One entry of `models`.
#[derive(Clone, Debug)]
pub struct ModelEntry {
    pub config: ModelConfig,
    /// The preset name or file as written in the configuration.
    pub spec: String,
    /// The model file read (absolute when it could be resolved), for a file entry.
    pub file: Option<PathBuf>,
    pub sample_layers: SampleLayers,
}

/// Energy sources of model rows (`[energy]`).
#[derive(Clone, Debug)]
pub struct EnergyConfig {
    /// `rapl`, `cpu-time`, `model`, in the order given.
    pub sources: Vec<String>,
    pub watts_per_core: Option<f64>,
    pub node: Node,
    pub powercap_root: PathBuf,
}

impl Default for EnergyConfig {
    fn default() -> Self {
        EnergyConfig {
            sources: Vec::new(),
            watts_per_core: None,
            node: Node::Nm7,
            powercap_root: PathBuf::from(POWERCAP_ROOT),
        }
    }
}

/// A validated configuration.
#[derive(Clone)]
pub struct Config {
    pub name: String,
    pub kernels: Vec<&'static dyn Kernel>,
    pub threads: Vec<usize>,
    pub threading: Threading,
    pub pin: bool,
    pub reps: usize,
    pub warmup: Duration,
    pub min_sample: Duration,
    pub seed: u64,
    pub baseline: bool,
    /// Explicit layer shapes (`[layer] shapes`).
    pub shapes: Vec<Shape>,
    pub batches: Vec<usize>,
    pub models: Vec<ModelEntry>,
    /// `layers` in `tests`: the linear-layer shapes of every model, as layer tests.
    pub model_layers: bool,
    /// ppN / tgN tests of every model, one per batch mode for pp.
    pub model_tests: Vec<ModelTest>,
    pub model_kernels: Vec<&'static dyn Kernel>,
    pub model_reps: usize,
    pub lm_head: &'static dyn Kernel,
    pub kv_f16: bool,
    pub breakdown: bool,
    pub energy: EnergyConfig,
    /// The configuration text, saved into the run directory (for `--resume`).
    pub text: String,
}

impl Config {
    /// Every layer shape the run times: explicit shapes, then each model's
    /// linear shapes (with `layers` in `tests`), without repeats.
    pub fn layer_shapes(&self) -> Vec<Shape> {
        let mut out: Vec<Shape> = Vec::new();
        let from_models = self
            .models
            .iter()
            .filter(|_| self.model_layers)
            .flat_map(|m| m.config.linear_shapes())
            .map(|(_, rows, cols)| Shape { rows, cols });
        for s in self.shapes.iter().copied().chain(from_models) {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        out
    }
}

/// A configuration error: file, line and message.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub message: String,
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

/// Parses a test name: `ppN`, `tgN` (N at least 1) or `layers`.
enum TestName {
    Pp(usize),
    Tg(usize),
    Layers,
}

fn parse_test(s: &str) -> Option<TestName> {
    if s == "layers" {
        return Some(TestName::Layers);
    }
    let n = |d: &str| d.parse::<usize>().ok().filter(|&n| n > 0 && n <= 1 << 20);
    if let Some(d) = s.strip_prefix("pp") {
        return n(d).map(TestName::Pp);
    }
    s.strip_prefix("tg").and_then(n).map(TestName::Tg)
}

impl Config {
    /// Parses and validates `text`, read from `file` (used in messages;
    /// relative model files are read from the file's directory).
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |span: Range<usize>, message: String| ConfigError {
            file: file.to_string(),
            line: line_of(text, span),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            let mut message = e.message().trim_end().to_string();
            // Name the key: quote the line the error points at.
            let line = text[..span.start.min(text.len())]
                .rsplit('\n')
                .next()
                .unwrap_or("")
                .to_string()
                + text[span.start.min(text.len())..]
                    .split('\n')
                    .next()
                    .unwrap_or("");
            if e.span().is_some() && !line.trim().is_empty() {
                message += &format!(" (in `{}`)", line.trim());
            }
            err(span, message)
        })?;
        let base = if file == DEFAULT_CONFIG_NAME {
            PathBuf::from(".")
        } else {
            Path::new(file)
                .parent()
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
        };
        let kernels = resolve_kernels(&raw.kernels, "kernels", &err)?;
        let all = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut threads = Vec::new();
        for t in &raw.threads {
            let n = match *t.get_ref() {
                ThreadCount::Count(0) => {
                    return Err(err(
                        t.span(),
                        "threads: 0; expected a count of at least 1 or \"all\"".into(),
                    ))
                }
                ThreadCount::Count(n) => n,
                ThreadCount::Word(AllWord::All) => all,
            };
            if !threads.contains(&n) {
                threads.push(n);
            }
        }
        if threads.is_empty() {
            return Err(err(
                0..0,
                "threads: empty list; expected counts such as [1, \"all\"]".into(),
            ));
        }
        let threading = match &raw.threading {
            None => Threading::Pool,
            Some(t) => Threading::from_name(t.get_ref()).ok_or_else(|| {
                err(
                    t.span(),
                    format!(
                        "threading: '{}'; expected \"pool\" or \"rayon\"",
                        t.get_ref()
                    ),
                )
            })?,
        };
        let (raw_shapes, raw_batch) = match &raw.layer {
            Some(l) => (&l.shapes[..], &l.batch[..]),
            None => (&[][..], &[][..]),
        };
        let shapes = raw_shapes
            .iter()
            .map(|s| {
                s.get_ref()
                    .parse::<Shape>()
                    .map_err(|e| err(s.span(), format!("layer.shapes: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut batches = Vec::new();
        for b in raw_batch {
            if *b.get_ref() == 0 {
                return Err(err(
                    b.span(),
                    "layer.batch: 0; expected a batch size of at least 1".into(),
                ));
            }
            if !batches.contains(b.get_ref()) {
                batches.push(*b.get_ref());
            }
        }
        if batches.is_empty() {
            batches.push(1);
        }
        if *raw.reps.get_ref() == 0 {
            return Err(err(raw.reps.span(), "reps: 0; expected at least 1".into()));
        }
        // Models.
        let mut models = Vec::new();
        for m in &raw.models {
            models.push(parse_model(m, &base, &err)?);
        }
        // Tests and batch modes.
        let mut model_layers = false;
        let mut pp = Vec::new();
        let mut tg = Vec::new();
        let default_tests = [
            Spanned::new(0..0, "pp512".to_string()),
            Spanned::new(0..0, "tg128".to_string()),
        ];
        let tests: &[Spanned<String>] = match &raw.tests {
            Some(t) => t.get_ref(),
            None if models.is_empty() => &[],
            None => &default_tests,
        };
        for t in tests {
            match parse_test(t.get_ref()) {
                Some(TestName::Pp(n)) => pp.push(n),
                Some(TestName::Tg(n)) => tg.push(n),
                Some(TestName::Layers) => model_layers = true,
                None => {
                    return Err(err(
                        t.span(),
                        format!(
                            "tests: '{}'; expected \"ppN\" or \"tgN\" (N from 1 to 1048576, e.g. \"pp512\", \"tg128\") or \"layers\"",
                            t.get_ref()
                        ),
                    ))
                }
            }
        }
        if let (Some(t), true) = (&raw.tests, models.is_empty()) {
            if !t.get_ref().is_empty() {
                return Err(err(
                    t.span(),
                    "tests: given without models; expected a `models` list (presets or model TOML files) for them to run on".into(),
                ));
            }
        }
        let mut batch_modes = Vec::new();
        for m in raw.batch_modes.iter().flatten() {
            let mode = match m.get_ref().as_str() {
                "batched" => BatchMode::Batched,
                "token" => BatchMode::Token,
                other => {
                    return Err(err(
                        m.span(),
                        format!("batch_modes: '{other}'; expected \"batched\" or \"token\""),
                    ))
                }
            };
            if !batch_modes.contains(&mode) {
                batch_modes.push(mode);
            }
        }
        if batch_modes.is_empty() {
            batch_modes.push(BatchMode::Batched);
        }
        let mut model_tests = Vec::new();
        for &n in &pp {
            for &mode in &batch_modes {
                let t = ModelTest::Pp { n, mode };
                if !model_tests.contains(&t) {
                    model_tests.push(t);
                }
            }
        }
        for &n in &tg {
            let t = ModelTest::Tg { n };
            if !model_tests.contains(&t) {
                model_tests.push(t);
            }
        }
        if shapes.is_empty() && models.is_empty() {
            return Err(err(
                0..0,
                "nothing to run; expected [layer] shapes (e.g. [\"2560x2560\"]) or a `models` list"
                    .into(),
            ));
        }
        // Model options.
        let opts = raw.model.as_ref();
        let model_kernels = match opts.and_then(|o| o.kernels.as_ref()) {
            Some(k) => resolve_kernels(k, "model.kernels", &err)?,
            None => kernels.clone(),
        };
        let model_reps = match opts.and_then(|o| o.reps.as_ref()) {
            Some(r) if *r.get_ref() == 0 => {
                return Err(err(r.span(), "model.reps: 0; expected at least 1".into()))
            }
            Some(r) => *r.get_ref(),
            None => 5,
        };
        let lm_head = match opts.and_then(|o| o.lm_head.as_ref()) {
            None => registry::auto(Format::F16),
            Some(s) => match Format::from_name(s.get_ref()) {
                Some(f @ (Format::F16 | Format::Q8_0 | Format::Q4_0 | Format::Q6K)) => {
                    registry::auto(f)
                }
                _ => {
                    return Err(err(
                        s.span(),
                        format!(
                            "model.lm_head: '{}'; expected \"f16\", \"q8_0\", \"q4_0\" or \"q6_k\"",
                            s.get_ref()
                        ),
                    ))
                }
            },
        };
        let energy = match &raw.energy {
            None => EnergyConfig::default(),
            Some(e) => parse_energy(e, &err)?,
        };
        Ok(Config {
            name: raw.name,
            kernels,
            threads,
            threading,
            pin: raw.pin,
            reps: *raw.reps.get_ref(),
            warmup: Duration::from_millis(raw.warmup_ms),
            min_sample: Duration::from_millis(raw.min_sample_ms),
            seed: raw.seed,
            baseline: raw.baseline,
            shapes,
            batches,
            models,
            model_layers,
            model_tests,
            model_kernels,
            model_reps,
            lm_head,
            kv_f16: opts.is_some_and(|o| o.kv_f16),
            breakdown: opts.is_some_and(|o| o.breakdown),
            energy,
            text: text.to_string(),
        })
    }

    /// The configuration text with every model file written as the path
    /// it was read from, so a copy elsewhere (the run directory's
    /// `config.toml`) reads the same models. Lines do not move.
    pub fn portable_text(&self) -> String {
        let mut text = self.text.clone();
        for m in &self.models {
            if let Some(f) = &m.file {
                let from = toml::Value::String(m.spec.clone()).to_string();
                let to = toml::Value::String(f.display().to_string()).to_string();
                text = text.replace(&from, &to);
            }
        }
        text
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &file)
    }
}

type ErrFn<'a> = dyn Fn(Range<usize>, String) -> ConfigError + 'a;

fn resolve_kernels(
    list: &[Spanned<String>],
    key: &str,
    err: &ErrFn<'_>,
) -> Result<Vec<&'static dyn Kernel>, ConfigError> {
    let mut kernels: Vec<&'static dyn Kernel> = Vec::new();
    for k in list {
        for kernel in
            registry::resolve(k.get_ref()).map_err(|e| err(k.span(), format!("{key}: {e}")))?
        {
            if !kernels.iter().any(|o| o.info().name == kernel.info().name) {
                kernels.push(kernel);
            }
        }
    }
    if kernels.is_empty() {
        return Err(err(
            0..0,
            format!("{key}: empty list; expected at least one kernel name, 'all' or 'auto'"),
        ));
    }
    Ok(kernels)
}

/// A `models` entry: "PRESET", "FILE.toml", or
/// { model = "PRESET|FILE.toml", sample_layers = N | "auto" }.
fn parse_model(
    m: &Spanned<toml::Value>,
    base: &Path,
    err: &ErrFn<'_>,
) -> Result<ModelEntry, ConfigError> {
    let expected = "expected a preset name, a model .toml file, or { model = \"...\", sample_layers = N or \"auto\" }";
    let (spec, sample_layers) = match m.get_ref() {
        toml::Value::String(s) => (s.clone(), SampleLayers::All),
        toml::Value::Table(t) => {
            let mut spec = None;
            let mut sample = SampleLayers::All;
            for (k, v) in t {
                match (k.as_str(), v) {
                    ("model", toml::Value::String(s)) => spec = Some(s.clone()),
                    ("sample_layers", toml::Value::Integer(n)) if *n >= 1 => {
                        sample = SampleLayers::Blocks(*n as usize)
                    }
                    ("sample_layers", toml::Value::String(s)) if s == "auto" => {
                        sample = SampleLayers::Auto
                    }
                    ("sample_layers", v) => {
                        return Err(err(
                            m.span(),
                            format!(
                                "models: sample_layers = {v}; expected a count of at least 1 or \"auto\""
                            ),
                        ))
                    }
                    ("model", v) => {
                        return Err(err(
                            m.span(),
                            format!("models: model = {v}; expected a preset name or a .toml file"),
                        ))
                    }
                    (other, _) => {
                        return Err(err(
                            m.span(),
                            format!(
                                "models: unknown key '{other}'; expected `model` and optionally `sample_layers`"
                            ),
                        ))
                    }
                }
            }
            match spec {
                Some(s) => (s, sample),
                None => return Err(err(m.span(), format!("models: no `model` key; {expected}"))),
            }
        }
        v => return Err(err(m.span(), format!("models: {v}; {expected}"))),
    };
    let mut file = None;
    let config = if spec.ends_with(".toml") {
        let path = base.join(&spec);
        file = Some(std::fs::canonicalize(&path).unwrap_or_else(|_| path.clone()));
        let text = std::fs::read_to_string(&path).map_err(|e| {
            err(
                m.span(),
                format!("models: {}: cannot read: {e}", path.display()),
            )
        })?;
        ModelConfig::from_toml(&text, &path.display().to_string())
            .map_err(|e| err(m.span(), format!("models: {e}")))?
    } else {
        ModelConfig::preset(&spec).map_err(|e| err(m.span(), format!("models: {e}")))?
    };
    if let SampleLayers::Blocks(n) = sample_layers {
        if n > config.layers {
            return Err(err(
                m.span(),
                format!(
                    "models: sample_layers = {n} but {} has {} layers; expected at most {}",
                    config.name, config.layers, config.layers
                ),
            ));
        }
    }
    Ok(ModelEntry {
        config,
        spec,
        file,
        sample_layers,
    })
}

fn parse_energy(e: &RawEnergy, err: &ErrFn<'_>) -> Result<EnergyConfig, ConfigError> {
    let mut sources = Vec::new();
    for s in e.sources.get_ref() {
        match s.get_ref().as_str() {
            "rapl" | "cpu-time" | "model" => {
                if !sources.contains(s.get_ref()) {
                    sources.push(s.get_ref().clone())
                }
            }
            other => {
                return Err(err(
                    s.span(),
                    format!(
                        "energy.sources: '{other}'; expected \"rapl\", \"cpu-time\" or \"model\""
                    ),
                ))
            }
        }
    }
    let watts_per_core = match &e.watts_per_core {
        Some(w) if !(w.get_ref().is_finite() && *w.get_ref() > 0.0) => {
            return Err(err(
                w.span(),
                format!(
                    "energy.watts_per_core: {}; expected a positive number of watts",
                    w.get_ref()
                ),
            ))
        }
        w => w.as_ref().map(|w| *w.get_ref()),
    };
    if sources.iter().any(|s| s == "cpu-time") && watts_per_core.is_none() {
        return Err(err(
            e.sources.span(),
            "energy.sources has \"cpu-time\" but no energy.watts_per_core; expected watts per busy core, e.g. watts_per_core = 5.0".into(),
        ));
    }
    let node = match &e.node {
        None => Node::Nm7,
        Some(n) => Node::from_name(n.get_ref()).ok_or_else(|| {
            err(
                n.span(),
                format!(
                    "energy.node: '{}'; expected \"7nm\" or \"45nm\"",
                    n.get_ref()
                ),
            )
        })?,
    };
    Ok(EnergyConfig {
        sources,
        watts_per_core,
        node,
        powercap_root: PathBuf::from(e.powercap_root.as_deref().unwrap_or(POWERCAP_ROOT)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
name = "t"
kernels = ["i2s-scalar"]
threads = [1]
[layer]
shapes = ["4x256"]
"#;

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::parse(DEFAULT_CONFIG, DEFAULT_CONFIG_NAME).unwrap();
        assert_eq!(c.name, "default");
        assert!(!c.shapes.is_empty() && !c.kernels.is_empty());
        assert!(!c.models.is_empty() && !c.model_tests.is_empty());
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(
            (c.reps, c.batches.as_slice(), c.threading),
            (10, &[1][..], Threading::Pool)
        );
        assert!(c.baseline && c.models.is_empty() && c.model_tests.is_empty());
        assert!(c.energy.sources.is_empty());
    }

    const MODELS: &str = r#"
name = "m"
kernels = ["i2s-scalar"]
threads = [1, 2]
models = ["dummy-125M", { model = "dummy-100B", sample_layers = 2 }, { model = "dummy-700M", sample_layers = "auto" }]
tests = ["tg16", "pp8", "layers"]
batch_modes = ["batched", "token"]
[layer]
shapes = ["768x768"]
batch = [1, 4]
[model]
kernels = ["auto"]
reps = 2
lm_head = "q8_0"
[energy]
sources = ["rapl", "cpu-time", "model"]
watts_per_core = 4.5
node = "45nm"
"#;

    #[test]
    fn models_tests_and_energy_parse() {
        let c = Config::parse(MODELS, "m.toml").unwrap();
        let names: Vec<_> = c.models.iter().map(|m| m.config.name.as_str()).collect();
        assert_eq!(names, ["dummy-125M", "dummy-100B", "dummy-700M"]);
        assert_eq!(
            c.models.iter().map(|m| m.sample_layers).collect::<Vec<_>>(),
            [
                SampleLayers::All,
                SampleLayers::Blocks(2),
                SampleLayers::Auto
            ]
        );
        assert_eq!(
            c.model_tests,
            [
                ModelTest::Pp {
                    n: 8,
                    mode: BatchMode::Batched
                },
                ModelTest::Pp {
                    n: 8,
                    mode: BatchMode::Token
                },
                ModelTest::Tg { n: 16 }
            ]
        );
        assert!(c.model_layers);
        assert_eq!(c.model_kernels.len(), Format::ALL.len());
        assert_eq!((c.model_reps, c.lm_head.info().format), (2, Format::Q8_0));
        assert_eq!(c.energy.sources, ["rapl", "cpu-time", "model"]);
        assert_eq!(
            (c.energy.watts_per_core, c.energy.node),
            (Some(4.5), Node::Nm45)
        );
        // The explicit 768x768 comes first; model shapes follow without repeats.
        let shapes = c.layer_shapes();
        assert_eq!(
            shapes[0],
            Shape {
                rows: 768,
                cols: 768
            }
        );
        assert_eq!(
            shapes
                .iter()
                .filter(|s| s.rows == 768 && s.cols == 768)
                .count(),
            1
        );
        assert!(shapes.contains(&Shape {
            rows: 45568,
            cols: 8192
        }));
        // Models without tests get llama-bench's pp512 and tg128.
        let c = Config::parse(
            &MINIMAL.replace("threads = [1]", "threads = [1]\nmodels = [\"dummy-125M\"]"),
            "t.toml",
        )
        .unwrap();
        assert_eq!(c.model_tests.len(), 2);
        assert!(!c.model_layers);
    }

    fn error_of(text: &str) -> String {
        Config::parse(text, "bad.toml")
            .err()
            .expect("config should be refused")
            .to_string()
    }

    #[test]
    fn bad_configs_name_file_line_and_expectation() {
        let unknown_key = MINIMAL.replace("threads = [1]", "threads = [1]\nthreds = 2");
        let e = error_of(&unknown_key);
        assert!(e.starts_with("bad.toml:5:") && e.contains("threds"), "{e}");

        let bad_kernel = MINIMAL.replace("i2s-scalar", "i2s-sclar");
        let e = error_of(&bad_kernel);
        assert!(
            e.starts_with("bad.toml:3:") && e.contains("unknown kernel 'i2s-sclar'"),
            "{e}"
        );

        let zero_threads = MINIMAL.replace("threads = [1]", "threads = [0]");
        let e = error_of(&zero_threads);
        assert!(
            e.starts_with("bad.toml:4:") && e.contains("at least 1"),
            "{e}"
        );

        let bad_shape = MINIMAL.replace("4x256", "4by256");
        let e = error_of(&bad_shape);
        assert!(
            e.starts_with("bad.toml:6:") && e.contains("ROWSxCOLS"),
            "{e}"
        );

        let wrong_type = MINIMAL.replace("threads = [1]", "threads = [\"two\"]");
        let e = error_of(&wrong_type);
        assert!(e.starts_with("bad.toml:4:"), "{e}");

        let bad_threading = format!("threading = \"openmp\"\n{MINIMAL}");
        let e = error_of(&bad_threading);
        assert!(
            e.starts_with("bad.toml:1:") && e.contains("\"pool\" or \"rayon\""),
            "{e}"
        );
    }

    #[test]
    fn bad_model_parts_name_file_line_and_expectation() {
        let check = |from: &str, to: &str, line: usize, want: &str| {
            let text = MODELS.replace(from, to);
            assert_ne!(text, MODELS, "{from} not in the config");
            let e = error_of(&text);
            assert!(
                e.starts_with(&format!("bad.toml:{line}:")) && e.contains(want),
                "{from} -> {to}: {e}"
            );
        };
        check(
            "\"dummy-125M\"",
            "\"dummy-126M\"",
            5,
            "unknown model 'dummy-126M'",
        );
        check("\"dummy-125M\"", "\"nowhere.toml\"", 5, "cannot read");
        check(
            "sample_layers = 2",
            "sample_layers = 0",
            5,
            "at least 1 or \"auto\"",
        );
        check("sample_layers = 2", "sample_layers = 99", 5, "at most 72");
        check(
            "sample_layers = 2",
            "sampled = 2",
            5,
            "unknown key 'sampled'",
        );
        check("\"tg16\"", "\"tg\"", 6, "expected \"ppN\" or \"tgN\"");
        check("\"pp8\"", "\"pp-1\"", 6, "expected \"ppN\" or \"tgN\"");
        check("\"token\"", "\"tokens\"", 7, "\"batched\" or \"token\"");
        check("batch = [1, 4]", "batch = [0]", 10, "at least 1");
        check(
            "kernels = [\"auto\"]",
            "kernels = [\"q5_k-auto\"]",
            12,
            "unknown kernel",
        );
        check("reps = 2", "reps = 0", 13, "model.reps: 0");
        check(
            "lm_head = \"q8_0\"",
            "lm_head = \"i2s\"",
            14,
            "\"f16\", \"q8_0\", \"q4_0\" or \"q6_k\"",
        );
        check("lm_head = \"q8_0\"", "lm_haed = \"q8_0\"", 14, "lm_haed");
        check(
            "\"rapl\",",
            "\"joules\",",
            16,
            "\"rapl\", \"cpu-time\" or \"model\"",
        );
        check(
            "watts_per_core = 4.5",
            "watts_per_core = -1.0",
            17,
            "positive number",
        );
        check("watts_per_core = 4.5\n", "", 16, "no energy.watts_per_core");
        check(
            "node = \"45nm\"",
            "node = \"5nm\"",
            18,
            "\"7nm\" or \"45nm\"",
        );
        // Tests without models, and nothing to run at all.
        let e = error_of(&MINIMAL.replace("threads = [1]", "threads = [1]\ntests = [\"tg8\"]"));
        assert!(
            e.starts_with("bad.toml:5:") && e.contains("without models"),
            "{e}"
        );
        let e = error_of(&MINIMAL.replace("shapes = [\"4x256\"]", ""));
        assert!(e.contains("nothing to run"), "{e}");
    }

    #[test]
    fn model_files_are_read_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("ternbench-cfg-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(
            dir.join("sub/tiny.toml"),
            "name = \"tiny\"\nhidden = 64\nffn = 128\nlayers = 2\nheads = 2\nkv_heads = 1\nhead_dim = 32\nvocab = 100\nffn_activation = \"silu-gated\"\n",
        )
        .unwrap();
        let cfg = dir.join("c.toml");
        let text = MINIMAL.replace(
            "threads = [1]",
            "threads = [1]\nmodels = [\"sub/tiny.toml\"]",
        );
        std::fs::write(&cfg, &text).unwrap();
        let c = Config::load(&cfg).unwrap();
        assert_eq!(c.models[0].config.name, "tiny");
        assert_eq!(c.models[0].spec, "sub/tiny.toml");
        // The portable copy names the file absolutely and parses anywhere.
        let copy = dir.join("sub/copy.toml");
        std::fs::write(&copy, c.portable_text()).unwrap();
        let again = Config::load(&copy).unwrap();
        assert_eq!(again.models[0].config, c.models[0].config);
        assert_eq!(c.portable_text().lines().count(), text.lines().count());
        std::fs::write(dir.join("sub/tiny.toml"), "name = \"tiny\"\nhidden = 0\n").unwrap();
        let e = Config::load(&cfg).err().expect("refused").to_string();
        assert!(e.contains("c.toml:5:") && e.contains("tiny.toml"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
