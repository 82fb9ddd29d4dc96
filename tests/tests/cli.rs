//! End-to-end tests of the `ternbench` command line: listing, verified layer
//! runs, configuration runs, and bad input (exit code 2, a message that says
//! what was expected, never a panic).

use ternbench_tests::{run, text};

fn assert_no_panic(stderr: &str) {
    assert!(
        !stderr.contains("panicked"),
        "the binary panicked:\n{stderr}"
    );
}

#[test]
fn kernels_lists_every_scalar_kernel_as_available() {
    let out = run(&["kernels", "--format", "csv"]);
    assert!(out.status.success());
    let (stdout, _) = text(&out);
    let mut r = csv::Reader::from_reader(stdout.as_bytes());
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    for format in ["i2s", "tq2", "tq1", "f16", "q8_0", "q4_0"] {
        let name = format!("{format}-scalar");
        let row = rows
            .iter()
            .find(|r| r[0] == name)
            .unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(&row[5], "yes", "{name} should be available");
    }
    // Every kernel listed as unavailable says which feature is missing.
    for row in &rows {
        assert!(
            &row[5] == "yes" || row[5].starts_with("no (needs "),
            "{:?}",
            row
        );
    }
}

#[test]
fn layer_verifies_and_times_every_kernel() {
    let out = run(&[
        "layer",
        "--kernel",
        "all",
        "--shape",
        "40x300,7x257",
        "--batch",
        "1,3",
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
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let mut r = csv::Reader::from_reader(stdout.as_bytes());
    let headers = r.headers().unwrap().clone();
    let col = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    // q6_k needs K a multiple of 256: it sits out both shapes, saying so.
    let kernels = ternbench_kernels::registry::resolve("all")
        .unwrap()
        .into_iter()
        .filter(|k| k.info().format.accepts_cols(300) && k.info().format.accepts_cols(257))
        .count();
    assert_eq!(rows.len(), kernels * 2 * 2 * 2);
    assert!(
        stderr.contains("skipping q6_k-scalar: q6_k needs K (columns) a multiple of 256"),
        "{stderr}"
    );
    for row in &rows {
        assert_eq!(&row[col("verified")], "true", "{row:?}");
        let median: f64 = row[col("median_ns")].parse().unwrap();
        assert!(median > 0.0);
        assert!(row[col("speedup_vs_f16")].parse::<f64>().unwrap() > 0.0);
        assert_eq!(&row[col("schema_version")], "1");
    }
}

#[test]
fn layer_runs_q6_k_where_k_is_whole_super_blocks_and_refuses_other_k() {
    let out = run(&[
        "layer",
        "--kernel",
        "q6_k-scalar,q6_k-auto",
        "--shape",
        "33x512,7x2560",
        "--batch",
        "1,3",
        "--reps",
        "2",
        "--warmup-ms",
        "1",
        "--min-sample-ms",
        "1",
        "--format",
        "csv",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows = csv_rows(&stdout);
    assert!(rows.iter().any(|r| r["kernel"] == "q6_k-scalar"));
    // q6_k-auto may be q6_k-scalar (deduplicated) or a SIMD kernel; plus the f16 baseline.
    assert!(rows.len() >= 2 * 2 * 2, "{stdout}");
    for r in &rows {
        assert_eq!(r["verified"], "true", "{r:?}");
    }
    let out = run(&[
        "layer",
        "--kernel",
        "q6_k-scalar",
        "--shape",
        "40x300",
        "--no-baseline",
    ]);
    let (_, stderr) = text(&out);
    assert!(!out.status.success());
    assert_no_panic(&stderr);
    assert!(stderr.contains("multiple of 256"), "{stderr}");
}

/// Rows of a `--format csv` run, by column name.
fn csv_rows(stdout: &str) -> Vec<std::collections::HashMap<String, String>> {
    let mut r = csv::Reader::from_reader(stdout.as_bytes());
    let headers = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers
                .iter()
                .zip(rec.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

#[test]
fn cold_layer_rows_report_their_roofline_fractions() {
    let out = run(&[
        "layer",
        "--kernel",
        "i2s-scalar,i2s-auto",
        "--shape",
        "256x2048",
        "--threads",
        "1,2",
        "--cold",
        "--reps",
        "2",
        "--warmup-ms",
        "1",
        "--min-sample-ms",
        "1",
        "--format",
        "csv",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows = csv_rows(&stdout);
    // i2s-scalar, i2s-auto (the same kernel on a CPU without SIMD) and the f16 baseline, at 2 thread counts.
    assert!(rows.len() >= 4, "{stdout}");
    for row in &rows {
        assert_eq!(row["cold"], "true");
        let bw: f64 = row["mem_bandwidth_gbs"].parse().unwrap();
        let fraction: f64 = row["roofline_fraction"].parse().unwrap();
        let gbs: f64 = row["gbs"].parse().unwrap();
        assert!(
            bw > 0.0 && (fraction - gbs / bw).abs() <= 1e-9 * fraction.max(1.0),
            "{row:?}"
        );
        // Scalar kernels have no compute roof; SIMD kernels have one where a probe runs.
        let isa = &row["kernel_isa"];
        assert_eq!(
            row["compute_fraction"].is_empty(),
            isa == "scalar",
            "{row:?}"
        );
    }
}

#[test]
fn hot_layer_rows_are_judged_against_a_same_size_read() {
    let out = run(&[
        "layer",
        "--kernel",
        "i2s-scalar,tq1-scalar",
        "--shape",
        "5x256",
        "--reps",
        "2",
        "--warmup-ms",
        "1",
        "--min-sample-ms",
        "1",
        "--format",
        "csv",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows = csv_rows(&stdout);
    // i2s, tq1 (270 bytes: not whole words) and the f16 baseline: three
    // weight sizes, three reads.
    assert_eq!(rows.len(), 3, "{stdout}");
    for row in &rows {
        assert_eq!(row["cold"], "false");
        let cache: f64 = row["cache_read_gbs"].parse().unwrap();
        let dram: f64 = row["mem_bandwidth_gbs"].parse().unwrap();
        let fraction: f64 = row["roofline_fraction"].parse().unwrap();
        let gbs: f64 = row["gbs"].parse().unwrap();
        assert!(cache > 0.0 && dram > 0.0, "{row:?}");
        assert!(
            (fraction - gbs / cache).abs() <= 1e-9 * fraction.max(1.0),
            "{row:?}"
        );
    }
}

#[test]
fn bandwidth_prints_read_and_peak_rates_per_thread_count() {
    let out = run(&["bandwidth", "--threads", "1,2", "--format", "csv"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let rows = csv_rows(&stdout);
    for t in ["1", "2"] {
        let read = rows
            .iter()
            .find(|r| r["probe"] == "read" && r["threads"] == t)
            .unwrap_or_else(|| panic!("no read row for {t} threads: {stdout}"));
        assert!(read["value"].parse::<f64>().unwrap() > 0.0);
    }
    let probes = ternbench_kernels::peak::all()
        .iter()
        .filter(|p| p.is_available());
    for p in probes {
        assert!(
            rows.iter()
                .any(|r| r["probe"] == p.name && r["unit"] == "GOP/s"),
            "{} missing: {stdout}",
            p.name
        );
    }
}

#[test]
fn sweep_writes_results_csv_row_by_row() {
    let dir = std::env::temp_dir().join(format!("ternbench-e2e-sweep-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("small.toml");
    std::fs::write(
        &config,
        "name = \"small\"\nkernels = [\"i2s-auto\", \"tq2-scalar\"]\nthreads = [1]\nreps = 2\nwarmup_ms = 1\nmin_sample_ms = 1\n[layer]\nshapes = [\"16x256\"]\nbatch = [1, 2]\n",
    )
    .unwrap();
    let out_dir = dir.join("out");
    let out = run(&[
        "sweep",
        "--config",
        config.to_str().unwrap(),
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let csv_text = std::fs::read_to_string(out_dir.join("results.csv")).unwrap();
    // 3 kernels (two requested + the f16 baseline) x 2 batch sizes, plus the header.
    assert_eq!(csv_text.lines().count(), 1 + 3 * 2, "{csv_text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Runs a bad command line and returns stderr, checking exit code 2 and no panic.
fn refused(args: &[&str]) -> String {
    let out = run(args);
    let (_, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{args:?} should exit 2:\n{stderr}"
    );
    assert_no_panic(&stderr);
    stderr
}

#[test]
fn bad_command_lines_exit_2_with_what_was_expected() {
    let e = refused(&["layer", "--kernel", "i2s-nope", "--shape", "8x8"]);
    assert!(
        e.contains("unknown kernel 'i2s-nope'") && e.contains("i2s-scalar"),
        "{e}"
    );
    for shape in ["0x5", "5x0", "5by5", "x", "-3x4"] {
        let arg = format!("--shape={shape}");
        let e = refused(&["layer", "--kernel", "i2s-scalar", &arg]);
        assert!(e.contains("expected ROWSxCOLS"), "{shape}: {e}");
    }
    let e = refused(&[
        "layer",
        "--kernel",
        "i2s-scalar",
        "--shape",
        "8x8",
        "--threads",
        "0",
    ]);
    assert!(e.contains("at least 1"), "{e}");
    let e = refused(&[
        "layer",
        "--kernel",
        "i2s-scalar",
        "--shape",
        "8x8",
        "--threads",
        "two",
    ]);
    assert!(e.contains("at least 1"), "{e}");
    let e = refused(&["layer", "--kernel", "i2s-scalar"]);
    assert!(e.contains("--shape"), "{e}");
    let e = refused(&[
        "layer",
        "--kernel",
        "i2s-scalar",
        "--shape",
        "8x8",
        "--threading",
        "openmp",
    ]);
    assert!(e.contains("'pool' or 'rayon'"), "{e}");
    refused(&["no-such-command"]);
}

#[test]
fn unavailable_kernels_are_refused_by_name() {
    let missing = ternbench_kernels::registry::all().iter().find_map(|k| {
        ternbench_kernels::registry::availability(*k)
            .err()
            .map(|f| (k.info().name, f))
    });
    if let Some((name, feature)) = missing {
        let e = refused(&["layer", "--kernel", name, "--shape", "8x8"]);
        assert!(e.contains(name) && e.contains(feature.name()), "{e}");
    }
}

#[test]
fn bad_config_files_exit_2_with_file_and_line() {
    let dir = std::env::temp_dir().join(format!("ternbench-e2e-badcfg-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("bad.toml");
    std::fs::write(&config, "name = \"bad\"\nkernels = [\"all\"]\nthreads = [1]\nrepz = 3\n[layer]\nshapes = [\"8x8\"]\n").unwrap();
    let e = refused(&["sweep", "--config", config.to_str().unwrap()]);
    assert!(e.contains("bad.toml:4:") && e.contains("repz"), "{e}");
    let e = refused(&[
        "sweep",
        "--config",
        dir.join("missing.toml").to_str().unwrap(),
    ]);
    assert!(
        e.contains("missing.toml") && e.contains("cannot read"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn help_is_complete() {
    for args in [
        &["--help"][..],
        &["layer", "--help"],
        &["kernels", "--help"],
        &["sweep", "--help"],
        &["bandwidth", "--help"],
    ] {
        let out = run(args);
        assert!(out.status.success());
        let (stdout, _) = text(&out);
        assert!(stdout.contains("Usage"), "{stdout}");
    }
    let (stdout, _) = text(&run(&["layer", "--help"]));
    for flag in [
        "--kernel",
        "--shape",
        "--batch",
        "--threads",
        "--reps",
        "--threading",
        "--pin",
        "--format",
        "--out",
        "--cold",
        "--no-roofline",
    ] {
        assert!(stdout.contains(flag), "layer --help lacks {flag}");
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn readme_coverage_table_matches_the_registry() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let begin = "<!-- coverage:x86_64:begin -->\n";
    let start = readme.find(begin).expect("coverage begin marker") + begin.len();
    let end = readme
        .find("<!-- coverage:x86_64:end -->")
        .expect("coverage end marker");
    assert_eq!(
        &readme[start..end],
        ternbench::cli::coverage_markdown(),
        "README coverage table is stale: paste `ternbench kernels --format markdown`"
    );
}
