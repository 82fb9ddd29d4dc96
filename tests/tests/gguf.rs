//! GGUF export and checkpoint loading end to end: files written by
//! `ternbench export-gguf` are read back by the `gguf` Python package (an
//! independent reader) and by ternbench; `ternbench model` and `generate` run
//! GGUF files and the committed HF fixtures; bad GGUF and safetensors files
//! give exit code 2 and an error naming the file and what was expected.

use std::path::{Path, PathBuf};
use std::process::Command;
use ternbench::model::gguf::{GgmlType, GgufFile};
use ternbench_kernels::formats::q4_0::Q4_0Matrix;
use ternbench_kernels::formats::q6_k::Q6KMatrix;
use ternbench_kernels::formats::q8_0::Q8_0Matrix;
use ternbench_kernels::formats::tq1::{BlockTq1, Tq1Matrix};
use ternbench_kernels::formats::tq2::{BlockTq2, Tq2Matrix};
use ternbench_tests::{run, text};

const TINY: &str = "name = \"tiny\"\nhidden = 256\nffn = 512\nlayers = 2\nheads = 4\nkv_heads = 2\nhead_dim = 64\nvocab = 300\nffn_activation = \"relu2-gated\"\nrope_theta = 500000.0\n";

fn temp_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("ternbench-gguf-e2e-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tiny_toml(dir: &Path) -> String {
    let p = dir.join("tiny.toml");
    std::fs::write(&p, TINY).unwrap();
    p.display().to_string()
}

fn export(dir: &Path, wtype: &str, embd: &str) -> PathBuf {
    let out = dir.join(format!("tiny-{wtype}-{embd}.gguf"));
    let o = run(&[
        "export-gguf",
        "--model",
        &tiny_toml(dir),
        "--wtype",
        wtype,
        "--embd-type",
        embd,
        out.to_str().unwrap(),
    ]);
    let (_, stderr) = text(&o);
    assert!(o.status.success(), "export-gguf {wtype}: {stderr}");
    out
}

fn assert_bad_input(args: &[&str], want: &[&str]) {
    let o = run(args);
    let (_, stderr) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
    for w in want {
        assert!(stderr.contains(w), "{args:?}: '{w}' not in: {stderr}");
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// ternbench's own dequantization of a tensor's bytes.
fn dequantize(ty: GgmlType, dims: &[u64], bytes: &[u8]) -> Vec<f32> {
    let cols = dims[0] as usize;
    let rows = dims[1..].iter().product::<u64>() as usize;
    let blocks = |d: Vec<f32>, v: Vec<i8>| -> Vec<f32> {
        v.iter()
            .enumerate()
            .map(|(i, &t)| t as f32 * d[i / 256])
            .collect()
    };
    match ty {
        GgmlType::F32 => bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect(),
        GgmlType::F16 => bytes
            .chunks_exact(2)
            .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
            .collect(),
        GgmlType::Q8_0 => Q8_0Matrix::from_bytes(rows, cols, bytes)
            .unwrap()
            .dequantize(),
        GgmlType::Q4_0 => Q4_0Matrix::from_bytes(rows, cols, bytes)
            .unwrap()
            .dequantize(),
        GgmlType::Q6K => Q6KMatrix::from_q6k_bytes(rows, cols, bytes)
            .unwrap()
            .dequantize(),
        GgmlType::Tq2_0 => {
            let m = Tq2Matrix::from_bytes(rows, cols, bytes).unwrap();
            let d = m.blocks.iter().map(|b: &BlockTq2| b.d.to_f32()).collect();
            blocks(d, m.ternary_values())
        }
        GgmlType::Tq1_0 => {
            let m = Tq1Matrix::from_bytes(rows, cols, bytes).unwrap();
            let d = m.blocks.iter().map(|b: &BlockTq1| b.d.to_f32()).collect();
            blocks(d, m.ternary_values())
        }
        GgmlType::I2S => unreachable!("the gguf package does not read I2_S"),
    }
}

fn python_has_gguf() -> bool {
    Command::new("python3")
        .args(["-c", "import gguf, numpy"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn the_gguf_python_package_reads_exported_files() {
    if !python_has_gguf() {
        assert!(
            std::env::var_os("TERNBENCH_REQUIRE_GGUF_PY").is_none(),
            "TERNBENCH_REQUIRE_GGUF_PY is set but `python3 -c \"import gguf, numpy\"` fails (pip install gguf)"
        );
        eprintln!("skipping: the `gguf` Python package is not installed (pip install gguf); set TERNBENCH_REQUIRE_GGUF_PY=1 to make this a failure");
        return;
    }
    let dir = temp_dir("py");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/gguf_read.py");
    for (wtype, embd) in [
        ("f16", "f16"),
        ("tq1_0", "f16"),
        ("tq2_0", "q8_0"),
        ("q8_0", "f32"),
        ("q4_0", "q4_0"),
        // gguf.quants dequantizes our Q6_K token_embd like ternbench does.
        ("tq2_0", "q6_k"),
    ] {
        let path = export(&dir, wtype, embd);
        let o = Command::new("python3")
            .arg(&script)
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{wtype}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let py: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let meta = &py["metadata"];
        assert_eq!(meta["general.architecture"], "bitnet");
        assert_eq!(meta["bitnet.embedding_length"], 256);
        assert_eq!(meta["bitnet.feed_forward_length"], 512);
        assert_eq!(meta["bitnet.block_count"], 2);
        assert_eq!(meta["bitnet.attention.head_count"], 4);
        assert_eq!(meta["bitnet.attention.head_count_kv"], 2);
        assert_eq!(meta["bitnet.rope.freq_base"], 500000.0);
        assert_eq!(meta["bitnet.hidden_activation"], "relu2");
        assert_eq!(meta["tokenizer.ggml.tokens"]["array_len"], 300);
        let ours = GgufFile::open(&path, None).unwrap();
        let tensors = py["tensors"].as_array().unwrap();
        // token_embd, output_norm, and 4 norms + 7 linears per block.
        assert_eq!(tensors.len(), 2 + 2 * 11);
        assert_eq!(tensors.len(), ours.tensors.len());
        for t in tensors {
            let name = t["name"].as_str().unwrap();
            let mine = ours
                .tensor(name)
                .unwrap_or_else(|| panic!("{wtype}: {name} not found by ternbench"));
            assert_eq!(t["type"], mine.ty.name(), "{wtype} {name}");
            if name == "token_embd.weight" && embd == "q6_k" {
                assert_eq!(t["type"], "Q6_K");
                assert_eq!(t["n_bytes"], 300 * 210, "one 210-byte super-block per row");
            }
            let dims: Vec<u64> = t["dims"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap())
                .collect();
            assert_eq!(dims, mine.dims, "{wtype} {name}");
            let bytes = ours.data(mine);
            assert_eq!(t["n_bytes"], bytes.len(), "{wtype} {name}");
            assert_eq!(t["crc32"], crc32(bytes), "{wtype} {name}: bytes differ");
            // gguf.quants' dequantization (its own code for every type) agrees with ours.
            let values = dequantize(mine.ty, &mine.dims, bytes);
            let sum: f64 = values.iter().map(|&v| v as f64).sum();
            let abs: f64 = values.iter().map(|&v| v.abs() as f64).sum();
            let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1.0);
            assert!(
                close(t["sum"].as_f64().unwrap(), sum),
                "{wtype} {name}: sum {} vs {sum}",
                t["sum"]
            );
            assert!(
                close(t["abs_sum"].as_f64().unwrap(), abs),
                "{wtype} {name}: |sum| {} vs {abs}",
                t["abs_sum"]
            );
            for (i, v) in t["first"].as_array().unwrap().iter().enumerate() {
                assert_eq!(v.as_f64().unwrap() as f32, values[i], "{wtype} {name}[{i}]");
            }
            if name.ends_with("attn_q.weight") && wtype != "q4_0" {
                // Ternary weights times one scale: exactly three distinct values (with zero).
                let mut distinct: Vec<f32> = values.clone();
                distinct.sort_by(f32::total_cmp);
                distinct.dedup();
                assert_eq!(distinct.len(), 3, "{wtype} {name}: {distinct:?}");
                assert_eq!(distinct[0], -distinct[2]);
            }
        }
    }
}

fn ids_of(out: &std::process::Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(out.status.success(), "{stderr}");
    stdout.trim().to_string()
}

#[test]
fn generate_from_an_exported_gguf_matches_the_synthetic_model() {
    let dir = temp_dir("gen");
    // I2_S keeps the f32 scale and an F32 embedding keeps the embedding exactly,
    // so the file holds exactly the synthetic model's weights.
    let path = export(&dir, "i2_s", "f32");
    let toml = tiny_toml(&dir);
    let args = |model: &str| -> Vec<String> {
        [
            "generate",
            "--model",
            model,
            "--prompt-ids",
            "1,5,7,100",
            "-n",
            "8",
            "--kernel",
            "i2s-scalar",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    let from_file = ids_of(&run(&args(path.to_str().unwrap())
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()));
    let synthetic = ids_of(&run(&args(&toml)
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()));
    assert_eq!(from_file.split(',').count(), 8, "{from_file}");
    assert_eq!(from_file, synthetic);
    // TQ2_0 rounds the scale to f16, which must not change the greedy tokens here.
    let tq2 = export(&dir, "tq2_0", "f32");
    let from_tq2 = ids_of(&run(&args(tq2.to_str().unwrap())
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()));
    assert_eq!(from_tq2, synthetic);
    // A text prompt without a tokenizer is bad input.
    assert_bad_input(
        &[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt",
            "hello",
        ],
        &["--prompt needs a tokenizer", "--prompt-ids"],
    );
    assert_bad_input(
        &[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt-ids",
            "1,300",
        ],
        &["token id 300 is outside the vocabulary of 300"],
    );
    assert_bad_input(
        &[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt-ids",
            "1,x",
        ],
        &["'x': expected a token id"],
    );
    assert_bad_input(
        &[
            "generate",
            "--model",
            path.to_str().unwrap(),
            "--prompt-ids",
            "1",
            "-n",
            "100000000000",
        ],
        &[
            "-n 100000000000: a KV cache of 100000000001 positions takes",
            "expected at most 16 GiB",
        ],
    );
}

#[test]
fn generate_on_the_hf_fixture_gives_transformers_greedy_token() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf_bitnet");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixtures.join("expected.json")).unwrap())
            .unwrap();
    let ids: Vec<String> = expected["input_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    for variant in ["offline", "online"] {
        let logits = expected[format!("{variant}_logits")].as_array().unwrap();
        let last: Vec<f64> = logits
            .last()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let want = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b });
        let dir = fixtures.join(variant);
        let out = run(&[
            "generate",
            "--model",
            dir.to_str().unwrap(),
            "--prompt-ids",
            &ids.join(","),
            "-n",
            "1",
            "--top-logits",
            "3",
        ]);
        assert_eq!(ids_of(&out), want.to_string(), "{variant}");
        // `--top-logits 3` prints transformers' three largest logits, largest first.
        let (_, stderr) = text(&out);
        let line = stderr
            .lines()
            .find_map(|l| l.strip_prefix("step 0: "))
            .unwrap_or_else(|| panic!("{variant}: no 'step 0:' line in {stderr}"));
        let top: Vec<(usize, f64)> = line
            .split(' ')
            .map(|e| {
                let (id, v) = e.split_once(':').unwrap();
                (id.parse().unwrap(), v.parse().unwrap())
            })
            .collect();
        assert_eq!(top.len(), 3, "{variant}: {line}");
        assert_eq!(top[0].0, want, "{variant}: {line}");
        assert!(
            top.windows(2).all(|w| w[0].1 >= w[1].1),
            "{variant}: {line}"
        );
        let range = last.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (id, v) in top {
            assert!(
                (v - last[id]).abs() <= 1e-2 * range,
                "{variant}: logit {id} = {v}, transformers {}",
                last[id]
            );
        }
    }
}

#[test]
fn model_runs_gguf_files_and_hf_directories() {
    let dir = temp_dir("model");
    let gguf = export(&dir, "tq2_0", "f16");
    let hf = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf_bitnet/offline");
    for (model, kernel) in [
        (gguf.to_str().unwrap(), "tq2-scalar"),
        (hf.to_str().unwrap(), "i2s-scalar"),
    ] {
        let o = run(&[
            "model", "--model", model, "--kernel", kernel, "-p", "4", "-n", "2", "--reps", "1",
            "--format", "csv",
        ]);
        let (stdout, stderr) = text(&o);
        assert!(o.status.success(), "{model}: {stderr}");
        let mut r = csv::Reader::from_reader(stdout.as_bytes());
        let headers = r.headers().unwrap().clone();
        let col = headers.iter().position(|h| h == "weights_source").unwrap();
        let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
        // pp4 and tg2 for the kernel and the f16 baseline.
        assert_eq!(rows.len(), 4, "{stdout}");
        for row in &rows {
            assert_eq!(&row[col], model);
        }
    }
}

/// A file with a Q6_K token_embd runs with a q6_k lm_head in `model` and
/// `generate`; the row records the lm_head kernel.
#[test]
fn a_q6_k_embedding_runs_as_the_lm_head() {
    let dir = temp_dir("q6k");
    let gguf = export(&dir, "tq2_0", "q6_k");
    let path = gguf.to_str().unwrap();
    let o = run(&[
        "model",
        "--model",
        path,
        "--kernel",
        "tq2-scalar",
        "--lm-head",
        "q6_k",
        "-p",
        "2",
        "-n",
        "2",
        "--reps",
        "1",
        "--no-baseline",
        "--format",
        "csv",
    ]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let mut r = csv::Reader::from_reader(stdout.as_bytes());
    let headers = r.headers().unwrap().clone();
    let col = headers.iter().position(|h| h == "variant").unwrap();
    let rows: Vec<csv::StringRecord> = r.records().map(|r| r.unwrap()).collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    for row in &rows {
        assert!(row[col].starts_with("lm_head=q6_k-"), "{:?}", row);
    }
    let ids = ids_of(&run(&[
        "generate",
        "--model",
        path,
        "--prompt-ids",
        "1,5,7",
        "-n",
        "4",
        "--kernel",
        "tq2-scalar",
        "--lm-head",
        "q6_k",
    ]));
    assert_eq!(ids.split(',').count(), 4, "{ids}");
    // A hidden size that is not whole super-blocks is refused, not a panic.
    let toml = dir.join("h96.toml");
    std::fs::write(
        &toml,
        TINY.replace("hidden = 256", "hidden = 96")
            .replace("head_dim = 64", "head_dim = 24"),
    )
    .unwrap();
    let o = run(&[
        "model",
        "--model",
        toml.to_str().unwrap(),
        "--kernel",
        "i2s-scalar",
        "--lm-head",
        "q6_k",
        "-p",
        "1",
        "-n",
        "1",
        "--reps",
        "1",
        "--no-baseline",
    ]);
    let (_, stderr) = text(&o);
    assert!(!o.status.success());
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("multiple of 256"), "{stderr}");
}

fn gguf_bytes(dir: &Path) -> Vec<u8> {
    std::fs::read(export(dir, "tq2_0", "f16")).unwrap()
}

/// Byte offset just after the metadata (where the first tensor info starts).
fn first_tensor_info(bytes: &[u8]) -> usize {
    let f = GgufFile::open(&write_tmp("probe.gguf", bytes), None).unwrap();
    // The first tensor is token_embd.weight: find its name in the header.
    let name = f.tensors[0].name.as_bytes();
    bytes
        .windows(name.len())
        .position(|w| w == name)
        .expect("the name is in the header")
        - 8
}

fn write_tmp(name: &str, bytes: &[u8]) -> PathBuf {
    let p = temp_dir("bad").join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn bad_gguf_files_are_bad_input() {
    let dir = temp_dir("badsrc");
    let good = gguf_bytes(&dir);
    let info = first_tensor_info(&good);
    let name_len = "token_embd.weight".len();
    // token_embd.weight: name, rank (u32), ne0, ne1 (u64), type (u32), offset (u64).
    let rank_at = info + 8 + name_len;
    let ne0_at = rank_at + 4;
    let type_at = ne0_at + 16;
    let offset_at = type_at + 4;
    let patch = |at: usize, with: &[u8]| {
        let mut b = good.clone();
        b[at..at + with.len()].copy_from_slice(with);
        b
    };
    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "truncated.gguf",
            good[..good.len() / 2].to_vec(),
            vec!["lies past the end of the file"],
        ),
        ("magic.gguf", patch(0, b"GGML"), vec!["not a GGUF file"]),
        (
            "past-end.gguf",
            patch(offset_at, &(1u64 << 32).to_le_bytes()),
            vec!["tensor 'token_embd.weight'", "lies past the end"],
        ),
        (
            "count.gguf",
            patch(8, &u64::MAX.to_le_bytes()),
            vec!["tensor count 18446744073709551615"],
        ),
        (
            "dims.gguf",
            patch(ne0_at, &u64::MAX.to_le_bytes()),
            vec!["tensor 'token_embd.weight': dimension 0 = 18446744073709551615"],
        ),
        (
            "rank.gguf",
            patch(rank_at, &1000u32.to_le_bytes()),
            vec!["rank 1000"],
        ),
        (
            "type.gguf",
            patch(type_at, &77u32.to_le_bytes()),
            vec!["tensor 'token_embd.weight': type id 77 (unknown) is not supported"],
        ),
        (
            "shape.gguf",
            patch(ne0_at, &128u64.to_le_bytes()),
            vec!["tensor 'token_embd.weight' has dims [128, 300]; expected [256, 300]"],
        ),
    ];
    for (name, bytes, want) in cases {
        let p = write_tmp(name, &bytes);
        let mut want = want;
        want.push(name);
        assert_bad_input(
            &[
                "model",
                "--model",
                p.to_str().unwrap(),
                "-p",
                "1",
                "-n",
                "0",
                "--reps",
                "1",
            ],
            &want,
        );
    }
    assert_bad_input(
        &[
            "model",
            "--model",
            "/nonexistent/x.gguf",
            "-p",
            "1",
            "-n",
            "0",
        ],
        &["/nonexistent/x.gguf: cannot open"],
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

#[test]
fn bad_safetensors_checkpoints_are_bad_input() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hf_bitnet/online");
    let base = temp_dir("badhf");
    let st = std::fs::read(fixture.join("model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, Vec<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "truncated",
            Box::new(|d: &Path| {
                std::fs::write(d.join("model.safetensors"), &st[..st.len() - 100]).unwrap()
            }),
            vec!["model.safetensors", "lies outside the"],
        ),
        (
            "magic",
            Box::new(|d: &Path| {
                let mut b = st.clone();
                b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
                std::fs::write(d.join("model.safetensors"), b).unwrap()
            }),
            vec!["model.safetensors", "header length 18446744073709551615"],
        ),
        (
            "header",
            Box::new(|d: &Path| {
                let mut b = st.clone();
                b[8 + header_len / 2] = b'\\';
                std::fs::write(d.join("model.safetensors"), b).unwrap()
            }),
            vec!["model.safetensors", "header is not valid JSON"],
        ),
        (
            "shape",
            Box::new(|d: &Path| {
                let cfg = std::fs::read_to_string(d.join("config.json")).unwrap();
                let mut v: serde_json::Value = serde_json::from_str(&cfg).unwrap();
                let ffn = v["intermediate_size"].as_u64().unwrap();
                v["intermediate_size"] = (ffn * 2).into();
                std::fs::write(d.join("config.json"), v.to_string()).unwrap()
            }),
            vec!["model.safetensors", "has shape", "expected"],
        ),
        (
            "config",
            Box::new(|d: &Path| {
                std::fs::write(d.join("config.json"), "{\"hidden_size\": -1}").unwrap()
            }),
            vec![
                "config.json",
                "field 'hidden_size' = -1; expected a non-negative integer",
            ],
        ),
    ];
    for (name, make, want) in cases {
        let d = base.join(name);
        copy_dir(&fixture, &d);
        make(&d);
        let mut want = want;
        let dir = d.display().to_string();
        want.push(&dir);
        assert_bad_input(
            &[
                "model", "--model", &dir, "-p", "1", "-n", "0", "--reps", "1",
            ],
            &want,
        );
    }
}
