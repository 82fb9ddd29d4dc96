//! Benchmark configurations (TOML): what `ternbench sweep --config FILE` and
//! `ternbench` with no arguments (the embedded `configs/default.toml`) run.
//!
//! Parsing is strict: an unknown key, a value of the wrong type, an unknown
//! kernel, a malformed shape or a zero thread count is refused before
//! anything runs, with the file, the line and what was expected.

use crate::layer::Shape;
use serde::Deserialize;
use std::ops::Range;
use std::time::Duration;
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
    reps: usize,
    #[serde(default = "default_warmup_ms")]
    warmup_ms: u64,
    #[serde(default = "default_min_sample_ms")]
    min_sample_ms: u64,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_baseline")]
    baseline: bool,
    layer: RawLayer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLayer {
    shapes: Vec<Spanned<String>>,
    #[serde(default = "default_batch")]
    batch: Vec<Spanned<usize>>,
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

fn default_reps() -> usize {
    10
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
    pub shapes: Vec<Shape>,
    pub batches: Vec<usize>,
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

impl Config {
    /// Parses and validates `text`, read from `file` (used in messages).
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let err = |span: Range<usize>, message: String| ConfigError {
            file: file.to_string(),
            line: line_of(text, span),
            message,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            err(e.span().unwrap_or(0..0), message)
        })?;
        let mut kernels: Vec<&'static dyn Kernel> = Vec::new();
        for k in &raw.kernels {
            for kernel in registry::resolve(k.get_ref())
                .map_err(|e| err(k.span(), format!("kernels: {e}")))?
            {
                if !kernels.iter().any(|o| o.info().name == kernel.info().name) {
                    kernels.push(kernel);
                }
            }
        }
        if kernels.is_empty() {
            return Err(err(
                0..0,
                "kernels: empty list; expected at least one kernel name, 'all' or 'auto'".into(),
            ));
        }
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
        let shapes = raw
            .layer
            .shapes
            .iter()
            .map(|s| {
                s.get_ref()
                    .parse::<Shape>()
                    .map_err(|e| err(s.span(), format!("layer.shapes: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if shapes.is_empty() {
            return Err(err(
                0..0,
                "layer.shapes: empty list; expected shapes such as [\"2560x2560\"]".into(),
            ));
        }
        let mut batches = Vec::new();
        for b in &raw.layer.batch {
            if *b.get_ref() == 0 {
                return Err(err(
                    b.span(),
                    "layer.batch: 0; expected a batch size of at least 1".into(),
                ));
            }
            batches.push(*b.get_ref());
        }
        if raw.reps == 0 {
            return Err(err(0..0, "reps: 0; expected at least 1".into()));
        }
        Ok(Config {
            name: raw.name,
            kernels,
            threads,
            threading,
            pin: raw.pin,
            reps: raw.reps,
            warmup: Duration::from_millis(raw.warmup_ms),
            min_sample: Duration::from_millis(raw.min_sample_ms),
            seed: raw.seed,
            baseline: raw.baseline,
            shapes,
            batches,
        })
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &file)
    }
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
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL, "t.toml").unwrap();
        assert_eq!(
            (c.reps, c.batches.as_slice(), c.threading),
            (10, &[1][..], Threading::Pool)
        );
        assert!(c.baseline);
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
}
