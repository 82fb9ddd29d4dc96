//! End-to-end tests of `ternbench claims`: measured model rows (hand-made
//! here, since the model runner's rows take minutes; and the imported
//! llama-bench fixture) beside the published claims of arXiv 2410.16144.

use std::path::{Path, PathBuf};
use ternbench_tests::{run, text};

const CONFIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../configs/claims/bitnet-2410.16144.toml"
);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ternbench-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Hand-made model rows in the results schema (test data, not measurements):
/// only the columns claims need, in an order of their own.
fn measured_rows(dir: &Path) -> PathBuf {
    let csv = dir.join("model.csv");
    std::fs::write(
        &csv,
        "schema_version,cpu_info,model_type,test,kernel,wtype,exact,n_threads,avg_ts,speedup_vs_f16,mem_bandwidth_gbs,extrapolated,verified\n\
         1,test CPU,dummy-1B,tg128,f16-avx2,f16,false,2,14.00,1.00,38.5,false,true\n\
         1,test CPU,dummy-1B,tg128,i2s-avx2,i2s,true,2,60.20,4.30,38.5,false,true\n\
         1,test CPU,dummy-1B,tg128,tq1-avx2,tq1,true,2,56.00,4.00,38.5,false,true\n\
         1,test CPU,dummy-100B,tg128,i2s-avx2,i2s,true,2,0.95,,38.5,true,true\n\
         1,test CPU,dummy-1B,tg128,tq2-avx2,tq2,true,2,,,38.5,false,false\n",
    )
    .unwrap();
    csv
}

#[test]
fn claims_table_puts_measured_beside_published() {
    let dir = temp_dir("claims");
    let csv = measured_rows(&dir);
    let out = run(&[
        "claims",
        "--config",
        CONFIG,
        "--results",
        csv.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // i7-13700H, 1B, 2 threads (Table 5): 13.92 -> 57.76 tok/s, 4.15x; here 4.30x: holds.
    assert!(
        stdout.contains(
            "| 1B | 2410.16144 T5 | Intel i7-13700H (under 100 GB/s) | 2 | bitnet.cpp | 13.92 | 57.76 | 4.15x | i2s-avx2 | 2 (tg128) | 14.00 | 60.20 | 4.30x | 38.5 GB/s | holds |"
        ),
        "{stdout}"
    );
    // M2 Ultra, same row: 1.92x published; 4.30x here: exceeded.
    assert!(
        stdout.contains("| 1B | 2410.16144 T5 | Apple M2 Ultra (800 GB/s) | 2 | bitnet.cpp | 41.36 | 79.23 | 1.92x | i2s-avx2 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains("4.30x | 38.5 GB/s | exceeded |"),
        "{stdout}"
    );
    // 100B: no fp16 figure in the paper; the measured row is marked extrapolated.
    assert!(
        stdout.contains("| 100B | 2410.16144 T5 | Intel i7-13700H (under 100 GB/s) | 2 | bitnet.cpp | - | 0.97 | - | i2s-avx2 | 2 (tg128) | - | 0.95 (extrapolated) |"),
        "{stdout}"
    );
    assert!(stdout.contains("no fp16 figure published"), "{stdout}");
    // The row that failed verification is never compared.
    assert!(!stdout.contains("tq2-avx2"), "{stdout}");
    assert!(
        stdout.contains("energy claims are not compared"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn imported_llama_bench_rows_are_compared_too() {
    let dir = temp_dir("claims-import");
    let imported = dir.join("lb.csv");
    let fixture = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/fixtures/llama-bench/bitnet-700m-cpu.json"
    );
    let out = run(&["import", fixture, "--out", imported.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out).1);
    let out = run(&[
        "claims",
        "--config",
        CONFIG,
        "--results",
        imported.to_str().unwrap(),
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    // The fixture's tok/s are the published ones, so its own row holds exactly.
    assert!(
        stdout.contains("| 700M | 2410.16144 T5 | Intel i7-13700H (under 100 GB/s) | 2 | bitnet.cpp | 18.56 | 80.13 | 4.32x | I2_S [imported, unverified] | 2 (tg128) | 18.56 | 80.13 | 4.32x | not measured | holds |"),
        "{stdout}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn claims_without_matching_rows_or_with_bad_input_fail_clearly() {
    let dir = temp_dir("claims-bad");
    let csv = dir.join("layer-only.csv");
    std::fs::write(
        &csv,
        "schema_version,kernel,test,verified\n1,i2s-avx2,layer,true\n",
    )
    .unwrap();
    let out = run(&[
        "claims",
        "--config",
        CONFIG,
        "--results",
        csv.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no measured model row matches") && stderr.contains("dummy-"),
        "{stderr}"
    );
    let out = run(&[
        "claims",
        "--config",
        "missing.toml",
        "--results",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("missing.toml"), "{}", text(&out).1);
    let bad = dir.join("bad.csv");
    std::fs::write(
        &bad,
        "schema_version,kernel,test,verified,avg_ts\n1,i2s-avx2,tg128,true,quick\n",
    )
    .unwrap();
    let out = run(&[
        "claims",
        "--config",
        CONFIG,
        "--results",
        bad.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("bad.csv:2: field 'avg_ts'"),
        "{}",
        text(&out).1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
