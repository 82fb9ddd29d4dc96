//! `ternbench check`: the performance regression gate for CI.
//!
//! `ternbench check --config configs/ci.toml --baseline reports/baselines/ci.csv`
//! measures a fixed set of kernels, pinned by name, on small real-model
//! shapes and compares with the committed baseline:
//!
//! 1. instructions per kernel call under callgrind ([`instructions`]):
//!    deterministic, so a tight threshold (2%) gates without false alarms on a
//!    noisy machine;
//! 2. wall-clock speedups of kernel pairs timed interleaved in one process
//!    ([`wallclock`]): a wide threshold, informational unless
//!    `--gate-wallclock`.
//!
//! Exit codes: 0 within thresholds; 1 a regression, a kernel that failed
//! verification, or a count that could not be made; 2 bad input (arguments,
//! configuration, baseline file) or no valgrind. `--update-baseline` writes
//! the measurement over the baseline instead of comparing. The baseline
//! records rustc, CPU model, commit and valgrind version; a difference is
//! printed as a warning (a new compiler changes instruction counts).

pub mod baseline;
pub mod config;
pub mod instructions;
pub mod wallclock;

use crate::measure::SystemInfo;
use baseline::{Comparison, Record, Verdict, INSTRUCTIONS, SPEEDUP};
use clap::Args;
use config::CheckConfig;
use instructions::{CountError, CountJob};
use std::path::PathBuf;
use std::process::ExitCode;
use ternbench_kernels::registry;

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The gate's configuration (configs/ci.toml).
    #[arg(long)]
    pub config: PathBuf,
    /// The committed baseline CSV (reports/baselines/ci.csv).
    #[arg(long)]
    pub baseline: PathBuf,
    /// Write this run's figures over the baseline instead of comparing.
    #[arg(long)]
    pub update_baseline: bool,
    /// Fail on wall-clock speedup regressions too (default: informational).
    #[arg(long)]
    pub gate_wallclock: bool,
    /// Also write DIR/check.csv (this run's metrics, baseline format) and
    /// DIR/results.csv (the wall-clock rows, for `ternbench report`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// valgrind processes run at once (default: the number of CPUs).
    #[arg(long)]
    pub jobs: Option<usize>,
}

fn bad_input(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {msg}");
    ExitCode::from(2)
}

/// Runs `ternbench check`.
pub fn run(args: CheckArgs) -> ExitCode {
    match run_inner(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run_inner(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let config = match CheckConfig::load(&args.config) {
        Ok(c) => c,
        Err(e) => return Ok(bad_input(e)),
    };
    if args.jobs == Some(0) {
        return Ok(bad_input("--jobs: 0; expected at least 1"));
    }
    let base = if args.update_baseline && !args.baseline.exists() {
        Vec::new()
    } else {
        match baseline::read(&args.baseline) {
            Ok(b) => b,
            Err(e) => return Ok(bad_input(e)),
        }
    };
    let valgrind = if config.instructions.kernels.is_empty() {
        String::new()
    } else {
        match instructions::valgrind_version() {
            Ok(v) => v,
            Err(e) => return Ok(bad_input(e)),
        }
    };
    let sys = SystemInfo::get();
    eprintln!(
        "ternbench check {} ({}, {}) on {} ({}); {}",
        config.name, sys.commit, sys.rustc, sys.cpu_model, sys.arch, valgrind
    );
    let record =
        |kind: &str, metric: String, kernel: &str, reference: &str, shape, batch, value| Record {
            metric,
            kind: kind.into(),
            kernel: kernel.into(),
            reference: reference.into(),
            shape,
            batch,
            value,
            arch: sys.arch.clone(),
            rustc: sys.rustc.clone(),
            cpu: sys.cpu_model.clone(),
            commit: sys.commit.clone(),
            valgrind: if kind == INSTRUCTIONS {
                valgrind.clone()
            } else {
                String::new()
            },
        };
    let mut now: Vec<Record> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();

    // 1. Instruction counts.
    let plan = &config.instructions;
    let mut jobs = Vec::new();
    for &k in &plan.kernels {
        if let Err(f) = registry::availability(k) {
            notes.push(format!(
                "skipped {}: needs the CPU feature '{f}', which this CPU does not have",
                k.info().name
            ));
            continue;
        }
        let mut cases = Vec::new();
        for &shape in &plan.shapes {
            for &batch in &plan.batches {
                cases.push(instructions::Case { shape, batch });
            }
        }
        jobs.push(CountJob {
            kernel: k.info().name,
            cases,
            calls: plan.calls,
            seed: config.seed,
        });
    }
    if !jobs.is_empty() {
        let exe = std::env::current_exe()
            .map_err(|e| anyhow::anyhow!("cannot find this binary to run under valgrind: {e}"))?;
        let parallel = args
            .jobs
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        let scratch = instructions::Scratch::new()
            .map_err(|e| anyhow::anyhow!("cannot create a scratch directory: {e}"))?;
        eprintln!(
            "counting instructions: {} kernels under callgrind, {parallel} at a time",
            jobs.len()
        );
        let start = std::time::Instant::now();
        let counts = instructions::count_all(&exe, &jobs, parallel, &scratch.0);
        eprintln!("counted in {:.1} s", start.elapsed().as_secs_f64());
        for (job, c) in jobs.iter().zip(counts) {
            match c {
                Ok(per_case) => {
                    for (case, n) in job.cases.iter().zip(per_case) {
                        let shape = case.shape.to_string();
                        now.push(record(
                            INSTRUCTIONS,
                            Record::instructions_id(job.kernel, &shape, case.batch),
                            job.kernel,
                            "",
                            shape,
                            case.batch,
                            n as f64,
                        ));
                    }
                }
                Err(CountError::Refused(why)) | Err(CountError::Failed(why)) => {
                    errors.push(format!("instruction count: {why}"))
                }
            }
        }
    }

    // 2. Wall-clock speedups.
    let mut rows = Vec::new();
    if !config.wallclock.pairs.is_empty() {
        eprintln!(
            "timing {} kernel pairs interleaved ({} rounds)",
            config.wallclock.pairs.len(),
            config.wallclock.rounds
        );
        let w = wallclock::run(&config.wallclock, config.seed)?;
        notes.extend(w.skipped.iter().map(|s| format!("skipped {s}")));
        errors.extend(w.failures.iter().map(|f| format!("verification: {f}")));
        for p in &w.pairs {
            let shape = p.shape.to_string();
            now.push(record(
                SPEEDUP,
                Record::speedup_id(p.kernel, p.reference, &shape, p.batch),
                p.kernel,
                p.reference,
                shape,
                p.batch,
                p.speedup,
            ));
        }
        rows = w.rows;
    }

    if let Some(dir) = &args.out {
        baseline::write(&dir.join("check.csv"), &now)?;
        let path = dir.join("results.csv");
        let mut w = csv::Writer::from_path(&path)
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
        for r in &rows {
            w.serialize(r)?;
        }
        w.flush()?;
        eprintln!(
            "wrote {} and {}",
            dir.join("check.csv").display(),
            path.display()
        );
    }
    for n in &notes {
        eprintln!("note: {n}");
    }
    for e in &errors {
        eprintln!("error: {e}");
    }

    if args.update_baseline {
        if !errors.is_empty() {
            eprintln!("error: baseline not written: the run had errors");
            return Ok(ExitCode::FAILURE);
        }
        // Keep the other architectures' rows (a fleet baseline holds several).
        let mut records: Vec<Record> = base.into_iter().filter(|b| b.arch != sys.arch).collect();
        records.extend(now.iter().cloned());
        baseline::write(&args.baseline, &records)?;
        print_values(&now);
        eprintln!(
            "baseline {} updated: {} metrics for {}",
            args.baseline.display(),
            now.len(),
            sys.arch
        );
        return Ok(ExitCode::SUCCESS);
    }

    let threshold = |kind: &str| {
        if kind == INSTRUCTIONS {
            config.instructions.threshold_pct
        } else {
            config.wallclock.threshold_pct
        }
    };
    let gate_wallclock = args.gate_wallclock;
    let table = baseline::compare(&base, &now, threshold, |kind| {
        kind == INSTRUCTIONS || gate_wallclock
    });
    print_table(&table);
    for w in baseline::provenance_warnings(&base, &now) {
        eprintln!("warning: {w}");
    }
    let missing = baseline::missing(&base, &now);
    if !missing.is_empty() {
        eprintln!(
            "warning: {} baseline metrics were not measured: {}",
            missing.len(),
            missing.join(", ")
        );
    }
    let new = table.iter().filter(|c| c.verdict == Verdict::New).count();
    if new > 0 {
        eprintln!(
            "warning: {new} metrics have no baseline row (not compared); record them with --update-baseline"
        );
    }
    let improved = table
        .iter()
        .filter(|c| c.verdict == Verdict::Improved && c.gating)
        .count();
    if improved > 0 {
        eprintln!(
            "note: {improved} metrics improved beyond their threshold; consider --update-baseline"
        );
    }
    let regressions: Vec<&Comparison> = table
        .iter()
        .filter(|c| c.verdict == Verdict::Regression)
        .collect();
    let gating = regressions.iter().filter(|c| c.gating).count();
    let informational = regressions.len() - gating;
    if informational > 0 {
        eprintln!(
            "note: {informational} wall-clock speedups fell beyond their threshold (informational; --gate-wallclock makes them fail)"
        );
    }
    if gating > 0 {
        eprintln!("FAIL: {gating} regressions beyond their thresholds");
        return Ok(ExitCode::FAILURE);
    }
    if !errors.is_empty() {
        eprintln!("FAIL: {} errors", errors.len());
        return Ok(ExitCode::FAILURE);
    }
    eprintln!(
        "ok: {} metrics within their thresholds ({} compared)",
        table.len(),
        table.len() - new
    );
    Ok(ExitCode::SUCCESS)
}

fn fmt_value(kind: &str, v: f64) -> String {
    if kind == INSTRUCTIONS {
        format!("{v:.0}")
    } else {
        format!("{v:.3}x")
    }
}

fn print_values(now: &[Record]) {
    println!("{:<52} {:>14}", "metric", "value");
    for r in now {
        println!("{:<52} {:>14}", r.metric, fmt_value(&r.kind, r.value));
    }
}

/// The comparison table: metric, baseline, now, change, threshold, verdict.
fn print_table(table: &[Comparison]) {
    println!(
        "{:<52} {:>14} {:>14} {:>9} {:>10}  verdict",
        "metric", "baseline", "now", "change", "threshold"
    );
    for c in table {
        let verdict = match (c.verdict, c.gating) {
            (Verdict::Ok, _) => "ok",
            (Verdict::Regression, true) => "REGRESSION",
            (Verdict::Regression, false) => "slower (informational)",
            (Verdict::Improved, _) => "improved",
            (Verdict::New, _) => "new (no baseline)",
        };
        let sign = if c.kind == SPEEDUP { "-" } else { "+" };
        println!(
            "{:<52} {:>14} {:>14} {:>9} {:>10}  {verdict}",
            c.metric,
            c.baseline
                .map_or_else(|| "-".to_string(), |b| fmt_value(&c.kind, b)),
            fmt_value(&c.kind, c.now),
            c.change_pct
                .map_or_else(|| "-".to_string(), |p| format!("{p:+.2}%")),
            format!("{sign}{:.1}%", c.threshold_pct),
        );
    }
}
