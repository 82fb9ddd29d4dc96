//! End-to-end tests of `ternbench import`: the hand-made llama-bench JSON
//! and CSV fixtures (tests/fixtures/llama-bench/, built from llama-bench's
//! documented output format) become result rows, and an imported CSV merges
//! into a report beside ternbench's own rows.

use std::path::{Path, PathBuf};
use ternbench_tests::{run, text};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/llama-bench")
        .join(name)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ternbench-e2e-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn rows_of(csv_text: &str) -> (csv::StringRecord, Vec<csv::StringRecord>) {
    let mut r = csv::Reader::from_reader(csv_text.as_bytes());
    let h = r.headers().unwrap().clone();
    (h, r.records().map(|r| r.unwrap()).collect())
}

#[test]
fn llama_bench_json_becomes_result_rows() {
    let out = run(&["import", fixture("bitnet-700m-cpu.json").to_str().unwrap()]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let (h, rows) = rows_of(&stdout);
    let col = |n: &str| {
        h.iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n}"))
    };
    assert_eq!(rows.len(), 6);
    let tq2 = rows.iter().find(|r| &r[col("kernel")] == "TQ2_0").unwrap();
    assert_eq!(&tq2[col("schema_version")], "1");
    assert_eq!(&tq2[col("wtype")], "tq2");
    assert_eq!(&tq2[col("test")], "tg128");
    assert_eq!(&tq2[col("n_gen")], "128");
    assert_eq!(&tq2[col("n_threads")], "8");
    assert_eq!(&tq2[col("model_type")], "bitnet 700M");
    assert_eq!(
        &tq2[col("weights_source")],
        "models/dummy-bitnet-700m.tq2_0.gguf"
    );
    assert_eq!(&tq2[col("bits_per_weight")], "2.06");
    assert_eq!(&tq2[col("verified")], "false");
    assert!(tq2[col("note")].starts_with("imported: not verified by ternbench"));
    assert_eq!(tq2[col("avg_ts")].parse::<f64>().unwrap(), 123.94);
    assert_eq!(tq2[col("reps")].parse::<usize>().unwrap(), 5);
    // The median of the five samples_ns.
    assert_eq!(
        tq2[col("median_ns")].parse::<f64>().unwrap(),
        1_030_696_393.0
    );
    // Over the F16 run of the same model, test and threads: 123.94 / 30.73.
    let s: f64 = tq2[col("speedup_vs_f16")].parse().unwrap();
    assert!((s - 123.94 / 30.73).abs() < 1e-9, "{s}");
    // Nothing of the importing machine is claimed.
    assert_eq!(
        &tq2[col("cpu_info")],
        "fixture CPU (hand-made llama-bench output, see README.md)"
    );
    assert_eq!(&tq2[col("cpu_features")], "");
    assert_eq!(&tq2[col("build_commit")], "llama.cpp 8cf427ff (build 5163)");
    let i2s2 = rows
        .iter()
        .find(|r| &r[col("kernel")] == "I2_S" && &r[col("n_threads")] == "2")
        .unwrap();
    let s: f64 = i2s2[col("speedup_vs_f16")].parse().unwrap();
    assert!((s - 80.13 / 18.56).abs() < 1e-9, "{s}");
}

#[test]
fn llama_bench_csv_gives_the_same_rows_as_json() {
    let json = text(&run(&[
        "import",
        fixture("bitnet-700m-cpu.json").to_str().unwrap(),
    ]))
    .0;
    let out = run(&["import", fixture("bitnet-700m-cpu.csv").to_str().unwrap()]);
    let (csv_out, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let (h, a) = rows_of(&json);
    let (_, b) = rows_of(&csv_out);
    assert_eq!(a.len(), b.len());
    // The CSV has no samples: everything but the sample statistics, reps and note agrees.
    for (ra, rb) in a.iter().zip(&b) {
        for (i, name) in h.iter().enumerate() {
            if !["median_ns", "min_ns", "reps", "note"].contains(&name) {
                assert_eq!(ra[i], rb[i], "column {name}");
            }
        }
    }
}

#[test]
fn an_imported_csv_merges_into_a_report() {
    let dir = temp_dir("import-report");
    let imported = dir.join("llama-bench.csv");
    let out = run(&[
        "import",
        fixture("bitnet-700m-cpu.json").to_str().unwrap(),
        "--out",
        imported.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let results = dir.join("results.csv");
    let out = run(&[
        "layer",
        "--kernel",
        "i2s-scalar",
        "--shape",
        "32x256",
        "--reps",
        "2",
        "--warmup-ms",
        "1",
        "--min-sample-ms",
        "1",
        "--format",
        "csv",
        "--out",
        results.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let rep = dir.join("rep");
    let out = run(&[
        "report",
        results.to_str().unwrap(),
        imported.to_str().unwrap(),
        "--out",
        rep.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    for chart in [
        "charts/layer-speedup-cpu1-t1.svg",
        "charts/model-speedup-cpu2-tg128-t8.svg",
        "charts/model-speedup-cpu2-tg128-t2.svg",
        "charts/threads-cpu2-bitnet_700M-tg128.svg",
        "charts/threads-cpu2-bitnet_700M-tg128.png",
    ] {
        assert!(rep.join(chart).is_file(), "{chart} missing: {stderr}");
    }
    let svg = std::fs::read_to_string(rep.join("charts/model-speedup-cpu2-tg128-t8.svg")).unwrap();
    assert!(
        svg.contains("TQ2_0 [imported, unverified]"),
        "imports must be marked"
    );
    let md = std::fs::read_to_string(rep.join("summary.md")).unwrap();
    assert!(
        md.contains("| TQ2_0 [imported, unverified] | 123.94 (4.03x) |"),
        "{md}"
    );
    assert!(
        md.contains("Every ternbench row passed verification"),
        "{md}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_llama_bench_input_exits_2_with_file_line_and_field() {
    let dir = temp_dir("import-bad");
    let json = std::fs::read_to_string(fixture("bitnet-700m-cpu.json")).unwrap();
    let cases = [
        (
            json.replacen(
                "\"model_type\": \"bitnet 700M F16\"",
                "\"model_type\": \"F16\"",
                1,
            ),
            ":9:",
            "model_type",
        ),
        (
            json.replacen("\"avg_ts\": 30.730000", "\"avg_ts\": \"fast\"", 1),
            ":34:",
            "avg_ts",
        ),
        (
            json.replacen("\"n_threads\": 8,", "", 1),
            ":2:",
            "n_threads",
        ),
        (json.replacen("[", "[ {", 1), "", "not valid JSON"),
        (String::new(), "", "empty file"),
    ];
    for (i, (text_in, line, what)) in cases.iter().enumerate() {
        let f = dir.join(format!("bad{i}.json"));
        std::fs::write(&f, text_in).unwrap();
        let out = run(&["import", f.to_str().unwrap()]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "case {i}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        let loc = format!("bad{i}.json{line}");
        assert!(
            stderr.contains(&loc) && stderr.contains(what),
            "case {i}: {stderr}"
        );
    }
    // A ternbench results CSV is not llama-bench output.
    let ours = dir.join("ours.csv");
    std::fs::write(
        &ours,
        "schema_version,kernel,test,verified\n1,i2s-avx2,layer,true\n",
    )
    .unwrap();
    let out = run(&["import", ours.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out).1.contains("ternbench report"),
        "{}",
        text(&out).1
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
