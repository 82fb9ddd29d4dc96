//! Result rows and where they go: a CSV file appended and flushed row by
//! row (so an interrupted run keeps every finished measurement), CSV on
//! stdout, or an aligned table on stdout; and the key that identifies a
//! measurement, so a resumed sweep writes no row twice. Messages go through
//! [`say`], which prints above a sweep's progress bar when one is shown.
//!
//! The CSV schema is a superset of llama-bench's column names where they
//! overlap, versioned by `schema_version`.

use crate::measure::SystemInfo;
use serde::Serialize;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Version of the CSV schema below; bump it when columns change meaning.
pub const SCHEMA_VERSION: u32 = 1;

/// One measurement.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    pub schema_version: u32,
    pub build_commit: String,
    pub rustc: String,
    pub test_time: String,
    pub cpu_info: String,
    pub cpu_features: String,
    pub arch: String,
    pub n_cores: usize,
    pub caches: String,
    pub memory_bytes: u64,
    pub os: String,
    pub cpu_vendor: String,
    /// Logical CPUs (hardware threads) available to the process.
    pub n_logical_cpus: usize,
    /// The OS kernel version.
    pub os_kernel: String,
    /// What backed large allocations: the system's transparent-huge-page
    /// mode and whether ternbench advised them (see [`crate::huge_pages`]).
    pub huge_pages: String,
    /// Read bandwidth measured in the same run at this thread count (GB/s), if
    /// probed: for `layer --cold` rows the probe timed interleaved with the
    /// group's kernels, for `model` tg rows the mean of probes taken just
    /// before and after each timed run, otherwise one probe at the start.
    pub mem_bandwidth_gbs: Option<f64>,
    /// Hot `layer` rows: the read rate of a buffer the size of the kernel's
    /// weights, re-read whole and timed interleaved with the group's kernels
    /// (so cached where the weights are); none past the last-level cache.
    pub cache_read_gbs: Option<f64>,
    pub kernel: String,
    pub kernel_isa: String,
    pub wtype: String,
    pub bits_per_weight: f64,
    pub exact: bool,
    /// Tiling or variant the kernel chose for this shape, if it has a choice.
    pub variant: String,
    pub threading: String,
    pub n_threads: usize,
    pub pinned: bool,
    /// Model preset or file (empty for a single layer).
    pub model_type: String,
    pub model_n_params: Option<u64>,
    pub model_size_bytes: Option<u64>,
    /// `synthetic` (seeded) or the file the weights came from.
    pub weights_source: String,
    /// `layer` for one linear layer; `ppN` / `tgN` for a model (llama-bench's names).
    pub test: String,
    /// For per-operation breakdown rows: the operation (`attention`, `lm_head`, ...),
    /// with avg_ns its time per token; empty for whole measurements.
    pub op: String,
    pub rows: usize,
    pub cols: usize,
    pub batch: usize,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Prompt processing: `batched` (one GEMM per layer) or `token` (token by token, like `-b 1`).
    pub batch_mode: String,
    /// Weights read from DRAM (`cold`) or cache-hot (`hot`).
    pub cold: bool,
    pub reps: usize,
    pub avg_ns: Option<f64>,
    pub median_ns: Option<f64>,
    pub stddev_ns: Option<f64>,
    pub min_ns: Option<f64>,
    /// Tokens per second (model tests).
    pub avg_ts: Option<f64>,
    pub stddev_ts: Option<f64>,
    /// Packed weight bytes per call / median time.
    pub gbs: Option<f64>,
    /// 2 * rows * cols * batch / median time (a multiply-add counts 2).
    pub gops: Option<f64>,
    /// gbs / cache_read_gbs where there is one (hot `layer` rows), else
    /// gbs / mem_bandwidth_gbs.
    pub roofline_fraction: Option<f64>,
    /// gops / the peak rate of the kernel's ISA (int8 dot product, or f32 FMA
    /// for f16) at this thread count, probed in the same run.
    pub compute_fraction: Option<f64>,
    /// Median time of the fp16 baseline kernel in the same run / this median.
    pub speedup_vs_f16: Option<f64>,
    pub energy_j_per_token: Option<f64>,
    /// `rapl`, `model` or `cpu-time` (see the energy module); empty when not measured.
    pub energy_source: String,
    /// True when the figure was extrapolated from sampled layers.
    pub extrapolated: bool,
    pub weight_bytes: usize,
    pub prepare_ms: f64,
    pub verified: bool,
    pub max_abs_err: f64,
    pub note: String,
}

impl Row {
    /// A row with the system columns filled and the rest empty.
    pub fn new(sys: &SystemInfo) -> Row {
        Row {
            schema_version: SCHEMA_VERSION,
            build_commit: sys.commit.clone(),
            rustc: sys.rustc.clone(),
            test_time: utc_timestamp(std::time::SystemTime::now()),
            cpu_info: sys.cpu_model.clone(),
            cpu_features: sys.cpu_features.clone(),
            arch: sys.arch.clone(),
            n_cores: sys.physical_cores,
            caches: sys.caches.clone(),
            memory_bytes: sys.memory_bytes,
            os: sys.os.clone(),
            cpu_vendor: sys.cpu_vendor.clone(),
            n_logical_cpus: sys.logical_cpus,
            os_kernel: sys.kernel.clone(),
            huge_pages: sys.huge_pages.clone(),
            mem_bandwidth_gbs: None,
            cache_read_gbs: None,
            kernel: String::new(),
            kernel_isa: String::new(),
            wtype: String::new(),
            bits_per_weight: 0.0,
            exact: false,
            variant: String::new(),
            threading: String::new(),
            n_threads: 0,
            pinned: false,
            model_type: String::new(),
            model_n_params: None,
            model_size_bytes: None,
            weights_source: "synthetic".into(),
            test: String::new(),
            op: String::new(),
            rows: 0,
            cols: 0,
            batch: 0,
            n_prompt: 0,
            n_gen: 0,
            batch_mode: String::new(),
            cold: false,
            reps: 0,
            avg_ns: None,
            median_ns: None,
            stddev_ns: None,
            min_ns: None,
            avg_ts: None,
            stddev_ts: None,
            gbs: None,
            gops: None,
            roofline_fraction: None,
            compute_fraction: None,
            speedup_vs_f16: None,
            energy_j_per_token: None,
            energy_source: String::new(),
            extrapolated: false,
            weight_bytes: 0,
            prepare_ms: 0.0,
            verified: false,
            max_abs_err: 0.0,
            note: String::new(),
        }
    }
}

/// The columns that identify a measurement (without `op` and
/// `energy_source`): what a resumed sweep checks is done.
pub const MEASUREMENT_COLUMNS: [&str; 9] = [
    "model_type",
    "test",
    "rows",
    "cols",
    "batch",
    "batch_mode",
    "n_threads",
    "kernel",
    "cold",
];

/// A measurement key from its column values (in [`MEASUREMENT_COLUMNS`] order).
pub fn measurement_key<S: AsRef<str>>(values: &[S]) -> String {
    values
        .iter()
        .map(|v| v.as_ref())
        .collect::<Vec<_>>()
        .join("|")
}

/// The key of one row: its measurement, its operation and its energy source.
pub fn row_key(measurement: &str, op: &str, energy_source: &str) -> String {
    format!("{measurement}|op={op}|energy={energy_source}")
}

impl Row {
    /// The key of the measurement this row belongs to.
    pub fn measurement(&self) -> String {
        measurement_key(&[
            self.model_type.clone(),
            self.test.clone(),
            self.rows.to_string(),
            self.cols.to_string(),
            self.batch.to_string(),
            self.batch_mode.clone(),
            self.n_threads.to_string(),
            self.kernel.clone(),
            self.cold.to_string(),
        ])
    }

    /// The key of this row (unique in a sweep's results.csv).
    pub fn key(&self) -> String {
        row_key(&self.measurement(), &self.op, &self.energy_source)
    }
}

/// The progress bar of the running sweep, if any.
static PROGRESS: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Shows `bar` while a sweep runs (`None` removes it).
pub fn set_progress(bar: Option<indicatif::ProgressBar>) {
    *PROGRESS.lock().unwrap_or_else(|e| e.into_inner()) = bar;
}

/// The progress bar of the running sweep, if any.
pub fn progress() -> Option<indicatif::ProgressBar> {
    PROGRESS.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// Prints a message on stderr, above the progress bar when one is drawn.
pub fn say(message: &str) {
    match progress().filter(|p| !p.is_hidden()) {
        Some(p) => p.println(message),
        None => eprintln!("{message}"),
    }
}

/// `eprintln!` that keeps a sweep's progress bar intact.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::output::say(&format!($($arg)*))
    };
}

/// Output format on stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
}

/// Where rows go as they complete.
pub struct Sink {
    format: OutputFormat,
    stdout_csv: Option<csv::Writer<io::Stdout>>,
    file: Option<(PathBuf, csv::Writer<File>)>,
    /// The kind of rows (model or layer) whose header was printed last.
    table_header: Option<bool>,
    /// Keys of rows already in the file (a resumed sweep): not written again.
    done: HashSet<String>,
}

impl Sink {
    /// Rows go to stdout in `format`, and, with `file`, are appended to that
    /// CSV file (header written only when the file is new or empty).
    pub fn new(format: OutputFormat, file: Option<&Path>) -> anyhow::Result<Sink> {
        let file = match file {
            None => None,
            Some(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        anyhow::anyhow!("cannot create directory {}: {e}", dir.display())
                    })?;
                }
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        anyhow::anyhow!("cannot open {} for appending: {e}", path.display())
                    })?;
                let is_new = f.metadata().map(|m| m.len() == 0).unwrap_or(true);
                let w = csv::WriterBuilder::new().has_headers(is_new).from_writer(f);
                Some((path.to_path_buf(), w))
            }
        };
        Ok(Sink {
            format,
            stdout_csv: (format == OutputFormat::Csv)
                .then(|| csv::Writer::from_writer(io::stdout())),
            file,
            table_header: None,
            done: HashSet::new(),
        })
    }

    /// Rows with these keys ([`Row::key`]) are already written: skip them.
    pub fn skip_keys(&mut self, keys: HashSet<String>) {
        self.done = keys;
    }

    pub fn file_path(&self) -> Option<&Path> {
        self.file.as_ref().map(|(p, _)| p.as_path())
    }

    /// Writes one row everywhere and flushes, so it survives an interruption.
    pub fn write(&mut self, row: &Row) -> anyhow::Result<()> {
        let key = row.key();
        if self.done.contains(&key) {
            return Ok(());
        }
        let bar = progress();
        if let Some(b) = bar.as_ref().filter(|_| row.op.is_empty()) {
            b.inc(1);
        }
        if let Some((path, w)) = &mut self.file {
            w.serialize(row)
                .and_then(|_| w.flush().map_err(csv::Error::from))
                .map_err(|e| anyhow::anyhow!("cannot write to {}: {e}", path.display()))?;
        }
        match self.format {
            OutputFormat::Csv => {
                let w = self
                    .stdout_csv
                    .as_mut()
                    .expect("csv writer exists in csv mode");
                w.serialize(row)?;
                w.flush()?;
            }
            OutputFormat::Table => {
                let is_model = !row.model_type.is_empty();
                let mut text = String::new();
                if self.table_header != Some(is_model) {
                    text = table_line(None, is_model) + "\n";
                    self.table_header = Some(is_model);
                }
                text += &table_line(Some(row), is_model);
                let print = || -> io::Result<()> {
                    let mut out = io::stdout().lock();
                    writeln!(out, "{text}")?;
                    out.flush()
                };
                match bar.filter(|b| !b.is_hidden()) {
                    Some(b) => b.suspend(print)?,
                    None => print()?,
                }
            }
        }
        Ok(())
    }
}

fn opt(v: Option<f64>, f: impl Fn(f64) -> String) -> String {
    v.map_or_else(|| "-".to_string(), f)
}

/// One line of the aligned table; `None` gives the header.
fn table_line(row: Option<&Row>, is_model: bool) -> String {
    if is_model {
        return model_table_line(row);
    }
    let Some(r) = row else {
        return format!(
            "{:<16} {:>12} {:>5} {:>3} {:>12} {:>9} {:>8} {:>8} {:>6} {:>6} {:>7} {:>8}",
            "kernel",
            "shape",
            "batch",
            "thr",
            "median_us",
            "stddev",
            "GB/s",
            "GOP/s",
            "%bw",
            "%peak",
            "vs_f16",
            "verified"
        );
    };
    let verified = if r.verified { "yes" } else { "NO" };
    format!(
        "{:<16} {:>12} {:>5} {:>3} {:>12} {:>9} {:>8} {:>8} {:>6} {:>6} {:>7} {:>8}",
        r.kernel,
        format!("{}x{}", r.rows, r.cols),
        r.batch,
        r.n_threads,
        opt(r.median_ns, |v| format!("{:.1}", v / 1e3)),
        r.stddev_ns.zip(r.median_ns).map_or_else(
            || "-".to_string(),
            |(sd, med)| format!("{:.1}%", 100.0 * sd / med)
        ),
        opt(r.gbs, |v| format!("{v:.1}")),
        opt(r.gops, |v| format!("{v:.1}")),
        opt(r.roofline_fraction, |v| format!("{:.0}%", 100.0 * v)),
        opt(r.compute_fraction, |v| format!("{:.0}%", 100.0 * v)),
        opt(r.speedup_vs_f16, |v| format!("{v:.2}x")),
        verified
    )
}

/// A llama-bench-like line for model rows (or breakdown rows); `None` gives the header.
fn model_table_line(row: Option<&Row>) -> String {
    let Some(r) = row else {
        return format!(
            "{:<20} {:<16} {:<7} {:<12} {:>3} {:>18} {:>7} {:>7} {:>8} {:>8} energy",
            "model", "kernel", "test", "op", "thr", "t/s", "vs_f16", "GB/s", "roofline", "verified"
        );
    };
    let rate = match (r.avg_ts, r.stddev_ts, r.avg_ns) {
        (Some(ts), Some(sd), _) => format!("{ts:.2} ± {sd:.2}"),
        (None, _, Some(ns)) if !r.op.is_empty() => format!("{:.1} us/tok", ns / 1e3),
        _ => "-".into(),
    };
    format!(
        "{:<20} {:<16} {:<7} {:<12} {:>3} {:>18} {:>7} {:>7} {:>8} {:>8} {}",
        r.model_type,
        r.kernel,
        r.test,
        r.op,
        r.n_threads,
        rate,
        opt(r.speedup_vs_f16, |v| format!("{v:.2}x")),
        opt(r.gbs, |v| format!("{v:.1}")),
        opt(r.roofline_fraction, |v| format!("{:.0}%", 100.0 * v)),
        if r.verified { "yes" } else { "NO" },
        opt(r.energy_j_per_token, |v| format!(
            "{v:.3e} J/tok ({})",
            r.energy_source
        ))
    )
}

/// RFC 3339 UTC timestamp, e.g. `2026-11-24T18:43:13Z`.
pub fn utc_timestamp(t: std::time::SystemTime) -> String {
    let secs = t
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian calendar
/// (the standard era-based conversion).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn timestamps_are_rfc3339_utc() {
        assert_eq!(utc_timestamp(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        // 2026-11-24T18:43:13Z
        assert_eq!(
            utc_timestamp(UNIX_EPOCH + Duration::from_secs(1_795_545_793)),
            "2026-11-24T18:43:13Z"
        );
        // A leap day.
        assert_eq!(
            utc_timestamp(UNIX_EPOCH + Duration::from_secs(951_782_400)),
            "2000-02-29T00:00:00Z"
        );
    }

    #[test]
    fn csv_file_gets_one_header_and_appended_rows() {
        let dir = std::env::temp_dir().join(format!("ternbench-sink-{}", std::process::id()));
        let path = dir.join("results.csv");
        let _ = std::fs::remove_file(&path);
        let mut row = Row::new(SystemInfo::get());
        row.kernel = "i2s-scalar".into();
        for _ in 0..2 {
            let mut sink = Sink::new(OutputFormat::Csv, Some(&path)).unwrap();
            sink.write(&row).unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 3, "{text}");
        assert!(text.starts_with("schema_version,build_commit"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
