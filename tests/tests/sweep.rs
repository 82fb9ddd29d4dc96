//! End-to-end tests of `ternbench sweep`: the cross product of layer and
//! model tests from one config, energy in model rows, resume after a kill
//! (no lost and no duplicated rows), configs refused before anything runs,
//! and every shipped config parsing.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use ternbench_tests::{run, ternbench_bin, text};

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ternbench-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const TINY_MODEL: &str = "name = \"tiny-1M\"\nhidden = 64\nffn = 128\nlayers = 2\nheads = 2\nkv_heads = 1\nhead_dim = 32\nvocab = 100\nffn_activation = \"silu-gated\"\n";

/// A config with layer groups slow enough to be killed in the middle, and a
/// tiny model with two tests and two energy sources.
fn write_config(dir: &Path, min_sample_ms: u64) -> PathBuf {
    std::fs::write(dir.join("tiny.toml"), TINY_MODEL).unwrap();
    let path = dir.join("sweep.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"e2e\"\nkernels = [\"i2s-scalar\", \"tq2-scalar\"]\nthreads = [1]\nreps = 3\nwarmup_ms = 1\nmin_sample_ms = {min_sample_ms}\nmodels = [\"tiny.toml\"]\ntests = [\"pp4\", \"tg4\"]\n[layer]\nshapes = [\"16x256\", \"24x256\", \"32x256\", \"40x256\"]\nbatch = [1, 2, 3]\n[model]\nreps = 2\n[energy]\nsources = [\"rapl\", \"cpu-time\", \"model\"]\nwatts_per_core = 5.0\npowercap_root = \"{}\"\n",
            dir.join("no-powercap").display()
        ),
    )
    .unwrap();
    path
}

/// (header, records) of a results.csv.
fn read_rows(path: &Path) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_path(path).unwrap();
    let h = r.headers().unwrap().clone();
    (h, r.records().map(|r| r.unwrap()).collect())
}

fn col(h: &csv::StringRecord, name: &str) -> usize {
    h.iter()
        .position(|c| c == name)
        .unwrap_or_else(|| panic!("column {name}"))
}

/// Row keys as the sweep defines them (measurement + op + energy source).
fn keys(h: &csv::StringRecord, rows: &[csv::StringRecord]) -> Vec<String> {
    let cols: Vec<usize> = [
        "model_type",
        "test",
        "rows",
        "cols",
        "batch",
        "batch_mode",
        "n_threads",
        "kernel",
        "cold",
        "op",
        "energy_source",
    ]
    .iter()
    .map(|c| col(h, c))
    .collect();
    rows.iter()
        .map(|r| cols.iter().map(|&c| &r[c]).collect::<Vec<_>>().join("|"))
        .collect()
}

// 4 shapes x 3 batches x 3 kernels (two + the f16 baseline).
const LAYER_ROWS: usize = 4 * 3 * 3;
// 3 models x 2 tests x 2 energy sources (rapl is unavailable here).
const MODEL_ROWS: usize = 3 * 2 * 2;

#[test]
fn sweep_runs_layers_and_models_with_energy() {
    let dir = temp_dir("sweep-models");
    let config = write_config(&dir, 1);
    let out_dir = dir.join("out");
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
    assert!(
        stderr.contains("energy: rapl unavailable") && stderr.contains("no-powercap"),
        "{stderr}"
    );
    let (h, rows) = read_rows(&out_dir.join("results.csv"));
    assert_eq!(rows.len(), LAYER_ROWS + MODEL_ROWS);
    let k = keys(&h, &rows);
    assert_eq!(
        k.iter().collect::<HashSet<_>>().len(),
        k.len(),
        "duplicate keys"
    );
    let model_rows: Vec<_> = rows
        .iter()
        .filter(|r| &r[col(&h, "model_type")] == "tiny-1M")
        .collect();
    assert_eq!(model_rows.len(), MODEL_ROWS);
    for r in &model_rows {
        assert_eq!(&r[col(&h, "verified")], "true", "{r:?}");
        let j: f64 = r[col(&h, "energy_j_per_token")].parse().unwrap();
        assert!(j > 0.0 && j.is_finite(), "{r:?}");
        let source = &r[col(&h, "energy_source")];
        assert!(source == "cpu-time" || source == "model", "{source}");
        let note = &r[col(&h, "note")];
        assert!(note.contains("rapl unavailable"), "{note}");
        if source == "cpu-time" {
            assert!(note.contains("proxy"), "{note}");
        }
        if &r[col(&h, "wtype")] != "f16" {
            assert!(note.contains("energy saving vs f16"), "{note}");
        }
        assert!(r[col(&h, "avg_ts")].parse::<f64>().unwrap() > 0.0);
        // Every row has a bandwidth; tg rows are judged against it.
        let bw: f64 = r[col(&h, "mem_bandwidth_gbs")].parse().unwrap();
        assert!(bw > 0.0 && bw.is_finite(), "{r:?}");
        if &r[col(&h, "test")] == "tg4" {
            let gbs: f64 = r[col(&h, "gbs")].parse().unwrap();
            let fraction: f64 = r[col(&h, "roofline_fraction")].parse().unwrap();
            assert!(
                (fraction - gbs / bw).abs() <= 1e-9 * fraction.max(1.0),
                "{r:?}"
            );
        }
    }
    // The model estimate: ternary weights cost less than f16 per token.
    let model_j = |wtype: &str, test: &str| -> f64 {
        model_rows
            .iter()
            .find(|r| {
                &r[col(&h, "wtype")] == wtype
                    && &r[col(&h, "test")] == test
                    && &r[col(&h, "energy_source")] == "model"
            })
            .unwrap()[col(&h, "energy_j_per_token")]
        .parse()
        .unwrap()
    };
    assert!(model_j("i2s", "tg4") < model_j("f16", "tg4"));
    // Layer rows carry no energy; every row carries the system columns.
    for r in &rows {
        for c in [
            "cpu_info",
            "cpu_features",
            "caches",
            "os",
            "rustc",
            "build_commit",
        ] {
            assert!(!r[col(&h, c)].is_empty(), "{c} empty in {r:?}");
        }
        if &r[col(&h, "test")] == "layer" {
            assert!(r[col(&h, "energy_j_per_token")].is_empty());
        }
    }
    assert!(out_dir.join("report.html").exists() && out_dir.join("summary.md").exists());
    assert!(out_dir.join("config.toml").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn killed_sweep_keeps_its_rows_and_resumes_without_duplicates() {
    let dir = temp_dir("sweep-resume");
    let config = write_config(&dir, 30);
    let out_dir = dir.join("out");
    let results = out_dir.join("results.csv");
    let mut child = Command::new(ternbench_bin())
        .args([
            "sweep",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--format",
            "csv",
        ])
        .env("TERNBENCH_PROBE_MIB", "16")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill it once a few rows are written, in the middle of the layer part.
    let start = Instant::now();
    loop {
        let lines = std::fs::read_to_string(&results).map_or(0, |t| t.lines().count());
        if lines > 4 {
            break;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the sweep finished before it could be killed"
        );
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no rows after 120 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = std::fs::read_to_string(&results).unwrap();
    let kept = before.lines().count() - 1;
    assert!((4..LAYER_ROWS).contains(&kept), "{kept} rows kept");
    // A write cut by the kill leaves a partial line; resume repairs it.
    let before = if before.ends_with('\n') {
        std::fs::write(&results, format!("{before}1,partial")).unwrap();
        before
    } else {
        before[..before.rfind('\n').unwrap() + 1].to_string()
    };
    let out = run(&[
        "sweep",
        "--resume",
        out_dir.to_str().unwrap(),
        "--format",
        "csv",
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("resuming after"), "{stderr}");
    let after = std::fs::read_to_string(&results).unwrap();
    assert!(
        after.starts_with(&before),
        "rows written before the kill changed"
    );
    let (h, rows) = read_rows(&results);
    assert_eq!(rows.len(), LAYER_ROWS + MODEL_ROWS, "{after}");
    let k = keys(&h, &rows);
    assert_eq!(
        k.iter().collect::<HashSet<_>>().len(),
        k.len(),
        "duplicate rows"
    );
    // Resuming a finished sweep measures nothing and writes nothing.
    let out = run(&["sweep", "--resume", out_dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert_eq!(std::fs::read_to_string(&results).unwrap(), after);
    assert!(out_dir.join("report.html").exists());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_sweeps_are_refused_before_anything_runs() {
    let dir = temp_dir("sweep-bad");
    let config = write_config(&dir, 1);
    let good = std::fs::read_to_string(&config).unwrap();
    let out_dir = dir.join("out");
    for (from, to, line, want) in [
        (
            "tests = [\"pp4\", \"tg4\"]",
            "tests = [\"pp4\", \"tg0\"]",
            8,
            "expected \"ppN\" or \"tgN\"",
        ),
        (
            "models = [\"tiny.toml\"]",
            "models = [\"tiny-1M\"]",
            7,
            "unknown model 'tiny-1M'",
        ),
        (
            "\"tq2-scalar\"",
            "\"tq3-scalar\"",
            2,
            "unknown kernel 'tq3-scalar'",
        ),
        (
            "[model]\nreps = 2",
            "[model]\nrepetitions = 2",
            13,
            "repetitions",
        ),
        (
            "watts_per_core = 5.0",
            "watts_per_core = \"five\"",
            16,
            "watts_per_core",
        ),
    ] {
        std::fs::write(&config, good.replace(from, to)).unwrap();
        let out = run(&[
            "sweep",
            "--config",
            config.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
        ]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{to}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let at = format!("sweep.toml:{line}:");
        assert!(
            stderr.contains(&at) && stderr.contains(want),
            "{to}: {stderr}"
        );
        assert!(!out_dir.exists(), "{to}: the sweep started");
    }
    let out = run(&["sweep", "--resume", dir.join("nowhere").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_shipped_config_parses() {
    let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&configs).unwrap() {
        let path = e.unwrap().path();
        if path.file_name().is_some_and(|n| n == "ci.toml") {
            // The regression gate's configuration, not a sweep.
            ternbench::check::config::CheckConfig::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        } else if path.extension().is_some_and(|x| x == "toml") {
            let c = ternbench::config::Config::load(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            names.push(c.name);
        }
    }
    for want in ["default", "paper-x86", "paper-arm", "kernels"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    // The embedded copy is the file.
    assert_eq!(
        std::fs::read_to_string(configs.join("default.toml")).unwrap(),
        ternbench::config::DEFAULT_CONFIG
    );
}
