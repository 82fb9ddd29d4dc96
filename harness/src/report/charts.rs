//! Drawing the report's charts with plotters, as SVG (shown by the HTML page)
//! and PNG (for pasting elsewhere).
//!
//! Text in the PNGs is rendered with the font bundled in
//! `harness/assets/fonts/` (Open Sans Regular, Apache License 2.0), through
//! plotters' `ab_glyph` backend, so no system font is needed; the SVGs name
//! `sans-serif` and leave the font to the viewer.
//!
//! A chart is data only ([`Chart`]): the figures module decides what goes in
//! it, this module draws it. Category labels and the legend are placed by
//! hand (the legend in its own column at the right), because a grouped bar
//! chart with a dozen kernels has no room for plotters' in-plot legend.

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::Path;
use std::sync::OnceLock;

/// The bundled font (Apache-2.0; see harness/assets/fonts/README.md).
pub const FONT: &[u8] = include_bytes!("../../assets/fonts/OpenSans-Regular.ttf");
/// The bundled font's name, as the report states it.
pub const FONT_NAME: &str = "Open Sans Regular (Apache License 2.0)";

/// Registers the bundled font as plotters' `sans-serif` once per process.
fn register_font() -> Result<()> {
    static DONE: OnceLock<bool> = OnceLock::new();
    let ok = *DONE.get_or_init(|| {
        plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the bundled font could not be loaded"))
    }
}

/// One chart: what it shows and how it is captioned.
#[derive(Clone, Debug)]
pub struct Chart {
    /// File stem of `charts/<slug>.svg` and `.png`.
    pub slug: String,
    pub title: String,
    /// One or two sentences: where the numbers come from, what marks mean.
    pub caption: String,
    pub body: Body,
}

#[derive(Clone, Debug)]
pub enum Body {
    Bars(Bars),
    Lines(Lines),
}

/// Grouped (or stacked) bars: one group per category, one bar per series.
#[derive(Clone, Debug)]
pub struct Bars {
    pub x_desc: String,
    pub y_desc: String,
    pub categories: Vec<String>,
    pub series: Vec<BarSeries>,
    /// Stack the series of a category instead of placing them side by side.
    pub stacked: bool,
    /// A horizontal line with its label (the bandwidth roofline).
    pub hline: Option<(f64, String)>,
    /// A dashed reference line at y = 1 (speedup charts).
    pub ref_one: bool,
}

#[derive(Clone, Debug)]
pub struct BarSeries {
    pub name: String,
    pub color: usize,
    /// Drawn hollow (outline and a pale fill): the kernel is not exact.
    pub hollow: bool,
    /// One value per category.
    pub values: Vec<Option<f64>>,
    /// Per category: marked with `~` above the bar (extrapolated figure).
    pub flagged: Vec<bool>,
}

/// Lines through points (x ascending).
#[derive(Clone, Debug)]
pub struct Lines {
    pub x_desc: String,
    pub y_desc: String,
    pub series: Vec<LineData>,
}

#[derive(Clone, Debug)]
pub struct LineData {
    pub name: String,
    pub color: usize,
    /// Dashed line and hollow markers: the kernel is not exact.
    pub hollow: bool,
    pub points: Vec<(f64, f64)>,
}

impl Chart {
    /// Series names and colors, for the legend.
    fn legend(&self) -> Vec<(String, usize, bool)> {
        match &self.body {
            Body::Bars(b) => b
                .series
                .iter()
                .map(|s| (s.name.clone(), s.color, s.hollow))
                .collect(),
            Body::Lines(l) => l
                .series
                .iter()
                .map(|s| (s.name.clone(), s.color, s.hollow))
                .collect(),
        }
    }

    /// Pixel size: wide enough for every bar, tall enough for the legend.
    pub fn size(&self) -> (u32, u32) {
        let legend = self.legend();
        let longest = legend.iter().map(|(n, _, _)| n.chars().count()).max();
        let legend_w = 50 + (longest.unwrap_or(0) as u32 * 7).min(330);
        let plot_w = match &self.body {
            Body::Bars(b) => {
                let per_group = if b.stacked { 1 } else { b.series.len().max(1) };
                (b.categories.len() as u32 * (per_group as u32 * 12 + 28)).max(560)
            }
            Body::Lines(_) => 620,
        };
        let h = (110 + 20 * legend.len() as u32).max(460);
        (plot_w + 90 + legend_w, h)
    }

    fn legend_width(&self) -> u32 {
        let longest = self
            .legend()
            .iter()
            .map(|(n, _, _)| n.chars().count())
            .max()
            .unwrap_or(0);
        50 + (longest as u32 * 7).min(330)
    }

    /// Writes `<dir>/<slug>.svg` and `<dir>/<slug>.png`.
    pub fn render(&self, dir: &Path) -> Result<()> {
        register_font()?;
        let size = self.size();
        let svg = dir.join(format!("{}.svg", self.slug));
        draw(self, SVGBackend::new(&svg, size).into_drawing_area())
            .map_err(|e| anyhow!("drawing {}: {e}", svg.display()))?;
        let png = dir.join(format!("{}.png", self.slug));
        draw(self, BitMapBackend::new(&png, size).into_drawing_area())
            .map_err(|e| anyhow!("drawing {}: {e}", png.display()))?;
        Ok(())
    }
}

/// A qualitative palette: Tableau 10, then ten more chosen to stay apart
/// from it (stacked per-op bars put up to a dozen colors side by side).
const PALETTE: [(u8, u8, u8); 20] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (0, 0, 110),
    (255, 215, 0),
    (0, 100, 0),
    (128, 0, 64),
    (0, 128, 128),
    (255, 160, 160),
    (80, 80, 80),
    (160, 200, 255),
    (150, 90, 0),
    (120, 255, 120),
];

pub fn color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

fn err<E: std::fmt::Debug>(e: E) -> String {
    format!("{e:?}")
}

fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().color(&BLACK)
}

/// The largest value a chart must show (never 0, so the axis has a range).
fn y_max(values: impl Iterator<Item = f64>) -> f64 {
    let m = values.filter(|v| v.is_finite()).fold(0.0f64, f64::max);
    if m > 0.0 {
        m * 1.12
    } else {
        1.0
    }
}

fn draw<DB: DrawingBackend>(chart: &Chart, root: DrawingArea<DB, Shift>) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let (w, _h) = root.dim_in_pixel();
    let legend_w = chart.legend_width();
    let (plot, legend) = root.split_horizontally(w.saturating_sub(legend_w));
    match &chart.body {
        Body::Bars(b) => draw_bars(chart, b, &plot, &root)?,
        Body::Lines(l) => draw_lines(chart, l, &plot)?,
    }
    // The legend, in its own column.
    for (i, (name, c, hollow)) in chart.legend().iter().enumerate() {
        let y = 48 + 20 * i as i32;
        let col = color(*c);
        if *hollow {
            legend
                .draw(&Rectangle::new(
                    [(8, y), (22, y + 14)],
                    col.mix(0.15).filled(),
                ))
                .map_err(err)?;
            legend
                .draw(&Rectangle::new([(8, y), (22, y + 14)], col.stroke_width(2)))
                .map_err(err)?;
        } else {
            legend
                .draw(&Rectangle::new([(8, y), (22, y + 14)], col.filled()))
                .map_err(err)?;
        }
        legend
            .draw(&Text::new(name.clone(), (28, y), font(13)))
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Whether a bar chart needs a log scale: unstacked, and its positive
/// values span more than a factor of 25 (a 300x kernel beside 2x ones).
fn log_range(b: &Bars) -> Option<(f64, f64)> {
    if b.stacked {
        return None;
    }
    let vals: Vec<f64> = b
        .series
        .iter()
        .flat_map(|s| s.values.iter().flatten().copied())
        .chain(b.hline.as_ref().map(|h| h.0))
        .filter(|v| *v > 0.0 && v.is_finite())
        .collect();
    let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = vals.iter().copied().fold(0.0f64, f64::max);
    (lo.is_finite() && hi / lo > 25.0).then(|| {
        let lo = 10f64.powf((lo / 1.5).log10().floor());
        (lo, hi * 1.6)
    })
}

fn draw_bars<DB: DrawingBackend>(
    chart: &Chart,
    b: &Bars,
    plot: &DrawingArea<DB, Shift>,
    root: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let n = b.categories.len().max(1);
    if let Some((lo, hi)) = log_range(b) {
        let y_desc = format!("{} (log scale)", b.y_desc);
        return draw_bars_in(chart, b, plot, root, (lo..hi).log_scale(), lo, &y_desc);
    }
    let top = if b.stacked {
        y_max((0..n).map(|i| {
            b.series
                .iter()
                .filter_map(|s| s.values.get(i).copied().flatten())
                .sum()
        }))
    } else {
        y_max(
            b.series
                .iter()
                .flat_map(|s| s.values.iter().flatten().copied())
                .chain(b.hline.as_ref().map(|h| h.0))
                .chain(b.ref_one.then_some(1.0)),
        )
    };
    draw_bars_in(chart, b, plot, root, 0f64..top, 0.0, &b.y_desc)
}

fn draw_bars_in<DB, Y>(
    chart: &Chart,
    b: &Bars,
    plot: &DrawingArea<DB, Shift>,
    root: &DrawingArea<DB, Shift>,
    y: Y,
    base: f64,
    y_desc: &str,
) -> Result<(), String>
where
    DB: DrawingBackend,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let n = b.categories.len().max(1);
    let mut cc = ChartBuilder::on(plot)
        .caption(&chart.title, font(18))
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..n as f64, y)
        .map_err(err)?;
    cc.configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .x_label_formatter(&|_| String::new())
        .y_desc(y_desc)
        .x_desc(b.x_desc.as_str())
        .label_style(font(12))
        .axis_desc_style(font(14))
        .draw()
        .map_err(err)?;
    let k = if b.stacked { 1 } else { b.series.len().max(1) };
    let group = 0.8;
    let width = group / k as f64;
    let mut stack = vec![base; n];
    for (si, s) in b.series.iter().enumerate() {
        let col = color(s.color);
        for (ci, v) in s.values.iter().enumerate() {
            let Some(v) = *v else { continue };
            let (x0, y0) = if b.stacked {
                (ci as f64 + 0.1, stack[ci])
            } else {
                (ci as f64 + 0.1 + si as f64 * width, base)
            };
            let (x1, y1) = (x0 + width, if b.stacked { y0 + v } else { v });
            if b.stacked {
                stack[ci] += v;
            }
            let rect = [(x0, y0), (x1, y1)];
            if s.hollow {
                cc.draw_series(std::iter::once(Rectangle::new(
                    rect,
                    col.mix(0.15).filled(),
                )))
                .map_err(err)?;
                cc.draw_series(std::iter::once(Rectangle::new(rect, col.stroke_width(2))))
                    .map_err(err)?;
            } else {
                cc.draw_series(std::iter::once(Rectangle::new(rect, col.filled())))
                    .map_err(err)?;
            }
            if s.flagged.get(ci).copied().unwrap_or(false) {
                let (px, py) = cc.backend_coord(&((x0 + x1) / 2.0, y1));
                root.draw(&Text::new(
                    "~",
                    (px, py - 4),
                    font(14).pos(Pos::new(HPos::Center, VPos::Bottom)),
                ))
                .map_err(err)?;
            }
        }
    }
    if b.ref_one {
        cc.draw_series(DashedLineSeries::new(
            vec![(0.0, 1.0), (n as f64, 1.0)],
            6,
            4,
            BLACK.stroke_width(1),
        ))
        .map_err(err)?;
    }
    if let Some((v, label)) = &b.hline {
        cc.draw_series(LineSeries::new(
            vec![(0.0, *v), (n as f64, *v)],
            RED.stroke_width(2),
        ))
        .map_err(err)?;
        let (px, py) = cc.backend_coord(&(0.0, *v));
        root.draw(&Text::new(
            label.clone(),
            (px + 6, py - 3),
            font(12).color(&RED).pos(Pos::new(HPos::Left, VPos::Bottom)),
        ))
        .map_err(err)?;
    }
    // Category labels under the groups.
    for (ci, c) in b.categories.iter().enumerate() {
        let (px, py) = cc.backend_coord(&(ci as f64 + 0.5, base));
        root.draw(&Text::new(
            c.clone(),
            (px, py + 6),
            font(12).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(err)?;
    }
    Ok(())
}

fn draw_lines<DB: DrawingBackend>(
    chart: &Chart,
    l: &Lines,
    plot: &DrawingArea<DB, Shift>,
) -> Result<(), String> {
    let xs: Vec<f64> = l
        .series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .collect();
    let (mut x0, mut x1) = (
        xs.iter().copied().fold(f64::INFINITY, f64::min),
        xs.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    );
    if !x0.is_finite() || !x1.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    let pad = ((x1 - x0) * 0.05).max(0.5);
    let top = y_max(l.series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut cc = ChartBuilder::on(plot)
        .caption(&chart.title, font(18))
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(64)
        .build_cartesian_2d((x0 - pad)..(x1 + pad), 0f64..top)
        .map_err(err)?;
    cc.configure_mesh()
        .x_label_formatter(&|v| {
            if (v - v.round()).abs() < 1e-9 {
                format!("{v:.0}")
            } else {
                String::new()
            }
        })
        .y_desc(l.y_desc.as_str())
        .x_desc(l.x_desc.as_str())
        .label_style(font(12))
        .axis_desc_style(font(14))
        .draw()
        .map_err(err)?;
    for s in &l.series {
        let col = color(s.color);
        if s.hollow {
            cc.draw_series(DashedLineSeries::new(
                s.points.clone(),
                8,
                5,
                col.stroke_width(2),
            ))
            .map_err(err)?;
            cc.draw_series(
                s.points
                    .iter()
                    .map(|&p| Circle::new(p, 4, col.stroke_width(2))),
            )
            .map_err(err)?;
        } else {
            cc.draw_series(LineSeries::new(s.points.clone(), col.stroke_width(2)))
                .map_err(err)?;
            cc.draw_series(s.points.iter().map(|&p| Circle::new(p, 4, col.filled())))
                .map_err(err)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_svg_and_png_with_the_bundled_font() {
        let dir = std::env::temp_dir().join(format!("ternbench-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let chart = Chart {
            slug: "t".into(),
            title: "speedup".into(),
            caption: String::new(),
            body: Body::Bars(Bars {
                x_desc: "layer".into(),
                y_desc: "x".into(),
                categories: vec!["2560x2560".into(), "640x2560".into()],
                series: vec![
                    BarSeries {
                        name: "a".into(),
                        color: 0,
                        hollow: false,
                        values: vec![Some(2.0), None],
                        flagged: vec![false, false],
                    },
                    BarSeries {
                        name: "b (inexact)".into(),
                        color: 1,
                        hollow: true,
                        values: vec![Some(1.5), Some(3.0)],
                        flagged: vec![false, true],
                    },
                ],
                stacked: false,
                hline: Some((2.5, "roofline".into())),
                ref_one: true,
            }),
        };
        chart.render(&dir).unwrap();
        let svg = std::fs::read_to_string(dir.join("t.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("2560x2560") && svg.contains("roofline"));
        let png = std::fs::read(dir.join("t.png")).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        let lines = Chart {
            slug: "l".into(),
            title: "tokens/s".into(),
            caption: String::new(),
            body: Body::Lines(Lines {
                x_desc: "threads".into(),
                y_desc: "tokens/s".into(),
                series: vec![LineData {
                    name: "a".into(),
                    color: 2,
                    hollow: true,
                    points: vec![(1.0, 10.0), (2.0, 18.0)],
                }],
            }),
        };
        lines.render(&dir).unwrap();
        assert!(dir.join("l.png").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
