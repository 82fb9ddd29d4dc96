//! `report.html`: the charts (as `<img>` of the SVG files beside it, with a
//! link to each PNG), the tables and the system information. One file with
//! inline CSS; it references nothing but the chart files in `charts/`.
//!
//! A short inline script checks, once the page has loaded, that every chart
//! image decoded; it records the count in `data-charts-loaded` /
//! `data-charts-expected` on `<body>` (what the headless-browser test reads)
//! and shows a warning naming any chart that failed to load.

use super::charts::{Chart, FONT_NAME};
use super::tables::Table;

/// HTML-escapes text for element content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn table(t: &Table) -> String {
    let mut s = format!(
        "<h3>{}</h3>\n<div class=\"scroll\"><table>\n<thead><tr>",
        esc(&t.title)
    );
    for h in &t.headers {
        s += &format!("<th>{}</th>", esc(h));
    }
    s += "</tr></thead>\n<tbody>\n";
    for r in &t.rows {
        s += "<tr>";
        for (i, c) in r.iter().enumerate() {
            let class = if c == "FAILED" {
                " class=\"bad\""
            } else if i > 0 && c.starts_with(|ch: char| ch.is_ascii_digit() || ch == '~') {
                " class=\"num\""
            } else {
                ""
            };
            s += &format!("<td{class}>{}</td>", esc(c));
        }
        s += "</tr>\n";
    }
    s += "</tbody></table></div>\n";
    if !t.note.is_empty() {
        s += &format!("<p class=\"note\">{}</p>\n", esc(&t.note));
    }
    s
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em auto;max-width:1400px;padding:0 1em;color:#222}\
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ccc}h3{font-size:1.05em}\
table{border-collapse:collapse;font-size:.85em}th,td{border:1px solid #ccc;padding:2px 6px;text-align:left}\
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}td.bad{color:#b00;font-weight:bold}\
.scroll{overflow-x:auto}figure{margin:1.2em 0}figure img{max-width:100%;border:1px solid #ddd}\
figcaption{font-size:.85em;color:#444;max-width:1000px}.note{font-size:.85em;color:#444}\
#chart-check{display:none;background:#fdd;border:1px solid #b00;padding:.5em}";

const SCRIPT: &str = "window.addEventListener('load',function(){\
var imgs=document.querySelectorAll('img.chart');var ok=0;var bad=[];\
imgs.forEach(function(i){if(i.complete&&i.naturalWidth>0){ok++;}else{bad.push(i.getAttribute('src'));}});\
document.body.setAttribute('data-charts-expected',String(imgs.length));\
document.body.setAttribute('data-charts-loaded',String(ok));\
document.body.setAttribute('data-charts-broken',bad.join(' '));\
if(bad.length){var w=document.getElementById('chart-check');\
w.textContent='Charts that failed to load: '+bad.join(', ');w.style.display='block';}});";

/// The whole page.
pub fn page(
    title: &str,
    generated: &str,
    inputs: &Table,
    systems: &[Table],
    charts: &[Chart],
    tables: &[Table],
) -> String {
    let mut s = String::new();
    s += "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n";
    s += &format!("<title>{}</title>\n<style>{STYLE}</style>\n", esc(title));
    s += &format!("<script>{SCRIPT}</script>\n</head>\n<body>\n");
    s += &format!("<h1>{}</h1>\n", esc(title));
    s += &format!(
        "<p class=\"note\">Generated {} by ternbench {}. Every number comes from the input rows \
         (ratios and geometric means are computed from them, as each caption says). Rows that \
         failed ternbench's verification never appear as a speed.</p>\n",
        esc(generated),
        env!("CARGO_PKG_VERSION")
    );
    s += "<div id=\"chart-check\"></div>\n";
    s += &table(inputs);
    s += "<h2>System</h2>\n";
    for t in systems {
        s += &table(t);
    }
    s += "<h2>Charts</h2>\n";
    if charts.is_empty() {
        s += "<p>No chart: the rows have no verified speeds to draw.</p>\n";
    }
    for c in charts {
        s += &format!(
            "<figure id=\"{slug}\">\n<img class=\"chart\" src=\"charts/{slug}.svg\" alt=\"{alt}\">\n\
             <figcaption><b>{title}.</b> {caption} <a href=\"charts/{slug}.png\">PNG</a></figcaption>\n</figure>\n",
            slug = esc(&c.slug),
            alt = esc(&c.title),
            title = esc(&c.title),
            caption = esc(&c.caption),
        );
    }
    s += "<h2>Tables</h2>\n";
    for t in tables {
        s += &table(t);
    }
    s += &format!(
        "<p class=\"note\">PNG text is drawn with the bundled font {}.</p>\n",
        esc(FONT_NAME)
    );
    s += "</body>\n</html>\n";
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
