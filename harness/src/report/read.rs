//! Reading result CSVs back for reports and claims.
//!
//! Columns are found by header name, so files written by older or newer
//! builds (extra columns, another column order) read alike. Only four
//! columns are required: `schema_version`, `kernel`, `test` and `verified`;
//! every other known column is parsed when present and left empty when not.
//! A file without `schema_version`, or a row of another version, is refused
//! with the file, the line and the version this build reads. A value that
//! does not parse is refused with the file, line, column and what was
//! expected. Nothing here panics on input.

use crate::output::SCHEMA_VERSION;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;

/// Bad input: a message naming the file, line and field. The command line
/// exits with code 2 for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// The note prefix that marks a row imported from another tool (see
/// [`crate::report::import`]): its output was not verified by ternbench.
pub const IMPORTED_NOTE_PREFIX: &str = "imported:";

/// One row of a results CSV, as the report needs it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rec {
    /// The file and 1-based line the row came from (for messages and tables).
    pub file: String,
    pub line: u64,
    pub schema_version: u32,
    pub build_commit: String,
    pub rustc: String,
    pub test_time: String,
    pub cpu_info: String,
    pub cpu_features: String,
    pub arch: String,
    pub n_cores: Option<usize>,
    pub caches: String,
    pub memory_bytes: Option<u64>,
    pub os: String,
    pub mem_bandwidth_gbs: Option<f64>,
    pub kernel: String,
    pub kernel_isa: String,
    pub wtype: String,
    pub bits_per_weight: Option<f64>,
    pub exact: Option<bool>,
    pub variant: String,
    pub threading: String,
    pub n_threads: Option<usize>,
    pub pinned: Option<bool>,
    pub model_type: String,
    pub model_n_params: Option<u64>,
    pub model_size_bytes: Option<u64>,
    pub weights_source: String,
    pub test: String,
    pub rows: Option<usize>,
    pub cols: Option<usize>,
    pub batch: Option<usize>,
    pub n_prompt: Option<usize>,
    pub n_gen: Option<usize>,
    pub batch_mode: String,
    pub cold: Option<bool>,
    pub reps: Option<usize>,
    pub avg_ns: Option<f64>,
    pub median_ns: Option<f64>,
    pub stddev_ns: Option<f64>,
    pub min_ns: Option<f64>,
    pub avg_ts: Option<f64>,
    pub stddev_ts: Option<f64>,
    pub gbs: Option<f64>,
    pub gops: Option<f64>,
    pub roofline_fraction: Option<f64>,
    pub speedup_vs_f16: Option<f64>,
    pub energy_j_per_token: Option<f64>,
    pub energy_source: String,
    pub extrapolated: Option<bool>,
    pub weight_bytes: Option<u64>,
    pub prepare_ms: Option<f64>,
    pub verified: bool,
    pub max_abs_err: Option<f64>,
    pub note: String,
    /// Per-operation breakdown rows name the operation (`attention`, ...),
    /// with `avg_ns` its time per token; empty for whole measurements.
    pub op: String,
}

impl Rec {
    /// A single linear layer (`ternbench layer` and the sweep's layer part).
    pub fn is_layer(&self) -> bool {
        self.test == "layer" && self.op.is_empty()
    }

    /// A per-operation breakdown row (part of a measurement, not a whole one).
    pub fn is_op(&self) -> bool {
        !self.op.is_empty()
    }

    /// A whole-model test: llama-bench's `ppN`, `tgN` or `ppN+tgM`, with an
    /// optional `@dN` (tokens already in the context).
    pub fn is_model(&self) -> bool {
        fn digits(d: &str) -> bool {
            !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
        }
        fn pp_tg(s: &str) -> bool {
            let d = s.strip_prefix("pp").or_else(|| s.strip_prefix("tg"));
            d.is_some_and(digits)
        }
        let (tests, depth) = match self.test.split_once('@') {
            Some((t, d)) => (t, d.strip_prefix('d').is_some_and(digits)),
            None => (self.test.as_str(), true),
        };
        self.op.is_empty() && depth && tests.split('+').all(pp_tg)
    }

    /// Imported from another tool (llama-bench): not verified by ternbench.
    pub fn is_imported(&self) -> bool {
        self.note.starts_with(IMPORTED_NOTE_PREFIX)
    }

    /// Whether a speed from this row may be shown: ternbench verified its
    /// output, or it is an import (shown, and marked as unverified). A row
    /// that failed ternbench's verification never shows a speed.
    pub fn shows_speed(&self) -> bool {
        self.verified || self.is_imported()
    }

    /// Ternbench's own row whose output failed verification.
    pub fn failed_verification(&self) -> bool {
        !self.verified && !self.is_imported()
    }

    /// The f16 baseline (a ternbench `f16-*` kernel or an imported F16 run).
    pub fn is_f16_baseline(&self) -> bool {
        self.wtype.eq_ignore_ascii_case("f16")
    }

    /// `rows x cols` of a layer row.
    pub fn shape(&self) -> String {
        match (self.rows, self.cols) {
            (Some(r), Some(c)) => format!("{r}x{c}"),
            _ => "?".into(),
        }
    }

    /// Kernel name with its markings: `(inexact)` when `exact=false`,
    /// `[imported, unverified]` for imports.
    pub fn kernel_label(&self) -> String {
        let mut s = self.kernel.clone();
        if self.exact == Some(false) {
            s += " (inexact)";
        }
        if self.is_imported() {
            s += " [imported, unverified]";
        }
        s
    }

    /// The model size label: `700M` from `dummy-700M` or `llama 700M`, else
    /// the whole model_type.
    pub fn size_label(&self) -> String {
        size_label(&self.model_type)
    }
}

/// `700M` from `dummy-700M`, `bitnet 2B`, `llama 1.5B ...`: the last token
/// (split at `-`, `_` and spaces) that is a number followed by K, M or B
/// (upper case, as llama.cpp and the dummy ladder write sizes); the whole
/// string when there is none.
pub fn size_label(model_type: &str) -> String {
    model_type
        .split(['-', ' ', '_'])
        .rev()
        .find(|t| {
            let t = t.trim();
            t.len() >= 2
                && matches!(t.as_bytes()[t.len() - 1], b'K' | b'M' | b'B')
                && t[..t.len() - 1].parse::<f64>().is_ok()
        })
        .map(|t| t.trim().to_string())
        .unwrap_or_else(|| model_type.to_string())
}

/// Parameters implied by a size label (`700M` -> 7e8), for ordering.
pub fn size_value(label: &str) -> Option<f64> {
    let (num, unit) = label.split_at(label.len().checked_sub(1)?);
    let scale = match unit {
        "K" => 1e3,
        "M" => 1e6,
        "B" => 1e9,
        _ => return None,
    };
    num.parse::<f64>().ok().map(|n| n * scale)
}

/// Reads one results CSV.
pub fn read_csv(path: &Path) -> Result<Vec<Rec>, BadInput> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|e| BadInput(format!("{file}: cannot read: {e}")))?;
    parse_csv(&bytes, &file)
}

/// Parses results CSV text read from `file` (used in messages).
pub fn parse_csv(bytes: &[u8], file: &str) -> Result<Vec<Rec>, BadInput> {
    let mut reader = csv::ReaderBuilder::new().flexible(false).from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| BadInput(format!("{file}:1: cannot read the CSV header: {e}")))?
        .clone();
    if headers.iter().all(|h| h.trim().is_empty()) {
        return Err(BadInput(format!(
            "{file}: empty file; expected a ternbench results CSV with a header line"
        )));
    }
    let index: HashMap<&str, usize> = headers
        .iter()
        .enumerate()
        .map(|(i, h)| (h.trim(), i))
        .collect();
    if !index.contains_key("schema_version") {
        let hint = if index.contains_key("avg_ts") && index.contains_key("model_filename") {
            " (this looks like llama-bench output: convert it with `ternbench import`)"
        } else {
            ""
        };
        return Err(BadInput(format!(
            "{file}:1: no schema_version column; expected a ternbench results CSV of schema_version {SCHEMA_VERSION}{hint}"
        )));
    }
    for required in ["kernel", "test", "verified"] {
        if !index.contains_key(required) {
            return Err(BadInput(format!(
                "{file}:1: no '{required}' column; expected a ternbench results CSV of schema_version {SCHEMA_VERSION}"
            )));
        }
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            BadInput(format!("{file}:{line}: malformed CSV row: {e}"))
        })?;
        let line = record.position().map_or(0, |p| p.line());
        let f = Fields {
            file,
            line,
            index: &index,
            record: &record,
        };
        let version_text = f.text("schema_version");
        let schema_version = match version_text.parse::<u32>() {
            Ok(v) if v == SCHEMA_VERSION => v,
            _ => {
                return Err(BadInput(format!(
                    "{file}:{line}: schema_version '{version_text}' is not supported; this ternbench reads schema_version {SCHEMA_VERSION}"
                )))
            }
        };
        let verified = f.boolean("verified")?.ok_or_else(|| {
            BadInput(format!(
                "{file}:{line}: field 'verified' is empty; expected true or false"
            ))
        })?;
        out.push(Rec {
            file: file.to_string(),
            line,
            schema_version,
            build_commit: f.text("build_commit"),
            rustc: f.text("rustc"),
            test_time: f.text("test_time"),
            cpu_info: f.text("cpu_info"),
            cpu_features: f.text("cpu_features"),
            arch: f.text("arch"),
            n_cores: f.int("n_cores")?.filter(|&n: &usize| n > 0),
            caches: f.text("caches"),
            memory_bytes: f.int("memory_bytes")?.filter(|&n: &u64| n > 0),
            os: f.text("os"),
            mem_bandwidth_gbs: f.num("mem_bandwidth_gbs")?,
            kernel: f.text("kernel"),
            kernel_isa: f.text("kernel_isa"),
            wtype: f.text("wtype"),
            bits_per_weight: f.num("bits_per_weight")?,
            exact: f.boolean("exact")?,
            variant: f.text("variant"),
            threading: f.text("threading"),
            n_threads: f.int("n_threads")?,
            pinned: f.boolean("pinned")?,
            model_type: f.text("model_type"),
            model_n_params: f.int("model_n_params")?,
            model_size_bytes: f.int("model_size_bytes")?,
            weights_source: f.text("weights_source"),
            test: f.text("test"),
            rows: f.int("rows")?,
            cols: f.int("cols")?,
            batch: f.int("batch")?,
            n_prompt: f.int("n_prompt")?,
            n_gen: f.int("n_gen")?,
            batch_mode: f.text("batch_mode"),
            cold: f.boolean("cold")?,
            reps: f.int("reps")?,
            avg_ns: f.num("avg_ns")?,
            median_ns: f.num("median_ns")?,
            stddev_ns: f.num("stddev_ns")?,
            min_ns: f.num("min_ns")?,
            avg_ts: f.num("avg_ts")?,
            stddev_ts: f.num("stddev_ts")?,
            gbs: f.num("gbs")?,
            gops: f.num("gops")?,
            roofline_fraction: f.num("roofline_fraction")?,
            speedup_vs_f16: f.num("speedup_vs_f16")?,
            energy_j_per_token: f.num("energy_j_per_token")?,
            energy_source: f.text("energy_source"),
            extrapolated: f.boolean("extrapolated")?,
            weight_bytes: f.int("weight_bytes")?,
            prepare_ms: f.num("prepare_ms")?,
            verified,
            max_abs_err: f.num("max_abs_err")?,
            note: f.text("note"),
            op: f.text("op"),
        });
        if out.last().is_some_and(|r| r.kernel.is_empty()) {
            return Err(BadInput(format!(
                "{file}:{line}: field 'kernel' is empty; expected a kernel name"
            )));
        }
    }
    Ok(out)
}

/// Typed access to the fields of one record, with messages naming the file,
/// line and column.
struct Fields<'a> {
    file: &'a str,
    line: u64,
    index: &'a HashMap<&'a str, usize>,
    record: &'a csv::StringRecord,
}

impl Fields<'_> {
    fn raw(&self, column: &str) -> &str {
        self.index
            .get(column)
            .and_then(|&i| self.record.get(i))
            .map_or("", str::trim)
    }

    fn text(&self, column: &str) -> String {
        self.raw(column).to_string()
    }

    fn bad(&self, column: &str, value: &str, expected: &str) -> BadInput {
        BadInput(format!(
            "{}:{}: field '{column}' is '{value}'; expected {expected}",
            self.file, self.line
        ))
    }

    fn num_text(&self, column: &str, v: &str) -> Result<Option<f64>, BadInput> {
        if v.is_empty() {
            return Ok(None);
        }
        match v.parse::<f64>() {
            Ok(x) if x.is_finite() && x >= 0.0 => Ok(Some(x)),
            _ => Err(self.bad(column, v, "a finite non-negative number or nothing")),
        }
    }

    fn num(&self, column: &str) -> Result<Option<f64>, BadInput> {
        self.num_text(column, self.raw(column))
    }

    fn int<T: std::str::FromStr>(&self, column: &str) -> Result<Option<T>, BadInput> {
        let v = self.raw(column);
        if v.is_empty() {
            return Ok(None);
        }
        v.parse::<T>()
            .map(Some)
            .map_err(|_| self.bad(column, v, "a non-negative integer or nothing"))
    }

    fn boolean(&self, column: &str) -> Result<Option<bool>, BadInput> {
        let v = self.raw(column);
        match v.to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "true" | "1" => Ok(Some(true)),
            "false" | "0" => Ok(Some(false)),
            _ => Err(self.bad(column, v, "true or false")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
test,verified,kernel,schema_version,n_threads,speedup_vs_f16,op,future_column
layer,true,i2s-avx2,1,2,3.5,,x
tg128,false,TQ2_0,1,4,,,y
tg128,true,i2s-avx2,1,4,,attention,y
";

    #[test]
    fn reads_columns_by_name_in_any_order() {
        let rows = parse_csv(GOOD.as_bytes(), "a.csv").unwrap();
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].kernel, "i2s-avx2");
        assert!(rows[0].verified && rows[0].is_layer() && !rows[0].is_model());
        assert_eq!(rows[0].speedup_vs_f16, Some(3.5));
        assert_eq!((rows[0].n_threads, rows[0].line), (Some(2), 2));
        assert!(rows[1].is_model() && !rows[1].verified && !rows[1].is_op());
        assert_eq!(rows[1].line, 3);
        assert!(rows[2].is_op() && !rows[2].is_model() && rows[2].op == "attention");
    }

    #[test]
    fn refuses_unknown_or_missing_schema_version() {
        let e = parse_csv(b"kernel,test,verified\ni2s,layer,true\n", "old.csv").unwrap_err();
        assert!(
            e.0.starts_with("old.csv:1:") && e.0.contains("schema_version 1"),
            "{e}"
        );
        let v2 = GOOD.replace(",1,2,3.5", ",2,2,3.5");
        let e = parse_csv(v2.as_bytes(), "new.csv").unwrap_err();
        assert!(
            e.0.starts_with("new.csv:2:")
                && e.0.contains("'2'")
                && e.0.contains("schema_version 1"),
            "{e}"
        );
        let e = parse_csv(b"", "empty.csv").unwrap_err();
        assert!(e.0.contains("empty.csv"), "{e}");
        let e = parse_csv(
            b"build_commit,model_filename,avg_ts\nabc,m.gguf,1.0\n",
            "lb.csv",
        )
        .unwrap_err();
        assert!(e.0.contains("ternbench import"), "{e}");
    }

    #[test]
    fn bad_values_name_file_line_and_field() {
        let cases = [
            (",1,2,3.5,", ",1,2,fast,", "speedup_vs_f16", "number"),
            (",1,2,3.5,", ",1,2,-3.5,", "speedup_vs_f16", "non-negative"),
            (",1,2,3.5,", ",1,-2,3.5,", "n_threads", "integer"),
            (",1,2,3.5,", ",1,2,NaN,", "speedup_vs_f16", "finite"),
            ("layer,true,", "layer,yes,", "verified", "true or false"),
            ("layer,true,", "layer,,", "verified", "true or false"),
        ];
        for (from, to, field, expected) in cases {
            let text = GOOD.replace(from, to);
            let e = parse_csv(text.as_bytes(), "r.csv").unwrap_err();
            assert!(
                e.0.starts_with("r.csv:2:") && e.0.contains(field) && e.0.contains(expected),
                "{to}: {e}"
            );
        }
        let ragged = format!("{GOOD}layer,true\n");
        let e = parse_csv(ragged.as_bytes(), "r.csv").unwrap_err();
        assert!(e.0.starts_with("r.csv:5:"), "{e}");
    }

    #[test]
    fn size_labels() {
        assert_eq!(size_label("dummy-700M"), "700M");
        assert_eq!(size_label("llama 1.5B"), "1.5B");
        assert_eq!(size_label("bitnet-b1.58-2B-4T"), "2B");
        assert_eq!(size_label("bitnet-b1.58-2b4t"), "bitnet-b1.58-2b4t");
        assert_eq!(size_label("custom"), "custom");
        assert_eq!(size_value("1.5B"), Some(1.5e9));
        assert_eq!(size_value("x"), None);
    }
}
