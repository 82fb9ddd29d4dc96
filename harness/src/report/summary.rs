//! `summary.md`: the short Markdown version of the report, for pasting into
//! an issue or a pull request: the machine, the layer speedups per thread
//! count, the model tables when there are model rows, and what failed.

use super::read::Rec;
use super::tables::Table;

/// Escapes the characters that would break a Markdown table cell.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

pub fn table(t: &Table) -> String {
    let mut s = format!("**{}**\n\n", t.title);
    s += &format!(
        "| {} |\n",
        t.headers
            .iter()
            .map(|h| cell(h))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    s += &format!(
        "|{}\n",
        t.headers
            .iter()
            .enumerate()
            .map(|(i, _)| if i == 0 { "---|" } else { "---:|" })
            .collect::<String>()
    );
    for r in &t.rows {
        s += &format!(
            "| {} |\n",
            r.iter().map(|c| cell(c)).collect::<Vec<_>>().join(" | ")
        );
    }
    if !t.note.is_empty() {
        s += &format!("\n{}\n", t.note);
    }
    s += "\n";
    s
}

/// One line per CPU: model, cores, features, memory, OS, build.
fn machine_line(rows: &[Rec], cpu: &str) -> String {
    let Some(r) = rows.iter().find(|r| r.cpu_info == cpu) else {
        return String::new();
    };
    let mut parts = vec![format!("**CPU:** {}", cell(cpu))];
    if let Some(n) = r.n_cores {
        parts.push(format!("{n} cores"));
    }
    if !r.arch.is_empty() {
        parts.push(r.arch.clone());
    }
    if !r.cpu_features.is_empty() {
        parts.push(format!("features: {}", r.cpu_features));
    }
    if let Some(m) = r.memory_bytes {
        parts.push(format!("{:.1} GiB RAM", m as f64 / (1u64 << 30) as f64));
    }
    if !r.os.is_empty() {
        parts.push(r.os.clone());
    }
    let mut s = parts.join(" · ");
    let mut build = Vec::new();
    if !r.build_commit.is_empty() {
        build.push(format!("commit {}", r.build_commit));
    }
    if !r.rustc.is_empty() {
        build.push(r.rustc.clone());
    }
    if !build.is_empty() {
        s += &format!(" · **build:** {}", build.join(", "));
    }
    s
}

/// What the summary is made of.
pub struct Parts<'a> {
    pub title: &'a str,
    pub rows: &'a [Rec],
    pub cpus: &'a [String],
    pub inputs: &'a Table,
    pub layer_pivots: &'a [Table],
    pub model_pivots: &'a [Table],
    pub failures: Option<&'a Table>,
    pub chart_count: usize,
}

pub fn render(p: &Parts<'_>) -> String {
    let Parts {
        title,
        rows,
        cpus,
        inputs,
        layer_pivots,
        model_pivots,
        failures,
        chart_count,
    } = *p;
    let mut s = format!("### {title}\n\n");
    for cpu in cpus {
        s += &machine_line(rows, cpu);
        s += "\n\n";
    }
    let files: Vec<String> = inputs
        .rows
        .iter()
        .map(|r| format!("`{}` ({} rows)", r[0], r[1]))
        .collect();
    s += &format!("Inputs: {}.\n\n", files.join(", "));
    for t in layer_pivots {
        s += &table(t);
    }
    for t in model_pivots {
        s += &table(t);
    }
    if layer_pivots.is_empty() && model_pivots.is_empty() {
        s += "No verified speeds in these rows.\n\n";
    }
    let inexact: Vec<String> = {
        let mut k: Vec<String> = rows
            .iter()
            .filter(|r| r.exact == Some(false))
            .map(|r| r.kernel.clone())
            .collect();
        k.sort();
        k.dedup();
        k
    };
    if !inexact.is_empty() {
        s += &format!(
            "(inexact) = exact=false: {}.\n\n",
            inexact
                .iter()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    if rows.iter().any(|r| r.is_imported()) {
        s += "[imported, unverified] = rows imported from llama-bench with `ternbench import`; \
              ternbench did not check their output.\n\n";
    }
    match failures {
        Some(t) => s += &table(t),
        None => s += "Every ternbench row passed verification against the scalar reference.\n\n",
    }
    s += &format!(
        "{chart_count} charts (each as SVG and PNG, in `charts/`) and the full tables are in \
         `report.html` beside this file.\n"
    );
    s
}
