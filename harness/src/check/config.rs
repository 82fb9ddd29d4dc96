//! The gate's configuration (`configs/ci.toml`), parsed strictly: an unknown
//! key, a value of the wrong type or range, `auto`/`all` instead of a kernel
//! name, or a name that is not a kernel is refused before anything runs, with
//! the file, the line, the field and what was expected.
//!
//! Kernel lists are per architecture (`kernels.x86_64`, `kernels.aarch64`).
//! Names for this machine's architecture are looked up in the registry; names
//! for the other must at least read `<format>-<isa>` with a known format and
//! ISA (their kernels are not compiled into this binary).

use crate::config::ConfigError;
use crate::layer::Shape;
use serde::Deserialize;
use std::ops::Range;
use std::path::Path;
use std::time::Duration;
use ternbench_kernels::formats::Format;
use ternbench_kernels::{registry, Kernel};
use toml::Spanned;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    #[serde(default = "default_seed")]
    seed: u64,
    instructions: RawInstructions,
    wallclock: RawWallclock,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInstructions {
    threshold_pct: Spanned<f64>,
    calls: Spanned<usize>,
    shapes: Vec<Spanned<String>>,
    batch: Vec<Spanned<usize>>,
    kernels: PerArch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWallclock {
    threshold_pct: Spanned<f64>,
    shapes: Vec<Spanned<String>>,
    batch: Vec<Spanned<usize>>,
    rounds: Spanned<usize>,
    reps: Spanned<usize>,
    #[serde(default)]
    warmup_ms: u64,
    #[serde(default = "default_true")]
    pin: bool,
    pairs: PerArch,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PerArch {
    #[serde(default)]
    x86_64: Vec<Spanned<String>>,
    #[serde(default)]
    aarch64: Vec<Spanned<String>>,
}

fn default_seed() -> u64 {
    1
}
fn default_true() -> bool {
    true
}

/// The instruction-count part of the gate.
#[derive(Clone, Debug)]
pub struct InstructionPlan {
    pub threshold_pct: f64,
    pub calls: usize,
    pub shapes: Vec<Shape>,
    pub batches: Vec<usize>,
    /// Kernel names for this architecture (resolved when run: a kernel this
    /// CPU cannot run is skipped with the reason).
    pub kernels: Vec<&'static dyn Kernel>,
}

/// A wall-clock comparison: `kernel` against `reference`.
#[derive(Clone, Copy, Debug)]
pub struct Pair {
    pub kernel: &'static dyn Kernel,
    pub reference: &'static dyn Kernel,
}

/// The wall-clock part of the gate.
#[derive(Clone, Debug)]
pub struct WallclockPlan {
    pub threshold_pct: f64,
    pub shapes: Vec<Shape>,
    pub batches: Vec<usize>,
    pub rounds: usize,
    pub reps: usize,
    pub warmup: Duration,
    pub pin: bool,
    pub pairs: Vec<Pair>,
}

/// A validated gate configuration.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    pub name: String,
    pub seed: u64,
    pub instructions: InstructionPlan,
    pub wallclock: WallclockPlan,
}

fn line_of(text: &str, span: Range<usize>) -> usize {
    text[..span.start.min(text.len())].matches('\n').count() + 1
}

const ISAS: [&str; 7] = [
    "scalar", "avx2", "avxvnni", "avx512", "neon", "dotprod", "i8mm",
];

/// Checks that `name` reads `<format>-<isa>` (for another architecture's list).
fn well_formed(name: &str) -> bool {
    Format::ALL.iter().any(|f| {
        name.strip_prefix(f.name())
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|isa| ISAS.contains(&isa))
    })
}

impl CheckConfig {
    /// Parses and validates `text`, read from `file` (used in messages).
    pub fn parse(text: &str, file: &str) -> Result<CheckConfig, ConfigError> {
        let err = |span: Range<usize>, message: String| ConfigError {
            file: file.to_string(),
            line: line_of(text, span),
            message,
        };
        let raw: Raw = toml::from_str(text).map_err(|e| {
            let message = e.message().to_string();
            err(e.span().unwrap_or(0..0), message)
        })?;
        let threshold = |field: &str, t: &Spanned<f64>| {
            let v = *t.get_ref();
            if v.is_finite() && v > 0.0 && v < 100.0 {
                Ok(v)
            } else {
                Err(err(
                    t.span(),
                    format!("{field}: {v}; expected a percentage above 0 and below 100"),
                ))
            }
        };
        let positive = |field: &str, n: &Spanned<usize>| {
            if *n.get_ref() == 0 {
                Err(err(n.span(), format!("{field}: 0; expected at least 1")))
            } else {
                Ok(*n.get_ref())
            }
        };
        let shapes = |field: &str, list: &[Spanned<String>]| {
            if list.is_empty() {
                return Err(err(
                    0..0,
                    format!("{field}: empty list; expected shapes such as [\"128x2560\"]"),
                ));
            }
            list.iter()
                .map(|s| {
                    s.get_ref()
                        .parse::<Shape>()
                        .map_err(|e| err(s.span(), format!("{field}: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        let batches = |field: &str, list: &[Spanned<usize>]| {
            if list.is_empty() {
                return Err(err(
                    0..0,
                    format!("{field}: empty list; expected batch sizes such as [1, 4]"),
                ));
            }
            list.iter().map(|b| positive(field, b)).collect()
        };
        // A kernel pinned by name: never `auto`/`all`, and one this binary has.
        let kernel = |field: &str, s: &Spanned<String>| -> Result<&'static dyn Kernel, _> {
            let name = s.get_ref().trim();
            if name == "auto" || name == "all" || name.ends_with("-auto") {
                return Err(err(
                    s.span(),
                    format!(
                        "{field}: '{name}'; the gate pins kernels by name, expected e.g. \"i2s-avx2\""
                    ),
                ));
            }
            registry::all()
                .iter()
                .copied()
                .find(|k| k.info().name == name)
                .ok_or_else(|| {
                    let known: Vec<_> = registry::all().iter().map(|k| k.info().name).collect();
                    err(
                        s.span(),
                        format!(
                            "{field}: unknown kernel '{name}'; expected one of: {}",
                            known.join(", ")
                        ),
                    )
                })
        };
        let (this, other, this_name, other_name) = per_arch_lists();
        let i = &raw.instructions;
        let this_kernels = this(&i.kernels);
        let field = format!("instructions.kernels.{this_name}");
        let mut kernels = Vec::new();
        for s in this_kernels {
            let k = kernel(&field, s)?;
            if !kernels
                .iter()
                .any(|o: &&dyn Kernel| o.info().name == k.info().name)
            {
                kernels.push(k);
            }
        }
        for s in other(&i.kernels) {
            if !well_formed(s.get_ref()) {
                return Err(err(
                    s.span(),
                    format!(
                        "instructions.kernels.{other_name}: '{}'; expected a kernel name <format>-<isa>",
                        s.get_ref()
                    ),
                ));
            }
        }
        let w = &raw.wallclock;
        let field = format!("wallclock.pairs.{this_name}");
        let mut pairs = Vec::new();
        for s in this(&w.pairs) {
            let Some((a, b)) = s.get_ref().split_once('/') else {
                return Err(err(
                    s.span(),
                    format!(
                        "{field}: '{}'; expected \"KERNEL/REFERENCE\", e.g. \"i2s-avx2/i2s-scalar\"",
                        s.get_ref()
                    ),
                ));
            };
            let piece = |t: &str| Spanned::new(s.span(), t.to_string());
            pairs.push(Pair {
                kernel: kernel(&field, &piece(a))?,
                reference: kernel(&field, &piece(b))?,
            });
        }
        for s in other(&w.pairs) {
            let ok = s
                .get_ref()
                .split_once('/')
                .is_some_and(|(a, b)| well_formed(a) && well_formed(b));
            if !ok {
                return Err(err(
                    s.span(),
                    format!(
                        "wallclock.pairs.{other_name}: '{}'; expected \"KERNEL/REFERENCE\" with kernel names <format>-<isa>",
                        s.get_ref()
                    ),
                ));
            }
        }
        if kernels.is_empty() && pairs.is_empty() {
            return Err(err(
                0..0,
                format!(
                    "instructions.kernels.{this_name} and wallclock.pairs.{this_name} are both empty; expected kernels to check on this architecture"
                ),
            ));
        }
        Ok(CheckConfig {
            name: raw.name.clone(),
            seed: raw.seed,
            instructions: InstructionPlan {
                threshold_pct: threshold("instructions.threshold_pct", &i.threshold_pct)?,
                calls: positive("instructions.calls", &i.calls)?,
                shapes: shapes("instructions.shapes", &i.shapes)?,
                batches: batches("instructions.batch", &i.batch)?,
                kernels,
            },
            wallclock: WallclockPlan {
                threshold_pct: threshold("wallclock.threshold_pct", &w.threshold_pct)?,
                shapes: shapes("wallclock.shapes", &w.shapes)?,
                batches: batches("wallclock.batch", &w.batch)?,
                rounds: positive("wallclock.rounds", &w.rounds)?,
                reps: positive("wallclock.reps", &w.reps)?,
                warmup: Duration::from_millis(w.warmup_ms),
                pin: w.pin,
                pairs,
            },
        })
    }

    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<CheckConfig, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            message: format!("cannot read: {e}"),
        })?;
        CheckConfig::parse(&text, &file)
    }
}

type ListOf = fn(&PerArch) -> &[Spanned<String>];

/// (this architecture's list, the other's, their names).
fn per_arch_lists() -> (ListOf, ListOf, &'static str, &'static str) {
    fn x86(p: &PerArch) -> &[Spanned<String>] {
        &p.x86_64
    }
    fn arm(p: &PerArch) -> &[Spanned<String>] {
        &p.aarch64
    }
    if cfg!(target_arch = "aarch64") {
        (arm, x86, "aarch64", "x86_64")
    } else {
        (x86, arm, "x86_64", "aarch64")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CI: &str = include_str!("../../../configs/ci.toml");

    #[test]
    fn committed_ci_config_is_valid_and_pins_kernels() {
        let c = CheckConfig::parse(CI, "configs/ci.toml").unwrap();
        assert_eq!(c.name, "ci");
        assert!(!c.instructions.kernels.is_empty());
        assert!((c.instructions.threshold_pct - 2.0).abs() < 1e-12);
        #[cfg(target_arch = "x86_64")]
        {
            let names: Vec<_> = c
                .instructions
                .kernels
                .iter()
                .map(|k| k.info().name)
                .collect();
            assert!(names.contains(&"i2s-avx2") && names.contains(&"f16-scalar"));
            assert!(names.iter().all(|n| !n.contains("avx512")), "{names:?}");
            assert!(c
                .wallclock
                .pairs
                .iter()
                .any(|p| p.kernel.info().name == "i2s-avx2"
                    && p.reference.info().name == "i2s-scalar"));
        }
    }

    fn error_of(text: &str) -> String {
        CheckConfig::parse(text, "bad.toml")
            .expect_err("config should be refused")
            .to_string()
    }

    #[test]
    fn bad_configs_name_file_line_field_and_expectation() {
        let e = error_of(&CI.replace("calls = 1", "calls = 1\ncals = 3"));
        assert!(e.starts_with("bad.toml:") && e.contains("cals"), "{e}");

        let e = error_of(&CI.replace("\"i2s-scalar\", \"i2s-avx2\"", "\"i2s-auto\""));
        assert!(
            e.contains("instructions.kernels.x86_64") && e.contains("pins kernels by name"),
            "{e}"
        );

        let e = error_of(&CI.replace("\"tq1-scalar\", \"tq1-avx2\"", "\"tq1-avx3\""));
        assert!(e.contains("unknown kernel 'tq1-avx3'"), "{e}");

        let e = error_of(&CI.replace("\"i2s-neon\"", "\"i2s-sve\""));
        assert!(e.contains("instructions.kernels.aarch64"), "{e}");

        let e = error_of(&CI.replace("threshold_pct = 2.0", "threshold_pct = -1.0"));
        assert!(
            e.contains("instructions.threshold_pct") && e.contains("above 0"),
            "{e}"
        );

        let e = error_of(&CI.replace("\"i2s-avx2/i2s-scalar\"", "\"i2s-avx2\""));
        assert!(e.contains("KERNEL/REFERENCE"), "{e}");

        let e = error_of(&CI.replace("rounds = 30", "rounds = 0"));
        assert!(e.contains("wallclock.rounds: 0"), "{e}");

        let e = error_of(&CI.replace("\"128x2560\"", "\"128by2560\""));
        assert!(
            e.contains("instructions.shapes") && e.contains("ROWSxCOLS"),
            "{e}"
        );

        let e = error_of(&CI.replace("calls = 1", "calls = \"two\""));
        assert!(e.starts_with("bad.toml:"), "{e}");
    }
}
