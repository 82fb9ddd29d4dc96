//! `ternbench sweep` (and `ternbench` with no arguments): runs a
//! [`Config`] as a cross product, through the layer bench
//! ([`crate::layer`]) for layer tests and the model bench
//! ([`crate::model::bench`]) for ppN / tgN tests, into one run directory:
//! `config.toml` (the configuration, for `--resume`), `results.csv`
//! (appended and flushed row by row, so an interrupted sweep keeps every
//! finished measurement), then the report.
//!
//! Resume: every row has a key ([`Row::key`]: model, test, shape, batch,
//! batch mode, threads, kernel, cold, op, energy source). A resumed sweep
//! reads the keys already in `results.csv` (cutting a partly written last
//! line, left by a kill in the middle of a write), skips every group
//! (layer: shape x batch x threads; model: model x test x threads) whose
//! kernels all have a row, and writes no row whose key is already there.
//! A group that was cut in the middle runs again in full, since its
//! kernels are timed interleaved, and only its missing rows are written.
//!
//! A model that cannot run here (too large for memory, a failed build) is
//! skipped with the reason and the sweep goes on; the exit code is then 1.

use crate::config::{Config, ModelEntry, SampleLayers};
use crate::layer::{self, LayerBench, Shape};
use crate::measure::energy::EnergyPlan;
use crate::measure::{SystemInfo, TimingPlan};
use crate::model::bench::{self as model_bench, memory_needed, BatchMode, ModelBench, ModelTest};
use crate::model::engine::estimate_bytes;
use crate::model::weights::SyntheticSource;
use crate::output::{measurement_key, row_key, OutputFormat, Sink, MEASUREMENT_COLUMNS};
use anyhow::Context;
use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;

/// What is already in a run directory's results.csv.
#[derive(Debug, Default)]
pub struct Done {
    /// Row keys ([`crate::output::Row::key`]).
    pub rows: HashSet<String>,
    /// Measurement keys ([`crate::output::Row::measurement`]).
    pub measurements: HashSet<String>,
}

/// Reads the keys of `path` (missing or empty: nothing done). A last line
/// without its newline (a write cut by a kill) is removed from the file.
pub fn read_done(path: &Path) -> anyhow::Result<Done> {
    let mut done = Done::default();
    let Ok(bytes) = std::fs::read(path) else {
        return Ok(done);
    };
    if bytes.is_empty() {
        return Ok(done);
    }
    if bytes.last() != Some(&b'\n') {
        let keep = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        crate::say!(
            "{}: removing a partly written last line ({} bytes) left by the interruption",
            path.display(),
            bytes.len() - keep
        );
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {} to repair it", path.display()))?;
        f.set_len(keep as u64)
            .with_context(|| format!("cannot truncate {}", path.display()))?;
        if keep == 0 {
            return Ok(done);
        }
    }
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("cannot read {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header", path.display()))?
        .clone();
    let col = |name: &str| {
        headers.iter().position(|h| h == name).ok_or_else(|| {
            anyhow::anyhow!(
                "{}: no column '{name}'; expected a results.csv written by ternbench sweep",
                path.display()
            )
        })
    };
    let version = col("schema_version")?;
    let cols = MEASUREMENT_COLUMNS
        .iter()
        .map(|c| col(c))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (op, energy) = (col("op")?, col("energy_source")?);
    for (i, rec) in reader.records().enumerate() {
        let rec = rec.with_context(|| format!("{}:{}", path.display(), i + 2))?;
        let v = rec.get(version).unwrap_or("");
        if v != crate::output::SCHEMA_VERSION.to_string() {
            anyhow::bail!(
                "{}:{}: schema_version '{v}'; expected {} (resume a run of this ternbench version)",
                path.display(),
                i + 2,
                crate::output::SCHEMA_VERSION
            );
        }
        let values: Vec<&str> = cols.iter().map(|&c| rec.get(c).unwrap_or("")).collect();
        let m = measurement_key(&values);
        done.rows.insert(row_key(
            &m,
            rec.get(op).unwrap_or(""),
            rec.get(energy).unwrap_or(""),
        ));
        done.measurements.insert(m);
    }
    Ok(done)
}

fn layer_key(shape: Shape, batch: usize, threads: usize, kernel: &str) -> String {
    measurement_key(&[
        "",
        "layer",
        &shape.rows.to_string(),
        &shape.cols.to_string(),
        &batch.to_string(),
        "",
        &threads.to_string(),
        kernel,
        "false",
    ])
}

fn model_key(model: &str, test: ModelTest, threads: usize, kernel: &str) -> String {
    let batch = match test {
        ModelTest::Pp {
            n,
            mode: BatchMode::Batched,
        } => n,
        _ => 1,
    };
    measurement_key(&[
        model,
        &test.name(),
        "0",
        "0",
        &batch.to_string(),
        test.batch_mode_name(),
        &threads.to_string(),
        kernel,
        "false",
    ])
}

/// How many blocks of `entry` to hold, or why it cannot run here.
fn sample_layers(
    entry: &ModelEntry,
    bench: &ModelBench,
    available: u64,
) -> Result<Option<usize>, String> {
    let c = &entry.config;
    match entry.sample_layers {
        SampleLayers::All => Ok(None),
        SampleLayers::Blocks(n) => Ok(Some(n)),
        SampleLayers::Auto => {
            let specs = model_bench::specs(bench);
            let capacity = bench.tests.iter().map(|t| t.n()).max().unwrap_or(1);
            let need = |blocks| memory_needed(c, &specs, blocks, capacity, bench.kv_f16);
            // Leave a fifth of the available memory to everything else.
            let budget = available / 5 * 4;
            if available == 0 || need(c.layers) <= budget {
                return Ok(None);
            }
            let per_block = need(1) - need(0);
            let fit = (budget.saturating_sub(need(0)) / per_block.max(1)) as usize;
            // Sampled blocks must together be larger than the last-level cache.
            let llc = SystemInfo::get().last_level_cache_bytes;
            let smallest = specs
                .iter()
                .map(|s| estimate_bytes(c, s.kernel.info().format, s.lm_head.info().format).0)
                .min()
                .unwrap_or(1)
                .max(1);
            let least = (llc / smallest + 1) as usize;
            if fit < least.max(1) {
                return Err(format!(
                    "needs about {:.1} GiB with {} sampled block(s); {:.1} GiB are available",
                    need(least.max(1)) as f64 / (1u64 << 30) as f64,
                    least.max(1),
                    available as f64 / (1u64 << 30) as f64
                ));
            }
            Ok(Some(fit.min(c.layers)))
        }
    }
}

/// Runs `config` into `dir`; with `resume`, skips what `dir/results.csv` holds.
pub fn run(
    config: &Config,
    dir: &Path,
    format: OutputFormat,
    resume: bool,
) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let saved = dir.join("config.toml");
    if !(resume && saved.exists()) {
        std::fs::write(&saved, config.portable_text())
            .with_context(|| format!("cannot write {}", saved.display()))?;
    }
    let results = dir.join("results.csv");
    let done = if resume {
        read_done(&results)?
    } else {
        Done::default()
    };
    let sys = SystemInfo::get();
    eprintln!(
        "ternbench {} ({}), {} on {} ({} cores, {}), results in {}{}",
        env!("CARGO_PKG_VERSION"),
        sys.commit,
        config.name,
        sys.cpu_model,
        sys.physical_cores,
        sys.cpu_features,
        dir.display(),
        if resume {
            format!(", resuming after {} rows", done.rows.len())
        } else {
            String::new()
        }
    );
    // The layer part.
    let plan = TimingPlan {
        warmup: config.warmup,
        reps: config.reps,
        min_sample: config.min_sample,
    };
    let mut lb = LayerBench {
        kernels: config.kernels.clone(),
        shapes: config.layer_shapes(),
        batches: config.batches.clone(),
        threads: config.threads.clone(),
        threading: config.threading,
        pin: config.pin,
        baseline: config.baseline,
        plan,
        seed: config.seed,
        skip: HashSet::new(),
        cold: false,
        roofline: true,
    };
    let layer_kernels = layer::group_kernels(&lb);
    let (mut total, mut finished) = (0u64, 0u64);
    for &shape in &lb.shapes {
        for &batch in &lb.batches {
            for &threads in &lb.threads {
                let keys: Vec<String> = layer_kernels
                    .iter()
                    .map(|k| layer_key(shape, batch, threads, k.info().name))
                    .collect();
                let n_done = keys
                    .iter()
                    .filter(|k| done.measurements.contains(*k))
                    .count();
                total += keys.len() as u64;
                finished += n_done as u64;
                if n_done == keys.len() {
                    lb.skip.insert((shape, batch, threads));
                }
            }
        }
    }
    // The model part: one bench per model, all tests and threads.
    let energy = EnergyPlan::open(
        &config.energy.sources,
        &config.energy.powercap_root,
        config.energy.watts_per_core,
        config.energy.node,
    );
    if !config.models.is_empty() {
        for why in &energy.skipped {
            eprintln!("energy: {why}; skipped");
        }
    }
    let rows_per_measurement = energy.sources().len().max(1) as u64;
    let mut benches = Vec::new();
    for entry in &config.models {
        let mut b = ModelBench {
            config: entry.config.clone(),
            source: Box::new(SyntheticSource {
                config: entry.config.clone(),
                seed: config.seed,
            }),
            kernels: config.model_kernels.clone(),
            baseline: config.baseline,
            lm_head: config.lm_head,
            threads: config.threads.clone(),
            threading: config.threading,
            pin: config.pin,
            tests: config.model_tests.clone(),
            reps: config.model_reps,
            kv_f16: config.kv_f16,
            sample_layers: None,
            breakdown: config.breakdown,
            seed: config.seed,
            skip: HashSet::new(),
            energy: energy.clone(),
        };
        let specs = model_bench::specs(&b);
        for &test in &config.model_tests {
            for &threads in &config.threads {
                let keys: Vec<String> = specs
                    .iter()
                    .map(|s| model_key(&entry.config.name, test, threads, s.kernel.info().name))
                    .collect();
                let n_done = keys
                    .iter()
                    .filter(|k| done.measurements.contains(*k))
                    .count();
                total += keys.len() as u64 * rows_per_measurement;
                finished += n_done as u64 * rows_per_measurement;
                if n_done == keys.len() {
                    b.skip.insert((test, threads));
                }
            }
        }
        benches.push((entry, b));
    }
    let bar = if std::io::stderr().is_terminal() {
        let style = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} rows, ETA {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        indicatif::ProgressBar::new(total).with_style(style)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_position(finished);
    crate::output::set_progress(Some(bar.clone()));
    let result = run_parts(config, &results, format, done, lb, benches, &bar);
    crate::output::set_progress(None);
    bar.finish_and_clear();
    let code = result?;
    Ok(crate::report::after_run(dir, code))
}

fn run_parts(
    config: &Config,
    results: &Path,
    format: OutputFormat,
    done: Done,
    lb: LayerBench,
    benches: Vec<(&ModelEntry, ModelBench)>,
    bar: &indicatif::ProgressBar,
) -> anyhow::Result<ExitCode> {
    let mut sink = Sink::new(format, Some(results))?;
    sink.skip_keys(done.rows);
    let mut failures = Vec::new();
    let mut skipped = Vec::new();
    let mut rows = 0;
    if !lb.shapes.is_empty() {
        bar.set_message(format!(
            "layers: {} shapes x {} kernels",
            lb.shapes.len(),
            lb.kernels.len()
        ));
        let s = layer::run(&lb, &mut sink)?;
        rows += s.rows_written;
        failures.extend(s.failures);
    }
    let available = model_bench::available_memory();
    for (entry, mut b) in benches {
        if config
            .model_tests
            .iter()
            .all(|&t| config.threads.iter().all(|&th| b.skip.contains(&(t, th))))
        {
            continue;
        }
        bar.set_message(format!(
            "model {}: {}",
            entry.spec,
            config
                .model_tests
                .iter()
                .map(|t| t.name())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        match sample_layers(entry, &b, available) {
            Ok(n) => b.sample_layers = n,
            Err(why) => {
                crate::say!("skipped model {}: {why}", entry.spec);
                skipped.push(format!("{}: {why}", entry.spec));
                continue;
            }
        }
        match model_bench::run(&b, &mut sink) {
            Ok(s) => {
                rows += s.rows_written;
                failures.extend(s.failures);
            }
            Err(e) => {
                crate::say!("skipped model {}: {e:#}", entry.spec);
                skipped.push(format!("{}: {e:#}", entry.spec));
            }
        }
    }
    crate::say!("{rows} rows written to {}", results.display());
    if !failures.is_empty() {
        crate::say!(
            "error: {} kernel(s) failed verification; their rows have verified=false and no speed",
            failures.len()
        );
    }
    for s in &skipped {
        crate::say!("error: model skipped: {s}");
    }
    Ok(if failures.is_empty() && skipped.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
