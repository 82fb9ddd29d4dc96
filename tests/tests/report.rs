//! End-to-end tests of `ternbench report` (and the report a sweep writes):
//! charts, report.html and summary.md from real result rows; refusal of bad
//! CSVs with exit code 2; rows that failed verification never shown as a
//! speed; and the page checked in headless Chromium.
//!
//! Chromium: the test looks for `$TERNBENCH_CHROMIUM`, then `chromium` and
//! `chromium-browser` on PATH. Without one it prints why and skips, unless
//! `TERNBENCH_REQUIRE_CHROMIUM` is set (CI sets it, after installing Debian's
//! `chromium` in `.ci/run`), in which case it fails.

use std::path::{Path, PathBuf};
use std::process::Command;
use ternbench_tests::{run, text};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ternbench-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A small real layer run: two kernels plus the f16 baseline, two shapes,
/// batch 1 and 2, one and two threads.
fn layer_results(dir: &Path) -> PathBuf {
    let csv = dir.join("results.csv");
    let out = run(&[
        "layer",
        "--kernel",
        "i2s-scalar,tq2-scalar",
        "--shape",
        "64x256,32x512",
        "--batch",
        "1,2",
        "--threads",
        "1,2",
        "--reps",
        "2",
        "--warmup-ms",
        "1",
        "--min-sample-ms",
        "1",
        "--format",
        "csv",
        "--out",
        csv.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    csv
}

fn report(files: &[&Path], out: &Path) -> (String, String) {
    let mut args = vec!["report".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    args.push("--out".into());
    args.push(out.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "report failed:\n{stderr}");
    (stdout, stderr)
}

/// Every `src="..."` and `href="..."` of the page, relative to its directory.
fn references(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    for attr in ["src=\"", "href=\""] {
        let mut rest = html;
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            out.push(rest[..end].to_string());
            rest = &rest[end..];
        }
    }
    out
}

fn assert_no_broken_reference(dir: &Path) -> usize {
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    let refs = references(&html);
    for r in &refs {
        assert!(
            !r.contains("://") && !r.starts_with('/'),
            "report.html must reference only files beside it: {r}"
        );
        assert!(
            dir.join(r).is_file(),
            "broken reference in report.html: {r}"
        );
    }
    refs.len()
}

#[test]
fn report_of_a_layer_run_has_charts_page_and_summary() {
    let dir = temp_dir("report");
    let csv = layer_results(&dir);
    let out = dir.join("rep");
    report(&[&csv], &out);
    for f in [
        "report.html",
        "summary.md",
        "charts/layer-speedup-t1.svg",
        "charts/layer-speedup-t1.png",
        "charts/layer-speedup-t2.svg",
        "charts/layer-gbs-t1.svg",
        "charts/layer-gbs-t2.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let png = std::fs::read(out.join("charts/layer-speedup-t1.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let refs = assert_no_broken_reference(&out);
    assert!(refs >= 8, "{refs} references");
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(
        html.contains("i2s-scalar") && html.contains("System 1"),
        "{html}"
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("| kernel | 64x256 | 32x512 | geomean |") && md.contains("| i2s-scalar |"),
        "{md}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_row_that_failed_verification_never_shows_a_speed() {
    let dir = temp_dir("report-failed");
    let csv = layer_results(&dir);
    // Mark one i2s row as failed while leaving a (sentinel) speedup in it:
    // the report must show none of it as a speed.
    let mut reader = csv::Reader::from_path(&csv).unwrap();
    let header = reader.headers().unwrap().clone();
    let col = |n: &str| header.iter().position(|h| h == n).unwrap();
    let mut rows: Vec<csv::StringRecord> = reader.records().map(|r| r.unwrap()).collect();
    let i = rows
        .iter()
        .position(|r| &r[col("kernel")] == "i2s-scalar")
        .unwrap();
    let mut cells: Vec<String> = rows[i].iter().map(String::from).collect();
    cells[col("speedup_vs_f16")] = "987654.5".into();
    cells[col("gbs")] = "876543.5".into();
    cells[col("verified")] = "false".into();
    cells[col("note")] = "i2s-scalar: injected mismatch".into();
    rows[i] = csv::StringRecord::from(cells);
    let mut w = csv::Writer::from_path(&csv).unwrap();
    w.write_record(&header).unwrap();
    for r in &rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    let out = dir.join("rep");
    report(&[&csv], &out);
    let mut shown = String::new();
    for entry in std::fs::read_dir(out.join("charts")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "svg") {
            shown += &std::fs::read_to_string(p).unwrap();
        }
    }
    shown += &std::fs::read_to_string(out.join("report.html")).unwrap();
    shown += &std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        !shown.contains("987654") && !shown.contains("876543"),
        "a failed row's speed was shown"
    );
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    assert!(
        md.contains("Failed verification") && md.contains("injected mismatch"),
        "{md}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn refused(args: &[&str]) -> String {
    let out = run(args);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}

#[test]
fn bad_csvs_are_refused_with_file_line_and_field() {
    let dir = temp_dir("report-bad");
    let out = dir.join("rep");
    let out_s = out.to_str().unwrap();
    let v2 = dir.join("v2.csv");
    std::fs::write(
        &v2,
        "schema_version,kernel,test,verified\n2,i2s-avx2,layer,true\n",
    )
    .unwrap();
    let e = refused(&["report", v2.to_str().unwrap(), "--out", out_s]);
    assert!(
        e.contains("v2.csv:2:")
            && e.contains("schema_version '2'")
            && e.contains("schema_version 1"),
        "{e}"
    );
    let none = dir.join("none.csv");
    std::fs::write(&none, "kernel,test,verified\ni2s-avx2,layer,true\n").unwrap();
    let e = refused(&["report", none.to_str().unwrap(), "--out", out_s]);
    assert!(
        e.contains("none.csv:1:") && e.contains("no schema_version column"),
        "{e}"
    );
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "schema_version,kernel,test,verified,median_ns\n1,i2s-avx2,layer,true,12\n1,i2s-avx2,layer,true,fast\n",
    )
    .unwrap();
    let e = refused(&["report", bad.to_str().unwrap(), "--out", out_s]);
    assert!(e.contains("bad.csv:3:") && e.contains("'median_ns'"), "{e}");
    let e = refused(&[
        "report",
        dir.join("missing.csv").to_str().unwrap(),
        "--out",
        out_s,
    ]);
    assert!(
        e.contains("missing.csv") && e.contains("cannot read"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("TERNBENCH_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH")?;
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

/// Loads the page in headless Chromium and returns the `<body ...>` tag of
/// the DOM after the page's load handler ran.
fn body_after_load(browser: &Path, page: &Path, profile: &Path) -> String {
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .expect("run chromium");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    let start = dom.find("<body").unwrap_or_else(|| {
        panic!(
            "no <body> in Chromium's DOM of {url}: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let end = start + dom[start..].find('>').unwrap();
    dom[start..=end].to_string()
}

fn attr(tag: &str, name: &str) -> String {
    let key = format!("{name}=\"");
    let i = tag
        .find(&key)
        .unwrap_or_else(|| panic!("no {name} in {tag}"))
        + key.len();
    tag[i..i + tag[i..].find('"').unwrap()].to_string()
}

#[test]
fn report_page_loads_in_headless_chromium_with_every_chart() {
    let Some(browser) = chromium() else {
        if std::env::var_os("TERNBENCH_REQUIRE_CHROMIUM").is_some() {
            panic!("TERNBENCH_REQUIRE_CHROMIUM is set but no chromium was found (install Debian's `chromium`, or set TERNBENCH_CHROMIUM)");
        }
        eprintln!("skipped: no chromium on PATH (set TERNBENCH_REQUIRE_CHROMIUM=1 to make this a failure)");
        return;
    };
    let dir = temp_dir("report-chromium");
    let csv = layer_results(&dir);
    let out = dir.join("rep");
    report(&[&csv], &out);
    let charts = std::fs::read_dir(out.join("charts"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "svg")
        })
        .count();
    assert!(charts >= 4);
    let body = body_after_load(&browser, &out.join("report.html"), &dir.join("profile"));
    assert_eq!(
        attr(&body, "data-charts-expected"),
        charts.to_string(),
        "{body}"
    );
    assert_eq!(
        attr(&body, "data-charts-loaded"),
        charts.to_string(),
        "{body}"
    );
    assert_eq!(attr(&body, "data-charts-broken"), "", "{body}");
    // The check itself notices a missing chart.
    std::fs::remove_file(out.join("charts/layer-gbs-t1.svg")).unwrap();
    let body = body_after_load(&browser, &out.join("report.html"), &dir.join("profile2"));
    assert_eq!(
        attr(&body, "data-charts-loaded"),
        (charts - 1).to_string(),
        "{body}"
    );
    assert!(
        attr(&body, "data-charts-broken").contains("layer-gbs-t1.svg"),
        "{body}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_sweep_writes_its_report_beside_the_results() {
    let dir = temp_dir("sweep-report");
    let config = dir.join("tiny.toml");
    std::fs::write(
        &config,
        "name = \"tiny\"\nkernels = [\"i2s-scalar\"]\nthreads = [1]\nreps = 2\nwarmup_ms = 1\nmin_sample_ms = 1\n[layer]\nshapes = [\"16x256\"]\n",
    )
    .unwrap();
    let out_dir = dir.join("run");
    let out = run(&[
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for f in [
        "results.csv",
        "report.html",
        "summary.md",
        "charts/layer-speedup-t1.svg",
        "charts/layer-speedup-t1.png",
    ] {
        assert!(out_dir.join(f).is_file(), "{f} missing: {stderr}");
    }
    assert_no_broken_reference(&out_dir);
    std::fs::remove_dir_all(&dir).unwrap();
}
