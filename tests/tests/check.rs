//! End-to-end tests of `ternbench check`, the CI regression gate: exit codes
//! (0 within thresholds, 1 a regression, 2 bad input), the baseline round
//! trip, wall-clock gating on request, deterministic instruction counts under
//! valgrind, and `ternbench report` on the artifacts' directory layout.
//!
//! The instruction-count test needs valgrind; without it the test prints why
//! and returns, unless `TERNBENCH_REQUIRE_VALGRIND` is set (CI sets it and
//! installs valgrind), in which case it fails.

use std::path::{Path, PathBuf};
use ternbench_tests::{run, text};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ternbench-check-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small gate: i2s-scalar (counted) and the pair i2s-scalar/f16-scalar (timed).
fn small_config(dir: &Path, counted: &[&str]) -> PathBuf {
    let list = counted
        .iter()
        .map(|k| format!("\"{k}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let text = format!(
        r#"name = "small"
[instructions]
threshold_pct = 2.0
calls = 1
shapes = ["8x256"]
batch = [1, 2]
kernels.x86_64 = [{list}]
kernels.aarch64 = [{list}]
[wallclock]
threshold_pct = 25.0
shapes = ["16x512"]
batch = [1]
rounds = 5
reps = 1
pin = false
pairs.x86_64 = ["i2s-scalar/f16-scalar"]
pairs.aarch64 = ["i2s-scalar/f16-scalar"]
"#
    );
    let path = dir.join("small.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn check(args: &[&str]) -> (Option<i32>, String, String) {
    let out = run(&[&["check"], args].concat());
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

/// Multiplies the value of every row whose metric starts with `prefix`.
fn scale_baseline(path: &Path, prefix: &str, factor: f64) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = String::new();
    for (i, line) in text.lines().enumerate() {
        let mut cells: Vec<String> = line.split(',').map(str::to_string).collect();
        if i > 0 && cells[0].starts_with(prefix) {
            let v: f64 = cells[6].parse().unwrap();
            cells[6] = format!("{}", v * factor);
        }
        out += &cells.join(",");
        out.push('\n');
    }
    std::fs::write(path, out).unwrap();
}

#[test]
fn bad_input_exits_2_naming_file_field_and_expectation() {
    let dir = temp_dir("bad");
    let config = small_config(&dir, &[]);
    let cfg = config.to_str().unwrap();

    let bad = dir.join("bad.toml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&config)
            .unwrap()
            .replace("rounds = 5", "rounds = 5\nrunds = 3"),
    )
    .unwrap();
    let (code, _, err) = check(&["--config", bad.to_str().unwrap(), "--baseline", "x.csv"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("bad.toml:") && err.contains("runds"), "{err}");

    std::fs::write(
        &bad,
        std::fs::read_to_string(&config).unwrap().replace(
            "i2s-scalar/f16-scalar\"]\npairs.aarch64",
            "auto/f16-scalar\"]\npairs.aarch64",
        ),
    )
    .unwrap();
    let (code, _, err) = check(&["--config", bad.to_str().unwrap(), "--baseline", "x.csv"]);
    #[cfg(target_arch = "x86_64")]
    {
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains("wallclock.pairs.x86_64") && err.contains("by name"),
            "{err}"
        );
    }
    let _ = (code, err);

    let missing = dir.join("none.csv");
    let (code, _, err) = check(&["--config", cfg, "--baseline", missing.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("none.csv") && err.contains("--update-baseline"),
        "{err}"
    );

    let garbled = dir.join("garbled.csv");
    std::fs::write(
        &garbled,
        "metric,kind,kernel,reference,shape,batch,value,arch,rustc,cpu,commit,valgrind\n\
         speedup/a,speedup,a,b,1x1,1,fast,x86_64,r,c,h,\n",
    )
    .unwrap();
    let (code, _, err) = check(&["--config", cfg, "--baseline", garbled.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("garbled.csv:2:"), "{err}");

    let (code, _, err) = check(&["--config", cfg, "--baseline", "x.csv", "--jobs", "0"]);
    assert_eq!(code, Some(2), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wallclock_round_trip_gates_only_on_request_and_reports_from_directories() {
    let dir = temp_dir("wall");
    let config = small_config(&dir, &[]);
    let cfg = config.to_str().unwrap();
    let baseline = dir.join("baselines").join("b.csv");
    let b = baseline.to_str().unwrap();

    let (code, out, err) = check(&["--config", cfg, "--baseline", b, "--update-baseline"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        out.contains("speedup/i2s-scalar:f16-scalar/16x512/b1"),
        "{out}"
    );
    let written = std::fs::read_to_string(&baseline).unwrap();
    assert!(written.starts_with(
        "metric,kind,kernel,reference,shape,batch,value,arch,rustc,cpu,commit,valgrind"
    ));
    assert!(written.contains("rustc "), "{written}");

    // A baseline speedup 10x higher than anything measured is a regression,
    // which fails the check only with --gate-wallclock.
    scale_baseline(&baseline, "speedup/", 10.0);
    let arch_dir = dir.join("artifacts").join("bench-x").join("x");
    let (code, out, err) = check(&[
        "--config",
        cfg,
        "--baseline",
        b,
        "--out",
        arch_dir.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("slower (informational)"), "{out}");
    let (code, out, err) = check(&["--config", cfg, "--baseline", b, "--gate-wallclock"]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("REGRESSION"), "{out}");
    for col in ["metric", "baseline", "now", "change", "threshold"] {
        assert!(out.lines().next().unwrap().contains(col), "{out}");
    }

    // The artifacts' layout: DIR/<artifact>/<arch>/results.csv.
    assert!(arch_dir.join("check.csv").exists());
    let report = dir.join("report");
    let out = run(&[
        "report",
        dir.join("artifacts").to_str().unwrap(),
        "--out",
        report.to_str().unwrap(),
    ]);
    let (o, e) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{o}{e}");
    let summary = std::fs::read_to_string(report.join("summary.md")).unwrap();
    assert!(summary.contains("i2s-scalar"), "{summary}");
    let out = run(&["report", dir.join("baselines").to_str().unwrap()]);
    let (_, e) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{e}");
    assert!(e.contains("no results.csv"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn have_valgrind() -> bool {
    let ok = std::process::Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        assert!(
            std::env::var_os("TERNBENCH_REQUIRE_VALGRIND").is_none(),
            "TERNBENCH_REQUIRE_VALGRIND is set but valgrind cannot run"
        );
        eprintln!("skipped: valgrind is not installed (apt-get install valgrind)");
    }
    ok
}

#[test]
fn instruction_counts_are_deterministic_and_a_3_percent_rise_fails() {
    if !have_valgrind() {
        return;
    }
    let dir = temp_dir("instr");
    let config = small_config(&dir, &["i2s-scalar", "q4_0-scalar"]);
    let cfg = config.to_str().unwrap();
    let baseline = dir.join("b.csv");
    let b = baseline.to_str().unwrap();
    let (code, out, err) = check(&["--config", cfg, "--baseline", b, "--update-baseline"]);
    assert_eq!(code, Some(0), "{out}{err}");
    let first = std::fs::read_to_string(&baseline).unwrap();
    assert!(
        first.contains("instructions/i2s-scalar/8x256/b2"),
        "{first}"
    );

    let (code, out, err) = check(&["--config", cfg, "--baseline", b]);
    assert_eq!(code, Some(0), "{out}{err}");
    let instr: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("instructions/"))
        .collect();
    assert_eq!(instr.len(), 4, "{out}");
    assert!(
        instr
            .iter()
            .all(|l| l.contains("+0.00%") && l.ends_with(" ok")),
        "{out}"
    );

    // The baseline 3% lower = this run 3% more instructions: caught.
    scale_baseline(&baseline, "instructions/i2s-scalar/", 1.0 / 1.03);
    let (code, out, err) = check(&["--config", cfg, "--baseline", b]);
    assert_eq!(code, Some(1), "{out}{err}");
    let regressions: Vec<&str> = out.lines().filter(|l| l.ends_with("REGRESSION")).collect();
    assert_eq!(regressions.len(), 2, "{out}");
    assert!(
        regressions
            .iter()
            .all(|l| l.starts_with("instructions/i2s-scalar/") && l.contains("+3.00%")),
        "{out}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
