//! The report's tables, as plain text cells rendered into HTML and Markdown.
//! A row that failed verification shows "-" wherever a speed would be.

use super::figures::{cpus, geomean, median};
use super::read::Rec;
use std::collections::{BTreeMap, BTreeSet};

/// A titled table of text cells.
#[derive(Clone, Debug, Default)]
pub struct Table {
    pub title: String,
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Text under the table.
    pub note: String,
}

fn f(v: Option<f64>, digits: usize) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.digits$}"))
}

fn x(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.2}x"))
}

fn yes(b: Option<bool>) -> String {
    match b {
        Some(true) => "yes".into(),
        Some(false) => "no".into(),
        None => "-".into(),
    }
}

fn verified(r: &Rec) -> String {
    if r.verified {
        "yes".into()
    } else if r.is_imported() {
        "imported (unverified)".into()
    } else {
        "FAILED".into()
    }
}

/// A speed cell: empty for rows that may not show a speed.
fn speed(r: &Rec, v: Option<f64>, fmt: impl Fn(Option<f64>) -> String) -> String {
    if r.shows_speed() {
        fmt(v)
    } else {
        "-".into()
    }
}

fn cpu_index(cpus: &[String], r: &Rec) -> String {
    format!(
        "{}",
        cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0) + 1
    )
}

/// Input files: rows and CPUs.
pub fn inputs(files: &[(String, usize)], rows: &[Rec]) -> Table {
    Table {
        title: "Inputs".into(),
        headers: vec!["file".into(), "rows".into(), "CPUs".into()],
        rows: files
            .iter()
            .map(|(file, n)| {
                let c: BTreeSet<&str> = rows
                    .iter()
                    .filter(|r| r.file == *file)
                    .map(|r| r.cpu_info.as_str())
                    .collect();
                vec![
                    file.clone(),
                    n.to_string(),
                    c.into_iter().collect::<Vec<_>>().join("; "),
                ]
            })
            .collect(),
        note: String::new(),
    }
}

fn distinct(rows: &[&Rec], get: impl Fn(&Rec) -> String) -> String {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        let v = get(r);
        if !v.is_empty() && !out.contains(&v) {
            out.push(v);
        }
    }
    if out.is_empty() {
        "-".into()
    } else {
        out.join("; ")
    }
}

/// System information of one CPU, from its rows.
pub fn system(rows: &[Rec], cpu: &str, number: usize) -> Table {
    let mine: Vec<&Rec> = rows.iter().filter(|r| r.cpu_info == cpu).collect();
    let mut bw: BTreeMap<usize, Vec<f64>> = BTreeMap::new();
    for r in &mine {
        if let (Some(b), Some(t)) = (r.mem_bandwidth_gbs, r.n_threads) {
            bw.entry(t).or_default().push(b);
        }
    }
    let bandwidth = if bw.is_empty() {
        "not measured in these rows".to_string()
    } else {
        bw.iter()
            .map(|(t, v)| format!("{t} thr: {:.1} GB/s", median(v).unwrap_or(0.0)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let times: Vec<&str> = mine
        .iter()
        .map(|r| r.test_time.as_str())
        .filter(|t| !t.is_empty())
        .collect();
    let span = match (times.iter().min(), times.iter().max()) {
        (Some(a), Some(b)) if a == b => a.to_string(),
        (Some(a), Some(b)) => format!("{a} .. {b}"),
        _ => "-".into(),
    };
    let memory = distinct(&mine, |r| {
        r.memory_bytes.map_or(String::new(), |m| {
            format!("{:.1} GiB", m as f64 / (1u64 << 30) as f64)
        })
    });
    let prop = |k: &str, v: String| vec![k.to_string(), v];
    Table {
        title: format!("System {number}: {cpu}"),
        headers: vec!["property".into(), "value".into()],
        rows: vec![
            prop("CPU", cpu.to_string()),
            prop("architecture", distinct(&mine, |r| r.arch.clone())),
            prop(
                "cores",
                distinct(&mine, |r| {
                    r.n_cores.map_or(String::new(), |n| n.to_string())
                }),
            ),
            prop("ISA features", distinct(&mine, |r| r.cpu_features.clone())),
            prop("caches", distinct(&mine, |r| r.caches.clone())),
            prop("memory", memory),
            prop("OS", distinct(&mine, |r| r.os.clone())),
            prop("read bandwidth (measured)", bandwidth),
            prop("threading", distinct(&mine, |r| r.threading.clone())),
            prop("rustc", distinct(&mine, |r| r.rustc.clone())),
            prop("build commit", distinct(&mine, |r| r.build_commit.clone())),
            prop("test time (UTC)", span),
            prop("rows", mine.len().to_string()),
        ],
        note: String::new(),
    }
}

/// Every layer row.
pub fn layers(rows: &[Rec]) -> Option<Table> {
    let cpus = cpus(rows);
    let layer: Vec<&Rec> = rows.iter().filter(|r| r.is_layer()).collect();
    if layer.is_empty() {
        return None;
    }
    let several = cpus.len() > 1;
    let mut headers: Vec<String> = Vec::new();
    if several {
        headers.push("CPU".into());
    }
    headers.extend(
        [
            "kernel",
            "shape",
            "batch",
            "threads",
            "weights",
            "median us",
            "stddev",
            "GB/s",
            "of bandwidth",
            "GOP/s",
            "vs f16",
            "verified",
        ]
        .map(String::from),
    );
    let table_rows = layer
        .iter()
        .map(|r| {
            let mut row = Vec::new();
            if several {
                row.push(cpu_index(&cpus, r));
            }
            row.extend([
                r.kernel_label(),
                r.shape(),
                r.batch.map_or("-".into(), |b| b.to_string()),
                r.n_threads.map_or("-".into(), |t| t.to_string()),
                if r.cold == Some(true) { "cold" } else { "hot" }.into(),
                speed(r, r.median_ns.map(|v| v / 1e3), |v| f(v, 1)),
                speed(
                    r,
                    r.stddev_ns.zip(r.median_ns).map(|(s, m)| 100.0 * s / m),
                    |v| v.map_or("-".into(), |v| format!("{v:.1}%")),
                ),
                speed(r, r.gbs, |v| f(v, 2)),
                speed(r, r.roofline_fraction, |v| {
                    v.map_or("-".into(), |v| format!("{:.0}%", 100.0 * v))
                }),
                speed(r, r.gops, |v| f(v, 2)),
                speed(r, r.speedup_vs_f16, x),
                verified(r),
            ]);
            row
        })
        .collect();
    Some(Table {
        title: "Layer results (every row)".into(),
        headers,
        rows: table_rows,
        note: "median us: median time of one call (activation quantization + matrix multiply); \
               GB/s: packed weight bytes / median; of bandwidth: GB/s over the read bandwidth \
               measured in the same run (cache-hot weights can exceed 100%)."
            .into(),
    })
}

/// Every model row (including imports).
pub fn models(rows: &[Rec]) -> Option<Table> {
    let cpus = cpus(rows);
    let model: Vec<&Rec> = rows.iter().filter(|r| r.is_model()).collect();
    if model.is_empty() {
        return None;
    }
    let several = cpus.len() > 1;
    let mut headers: Vec<String> = Vec::new();
    if several {
        headers.push("CPU".into());
    }
    headers.extend(
        [
            "model",
            "kernel",
            "test",
            "threads",
            "batch mode",
            "tokens/s",
            "stddev",
            "vs f16",
            "GB/s",
            "of bandwidth",
            "J/token",
            "energy source",
            "extrapolated",
            "verified",
            "weights",
        ]
        .map(String::from),
    );
    let table_rows = model
        .iter()
        .map(|r| {
            let mut row = Vec::new();
            if several {
                row.push(cpu_index(&cpus, r));
            }
            row.extend([
                r.model_type.clone(),
                r.kernel_label(),
                r.test.clone(),
                r.n_threads.map_or("-".into(), |t| t.to_string()),
                if r.batch_mode.is_empty() {
                    "-".into()
                } else {
                    r.batch_mode.clone()
                },
                speed(r, r.avg_ts, |v| f(v, 2)),
                speed(r, r.stddev_ts, |v| f(v, 2)),
                speed(r, r.speedup_vs_f16, x),
                speed(r, r.gbs, |v| f(v, 2)),
                speed(r, r.roofline_fraction, |v| {
                    v.map_or("-".into(), |v| format!("{:.0}%", 100.0 * v))
                }),
                speed(r, r.energy_j_per_token, |v| f(v, 4)),
                if r.energy_source.is_empty() {
                    "-".into()
                } else {
                    r.energy_source.clone()
                },
                yes(r.extrapolated),
                verified(r),
                r.weights_source.clone(),
            ]);
            row
        })
        .collect();
    Some(Table {
        title: "Model results (every row)".into(),
        headers,
        rows: table_rows,
        note: "tokens/s: avg_ts of the row; vs f16: speedup_vs_f16 (for imports, derived from the \
               f16 row of the same model size, test and thread count)."
            .into(),
    })
}

/// Rows that failed ternbench's verification.
pub fn failures(rows: &[Rec]) -> Option<Table> {
    let failed: Vec<&Rec> = rows.iter().filter(|r| r.failed_verification()).collect();
    if failed.is_empty() {
        return None;
    }
    Some(Table {
        title: "Failed verification (no speed reported)".into(),
        headers: [
            "row",
            "kernel",
            "test",
            "shape or model",
            "threads",
            "reason",
        ]
        .map(String::from)
        .to_vec(),
        rows: failed
            .iter()
            .map(|r| {
                vec![
                    format!("{}:{}", r.file, r.line),
                    r.kernel.clone(),
                    r.test.clone(),
                    if r.is_layer() {
                        r.shape()
                    } else {
                        r.model_type.clone()
                    },
                    r.n_threads.map_or("-".into(), |t| t.to_string()),
                    if r.note.is_empty() {
                        "-".into()
                    } else {
                        r.note.clone()
                    },
                ]
            })
            .collect(),
        note: String::new(),
    })
}

/// Per CPU and thread count: kernels x layer shapes, batch 1, cache-hot,
/// median speedup over f16, with the geometric mean over shapes.
pub fn layer_speedup_pivots(rows: &[Rec]) -> Vec<Table> {
    let cpus = cpus(rows);
    let several = cpus.len() > 1;
    let mut groups: BTreeMap<(usize, usize), Vec<&Rec>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.is_layer() && r.batch == Some(1) && r.cold != Some(true) && r.shows_speed())
    {
        if r.speedup_vs_f16.is_some() {
            let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
            groups
                .entry((cpu, r.n_threads.unwrap_or(0)))
                .or_default()
                .push(r);
        }
    }
    let mut out = Vec::new();
    for ((cpu, t), g) in groups {
        let mut shapes: Vec<String> = Vec::new();
        for r in &g {
            if !shapes.contains(&r.shape()) {
                shapes.push(r.shape());
            }
        }
        let mut kernels: Vec<(String, String)> = g
            .iter()
            .map(|r| (r.wtype.to_lowercase(), r.kernel_label()))
            .collect();
        kernels.sort();
        kernels.dedup();
        let mut table_rows = Vec::new();
        let mut best: Option<(f64, String)> = None;
        for (_, k) in &kernels {
            let mut row = vec![k.clone()];
            let mut meds = Vec::new();
            for s in &shapes {
                let v: Vec<f64> = g
                    .iter()
                    .filter(|r| r.kernel_label() == *k && r.shape() == *s)
                    .filter_map(|r| r.speedup_vs_f16)
                    .collect();
                let m = median(&v);
                meds.extend(m);
                row.push(x(m));
            }
            let gm = if meds.len() == shapes.len() {
                geomean(&meds)
            } else {
                None
            };
            if let Some(gm) = gm {
                if best.as_ref().is_none_or(|b| gm > b.0) {
                    best = Some((gm, k.clone()));
                }
            }
            row.push(x(gm));
            table_rows.push(row);
        }
        let mut headers = vec!["kernel".to_string()];
        headers.extend(shapes.iter().cloned());
        headers.push("geomean".into());
        out.push(Table {
            title: format!(
                "Layer speedup over f16, batch 1, {t} thread{}{}",
                plural(t),
                cpu_suffix(several, cpu)
            ),
            headers,
            rows: table_rows,
            note: best.map_or(String::new(), |(v, k)| {
                format!("Fastest over all shapes (geometric mean): {k}, {v:.2}x over f16.")
            }),
        });
    }
    out
}

/// Per CPU, test and thread count: kernels x model sizes, tokens/s and speedup.
pub fn model_pivots(rows: &[Rec]) -> Vec<Table> {
    let cpus = cpus(rows);
    let several = cpus.len() > 1;
    let mut groups: BTreeMap<(usize, String, usize), Vec<&Rec>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.is_model() && r.shows_speed() && r.avg_ts.is_some())
    {
        let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
        groups
            .entry((cpu, r.test.clone(), r.n_threads.unwrap_or(0)))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((cpu, test, t), g) in groups {
        let cell = |k: &str, s: &str| {
            let at: Vec<&&Rec> = g
                .iter()
                .filter(|r| r.kernel_label() == k && r.size_label() == s)
                .collect();
            let ts = median(&at.iter().filter_map(|r| r.avg_ts).collect::<Vec<_>>());
            let sp = median(
                &at.iter()
                    .filter_map(|r| r.speedup_vs_f16)
                    .collect::<Vec<_>>(),
            );
            let ex = if at.iter().any(|r| r.extrapolated == Some(true)) {
                "~"
            } else {
                ""
            };
            match (ts, sp) {
                (Some(ts), Some(sp)) => format!("{ex}{ts:.2} ({sp:.2}x)"),
                (Some(ts), None) => format!("{ex}{ts:.2}"),
                _ => "-".into(),
            }
        };
        let note = if g.iter().any(|r| r.extrapolated == Some(true)) {
            "~: extrapolated from sampled layers."
        } else {
            ""
        };
        out.push(size_pivot(
            &g,
            format!(
                "{test} tokens/s (speedup over fp16), {t} thread{}{}",
                plural(t),
                cpu_suffix(several, cpu)
            ),
            note.into(),
            cell,
        ));
    }
    out
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

fn cpu_suffix(several: bool, cpu: usize) -> String {
    if several {
        format!(", CPU {}", cpu + 1)
    } else {
        String::new()
    }
}

/// A kernels x model sizes table of the rows `g`: sizes in ascending order
/// (parameter count), kernels grouped by weight type, `cell(kernel, size)`.
fn size_pivot(
    g: &[&Rec],
    title: String,
    note: String,
    cell: impl Fn(&str, &str) -> String,
) -> Table {
    let mut sizes: Vec<(f64, String)> = Vec::new();
    for r in g {
        let l = r.size_label();
        if !sizes.iter().any(|s| s.1 == l) {
            let n = super::read::size_value(&l)
                .or(r.model_n_params.map(|p| p as f64))
                .unwrap_or(f64::MAX);
            sizes.push((n, l));
        }
    }
    sizes.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut kernels: Vec<(String, String)> = g
        .iter()
        .map(|r| (r.wtype.to_lowercase(), r.kernel_label()))
        .collect();
    kernels.sort();
    kernels.dedup();
    let rows = kernels
        .iter()
        .map(|(_, k)| {
            let mut row = vec![k.clone()];
            row.extend(sizes.iter().map(|(_, s)| cell(k, s)));
            row
        })
        .collect();
    let mut headers = vec!["kernel".to_string()];
    headers.extend(sizes.into_iter().map(|s| s.1));
    Table {
        title,
        headers,
        rows,
        note,
    }
}

/// Per-operation breakdown rows.
pub fn ops(rows: &[Rec]) -> Option<Table> {
    let cpus = cpus(rows);
    let op_rows: Vec<&Rec> = rows
        .iter()
        .filter(|r| r.is_op() && r.shows_speed())
        .collect();
    if op_rows.is_empty() {
        return None;
    }
    let several = cpus.len() > 1;
    let mut headers: Vec<String> = Vec::new();
    if several {
        headers.push("CPU".into());
    }
    headers.extend(
        [
            "model",
            "kernel",
            "test",
            "threads",
            "operation",
            "ms per token",
            "note",
        ]
        .map(String::from),
    );
    Some(Table {
        title: "Per-operation breakdown".into(),
        headers,
        rows: op_rows
            .iter()
            .map(|r| {
                let mut row = Vec::new();
                if several {
                    row.push(cpu_index(&cpus, r));
                }
                row.extend([
                    r.model_type.clone(),
                    r.kernel_label(),
                    r.test.clone(),
                    r.n_threads.map_or("-".into(), |t| t.to_string()),
                    r.op.clone(),
                    f(r.avg_ns.map(|v| v / 1e6), 3),
                    r.note.clone(),
                ]);
                row
            })
            .collect(),
        note: String::new(),
    })
}

/// Per CPU, energy source, test and thread count: kernels x model sizes,
/// J/token and the saving against the f16 row of the same group.
pub fn energy_pivots(rows: &[Rec]) -> Vec<Table> {
    let cpus = cpus(rows);
    let several = cpus.len() > 1;
    type Key = (usize, String, String, usize);
    let mut groups: BTreeMap<Key, Vec<&Rec>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.is_model() && r.shows_speed() && r.energy_j_per_token.is_some())
    {
        let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
        groups
            .entry((
                cpu,
                r.energy_source.clone(),
                r.test.clone(),
                r.n_threads.unwrap_or(0),
            ))
            .or_default()
            .push(r);
    }
    let mut out = Vec::new();
    for ((cpu, source, test, t), g) in groups {
        let energy = |k: &str, s: &str| {
            median(
                &g.iter()
                    .filter(|r| r.kernel_label() == k && r.size_label() == s)
                    .filter_map(|r| r.energy_j_per_token)
                    .collect::<Vec<_>>(),
            )
        };
        let base = |s: &str| {
            median(
                &g.iter()
                    .filter(|r| r.is_f16_baseline() && r.size_label() == s)
                    .filter_map(|r| r.energy_j_per_token)
                    .collect::<Vec<_>>(),
            )
        };
        let cell = |k: &str, s: &str| match (energy(k, s), base(s)) {
            (Some(e), Some(b)) if b > 0.0 => {
                format!("{e:.4} ({:.1}% saved)", 100.0 * (1.0 - e / b))
            }
            (Some(e), _) => format!("{e:.4}"),
            _ => "-".into(),
        };
        let note = match source.as_str() {
            "cpu-time" => "cpu-time is a proxy (CPU seconds x watts per core), not a measurement.",
            "model" => {
                "model: the papers' arithmetic energy plus the weight-traffic term, an estimate."
            }
            _ => "Saving: 1 - J(kernel) / J(f16) of the same model, test and threads.",
        };
        out.push(size_pivot(
            &g,
            format!(
                "{test} energy per token, J ({source}), {t} thread{}{}",
                plural(t),
                cpu_suffix(several, cpu)
            ),
            note.into(),
            cell,
        ));
    }
    out
}
