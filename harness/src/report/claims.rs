//! `ternbench claims`: model rows measured here beside the published
//! claims, row by row, with both machines' bandwidth and a verdict.
//!
//! Inputs: a claims config (`configs/claims/*.toml`, see the shipped one for
//! every key) naming CSVs of published figures, and result CSVs with model
//! rows. Published rows come in three kinds:
//! - speedups (arXiv 2410.16144 Tables 4, 5): llama.cpp fp16 vs bitnet.cpp
//!   tokens/s per dummy model, per CPU, at 2 threads or all threads;
//! - energy (Table 6): J/token of both, and the saving;
//! - the kernel table (arXiv 2502.11880 Table 7): tokens/s per format.
//!
//! Matching: a published model `700M` matches measured rows of model_type
//! `<model_prefix>700M` (ternbench's `dummy-700M`) or imported rows of size
//! `700M`; a test starting with `test_prefix` (`tg`); threads `2` match
//! rows at 2 threads, `unlimited` the most threads measured for that model
//! and kernel here. Each measured kernel of the configured formats gets its
//! own line. Verdict: r = measured speedup / published speedup; exceeded
//! when r >= 1 + tolerance, holds when r >= 1 - tolerance, else falls short;
//! no verdict when the paper gives no fp16 figure. Tokens/s are printed for
//! context but not judged: they depend on the machine, whose bandwidth is
//! printed beside them. Rows extrapolated from sampled layers say so.

use super::read::{size_label, BadInput, Rec};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `ternbench claims`.
#[derive(clap::Args, Debug)]
pub struct ClaimsArgs {
    /// Claims configuration (TOML), e.g. configs/claims/bitnet-2410.16144.toml.
    #[arg(long)]
    pub config: PathBuf,
    /// Result CSVs with model rows (dummy-125M ... dummy-100B from `ternbench model` or a sweep, or `ternbench import` output).
    #[arg(long, required = true, num_args = 1..)]
    pub results: Vec<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    name: String,
    speedups: String,
    #[serde(default)]
    energy: Option<String>,
    #[serde(default)]
    kernel_table: Option<String>,
    model_prefix: String,
    test_prefix: String,
    formats: Vec<String>,
    tolerance: toml::Spanned<f64>,
    #[serde(default)]
    machines: BTreeMap<String, RawMachine>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMachine {
    bandwidth: String,
    source: String,
}

/// A validated claims configuration with its published figures.
#[derive(Debug, Clone)]
pub struct Claims {
    pub name: String,
    pub model_prefix: String,
    pub test_prefix: String,
    pub formats: Vec<String>,
    pub tolerance: f64,
    /// CPU -> (bandwidth as published, source).
    pub machines: BTreeMap<String, (String, String)>,
    pub speedups: Vec<PublishedSpeedup>,
    pub energy: Vec<PublishedEnergy>,
    pub kernel_table: Vec<PublishedKernel>,
}

/// Threads of a published figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Threads {
    N(usize),
    /// All threads of the machine (the papers do not say how many).
    All,
}

impl Threads {
    fn parse(s: &str) -> Option<Threads> {
        match s.trim() {
            "unlimited" | "all" => Some(Threads::All),
            n => n.parse().ok().filter(|&n| n > 0).map(Threads::N),
        }
    }

    fn text(self) -> String {
        match self {
            Threads::N(n) => n.to_string(),
            Threads::All => "all".into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct PublishedSpeedup {
    pub source: String,
    pub cpu: String,
    pub threads: Threads,
    pub model: String,
    pub baseline_tok_s: Option<f64>,
    pub kernel: String,
    pub kernel_tok_s: Option<f64>,
    pub speedup: Option<f64>,
}

#[derive(Debug, Clone)]
pub struct PublishedEnergy {
    pub source: String,
    pub cpu: String,
    pub threads: Threads,
    pub model: String,
    pub baseline_j: Option<f64>,
    pub kernel_j: Option<f64>,
    pub saving_percent: Option<f64>,
    pub method: String,
}

/// One cell of the 2502.11880 kernel table: a format's tokens/s.
#[derive(Debug, Clone)]
pub struct PublishedKernel {
    pub cpu: String,
    pub model: String,
    /// The table's column: `tq2_0`, `i2_s`, ...
    pub kernel: String,
    /// ternbench's format of that column, if it has one.
    pub format: Option<String>,
    pub tok_s: f64,
    pub f16_tok_s: Option<f64>,
}

/// A CSV of published figures: (line, field -> value) per row.
type Published = Vec<(u64, BTreeMap<String, String>)>;

/// Reads a CSV of published figures.
fn read_table(path: &Path, required: &[&str]) -> Result<Published, BadInput> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| BadInput(format!("{file}: cannot read: {e}")))?;
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let headers = r
        .headers()
        .map_err(|e| BadInput(format!("{file}:1: {e}")))?
        .clone();
    for need in required {
        if !headers.iter().any(|h| h == *need) {
            return Err(BadInput(format!("{file}:1: no '{need}' column")));
        }
    }
    let mut out = Vec::new();
    for rec in r.records() {
        let rec = rec.map_err(|e| {
            BadInput(format!(
                "{file}:{}: malformed CSV row: {e}",
                e.position().map_or(0, |p| p.line())
            ))
        })?;
        let line = rec.position().map_or(0, |p| p.line());
        out.push((
            line,
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.trim().to_string()))
                .collect(),
        ));
    }
    Ok(out)
}

fn opt_num(
    file: &str,
    line: u64,
    row: &BTreeMap<String, String>,
    field: &str,
) -> Result<Option<f64>, BadInput> {
    let v = row.get(field).map_or("", String::as_str);
    if v.is_empty() {
        return Ok(None);
    }
    v.parse::<f64>()
        .ok()
        .filter(|x| x.is_finite() && *x >= 0.0)
        .map(Some)
        .ok_or_else(|| {
            BadInput(format!(
                "{file}:{line}: field '{field}' is '{v}'; expected a non-negative number or nothing"
            ))
        })
}

fn threads_of(file: &str, line: u64, row: &BTreeMap<String, String>) -> Result<Threads, BadInput> {
    let v = row.get("threads").map_or("", String::as_str);
    Threads::parse(v).ok_or_else(|| {
        BadInput(format!(
            "{file}:{line}: field 'threads' is '{v}'; expected a thread count or 'unlimited'"
        ))
    })
}

/// ternbench's format of a column of the kernel table.
fn table_format(column: &str) -> Option<&'static str> {
    match column {
        "f16" => Some("f16"),
        "q4_0" => Some("q4_0"),
        "tq1_0" => Some("tq1"),
        "tq2_0" => Some("tq2"),
        "i2_s" => Some("i2s"),
        _ => None,
    }
}

impl Claims {
    /// Reads a claims config and the published CSVs it names (relative to it).
    pub fn load(path: &Path) -> Result<Claims, BadInput> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| BadInput(format!("{file}: cannot read: {e}")))?;
        let line_of = |span: Option<std::ops::Range<usize>>| {
            span.map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            })
        };
        let raw: RawConfig = toml::from_str(&text)
            .map_err(|e| BadInput(format!("{file}:{}: {}", line_of(e.span()), e.message())))?;
        let tolerance = *raw.tolerance.get_ref();
        if !(0.0..1.0).contains(&tolerance) {
            return Err(BadInput(format!(
                "{file}:{}: tolerance is {tolerance}; expected a fraction in [0, 1), e.g. 0.10",
                line_of(Some(raw.tolerance.span()))
            )));
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut speedups = Vec::new();
        let sp = dir.join(&raw.speedups);
        let spf = sp.display().to_string();
        for (line, row) in read_table(
            &sp,
            &[
                "source",
                "table",
                "cpu",
                "threads",
                "model",
                "baseline_tok_s",
                "kernel",
                "kernel_tok_s",
                "speedup",
            ],
        )? {
            let baseline_tok_s = opt_num(&spf, line, &row, "baseline_tok_s")?;
            let kernel_tok_s = opt_num(&spf, line, &row, "kernel_tok_s")?;
            speedups.push(PublishedSpeedup {
                source: format!("{} T{}", row["source"], row["table"]),
                cpu: row["cpu"].clone(),
                threads: threads_of(&spf, line, &row)?,
                model: row["model"].clone(),
                baseline_tok_s,
                kernel: row["kernel"].clone(),
                kernel_tok_s,
                speedup: opt_num(&spf, line, &row, "speedup")?,
            });
        }
        let mut energy = Vec::new();
        if let Some(e) = &raw.energy {
            let ep = dir.join(e);
            let epf = ep.display().to_string();
            for (line, row) in read_table(
                &ep,
                &[
                    "source",
                    "table",
                    "cpu",
                    "threads",
                    "model",
                    "baseline_j_per_token",
                    "kernel_j_per_token",
                    "saving_percent",
                    "method",
                ],
            )? {
                energy.push(PublishedEnergy {
                    source: format!("{} T{}", row["source"], row["table"]),
                    cpu: row["cpu"].clone(),
                    threads: threads_of(&epf, line, &row)?,
                    model: row["model"].clone(),
                    baseline_j: opt_num(&epf, line, &row, "baseline_j_per_token")?,
                    kernel_j: opt_num(&epf, line, &row, "kernel_j_per_token")?,
                    saving_percent: opt_num(&epf, line, &row, "saving_percent")?,
                    method: row["method"].clone(),
                });
            }
        }
        let mut kernel_table = Vec::new();
        if let Some(k) = &raw.kernel_table {
            let kp = dir.join(k);
            let kpf = kp.display().to_string();
            for (line, row) in read_table(&kp, &["cpu", "model", "f16"])? {
                let f16 = opt_num(&kpf, line, &row, "f16")?;
                for (column, _) in row
                    .iter()
                    .filter(|(c, _)| !["cpu", "model", "f16"].contains(&c.as_str()))
                {
                    if let Some(tok_s) = opt_num(&kpf, line, &row, column)? {
                        kernel_table.push(PublishedKernel {
                            cpu: row["cpu"].clone(),
                            model: row["model"].clone(),
                            kernel: column.clone(),
                            format: table_format(column).map(String::from),
                            tok_s,
                            f16_tok_s: f16,
                        });
                    }
                }
            }
        }
        Ok(Claims {
            name: raw.name,
            model_prefix: raw.model_prefix,
            test_prefix: raw.test_prefix,
            formats: raw.formats,
            tolerance,
            machines: raw
                .machines
                .into_iter()
                .map(|(k, v)| (k, (v.bandwidth, v.source)))
                .collect(),
            speedups,
            energy,
            kernel_table,
        })
    }

    /// The published bandwidth of a CPU, as the config states it.
    fn bandwidth_there(&self, cpu: &str) -> String {
        self.machines
            .get(cpu)
            .map_or_else(|| "not stated".into(), |m| m.0.clone())
    }

    /// Verdict of a measured vs published speedup.
    pub fn verdict(&self, measured: f64, published: f64) -> &'static str {
        let r = measured / published;
        if r >= 1.0 + self.tolerance {
            "exceeded"
        } else if r >= 1.0 - self.tolerance {
            "holds"
        } else {
            "falls short"
        }
    }

    /// Verdict of a measured vs published energy saving (percent).
    pub fn energy_verdict(&self, measured: f64, published: f64) -> &'static str {
        let band = self.tolerance * 100.0;
        if measured >= published + band {
            "exceeded"
        } else if measured >= published - band {
            "holds"
        } else {
            "falls short"
        }
    }
}

/// A measured model row usable for claims, with what matching needs.
struct Measured<'a> {
    rec: &'a Rec,
    size: String,
}

/// The measured model rows a claims config compares.
fn measured<'a>(claims: &Claims, rows: &'a [Rec]) -> Vec<Measured<'a>> {
    rows.iter()
        .filter(|r| r.is_model() && r.shows_speed() && r.test.starts_with(&claims.test_prefix))
        .filter_map(|r| {
            let size = if let Some(s) = r.model_type.strip_prefix(&claims.model_prefix) {
                s.to_string()
            } else if r.is_imported() {
                size_label(&r.model_type)
            } else {
                return None;
            };
            Some(Measured { rec: r, size })
        })
        .collect()
}

fn f2(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}"))
}

/// The rows of one published claim: measured kernels at the matching threads.
fn matches<'a>(
    claims: &Claims,
    all: &'a [Measured<'a>],
    model: &str,
    threads: Threads,
    format: Option<&str>,
) -> Vec<&'a Rec> {
    let of_model: Vec<&Measured> = all
        .iter()
        .filter(|m| m.size == model)
        .filter(|m| !m.rec.is_f16_baseline())
        .filter(|m| match format {
            Some(f) => m.rec.wtype == f,
            None => claims.formats.contains(&m.rec.wtype),
        })
        .collect();
    let mut out = Vec::new();
    // One line per kernel (label) and CPU: at the requested threads, or the most measured.
    let mut keys: Vec<(String, String)> = of_model
        .iter()
        .map(|m| (m.rec.cpu_info.clone(), m.rec.kernel_label()))
        .collect();
    keys.sort();
    keys.dedup();
    for (cpu, label) in keys {
        let mine: Vec<&Measured> = of_model
            .iter()
            .copied()
            .filter(|m| m.rec.cpu_info == cpu && m.rec.kernel_label() == label)
            .collect();
        let t = match threads {
            Threads::N(n) => n,
            Threads::All => match mine.iter().filter_map(|m| m.rec.n_threads).max() {
                Some(t) => t,
                None => continue,
            },
        };
        // The latest row at that thread count (rows are in file order).
        if let Some(m) = mine.iter().rev().find(|m| m.rec.n_threads == Some(t)) {
            out.push(m.rec);
        }
    }
    out
}

/// The fp16 baseline tokens/s measured beside a row.
fn f16_beside(all: &[Measured], r: &Rec) -> Option<f64> {
    all.iter()
        .filter(|m| {
            m.rec.is_f16_baseline()
                && m.rec.cpu_info == r.cpu_info
                && m.rec.model_type == r.model_type
                && m.rec.test == r.test
                && m.rec.n_threads == r.n_threads
        })
        .filter_map(|m| m.rec.avg_ts)
        .max_by(f64::total_cmp)
}

/// The speedup table: one line per published claim and measured kernel.
pub fn speedup_table(claims: &Claims, rows: &[Rec]) -> super::tables::Table {
    let all = measured(claims, rows);
    let several_cpus = all.iter().any(|m| m.rec.cpu_info != all[0].rec.cpu_info);
    let here = |r: &Rec| {
        if several_cpus {
            format!("{} on {}", r.kernel_label(), r.cpu_info)
        } else {
            r.kernel_label()
        }
    };
    let mut out = Vec::new();
    let mut lines = |source: String,
                     cpu: &str,
                     threads: Threads,
                     model: &str,
                     pub_kernel: String,
                     pub_f16: Option<f64>,
                     pub_k: Option<f64>,
                     pub_s: Option<f64>,
                     format: Option<&str>| {
        for r in matches(claims, &all, model, threads, format) {
            let speedup = r.speedup_vs_f16;
            let verdict = match (speedup, pub_s) {
                (Some(m), Some(p)) if p > 0.0 => claims.verdict(m, p).to_string(),
                (_, None) => "no fp16 figure published".into(),
                _ => "not measured here".into(),
            };
            let bw = r
                .mem_bandwidth_gbs
                .map_or_else(|| "not measured".into(), |b| format!("{b:.1} GB/s"));
            let extrap = if r.extrapolated == Some(true) {
                " (extrapolated)"
            } else {
                ""
            };
            out.push(vec![
                model.to_string(),
                source.clone(),
                format!("{cpu} ({})", claims.bandwidth_there(cpu)),
                threads.text(),
                pub_kernel.clone(),
                f2(pub_f16),
                f2(pub_k),
                pub_s.map_or("-".into(), |s| format!("{s:.2}x")),
                here(r),
                format!(
                    "{} ({})",
                    r.n_threads.map_or("-".into(), |t| t.to_string()),
                    r.test
                ),
                f2(f16_beside(&all, r)),
                format!("{}{extrap}", f2(r.avg_ts)),
                speedup.map_or("-".into(), |s| format!("{s:.2}x{extrap}")),
                bw,
                verdict,
            ]);
        }
    };
    for p in &claims.speedups {
        lines(
            p.source.clone(),
            &p.cpu,
            p.threads,
            &p.model,
            p.kernel.clone(),
            p.baseline_tok_s,
            p.kernel_tok_s,
            p.speedup,
            None,
        );
    }
    for k in &claims.kernel_table {
        let Some(format) = k.format.as_deref().filter(|f| *f != "f16") else {
            continue;
        };
        lines(
            "2502.11880 T7".into(),
            &k.cpu,
            Threads::All,
            &k.model,
            k.kernel.to_uppercase(),
            k.f16_tok_s,
            Some(k.tok_s),
            k.f16_tok_s.filter(|f| *f > 0.0).map(|f| k.tok_s / f),
            Some(format),
        );
    }
    super::tables::Table {
        title: format!("Claims: {} (speedup over fp16)", claims.name),
        headers: [
            "model", "source", "published CPU (bandwidth)", "threads", "published kernel",
            "fp16 tok/s", "tok/s", "speedup", "kernel here", "threads here (test)",
            "fp16 tok/s here", "tok/s here", "speedup here", "bandwidth here", "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows: out,
        note: format!(
            "Verdict: r = speedup here / published speedup; exceeded if r >= {:.2}, holds if r >= {:.2}, \
             else falls short. Tokens/s are context, not judged: decode speed follows memory \
             bandwidth, printed for both machines. 'all' threads here = the most threads measured.",
            1.0 + claims.tolerance,
            1.0 - claims.tolerance
        ),
    }
}

/// The energy table: published savings beside measured ones.
pub fn energy_table(claims: &Claims, rows: &[Rec]) -> super::tables::Table {
    let all = measured(claims, rows);
    let mut out = Vec::new();
    for p in &claims.energy {
        for r in matches(claims, &all, &p.model, p.threads, None) {
            let Some(e) = r.energy_j_per_token else {
                continue;
            };
            let base = all
                .iter()
                .filter(|m| {
                    m.rec.is_f16_baseline()
                        && m.rec.cpu_info == r.cpu_info
                        && m.rec.model_type == r.model_type
                        && m.rec.test == r.test
                        && m.rec.n_threads == r.n_threads
                        && m.rec.energy_source == r.energy_source
                })
                .filter_map(|m| m.rec.energy_j_per_token)
                .next();
            let saving = base.filter(|b| *b > 0.0).map(|b| 100.0 * (1.0 - e / b));
            let verdict = match (saving, p.saving_percent) {
                (Some(m), Some(pb)) => claims.energy_verdict(m, pb).to_string(),
                (_, None) => "no fp16 figure published".into(),
                (None, _) => "no fp16 energy here".into(),
            };
            out.push(vec![
                p.model.clone(),
                p.source.clone(),
                format!("{} ({})", p.cpu, claims.bandwidth_there(&p.cpu)),
                p.threads.text(),
                f2(p.baseline_j),
                f2(p.kernel_j),
                p.saving_percent.map_or("-".into(), |s| format!("{s:.1}%")),
                p.method.clone(),
                r.kernel_label(),
                r.energy_source.clone(),
                base.map_or("-".into(), |b| format!("{b:.4}")),
                format!("{e:.4}"),
                saving.map_or("-".into(), |s| format!("{s:.1}%")),
                verdict,
            ]);
        }
    }
    super::tables::Table {
        title: format!("Claims: {} (energy per token)", claims.name),
        headers: [
            "model", "source", "published CPU (bandwidth)", "threads", "fp16 J/tok", "J/tok",
            "saving", "published method", "kernel here", "energy source here", "fp16 J/tok here",
            "J/tok here", "saving here", "verdict",
        ]
        .map(String::from)
        .to_vec(),
        rows: out,
        note: format!(
            "Saving = 1 - J(kernel) / J(fp16). Verdict: exceeded if the saving here is at least {0:.0} \
             points above the published one, holds within {0:.0} points, else falls short. The \
             paper does not state how it measured energy.",
            claims.tolerance * 100.0
        ),
    }
}

/// Runs `ternbench claims`.
pub fn run(args: ClaimsArgs) -> ExitCode {
    let claims = match Claims::load(&args.config) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let rows = match super::read_all(&args.results) {
        Ok((mut rows, _)) => {
            super::figures::derive_model_speedups(&mut rows);
            rows
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let speed = speedup_table(&claims, &rows);
    if speed.rows.is_empty() {
        eprintln!(
            "error: no measured model row matches these claims: expected model rows of \
             {}<size> (sizes {}) with a {}N test and a kernel of format {} in {}",
            claims.model_prefix,
            {
                let mut sizes: Vec<&str> = Vec::new();
                for p in &claims.speedups {
                    if !sizes.contains(&p.model.as_str()) {
                        sizes.push(&p.model);
                    }
                }
                sizes.join(", ")
            },
            claims.test_prefix,
            claims.formats.join("/"),
            args.results
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::FAILURE;
    }
    print!("{}", super::summary::table(&speed));
    let energy = energy_table(&claims, &rows);
    if energy.rows.is_empty() {
        println!("No measured energy per token for these models (energy_j_per_token is empty), so the energy claims are not compared.\n");
    } else {
        print!("{}", super::summary::table(&energy));
    }
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for r in speed.rows.iter().chain(&energy.rows) {
        *counts
            .entry(r.last().map_or("", String::as_str))
            .or_default() += 1;
    }
    println!(
        "{}",
        counts
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Claims {
        Claims::load(Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../configs/claims/bitnet-2410.16144.toml"
        )))
        .unwrap()
    }

    /// A hand-made measured model row (test data, not a measurement).
    fn row(
        model: &str,
        kernel: &str,
        wtype: &str,
        threads: usize,
        ts: f64,
        speedup: Option<f64>,
    ) -> Rec {
        Rec {
            schema_version: 1,
            cpu_info: "test CPU".into(),
            kernel: kernel.into(),
            wtype: wtype.into(),
            exact: Some(true),
            model_type: model.into(),
            test: "tg128".into(),
            n_threads: Some(threads),
            avg_ts: Some(ts),
            speedup_vs_f16: speedup,
            mem_bandwidth_gbs: Some(40.0),
            verified: true,
            ..Rec::default()
        }
    }

    #[test]
    fn shipped_config_loads_with_its_published_figures() {
        let c = config();
        assert_eq!(c.speedups.len(), 48);
        let i7_700m_2t = c
            .speedups
            .iter()
            .find(|p| p.cpu == "Intel i7-13700H" && p.model == "700M" && p.threads == Threads::N(2))
            .unwrap();
        assert_eq!(
            (
                i7_700m_2t.baseline_tok_s,
                i7_700m_2t.kernel_tok_s,
                i7_700m_2t.speedup
            ),
            (Some(18.56), Some(80.13), Some(4.32))
        );
        assert_eq!(c.energy.len(), 7);
        assert!(c
            .kernel_table
            .iter()
            .any(|k| k.kernel == "tl2_0" && k.format.is_none()));
        assert_eq!(c.machines["Apple M2 Ultra"].0, "800 GB/s");
        assert_eq!(c.tolerance, 0.10);
    }

    #[test]
    fn verdicts_follow_the_tolerance_rule() {
        let c = config();
        assert_eq!(c.verdict(4.32, 4.32), "holds");
        assert_eq!(c.verdict(3.90, 4.32), "holds"); // r = 0.903
        assert_eq!(c.verdict(3.88, 4.32), "falls short"); // r = 0.898
        assert_eq!(c.verdict(4.76, 4.32), "exceeded"); // r = 1.102
        assert_eq!(c.energy_verdict(62.0, 71.9), "holds");
        assert_eq!(c.energy_verdict(61.8, 71.9), "falls short");
        assert_eq!(c.energy_verdict(82.0, 71.9), "exceeded");
    }

    #[test]
    fn measured_rows_sit_beside_the_published_ones() {
        let c = config();
        let rows = vec![
            row("dummy-700M", "f16-avx2", "f16", 2, 20.0, Some(1.0)),
            row("dummy-700M", "i2s-avx2", "i2s", 2, 90.0, Some(4.5)),
            row("dummy-700M", "tq2-avx2", "tq2", 2, 60.0, Some(3.0)),
            row("dummy-700M", "i2s-avx2", "i2s", 1, 50.0, Some(4.0)),
            // Not a dummy model, not a tg test: ignored.
            row("bitnet-b1.58-2b4t", "i2s-avx2", "i2s", 2, 30.0, Some(3.0)),
            Rec {
                test: "pp128".into(),
                ..row("dummy-700M", "i2s-avx2", "i2s", 2, 300.0, Some(9.0))
            },
        ];
        let t = speedup_table(&c, &rows);
        let col = |name: &str| t.headers.iter().position(|h| h == name).unwrap();
        // 700M at 2 threads, both published CPUs (Table 5).
        let i7 = t
            .rows
            .iter()
            .find(|r| {
                r[col("source")] == "2410.16144 T5"
                    && r[col("published CPU (bandwidth)")].starts_with("Intel")
                    && r[col("kernel here")] == "i2s-avx2"
            })
            .unwrap();
        assert_eq!(i7[col("speedup")], "4.32x");
        assert_eq!(i7[col("speedup here")], "4.50x");
        assert_eq!(i7[col("tok/s here")], "90.00");
        assert_eq!(i7[col("fp16 tok/s here")], "20.00");
        assert_eq!(i7[col("bandwidth here")], "40.0 GB/s");
        assert_eq!(
            i7[col("published CPU (bandwidth)")],
            "Intel i7-13700H (under 100 GB/s)"
        );
        assert_eq!(i7[col("verdict")], "holds"); // 4.50 / 4.32 = 1.04
        let m2 = t
            .rows
            .iter()
            .find(|r| {
                r[col("source")] == "2410.16144 T5"
                    && r[col("published CPU (bandwidth)")].starts_with("Apple")
                    && r[col("kernel here")] == "i2s-avx2"
            })
            .unwrap();
        assert_eq!(m2[col("verdict")], "exceeded"); // 4.50 / 1.79
        let tq2 = t
            .rows
            .iter()
            .find(|r| {
                r[col("source")] == "2410.16144 T5"
                    && r[col("published CPU (bandwidth)")].starts_with("Intel")
                    && r[col("kernel here")] == "tq2-avx2"
            })
            .unwrap();
        assert_eq!(tq2[col("verdict")], "falls short"); // 3.0 / 4.32
                                                        // "unlimited" (Table 4) compares the most threads measured here: 2.
        let all = t
            .rows
            .iter()
            .find(|r| {
                r[col("source")] == "2410.16144 T4"
                    && r[col("published CPU (bandwidth)")].starts_with("Intel")
                    && r[col("kernel here")] == "i2s-avx2"
            })
            .unwrap();
        assert_eq!(all[col("threads here (test)")], "2 (tg128)");
        assert_eq!(all[col("verdict")], "exceeded"); // 4.50 / 3.88 = 1.16
                                                     // The kernel table compares a format with the same format.
        let kt = t
            .rows
            .iter()
            .find(|r| {
                r[col("source")] == "2502.11880 T7"
                    && r[col("published kernel")] == "TQ2_0"
                    && r[col("published CPU (bandwidth)")].starts_with("Intel")
            })
            .unwrap();
        assert_eq!(kt[col("kernel here")], "tq2-avx2");
        // Only the 700M model ran: nothing else appears.
        assert!(t.rows.iter().all(|r| r[col("model")] == "700M"));
        assert!(!t
            .rows
            .iter()
            .any(|r| r[col("tok/s here")] == "30.00" || r[col("tok/s here")] == "300.00"));
    }

    #[test]
    fn energy_savings_are_compared_when_rows_carry_energy() {
        let c = config();
        let e = |mut r: Rec, j: f64| {
            r.energy_j_per_token = Some(j);
            r.energy_source = "rapl".into();
            r.n_threads = Some(2);
            r
        };
        let rows = vec![
            e(row("dummy-7B", "f16-avx2", "f16", 2, 2.0, Some(1.0)), 10.0),
            e(row("dummy-7B", "i2s-avx2", "i2s", 2, 12.0, Some(6.0)), 2.0),
        ];
        let t = energy_table(&c, &rows);
        let col = |name: &str| t.headers.iter().position(|h| h == name).unwrap();
        let i7 = t
            .rows
            .iter()
            .find(|r| r[col("published CPU (bandwidth)")].starts_with("Intel"))
            .unwrap();
        assert_eq!(i7[col("saving")], "82.2%");
        assert_eq!(i7[col("saving here")], "80.0%");
        assert_eq!(i7[col("verdict")], "holds");
        assert_eq!(i7[col("energy source here")], "rapl");
    }

    #[test]
    fn bad_configs_name_file_and_line() {
        let dir = std::env::temp_dir().join(format!("ternbench-claims-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let shipped = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../configs/claims/bitnet-2410.16144.toml"
        ))
        .unwrap();
        let bad = dir.join("bad.toml");
        std::fs::write(&bad, shipped.replace("tolerance = 0.10", "tolerance = 1.5")).unwrap();
        let e = Claims::load(&bad).unwrap_err();
        assert!(
            e.0.contains("bad.toml:") && e.0.contains("tolerance"),
            "{e}"
        );
        std::fs::write(&bad, shipped.replace("test_prefix", "test_prefx")).unwrap();
        let e = Claims::load(&bad).unwrap_err();
        assert!(
            e.0.contains("bad.toml:") && e.0.contains("test_prefx"),
            "{e}"
        );
        std::fs::write(&bad, shipped.clone()).unwrap();
        let e = Claims::load(&bad).unwrap_err();
        assert!(
            e.0.contains("published-claims.csv") && e.0.contains("cannot read"),
            "{e}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
