//! `ternbench import`: llama-bench results (`-o json`, `-o jsonl`, `-o csv`)
//! as ternbench result rows, so llama.cpp and bitnet.cpp runs appear in the
//! same charts and tables as ternbench's own.
//!
//! How llama-bench's fields map (and what is chosen, and why):
//! - `kernel`: the weight type llama.cpp names in `model_type`
//!   (`"llama 2B TQ2_0 - 2.06 bpw ternary"` -> `TQ2_0`, `"... F16"` -> `F16`,
//!   bitnet.cpp's `I2_S`, `TL1`, `TL2`); upper case, so it never collides
//!   with a ternbench kernel name. `wtype` is ternbench's format name where
//!   one exists (`tq2`, `tq1`, `i2s`, `f16`, `q8_0`, `q4_0`), else the type
//!   in lower case. `kernel_isa` is `llama.cpp` plus llama-bench's `backends`.
//! - `exact`: what ternbench's registry says of the same format (the format's
//!   arithmetic decides it, not the implementation); `false` for a type
//!   ternbench does not have.
//! - `model_type`: llama-bench's architecture and size (`llama 2B`), without
//!   the weight type, so the F16 and ternary runs of one model group
//!   together; the original string is kept in `note`.
//! - `test`: llama-bench's own name: `ppN`, `tgN`, `ppN+tgM`, with `@dD` for
//!   a prefilled depth.
//! - `verified` is **false**: ternbench did not check the output of these
//!   runs. `note` starts with `imported:` ("imported: not verified by
//!   ternbench ..."), which is how reports tell an import (shown, marked
//!   `[imported, unverified]`) from a ternbench row that failed verification
//!   (never shown as a speed).
//! - `speedup_vs_f16`: tokens/s over the tokens/s of the F16 run of the same
//!   model size, test and thread count in the same file (1 for F16 itself);
//!   empty when the file has no such F16 run.
//! - System columns hold only what llama-bench recorded (`cpu_info`);
//!   the importing machine's details are not substituted (0 = unknown).
//! - `median_ns` and `min_ns` come from `samples_ns` when the file has it.
//!
//! Output: rows are appended to `--out` (header written when the file is
//! new), like every ternbench results file, or printed as CSV on stdout.

use super::read::{BadInput, IMPORTED_NOTE_PREFIX};
use crate::measure::{Stats, SystemInfo};
use crate::output::{OutputFormat, Row, Sink};
use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use ternbench_kernels::formats::Format;
use ternbench_kernels::registry;

/// `ternbench import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// llama-bench output: `-o json`, `-o jsonl` or `-o csv` (recognised from the content).
    pub file: PathBuf,
    /// Append the rows to this results CSV (created with a header if new); default: CSV on stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `ternbench import`.
pub fn run(args: ImportArgs) -> ExitCode {
    let rows = match import_file(&args.file) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match &args.out {
        Some(path) => append_rows(path, &rows).map(|()| {
            eprintln!(
                "{} llama-bench rows from {} appended to {}",
                rows.len(),
                args.file.display(),
                path.display()
            );
        }),
        None => Sink::new(OutputFormat::Csv, None)
            .and_then(|mut sink| rows.iter().try_for_each(|r| sink.write(r))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Appends rows to a results CSV, with the header when the file is new or
/// empty (as the sweep's results files are written).
fn append_rows(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    use anyhow::Context;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create directory {}", dir.display()))?;
    }
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {} for appending", path.display()))?;
    let is_new = f.metadata().map(|m| m.len() == 0).unwrap_or(true);
    let mut w = csv::WriterBuilder::new().has_headers(is_new).from_writer(f);
    for r in rows {
        w.serialize(r)
            .with_context(|| format!("cannot write to {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("cannot write to {}", path.display()))?;
    Ok(())
}

/// One llama-bench record: field -> value, with where it came from.
struct Record {
    /// 1-based line where the record starts.
    line: u64,
    /// Line of each field, where the layout tells (one field per line in
    /// llama-bench's JSON); others are reported at the record's line.
    field_lines: HashMap<String, u64>,
    fields: HashMap<String, Value>,
}

/// Reads a llama-bench output file into result rows.
pub fn import_file(path: &Path) -> Result<Vec<Row>, BadInput> {
    let file = path.display().to_string();
    let text =
        std::fs::read_to_string(path).map_err(|e| BadInput(format!("{file}: cannot read: {e}")))?;
    import_text(&text, &file)
}

/// Parses llama-bench output `text` read from `file` (used in messages).
pub fn import_text(text: &str, file: &str) -> Result<Vec<Row>, BadInput> {
    let records = match text.trim_start().chars().next() {
        Some('[') => json_array(text, file)?,
        Some('{') => json_lines(text, file)?,
        Some(_) => csv_records(text, file)?,
        None => {
            return Err(BadInput(format!(
                "{file}: empty file; expected llama-bench output (-o json, -o jsonl or -o csv)"
            )))
        }
    };
    if records.is_empty() {
        return Err(BadInput(format!(
            "{file}: no results in the file; expected llama-bench output with at least one test"
        )));
    }
    let mut rows = records
        .iter()
        .map(|r| to_row(r, file))
        .collect::<Result<Vec<_>, _>>()?;
    fill_speedups(&mut rows);
    Ok(rows)
}

/// Lines (1-based) where each top-level element of a JSON array starts.
fn element_lines(text: &str) -> Vec<u64> {
    let mut lines = Vec::new();
    let (mut line, mut depth, mut in_str, mut escaped) = (1u64, 0i32, false, false);
    for c in text.chars() {
        if c == '\n' {
            line += 1;
        }
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '[' | '{' => {
                if depth == 1 {
                    lines.push(line);
                }
                depth += 1;
            }
            ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    lines
}

fn object(v: Value, file: &str, line: u64) -> Result<HashMap<String, Value>, BadInput> {
    match v {
        Value::Object(m) => Ok(m.into_iter().collect()),
        _ => Err(BadInput(format!(
            "{file}:{line}: expected a JSON object per llama-bench test"
        ))),
    }
}

fn json_array(text: &str, file: &str) -> Result<Vec<Record>, BadInput> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        BadInput(format!(
            "{file}:{}: not valid JSON: {e}; expected llama-bench -o json output",
            e.line()
        ))
    })?;
    let Value::Array(items) = v else {
        unreachable!("starts with '['")
    };
    let lines = element_lines(text);
    let text_lines: Vec<&str> = text.lines().collect();
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let line = lines.get(i).copied().unwrap_or(0);
            let next = lines.get(i + 1).copied().unwrap_or(u64::MAX);
            // `"key": value` lines of this element.
            let field_lines = (line.max(1)..next.min(text_lines.len() as u64 + 1))
                .filter_map(|l| {
                    let t = text_lines[(l - 1) as usize]
                        .trim_start()
                        .strip_prefix('"')?;
                    let key = &t[..t.find('"')?];
                    Some((key.to_string(), l))
                })
                .collect();
            Ok(Record {
                line,
                field_lines,
                fields: object(item, file, line)?,
            })
        })
        .collect()
}

fn json_lines(text: &str, file: &str) -> Result<Vec<Record>, BadInput> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let line = i as u64 + 1;
        if l.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(l).map_err(|e| {
            BadInput(format!(
                "{file}:{line}: not valid JSON: {e}; expected one llama-bench -o jsonl object per line"
            ))
        })?;
        out.push(Record {
            line,
            field_lines: HashMap::new(),
            fields: object(v, file, line)?,
        });
    }
    Ok(out)
}

fn csv_records(text: &str, file: &str) -> Result<Vec<Record>, BadInput> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(false)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|e| BadInput(format!("{file}:1: cannot read the CSV header: {e}")))?
        .clone();
    if headers.iter().any(|h| h == "schema_version") {
        return Err(BadInput(format!(
            "{file}:1: this is already a ternbench results CSV; pass it to `ternbench report` directly"
        )));
    }
    let mut out = Vec::new();
    for r in reader.records() {
        let r = r.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            BadInput(format!("{file}:{line}: malformed CSV row: {e}"))
        })?;
        out.push(Record {
            line: r.position().map_or(0, |p| p.line()),
            field_lines: HashMap::new(),
            fields: headers
                .iter()
                .zip(r.iter())
                .map(|(h, v)| (h.trim().to_string(), Value::String(v.to_string())))
                .collect(),
        });
    }
    Ok(out)
}

/// Typed field access with messages naming file, line and field.
struct Get<'a> {
    r: &'a Record,
    file: &'a str,
}

impl Get<'_> {
    fn bad(&self, field: &str, expected: &str) -> BadInput {
        let got = match self.r.fields.get(field) {
            None => "missing".to_string(),
            Some(v) => format!("'{}'", v.to_string().trim_matches('"')),
        };
        let line = self
            .r
            .field_lines
            .get(field)
            .copied()
            .unwrap_or(self.r.line);
        BadInput(format!(
            "{}:{line}: field '{field}' is {got}; expected {expected}",
            self.file
        ))
    }

    fn text(&self, field: &str) -> String {
        match self.r.fields.get(field) {
            Some(Value::String(s)) => s.trim().to_string(),
            Some(Value::Null) | None => String::new(),
            Some(v) => v.to_string(),
        }
    }

    fn num_opt(&self, field: &str, expected: &str) -> Result<Option<f64>, BadInput> {
        let v = match self.r.fields.get(field) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            Some(_) => None,
        };
        match v {
            Some(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            _ => Err(self.bad(field, expected)),
        }
    }

    fn num(&self, field: &str, expected: &str) -> Result<f64, BadInput> {
        self.num_opt(field, expected)?
            .ok_or_else(|| self.bad(field, expected))
    }

    fn count(&self, field: &str) -> Result<Option<u64>, BadInput> {
        let expected = "a non-negative integer";
        match self.num_opt(field, expected)? {
            Some(x) if x.fract() == 0.0 => Ok(Some(x as u64)),
            Some(_) => Err(self.bad(field, expected)),
            None => Ok(None),
        }
    }

    fn samples(&self, field: &str) -> Result<Vec<f64>, BadInput> {
        let expected = "a list of non-negative numbers";
        match self.r.fields.get(field) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| {
                    v.as_f64()
                        .filter(|x| x.is_finite() && *x >= 0.0)
                        .ok_or_else(|| self.bad(field, expected))
                })
                .collect(),
            // llama-bench's CSV has no sample lists; a string here is not ours to parse.
            Some(Value::String(_)) => Ok(Vec::new()),
            Some(_) => Err(self.bad(field, expected)),
        }
    }
}

/// What `model_type` says: architecture, size and weight type.
#[derive(Debug, PartialEq)]
pub struct ModelType {
    /// `llama 2B`
    pub model: String,
    /// `TQ2_0`
    pub wtype: String,
    /// From `... - 2.06 bpw ...`, when stated.
    pub bpw: Option<f64>,
}

/// Parses llama.cpp's `model_type`: `<arch> <size> <type name>`, e.g.
/// `llama 2B TQ2_0 - 2.06 bpw ternary`, `bitnet 3B I2_S - 2 bpw ternary`,
/// `llama 7B mostly Q4_0` (older builds), `llama ?B F16`.
pub fn parse_model_type(s: &str) -> Option<ModelType> {
    let mut tokens = s.split_whitespace();
    let arch = tokens.next()?;
    let size = tokens.next()?;
    let rest: Vec<&str> = tokens.collect();
    let mut name = rest.as_slice();
    if matches!(name.first(), Some(&"mostly") | Some(&"all")) {
        name = &name[1..];
    }
    let wtype = name.first()?.to_string();
    if !wtype.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return None;
    }
    let bpw = name
        .windows(2)
        .find(|w| w[1] == "bpw")
        .and_then(|w| w[0].parse::<f64>().ok());
    Some(ModelType {
        model: format!("{arch} {size}"),
        wtype,
        bpw,
    })
}

/// ternbench's format for a llama.cpp weight type, where it has one.
fn ternbench_format(wtype: &str) -> Option<Format> {
    let name = match wtype.to_ascii_uppercase().as_str() {
        "TQ2_0" => "tq2",
        "TQ1_0" => "tq1",
        "I2_S" => "i2s",
        "F16" => "f16",
        "Q8_0" => "q8_0",
        "Q4_0" => "q4_0",
        _ => return None,
    };
    Format::from_name(name)
}

fn to_row(r: &Record, file: &str) -> Result<Row, BadInput> {
    let g = Get { r, file };
    let model_type_text = g.text("model_type");
    let mt = parse_model_type(&model_type_text).ok_or_else(|| {
        g.bad(
            "model_type",
            "'<arch> <size> <type>' as llama-bench writes it, e.g. 'llama 2B TQ2_0 - 2.06 bpw ternary'",
        )
    })?;
    let n_prompt = g.count("n_prompt")?.unwrap_or(0);
    let n_gen = g.count("n_gen")?.unwrap_or(0);
    if n_prompt == 0 && n_gen == 0 {
        return Err(g.bad("n_gen", "n_prompt or n_gen above 0 (a pp or tg test)"));
    }
    let avg_ns = g.num("avg_ns", "the mean time in nanoseconds")?;
    let avg_ts = g.num("avg_ts", "the mean tokens per second")?;
    let n_threads = g
        .count("n_threads")?
        .ok_or_else(|| g.bad("n_threads", "the thread count"))?;
    let depth = g.count("n_depth")?.unwrap_or(0);
    let mut test = match (n_prompt, n_gen) {
        (p, 0) => format!("pp{p}"),
        (0, n) => format!("tg{n}"),
        (p, n) => format!("pp{p}+tg{n}"),
    };
    if depth > 0 {
        test += &format!("@d{depth}");
    }
    let samples = g.samples("samples_ns")?;
    let stats = Stats::of(&samples);

    let mut row = Row::new(SystemInfo::get());
    // Only what llama-bench recorded; nothing of the importing machine.
    row.build_commit = match (g.text("build_commit"), g.text("build_number")) {
        (c, n) if c.is_empty() && n.is_empty() => "llama.cpp".into(),
        (c, n) if n.is_empty() => format!("llama.cpp {c}"),
        (c, n) => format!("llama.cpp {c} (build {n})"),
    };
    row.rustc = String::new();
    row.test_time = g.text("test_time");
    row.cpu_info = g.text("cpu_info");
    row.cpu_features = String::new();
    row.arch = String::new();
    row.n_cores = 0;
    row.caches = String::new();
    row.memory_bytes = 0;
    row.os = String::new();
    row.mem_bandwidth_gbs = None;

    let format = ternbench_format(&mt.wtype);
    row.kernel = mt.wtype.to_ascii_uppercase();
    let backends = g.text("backends");
    row.kernel_isa = format!("llama.cpp {backends}").trim().to_string();
    row.wtype = format.map_or_else(|| mt.wtype.to_ascii_lowercase(), |f| f.name().to_string());
    row.bits_per_weight = mt
        .bpw
        .or(format.map(|f| f.bits_per_weight()))
        .unwrap_or(0.0);
    row.exact = format.is_some_and(|f| registry::reference(f).info().exact);
    row.threading = "llama.cpp".into();
    row.n_threads = n_threads as usize;
    row.pinned = false;
    row.model_type = mt.model.clone();
    row.model_n_params = g.count("model_n_params")?;
    row.model_size_bytes = g.count("model_size")?;
    row.weights_source = g.text("model_filename");
    row.test = test;
    row.n_prompt = n_prompt as usize;
    row.n_gen = n_gen as usize;
    let n_batch = g.count("n_batch")?;
    let n_ubatch = g.count("n_ubatch")?;
    row.batch_mode = if n_prompt == 0 {
        String::new()
    } else if n_batch == Some(1) || n_ubatch == Some(1) {
        "token".into()
    } else if n_batch.is_some() {
        "batched".into()
    } else {
        String::new()
    };
    row.reps = samples.len();
    row.avg_ns = Some(avg_ns);
    row.median_ns = stats.map(|s| s.median);
    row.stddev_ns = g.num_opt("stddev_ns", "a standard deviation in nanoseconds")?;
    row.min_ns = stats.map(|s| s.min);
    row.avg_ts = Some(avg_ts);
    row.stddev_ts = g.num_opt("stddev_ts", "a standard deviation in tokens per second")?;
    row.verified = false;
    let mut note = format!(
        "{IMPORTED_NOTE_PREFIX} not verified by ternbench; llama-bench {file} line {}; model_type '{model_type_text}'",
        r.line
    );
    let gpu_layers = g.count("n_gpu_layers")?.unwrap_or(0);
    if gpu_layers > 0 {
        note += &format!(
            "; n_gpu_layers={gpu_layers} (offloaded to {})",
            match g.text("gpu_info") {
                s if s.is_empty() => "a GPU".to_string(),
                s => s,
            }
        );
    }
    row.note = note;
    Ok(row)
}

/// speedup_vs_f16 from the F16 run of the same CPU, model, test and threads.
fn fill_speedups(rows: &mut [Row]) {
    let key = |r: &Row| {
        (
            r.cpu_info.clone(),
            r.model_type.clone(),
            r.test.clone(),
            r.n_threads,
        )
    };
    let base: HashMap<_, f64> = rows
        .iter()
        .filter(|r| r.wtype == "f16")
        .filter_map(|r| r.avg_ts.map(|t| (key(r), t)))
        .collect();
    for r in rows.iter_mut() {
        if let (Some(ts), Some(b)) = (r.avg_ts, base.get(&key(r))) {
            if *b > 0.0 {
                r.speedup_vs_f16 = Some(ts / b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_types_parse() {
        assert_eq!(
            parse_model_type("llama 2B TQ2_0 - 2.06 bpw ternary"),
            Some(ModelType {
                model: "llama 2B".into(),
                wtype: "TQ2_0".into(),
                bpw: Some(2.06)
            })
        );
        let f16 = parse_model_type("llama ?B F16").unwrap();
        assert_eq!(
            (f16.model.as_str(), f16.wtype.as_str(), f16.bpw),
            ("llama ?B", "F16", None)
        );
        assert_eq!(
            parse_model_type("llama 7B mostly Q4_0").unwrap().wtype,
            "Q4_0"
        );
        assert_eq!(
            parse_model_type("bitnet 3B I2_S - 2 bpw ternary")
                .unwrap()
                .bpw,
            Some(2.0)
        );
        assert_eq!(parse_model_type("llama 2B"), None);
        assert_eq!(parse_model_type(""), None);
    }

    const FIXTURE: &str = include_str!("../../../tests/fixtures/llama-bench/bitnet-700m-cpu.json");

    #[test]
    fn jsonl_reads_like_json() {
        let items: Vec<Value> = serde_json::from_str(FIXTURE).unwrap();
        let jsonl: String = items.iter().map(|v| format!("{v}\n")).collect();
        let a = import_text(FIXTURE, "a.json").unwrap();
        let b = import_text(&jsonl, "b.jsonl").unwrap();
        assert_eq!(a.len(), 6);
        for (x, y) in a.iter().zip(&b) {
            assert_eq!(
                (&x.kernel, x.avg_ts, x.median_ns),
                (&y.kernel, y.avg_ts, y.median_ns)
            );
        }
        let e = import_text("{\"model_type\": 3}\nnot json\n", "c.jsonl").unwrap_err();
        assert!(e.0.starts_with("c.jsonl:2:"), "{e}");
    }

    #[test]
    fn tests_and_batch_modes_follow_llama_bench() {
        let one = |fields: &str| {
            let text = format!(
                "[{{\"model_type\": \"llama 2B TQ2_0 - 2.06 bpw ternary\", \"n_threads\": 2, \"avg_ns\": 1, \"avg_ts\": 1, {fields}}}]"
            );
            import_text(&text, "t.json").map(|mut r| r.remove(0))
        };
        let pp = one("\"n_prompt\": 512, \"n_gen\": 0, \"n_batch\": 1").unwrap();
        assert_eq!(
            (pp.test.as_str(), pp.batch_mode.as_str()),
            ("pp512", "token")
        );
        let pp =
            one("\"n_prompt\": 512, \"n_gen\": 0, \"n_batch\": 2048, \"n_ubatch\": 512").unwrap();
        assert_eq!(pp.batch_mode, "batched");
        let pg = one("\"n_prompt\": 512, \"n_gen\": 128, \"n_depth\": 4096").unwrap();
        assert_eq!(pg.test, "pp512+tg128@d4096");
        let gpu = one("\"n_prompt\": 0, \"n_gen\": 128, \"n_gpu_layers\": 99, \"gpu_info\": \"X\"")
            .unwrap();
        assert!(
            gpu.note.contains("n_gpu_layers=99 (offloaded to X)"),
            "{}",
            gpu.note
        );
        let e = one("\"n_prompt\": 0, \"n_gen\": 0").unwrap_err();
        assert!(e.0.contains("a pp or tg test"), "{e}");
        let e = one("\"n_prompt\": 1.5, \"n_gen\": 0").unwrap_err();
        assert!(e.0.contains("'n_prompt'") && e.0.contains("integer"), "{e}");
    }

    #[test]
    fn json_element_lines() {
        let text = "[\n  {\"a\": \"}{\"},\n  {\n \"b\": [1, {\"c\": 2}]\n  }\n]";
        assert_eq!(element_lines(text), vec![2, 3]);
    }
}
