//! What the report shows: the charts (as data for [`super::charts`]) and
//! the tables, computed from result rows.
//!
//! Rules every figure follows:
//! - a number comes from a row (or is a ratio or geometric mean of rows,
//!   said so in the caption); nothing is filled in;
//! - a row that failed ternbench's verification never appears as a speed;
//!   imported rows (llama-bench) appear, marked `[imported, unverified]`;
//! - kernels with `exact=false` are drawn hollow and labelled `(inexact)`;
//! - extrapolated (layer-sampled) figures carry a `~` above the bar;
//! - several rows for the same point (merged runs) are summarised by
//!   their median, and the tables list every row.

use super::charts::{BarSeries, Bars, Body, Chart, LineData, Lines};
use super::read::{size_value, Rec};
use std::collections::{BTreeMap, BTreeSet};

/// The distinct CPUs of the rows, in order of first appearance.
pub fn cpus(rows: &[Rec]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in rows {
        if !out.contains(&r.cpu_info) {
            out.push(r.cpu_info.clone());
        }
    }
    out
}

/// Median of a non-empty list.
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Geometric mean of positive values.
pub fn geomean(values: &[f64]) -> Option<f64> {
    let pos: Vec<f64> = values.iter().copied().filter(|v| *v > 0.0).collect();
    if pos.is_empty() || pos.len() != values.len() {
        return None;
    }
    Some((pos.iter().map(|v| v.ln()).sum::<f64>() / pos.len() as f64).exp())
}

/// Fills `speedup_vs_f16` of model rows that lack it (imports) from an f16
/// row of the same CPU, model size, test and thread count: the ratio of
/// their tokens/s. Returns how many rows were filled; their note says so.
pub fn derive_model_speedups(rows: &mut [Rec]) -> usize {
    let mut base: BTreeMap<(String, String, String, usize), Vec<f64>> = BTreeMap::new();
    for r in rows.iter() {
        if r.is_model() && r.is_f16_baseline() && r.shows_speed() {
            if let (Some(ts), Some(t)) = (r.avg_ts, r.n_threads) {
                base.entry((r.cpu_info.clone(), r.size_label(), r.test.clone(), t))
                    .or_default()
                    .push(ts);
            }
        }
    }
    let mut n = 0;
    for r in rows.iter_mut() {
        if !r.is_model() || r.speedup_vs_f16.is_some() || !r.shows_speed() {
            continue;
        }
        let (Some(ts), Some(t)) = (r.avg_ts, r.n_threads) else {
            continue;
        };
        let key = (r.cpu_info.clone(), r.size_label(), r.test.clone(), t);
        if let Some(b) = base.get(&key).and_then(|v| median(v)).filter(|b| *b > 0.0) {
            r.speedup_vs_f16 = Some(ts / b);
            if !r.note.is_empty() {
                r.note += "; ";
            }
            r.note += "speedup_vs_f16 derived by the report from the f16 row's tokens/s";
            n += 1;
        }
    }
    n
}

/// Color index of every kernel, stable across the charts of one report.
pub struct Colors(Vec<String>);

impl Colors {
    pub fn new(rows: &[Rec]) -> Colors {
        let set: BTreeSet<String> = rows.iter().map(|r| r.kernel.clone()).collect();
        Colors(set.into_iter().collect())
    }

    pub fn of(&self, kernel: &str) -> usize {
        self.0.iter().position(|k| k == kernel).unwrap_or(0)
    }
}

fn threads_text(t: usize) -> String {
    if t == 1 {
        "1 thread".into()
    } else {
        format!("{t} threads")
    }
}

/// " on CPU" when the report covers several CPUs.
fn on_cpu(cpu: &str, several: bool) -> String {
    if several {
        format!(" on {}", short(cpu, 48))
    } else {
        String::new()
    }
}

fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}...", s.chars().take(n - 3).collect::<String>())
    }
}

/// A slug fragment for the CPU, only when there are several.
fn cpu_slug(cpus: &[String], cpu: &str) -> String {
    if cpus.len() > 1 {
        let i = cpus.iter().position(|c| c == cpu).unwrap_or(0);
        format!("-cpu{}", i + 1)
    } else {
        String::new()
    }
}

/// Series of a grouped bar chart, from (series key, category, value, flag)
/// points: one series per kernel in kernel order, duplicates by median.
fn bar_series(
    categories: &[String],
    points: &[(&Rec, String, f64)],
    colors: &Colors,
) -> Vec<BarSeries> {
    // Series keyed by the kernel label (so an import and a ternbench kernel
    // of the same name stay apart), ordered by weight type then name.
    let mut keys: Vec<(String, String, String)> = points
        .iter()
        .map(|(r, _, _)| (r.wtype.to_lowercase(), r.kernel.clone(), r.kernel_label()))
        .collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|(_, kernel, label)| {
            let mine: Vec<&(&Rec, String, f64)> = points
                .iter()
                .filter(|(r, _, _)| r.kernel_label() == label)
                .collect();
            let hollow = mine.iter().any(|(r, _, _)| r.exact == Some(false));
            let mut values = Vec::new();
            let mut flagged = Vec::new();
            for c in categories {
                let at: Vec<&&(&Rec, String, f64)> =
                    mine.iter().filter(|(_, cat, _)| cat == c).collect();
                let vals: Vec<f64> = at.iter().map(|p| p.2).collect();
                values.push(median(&vals));
                flagged.push(at.iter().any(|p| p.0.extrapolated == Some(true)));
            }
            BarSeries {
                name: label,
                color: colors.of(&kernel),
                hollow,
                values,
                flagged,
            }
        })
        .collect()
}

fn first_seen<'a>(items: impl Iterator<Item = &'a String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(i) {
            out.push(i.clone());
        }
    }
    out
}

/// Model size categories ordered by parameters (from the rows, else the label).
fn size_order(rows: &[&Rec]) -> Vec<String> {
    let mut sizes: Vec<(f64, String)> = Vec::new();
    for r in rows {
        let label = r.size_label();
        if sizes.iter().any(|(_, l)| *l == label) {
            continue;
        }
        let n = size_value(&label)
            .or(r.model_n_params.map(|p| p as f64))
            .unwrap_or(f64::MAX);
        sizes.push((n, label));
    }
    sizes.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    sizes.into_iter().map(|(_, l)| l).collect()
}

const INEXACT_NOTE: &str = "Hollow bars and \"(inexact)\": kernels whose rows say exact=false.";
const FAILED_NOTE: &str = "Rows that failed ternbench's verification are never shown as a speed; \
    rows imported from llama-bench are shown and marked [imported, unverified].";

/// Every chart the rows support, in report order.
pub fn charts(rows: &[Rec]) -> Vec<Chart> {
    let colors = Colors::new(rows);
    let cpus = cpus(rows);
    let several = cpus.len() > 1;
    let mut out = Vec::new();
    layer_charts(rows, &cpus, several, &colors, &mut out);
    model_speedup_charts(rows, &cpus, several, &colors, &mut out);
    threads_charts(rows, &cpus, several, &colors, &mut out);
    op_charts(rows, &cpus, several, &mut out);
    energy_charts(rows, &cpus, several, &colors, &mut out);
    if several {
        cross_cpu_charts(rows, &cpus, &mut out);
    }
    out
}

fn layer_charts(
    rows: &[Rec],
    cpus: &[String],
    several: bool,
    colors: &Colors,
    out: &mut Vec<Chart>,
) {
    let layer: Vec<&Rec> = rows
        .iter()
        .filter(|r| r.is_layer() && r.batch == Some(1) && r.shows_speed())
        .collect();
    let mut groups: BTreeMap<(usize, usize, bool), Vec<&Rec>> = BTreeMap::new();
    for r in &layer {
        let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
        groups
            .entry((cpu, r.n_threads.unwrap_or(0), r.cold == Some(true)))
            .or_default()
            .push(r);
    }
    let mut speed = Vec::new();
    let mut gbs = Vec::new();
    for ((cpu, t, cold), g) in &groups {
        let cpu = &cpus[*cpu];
        let categories = first_seen(g.iter().map(|r| r.shape()).collect::<Vec<_>>().iter());
        let residency = if *cold {
            "cold (weights from DRAM)"
        } else {
            "cache-hot"
        };
        let slug_tail = format!(
            "{}-t{t}{}",
            cpu_slug(cpus, cpu),
            if *cold { "-cold" } else { "" }
        );
        let pts: Vec<(&Rec, String, f64)> = g
            .iter()
            .filter_map(|r| r.speedup_vs_f16.map(|v| (*r, r.shape(), v)))
            .collect();
        if !pts.is_empty() {
            speed.push(Chart {
                slug: format!("layer-speedup{slug_tail}"),
                title: format!(
                    "Layer speedup over f16, batch 1, {}, {residency}{}",
                    threads_text(*t),
                    on_cpu(cpu, several)
                ),
                caption: format!(
                    "speedup_vs_f16 of each layer row: the median time of the fastest verified f16 kernel \
                     timed in the same group divided by this kernel's median. The dashed line is 1x. \
                     {INEXACT_NOTE} {FAILED_NOTE}"
                ),
                body: Body::Bars(Bars {
                    x_desc: "layer shape (out x in)".into(),
                    y_desc: "speedup over f16 (x)".into(),
                    series: bar_series(&categories, &pts, colors),
                    categories: categories.clone(),
                    stacked: false,
                    hline: None,
                    ref_one: true,
                }),
            });
        }
        let pts: Vec<(&Rec, String, f64)> = g
            .iter()
            .filter_map(|r| r.gbs.map(|v| (*r, r.shape(), v)))
            .collect();
        if !pts.is_empty() {
            let bw: Vec<f64> = g.iter().filter_map(|r| r.mem_bandwidth_gbs).collect();
            let hline = median(&bw).map(|b| {
                (
                    b,
                    format!("measured read bandwidth {b:.1} GB/s ({})", threads_text(*t)),
                )
            });
            let roof = if hline.is_some() {
                "The red line is the read bandwidth measured in the same run (the roofline of a \
                 DRAM-bound kernel); cache-hot weights can exceed it."
            } else {
                "No bandwidth was measured in these rows, so no roofline is drawn."
            };
            gbs.push(Chart {
                slug: format!("layer-gbs{slug_tail}"),
                title: format!(
                    "Layer weight throughput, batch 1, {}, {residency}{}",
                    threads_text(*t),
                    on_cpu(cpu, several)
                ),
                caption: format!(
                    "gbs of each layer row: packed weight bytes per call / median time. {roof} \
                     {INEXACT_NOTE} {FAILED_NOTE}"
                ),
                body: Body::Bars(Bars {
                    x_desc: "layer shape (out x in)".into(),
                    y_desc: "GB/s of packed weights".into(),
                    series: bar_series(&categories, &pts, colors),
                    categories,
                    stacked: false,
                    hline,
                    ref_one: false,
                }),
            });
        }
    }
    out.extend(speed);
    out.extend(gbs);
}

fn model_speedup_charts(
    rows: &[Rec],
    cpus: &[String],
    several: bool,
    colors: &Colors,
    out: &mut Vec<Chart>,
) {
    let mut groups: BTreeMap<(usize, String, usize), Vec<&Rec>> = BTreeMap::new();
    for r in rows.iter().filter(|r| {
        r.is_model() && r.shows_speed() && r.speedup_vs_f16.is_some() && !r.is_f16_baseline()
    }) {
        let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
        groups
            .entry((cpu, r.test.clone(), r.n_threads.unwrap_or(0)))
            .or_default()
            .push(r);
    }
    for ((cpu, test, t), g) in groups {
        let cpu = &cpus[cpu];
        let categories = size_order(&g);
        let pts: Vec<(&Rec, String, f64)> = g
            .iter()
            .filter_map(|r| r.speedup_vs_f16.map(|v| (*r, r.size_label(), v)))
            .collect();
        out.push(Chart {
            slug: format!("model-speedup{}-{test}-t{t}", cpu_slug(cpus, cpu)),
            title: format!(
                "{test} speedup over fp16 by model size, {}{}",
                threads_text(t),
                on_cpu(cpu, several)
            ),
            caption: format!(
                "speedup_vs_f16 of model rows (tokens/s of the kernel / tokens/s of the fp16 baseline \
                 on the same model shape), the shape of Figure 1 of arXiv 2410.16144. Where a row had \
                 no speedup (imports), it is the ratio to the f16 row of the same model size, test and \
                 thread count. ~ marks figures extrapolated from sampled layers. {INEXACT_NOTE} {FAILED_NOTE}"
            ),
            body: Body::Bars(Bars {
                x_desc: "model size".into(),
                y_desc: "speedup over fp16 (x)".into(),
                series: bar_series(&categories, &pts, colors),
                categories,
                stacked: false,
                hline: None,
                ref_one: true,
            }),
        });
    }
}

fn threads_charts(
    rows: &[Rec],
    cpus: &[String],
    several: bool,
    colors: &Colors,
    out: &mut Vec<Chart>,
) {
    let mut groups: BTreeMap<(usize, String, String), Vec<&Rec>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.is_model() && r.shows_speed() && r.avg_ts.is_some() && r.n_threads.is_some())
    {
        let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
        groups
            .entry((cpu, r.model_type.clone(), r.test.clone()))
            .or_default()
            .push(r);
    }
    for ((cpu, model, test), g) in groups {
        let threads: BTreeSet<usize> = g.iter().filter_map(|r| r.n_threads).collect();
        if threads.len() < 2 {
            continue;
        }
        let cpu = &cpus[cpu];
        let mut labels: Vec<(String, String, String)> = g
            .iter()
            .map(|r| (r.wtype.to_lowercase(), r.kernel.clone(), r.kernel_label()))
            .collect();
        labels.sort();
        labels.dedup();
        let series = labels
            .into_iter()
            .map(|(_, kernel, label)| {
                let mine: Vec<&&Rec> = g.iter().filter(|r| r.kernel_label() == label).collect();
                let points = threads
                    .iter()
                    .filter_map(|&t| {
                        let v: Vec<f64> = mine
                            .iter()
                            .filter(|r| r.n_threads == Some(t))
                            .filter_map(|r| r.avg_ts)
                            .collect();
                        median(&v).map(|m| (t as f64, m))
                    })
                    .collect();
                LineData {
                    name: label,
                    color: colors.of(&kernel),
                    hollow: mine.iter().any(|r| r.exact == Some(false)),
                    points,
                }
            })
            .collect();
        let model_slug: String = model
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        out.push(Chart {
            slug: format!("threads{}-{model_slug}-{test}", cpu_slug(cpus, cpu)),
            title: format!("{model} {test}: tokens/s vs threads{}", on_cpu(cpu, several)),
            caption: format!(
                "avg_ts (tokens per second) of model rows by thread count. Dashed lines: exact=false \
                 kernels. {FAILED_NOTE}"
            ),
            body: Body::Lines(Lines {
                x_desc: "threads".into(),
                y_desc: "tokens/s".into(),
                series,
            }),
        });
    }
}

fn op_charts(rows: &[Rec], cpus: &[String], several: bool, out: &mut Vec<Chart>) {
    // Breakdown rows: `op` names the operation, avg_ns its time per token.
    let mut groups: BTreeMap<(usize, String, String, usize), Vec<&Rec>> = BTreeMap::new();
    for r in rows
        .iter()
        .filter(|r| r.is_op() && r.shows_speed() && r.avg_ns.is_some())
    {
        let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
        let what = if r.model_type.is_empty() {
            r.shape()
        } else {
            r.model_type.clone()
        };
        groups
            .entry((cpu, what, r.test.clone(), r.n_threads.unwrap_or(0)))
            .or_default()
            .push(r);
    }
    for (gi, ((cpu, what, test, t), g)) in groups.into_iter().enumerate() {
        let cpu = &cpus[cpu];
        let categories = first_seen(
            g.iter()
                .map(|r| r.kernel_label())
                .collect::<Vec<_>>()
                .iter(),
        );
        let ops = first_seen(g.iter().map(|r| r.op.clone()).collect::<Vec<_>>().iter());
        let series = ops
            .iter()
            .enumerate()
            .map(|(oi, op)| BarSeries {
                name: op.clone(),
                color: oi,
                hollow: false,
                values: categories
                    .iter()
                    .map(|c| {
                        let v: Vec<f64> = g
                            .iter()
                            .filter(|r| r.kernel_label() == *c && r.op == *op)
                            .filter_map(|r| r.avg_ns.map(|ns| ns / 1e6))
                            .collect();
                        median(&v)
                    })
                    .collect(),
                flagged: vec![false; categories.len()],
            })
            .collect();
        out.push(Chart {
            slug: format!("ops{}-{gi}", cpu_slug(cpus, cpu)),
            title: format!(
                "{what} {test}: time per token by operation, {}{}",
                threads_text(t),
                on_cpu(cpu, several)
            ),
            caption: format!(
                "Per-operation breakdown rows (column op): avg_ns, the time per token spent in each \
                 operation, stacked, in milliseconds. {FAILED_NOTE}"
            ),
            body: Body::Bars(Bars {
                x_desc: "kernel".into(),
                y_desc: "ms per token".into(),
                categories,
                series,
                stacked: true,
                hline: None,
                ref_one: false,
            }),
        });
    }
}

fn energy_charts(
    rows: &[Rec],
    cpus: &[String],
    several: bool,
    colors: &Colors,
    out: &mut Vec<Chart>,
) {
    let mut groups: BTreeMap<(usize, String, String, usize), Vec<&Rec>> = BTreeMap::new();
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
    for ((cpu, source, test, t), g) in groups {
        let cpu = &cpus[cpu];
        let categories = size_order(&g);
        let pts: Vec<(&Rec, String, f64)> = g
            .iter()
            .filter_map(|r| r.energy_j_per_token.map(|v| (*r, r.size_label(), v)))
            .collect();
        let what = match source.as_str() {
            "rapl" => "measured by the RAPL package energy counters around the run",
            "model" => {
                "the arithmetic-energy model of the BitNet papers plus the weight-traffic term \
                 (an estimate, not a measurement)"
            }
            "cpu-time" => "a proxy: process CPU seconds x watts per core (not a measurement)",
            _ => "source not stated in the rows",
        };
        let source_slug: String = source
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        out.push(Chart {
            slug: format!("energy{}-{source_slug}-{test}-t{t}", cpu_slug(cpus, cpu)),
            title: format!(
                "{test} energy per token by model size ({source}), {}{}",
                threads_text(t),
                on_cpu(cpu, several)
            ),
            caption: format!(
                "energy_j_per_token of model rows with energy_source={source}: {what}. \
                 ~ marks extrapolated figures. {INEXACT_NOTE}"
            ),
            body: Body::Bars(Bars {
                x_desc: "model size".into(),
                y_desc: "J per token".into(),
                series: bar_series(&categories, &pts, colors),
                categories,
                stacked: false,
                hline: None,
                ref_one: false,
            }),
        });
    }
}

fn cross_cpu_charts(rows: &[Rec], cpus: &[String], out: &mut Vec<Chart>) {
    // (layer?, threads) -> cpu -> kernel label -> per-category medians.
    type PerCpu = BTreeMap<usize, BTreeMap<String, BTreeMap<String, Vec<f64>>>>;
    let mut sets: BTreeMap<(bool, String, usize), PerCpu> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.shows_speed()) {
        let Some(s) = r.speedup_vs_f16 else { continue };
        let (kind, category) = if r.is_layer() && r.batch == Some(1) && r.cold != Some(true) {
            (true, r.shape())
        } else if r.is_model() {
            (false, r.size_label())
        } else {
            continue;
        };
        let test = if kind {
            "layer".to_string()
        } else {
            r.test.clone()
        };
        let cpu = cpus.iter().position(|c| *c == r.cpu_info).unwrap_or(0);
        sets.entry((kind, test, r.n_threads.unwrap_or(0)))
            .or_default()
            .entry(cpu)
            .or_default()
            .entry(r.kernel_label())
            .or_default()
            .entry(category)
            .or_default()
            .push(s);
    }
    for ((kind, test, t), per_cpu) in sets {
        if per_cpu.len() < 2 {
            continue;
        }
        let kernels: BTreeSet<String> = per_cpu.values().flat_map(|k| k.keys().cloned()).collect();
        let categories: Vec<String> = kernels.into_iter().collect();
        let series = per_cpu
            .iter()
            .map(|(cpu, by_kernel)| BarSeries {
                name: short(&cpus[*cpu], 44),
                color: *cpu,
                hollow: false,
                values: categories
                    .iter()
                    .map(|k| {
                        by_kernel.get(k).and_then(|cats| {
                            let m: Vec<f64> = cats.values().filter_map(|v| median(v)).collect();
                            geomean(&m)
                        })
                    })
                    .collect(),
                flagged: vec![false; categories.len()],
            })
            .collect();
        let (what, over) = if kind {
            ("Layer", "the layer shapes measured (batch 1, cache-hot)")
        } else {
            ("Model", "the model sizes measured")
        };
        out.push(Chart {
            slug: format!("cross-cpu-{}-t{t}", if kind { "layer".to_string() } else { test.clone() }),
            title: format!("{what} speedup over f16 across CPUs ({test}, {})", threads_text(t)),
            caption: format!(
                "Per kernel and CPU: the geometric mean over {over} of the median speedup_vs_f16. \
                 Each CPU's baseline is its own f16 kernel, so the bars compare speedups, not speeds; \
                 the kernels each CPU could run differ. Labels mark inexact and imported kernels as \
                 elsewhere. {FAILED_NOTE}"
            ),
            body: Body::Bars(Bars {
                x_desc: "kernel".into(),
                y_desc: "speedup over f16 (x, geometric mean)".into(),
                categories,
                series,
                stacked: false,
                hline: None,
                ref_one: true,
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-made rows (test data, not measurements) covering every chart.
    fn rows() -> Vec<Rec> {
        let base = |cpu: &str, kernel: &str, wtype: &str| Rec {
            schema_version: 1,
            cpu_info: cpu.into(),
            kernel: kernel.into(),
            wtype: wtype.into(),
            exact: Some(wtype != "tq2"),
            verified: true,
            ..Rec::default()
        };
        let layer = |cpu: &str, kernel: &str, wtype: &str, t: usize, speedup: f64| Rec {
            test: "layer".into(),
            rows: Some(2560),
            cols: Some(2560),
            batch: Some(1),
            n_threads: Some(t),
            speedup_vs_f16: Some(speedup),
            gbs: Some(speedup * 3.0),
            mem_bandwidth_gbs: Some(40.0),
            ..base(cpu, kernel, wtype)
        };
        let model = |kernel: &str, wtype: &str, size: &str, t: usize, ts: f64| Rec {
            test: "tg128".into(),
            model_type: format!("dummy-{size}"),
            n_threads: Some(t),
            avg_ts: Some(ts),
            energy_j_per_token: Some(10.0 / ts),
            energy_source: "rapl".into(),
            extrapolated: Some(size == "100B"),
            ..base("cpu A", kernel, wtype)
        };
        let mut v = vec![
            layer("cpu A", "f16-avx2", "f16", 1, 1.0),
            layer("cpu A", "i2s-avx2", "i2s", 1, 4.0),
            layer("cpu A", "tq2-avx2", "tq2", 1, 3.0),
            layer("cpu B", "f16-neon", "f16", 1, 1.0),
            layer("cpu B", "i2s-avx2", "i2s", 1, 2.5),
            Rec {
                verified: false,
                speedup_vs_f16: Some(777.0),
                gbs: Some(777.0),
                note: "mismatch".into(),
                ..layer("cpu A", "tq1-avx2", "tq1", 1, 777.0)
            },
        ];
        for (size, f16) in [("125M", 100.0), ("700M", 30.0), ("100B", 0.5)] {
            for t in [1, 2] {
                let k = t as f64;
                v.push(model("f16-avx2", "f16", size, t, f16 * k));
                v.push(model("i2s-avx2", "i2s", size, t, f16 * k * 4.0));
            }
        }
        v.push(Rec {
            op: "attention".into(),
            avg_ns: Some(2e6),
            ..model("i2s-avx2", "i2s", "125M", 1, 1.0)
        });
        v.push(Rec {
            op: "qkv".into(),
            avg_ns: Some(3e6),
            ..model("i2s-avx2", "i2s", "125M", 1, 1.0)
        });
        v
    }

    #[test]
    fn every_chart_kind_is_built_and_drawn() {
        let mut rows = rows();
        assert_eq!(derive_model_speedups(&mut rows), 12);
        let charts = charts(&rows);
        let slugs: Vec<&str> = charts.iter().map(|c| c.slug.as_str()).collect();
        for want in [
            "layer-speedup-cpu1-t1",
            "layer-speedup-cpu2-t1",
            "layer-gbs-cpu1-t1",
            "model-speedup-cpu1-tg128-t1",
            "model-speedup-cpu1-tg128-t2",
            "threads-cpu1-dummy_125M-tg128",
            "ops-cpu1-0",
            "energy-cpu1-rapl-tg128-t1",
            "cross-cpu-layer-t1",
        ] {
            assert!(slugs.contains(&want), "{want} missing from {slugs:?}");
        }
        // The failed row appears in no chart; the inexact kernel is hollow;
        // the 100B figure is flagged as extrapolated; the roofline is drawn.
        for c in &charts {
            if let Body::Bars(b) = &c.body {
                for s in &b.series {
                    assert!(!s.name.starts_with("tq1"), "{}: failed row shown", c.slug);
                    assert!(s
                        .values
                        .iter()
                        .flatten()
                        .all(|v| *v != 777.0 && *v != 2331.0));
                    assert_eq!(s.hollow, s.name.contains("(inexact)"), "{}", c.slug);
                }
            }
        }
        let fig1 = charts
            .iter()
            .find(|c| c.slug == "model-speedup-cpu1-tg128-t1")
            .unwrap();
        let Body::Bars(b) = &fig1.body else { panic!() };
        assert_eq!(b.categories, ["125M", "700M", "100B"]);
        assert_eq!(b.series.len(), 1);
        assert_eq!(b.series[0].values, [Some(4.0), Some(4.0), Some(4.0)]);
        assert_eq!(b.series[0].flagged, [false, false, true]);
        let gbs = charts
            .iter()
            .find(|c| c.slug == "layer-gbs-cpu1-t1")
            .unwrap();
        let Body::Bars(b) = &gbs.body else { panic!() };
        assert_eq!(b.hline.as_ref().map(|h| h.0), Some(40.0));
        let dir = std::env::temp_dir().join(format!("ternbench-figures-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for c in &charts {
            c.render(&dir).unwrap();
            assert!(dir.join(format!("{}.png", c.slug)).is_file());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tables_never_show_a_failed_rows_speed() {
        let rows = rows();
        let mut text = String::new();
        for t in super::super::tables::layers(&rows)
            .into_iter()
            .chain(super::super::tables::layer_speedup_pivots(&rows))
            .chain(super::super::tables::energy_pivots(&rows))
        {
            for r in &t.rows {
                text += &r.join("|");
            }
        }
        assert!(!text.contains("777"), "{text}");
        assert!(text.contains("FAILED"), "{text}");
        assert!(text.contains("75.0% saved"), "{text}");
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(geomean(&[1.0, 4.0]), Some(2.0));
        assert_eq!(geomean(&[1.0, 0.0]), None);
    }
}
