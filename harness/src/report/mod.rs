//! Reports: `ternbench report`, and the report written after every sweep.
//!
//! - [`read`]: result CSVs read back by column name, schema-checked;
//! - [`figures`]: which charts the rows support, as data;
//! - [`charts`]: drawing them (SVG + PNG, bundled font);
//! - [`tables`], `html`, `summary`: `report.html` and `summary.md`;
//! - [`import`]: llama-bench output into result rows;
//! - [`claims`]: measured model rows beside the published claims.
//!
//! Output layout of a report directory: `report.html`, `summary.md`,
//! `charts/<name>.svg` and `charts/<name>.png`.

pub mod charts;
pub mod claims;
pub mod figures;
mod html;
pub mod import;
pub mod read;
mod summary;
pub mod tables;

use anyhow::Context;
pub use read::BadInput;
use read::Rec;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `ternbench report`.
#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// Result CSVs (ternbench's results.csv, or `ternbench import` output), or directories (every results.csv beneath, e.g. downloaded CI artifacts); rows of all files are merged.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Output directory for report.html, summary.md and charts/ (default: the first file's directory, or the first argument when it is a directory).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What a report wrote.
#[derive(Debug)]
pub struct Written {
    pub html: PathBuf,
    pub summary: PathBuf,
    /// Every chart file written (an SVG and a PNG per chart).
    pub charts: Vec<PathBuf>,
    pub rows: usize,
}

/// Maps an error to the exit code: 2 for bad input, 1 otherwise.
pub fn exit_code(e: &anyhow::Error) -> ExitCode {
    if e.downcast_ref::<BadInput>().is_some() {
        ExitCode::from(2)
    } else {
        ExitCode::FAILURE
    }
}

/// Runs `ternbench report`.
pub fn run(args: ReportArgs) -> ExitCode {
    let out = args.out.clone().unwrap_or_else(|| {
        if args.files[0].is_dir() {
            return args.files[0].clone();
        }
        args.files[0]
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
    });
    match write_report(&args.files, &out) {
        Ok(w) => {
            print_written(&w);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            exit_code(&e)
        }
    }
}

fn print_written(w: &Written) {
    eprintln!(
        "report of {} rows: {} and {} ({} charts, SVG and PNG, in {})",
        w.rows,
        w.html.display(),
        w.summary.display(),
        w.charts.len() / 2,
        w.html
            .parent()
            .map_or_else(|| PathBuf::from("charts"), |p| p.join("charts"))
            .display()
    );
}

/// Each input file with its number of rows.
pub type FileCounts = Vec<(String, usize)>;

/// Every `results.csv` under `dir` (at any depth), sorted: the layout of
/// downloaded CI artifacts (`DIR/<artifact>/results.csv`).
pub fn results_in(dir: &Path) -> Result<Vec<PathBuf>, BadInput> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d)
            .map_err(|e| BadInput(format!("{}: cannot list: {e}", d.display())))?;
        for e in entries.filter_map(|e| e.ok()) {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.file_name().is_some_and(|n| n == "results.csv") {
                found.push(p);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(BadInput(format!(
            "{}: no results.csv in this directory or below; expected result CSVs or directories holding results.csv files",
            dir.display()
        )));
    }
    Ok(found)
}

/// Reads and merges the rows of `files`; a directory stands for every
/// `results.csv` beneath it.
pub fn read_all(files: &[PathBuf]) -> Result<(Vec<Rec>, FileCounts), BadInput> {
    let mut expanded = Vec::new();
    for f in files {
        if f.is_dir() {
            expanded.extend(results_in(f)?);
        } else {
            expanded.push(f.clone());
        }
    }
    let mut rows = Vec::new();
    let mut counts = Vec::new();
    for f in &expanded {
        let r = read::read_csv(f)?;
        counts.push((f.display().to_string(), r.len()));
        rows.extend(r);
    }
    Ok((rows, counts))
}

/// Reads `files` and writes the report into `out`.
pub fn write_report(files: &[PathBuf], out: &Path) -> anyhow::Result<Written> {
    let (mut rows, counts) = read_all(files)?;
    figures::derive_model_speedups(&mut rows);
    let chart_dir = out.join("charts");
    std::fs::create_dir_all(&chart_dir)
        .with_context(|| format!("cannot create {}", chart_dir.display()))?;
    let charts = figures::charts(&rows);
    let mut written = Vec::new();
    for c in &charts {
        c.render(&chart_dir)?;
        written.push(chart_dir.join(format!("{}.svg", c.slug)));
        written.push(chart_dir.join(format!("{}.png", c.slug)));
    }
    let cpus = figures::cpus(&rows);
    let inputs = tables::inputs(&counts, &rows);
    let systems: Vec<tables::Table> = cpus
        .iter()
        .enumerate()
        .map(|(i, c)| tables::system(&rows, c, i + 1))
        .collect();
    let layer_pivots = tables::layer_speedup_pivots(&rows);
    let mut model_pivots = tables::model_pivots(&rows);
    model_pivots.extend(tables::energy_pivots(&rows));
    let failures = tables::failures(&rows);
    let mut all_tables = layer_pivots.clone();
    all_tables.extend(model_pivots.iter().cloned());
    all_tables.extend(tables::layers(&rows));
    all_tables.extend(tables::models(&rows));
    all_tables.extend(tables::ops(&rows));
    all_tables.extend(failures.clone());
    let title = report_title(out);
    let generated = crate::output::utc_timestamp(std::time::SystemTime::now());
    let html_path = out.join("report.html");
    let page = html::page(&title, &generated, &inputs, &systems, &charts, &all_tables);
    std::fs::write(&html_path, page)
        .with_context(|| format!("cannot write {}", html_path.display()))?;
    let summary_path = out.join("summary.md");
    let md = summary::render(&summary::Parts {
        title: &title,
        rows: &rows,
        cpus: &cpus,
        inputs: &inputs,
        layer_pivots: &layer_pivots,
        model_pivots: &model_pivots,
        failures: failures.as_ref(),
        chart_count: charts.len(),
    });
    std::fs::write(&summary_path, md)
        .with_context(|| format!("cannot write {}", summary_path.display()))?;
    Ok(Written {
        html: html_path,
        summary: summary_path,
        charts: written,
        rows: rows.len(),
    })
}

fn report_title(out: &Path) -> String {
    let name = out
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_default();
    if name.is_empty() {
        "ternbench report".into()
    } else {
        format!("ternbench report: {name}")
    }
}

/// The report a sweep writes into its run directory after its results
/// (`ternbench` with no arguments, `ternbench sweep`). A failure is printed
/// and returned; the results stay.
pub fn write_run_report(dir: &Path) -> anyhow::Result<()> {
    let results = dir.join("results.csv");
    let w = write_report(&[results], dir).context("writing the report")?;
    print_written(&w);
    Ok(())
}

/// Writes the run's report after a sweep and returns the run's exit code,
/// or failure (1) when the report could not be written.
pub fn after_run(dir: &Path, code: ExitCode) -> ExitCode {
    match write_run_report(dir) {
        Ok(()) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
