//! The gate's baseline file (`reports/baselines/ci.csv`) and the comparison
//! with a new measurement.
//!
//! One CSV row per metric: `instructions` (per kernel call, lower is better)
//! or `speedup` (reference time / kernel time in the same run, higher is
//! better), with the build and machine it was measured on (rustc version,
//! CPU model, ternbench commit, valgrind version) repeated on every row so
//! the file stays a plain table. `ternbench check` writes the same format for
//! its own measurement (`--out DIR` gives `DIR/check.csv`), and
//! `--update-baseline` writes it over the baseline.

use serde::{Deserialize, Serialize};
use std::path::Path;

/// The two kinds of metric.
pub const INSTRUCTIONS: &str = "instructions";
pub const SPEEDUP: &str = "speedup";

/// One metric of a baseline or a measurement.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// `instructions/KERNEL/SHAPE/bBATCH` or `speedup/KERNEL:REFERENCE/SHAPE/bBATCH`.
    pub metric: String,
    /// `instructions` or `speedup`.
    pub kind: String,
    pub kernel: String,
    /// The reference kernel of a speedup (empty for instructions).
    pub reference: String,
    pub shape: String,
    pub batch: usize,
    pub value: f64,
    pub arch: String,
    pub rustc: String,
    pub cpu: String,
    pub commit: String,
    /// valgrind's version (instructions rows; empty for speedups).
    pub valgrind: String,
}

impl Record {
    /// The metric id of an instruction count.
    pub fn instructions_id(kernel: &str, shape: &str, batch: usize) -> String {
        format!("{INSTRUCTIONS}/{kernel}/{shape}/b{batch}")
    }

    /// The metric id of a speedup.
    pub fn speedup_id(kernel: &str, reference: &str, shape: &str, batch: usize) -> String {
        format!("{SPEEDUP}/{kernel}:{reference}/{shape}/b{batch}")
    }
}

/// A baseline that cannot be read: file, line and what was expected.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct BaselineError {
    pub file: String,
    pub line: u64,
    pub message: String,
}

/// Reads a baseline (or a `check.csv`).
pub fn read(path: &Path) -> Result<Vec<Record>, BaselineError> {
    let file = path.display().to_string();
    let err = |line: u64, message: String| BaselineError {
        file: file.clone(),
        line,
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        err(
            0,
            format!("cannot read: {e}; create it with --update-baseline"),
        )
    })?;
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let mut records = Vec::new();
    for (i, r) in reader.deserialize::<Record>().enumerate() {
        let line = i as u64 + 2;
        let r = r.map_err(|e| {
            err(
                e.position().map_or(line, |p| p.line()),
                format!(
                    "{e}; expected the columns metric,kind,kernel,reference,shape,batch,value,arch,rustc,cpu,commit,valgrind"
                ),
            )
        })?;
        if r.kind != INSTRUCTIONS && r.kind != SPEEDUP {
            return Err(err(
                line,
                format!(
                    "kind: '{}'; expected '{INSTRUCTIONS}' or '{SPEEDUP}'",
                    r.kind
                ),
            ));
        }
        if !(r.value.is_finite() && r.value > 0.0) {
            return Err(err(
                line,
                format!("value: {}; expected a positive number", r.value),
            ));
        }
        if records.iter().any(|o: &Record| o.metric == r.metric) {
            return Err(err(
                line,
                format!("metric '{}' appears twice; expected each once", r.metric),
            ));
        }
        records.push(r);
    }
    Ok(records)
}

/// Writes `records` to `path` (replacing it), creating its directory.
pub fn write(path: &Path, records: &[Record]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", dir.display()))?;
    }
    let mut w = csv::Writer::from_path(path)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    for r in records {
        w.serialize(r)?;
    }
    w.flush()?;
    Ok(())
}

/// How a metric compares with its baseline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    /// Worse than the threshold allows.
    Regression,
    /// Better than the threshold: the baseline is stale (not a failure).
    Improved,
    /// No baseline row for this metric: recorded, not compared.
    New,
}

/// One line of the comparison table.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub metric: String,
    pub kind: String,
    pub baseline: Option<f64>,
    pub now: f64,
    /// now / baseline - 1, in percent.
    pub change_pct: Option<f64>,
    pub threshold_pct: f64,
    pub verdict: Verdict,
    /// Whether a regression of this metric fails the check.
    pub gating: bool,
}

/// Compares `now` with `baseline`: an instruction count regresses when it
/// rises by more than its threshold, a speedup when it falls by more.
pub fn compare(
    baseline: &[Record],
    now: &[Record],
    threshold_pct: impl Fn(&str) -> f64,
    gating: impl Fn(&str) -> bool,
) -> Vec<Comparison> {
    now.iter()
        .map(|n| {
            let threshold = threshold_pct(&n.kind);
            let base = baseline.iter().find(|b| b.metric == n.metric);
            let change = base.map(|b| (n.value / b.value - 1.0) * 100.0);
            // Positive `worse` means worse, whichever direction is better.
            let worse = change.map(|c| if n.kind == SPEEDUP { -c } else { c });
            let verdict = match worse {
                None => Verdict::New,
                Some(w) if w > threshold => Verdict::Regression,
                Some(w) if w < -threshold => Verdict::Improved,
                Some(_) => Verdict::Ok,
            };
            Comparison {
                metric: n.metric.clone(),
                kind: n.kind.clone(),
                baseline: base.map(|b| b.value),
                now: n.value,
                change_pct: change,
                threshold_pct: threshold,
                verdict,
                gating: gating(&n.kind),
            }
        })
        .collect()
}

/// Differences between the build and machine of the baseline and of now,
/// as warnings (counts and speedups depend on them).
pub fn provenance_warnings(baseline: &[Record], now: &[Record]) -> Vec<String> {
    let mut out = Vec::new();
    let (Some(b), Some(n)) = (baseline.first(), now.first()) else {
        return out;
    };
    let fields = [
        ("rustc", &b.rustc, &n.rustc),
        ("CPU", &b.cpu, &n.cpu),
        ("ternbench commit", &b.commit, &n.commit),
        ("architecture", &b.arch, &n.arch),
    ];
    for (what, was, is) in fields {
        if was != is {
            out.push(format!(
                "the baseline was made with {what} '{was}', this run uses '{is}'"
            ));
        }
    }
    let valgrind = |rs: &[Record]| {
        rs.iter()
            .find(|r| r.kind == INSTRUCTIONS)
            .map(|r| r.valgrind.clone())
    };
    if let (Some(vb), Some(vn)) = (valgrind(baseline), valgrind(now)) {
        if vb != vn {
            out.push(format!(
                "the baseline was counted with {vb}, this run with {vn}"
            ));
        }
    }
    out
}

/// Baseline metrics this run did not measure.
pub fn missing(baseline: &[Record], now: &[Record]) -> Vec<String> {
    baseline
        .iter()
        .filter(|b| b.arch == std::env::consts::ARCH)
        .filter(|b| !now.iter().any(|n| n.metric == b.metric))
        .map(|b| b.metric.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &str, metric: &str, value: f64) -> Record {
        Record {
            metric: metric.into(),
            kind: kind.into(),
            kernel: "k".into(),
            reference: String::new(),
            shape: "1x1".into(),
            batch: 1,
            value,
            arch: std::env::consts::ARCH.into(),
            rustc: "rustc 1.95.0".into(),
            cpu: "cpu".into(),
            commit: "abc".into(),
            valgrind: "valgrind-3.19.0".into(),
        }
    }

    #[test]
    fn instructions_regress_up_and_speedups_down() {
        let base = [
            rec(INSTRUCTIONS, "i/a", 1000.0),
            rec(INSTRUCTIONS, "i/b", 1000.0),
            rec(INSTRUCTIONS, "i/c", 1000.0),
            rec(SPEEDUP, "s/a", 10.0),
            rec(SPEEDUP, "s/b", 10.0),
        ];
        let now = [
            rec(INSTRUCTIONS, "i/a", 1030.0),
            rec(INSTRUCTIONS, "i/b", 1019.0),
            rec(INSTRUCTIONS, "i/c", 900.0),
            rec(SPEEDUP, "s/a", 7.0),
            rec(SPEEDUP, "s/b", 13.0),
            rec(SPEEDUP, "s/new", 13.0),
        ];
        let th = |k: &str| if k == INSTRUCTIONS { 2.0 } else { 25.0 };
        let c = compare(&base, &now, th, |k| k == INSTRUCTIONS);
        let v: Vec<_> = c.iter().map(|c| c.verdict).collect();
        assert_eq!(
            v,
            [
                Verdict::Regression,
                Verdict::Ok,
                Verdict::Improved,
                Verdict::Regression,
                Verdict::Improved,
                Verdict::New
            ]
        );
        assert!((c[0].change_pct.unwrap() - 3.0).abs() < 1e-9);
        assert!(c[0].gating && !c[3].gating);
        assert_eq!(missing(&base[..2], &now[..1]), ["i/b"]);
    }

    #[test]
    fn baselines_round_trip_and_bad_files_name_the_line() {
        let dir = std::env::temp_dir().join(format!("ternbench-baseline-{}", std::process::id()));
        let path = dir.join("b.csv");
        let recs = vec![rec(INSTRUCTIONS, "i/a", 1000.0), rec(SPEEDUP, "s/a", 2.5)];
        write(&path, &recs).unwrap();
        assert_eq!(read(&path).unwrap(), recs);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, text.replace(",2.5,", ",fast,")).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(e.contains("b.csv:3:"), "{e}");
        std::fs::write(&path, text.replace("speedup,k", "speed,k")).unwrap();
        let e = read(&path).unwrap_err().to_string();
        assert!(
            e.contains("b.csv:3:") && e.contains("expected 'instructions'"),
            "{e}"
        );
        let e = read(&dir.join("none.csv")).unwrap_err().to_string();
        assert!(e.contains("--update-baseline"), "{e}");
        let mut other = recs.clone();
        other[0].rustc = "rustc 1.96.0".into();
        let w = provenance_warnings(&recs, &other);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("rustc 1.96.0"), "{w:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
