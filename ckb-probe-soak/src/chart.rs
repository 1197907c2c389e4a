//! SVG charts with `plotters` (SVG backend only: text is left to the viewer's fonts).
//!
//! Log-scaled axes are drawn as log10 of the value on a linear axis with `10^x` labels: one
//! coordinate type for every chart keeps this module small.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

pub const BLUE: RGBColor = RGBColor(31, 119, 180);
pub const ORANGE: RGBColor = RGBColor(255, 127, 14);
pub const GREEN: RGBColor = RGBColor(44, 160, 44);
pub const RED: RGBColor = RGBColor(214, 39, 40);
pub const PURPLE: RGBColor = RGBColor(148, 103, 189);
pub const BROWN: RGBColor = RGBColor(140, 86, 75);
pub const GREY: RGBColor = RGBColor(127, 127, 127);
pub const PALETTE: [RGBColor; 7] = [BLUE, ORANGE, GREEN, RED, PURPLE, BROWN, GREY];
const SHADE: RGBColor = RGBColor(255, 220, 200);

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    Line,
    Dots,
}

#[derive(Clone, Debug)]
pub struct Series {
    pub label: String,
    pub color: RGBColor,
    pub style: Style,
    pub points: Vec<(f64, f64)>,
}

impl Series {
    pub fn line(label: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.into(),
            color,
            style: Style::Line,
            points,
        }
    }

    pub fn dots(label: impl Into<String>, color: RGBColor, points: Vec<(f64, f64)>) -> Series {
        Series {
            label: label.into(),
            color,
            style: Style::Dots,
            points,
        }
    }
}

/// One chart area: series over a shared x axis, with shaded spans and labelled vertical marks.
#[derive(Clone, Debug, Default)]
pub struct Panel {
    pub title: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub log_y: bool,
    /// x spans to shade (storms).
    pub shade: Vec<(f64, f64)>,
    /// Vertical lines with a label (alerts).
    pub marks: Vec<(f64, String)>,
    /// Horizontal threshold lines with a label.
    pub hlines: Vec<(f64, String)>,
    /// Force the y range to start at zero (linear axes).
    pub y_from_zero: bool,
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

fn tf(log: bool, v: f64) -> Option<f64> {
    if log {
        (v > 0.0).then(|| v.log10())
    } else {
        Some(v)
    }
}

fn fmt_tick(v: f64) -> String {
    let a = v.abs();
    if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 || v == v.trunc() {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// Panels stacked vertically over the same x axis, into an SVG file.
pub fn stacked(path: &Path, x_label: &str, panels: &[Panel], width: u32) -> Result<()> {
    let height = 300 * panels.len() as u32;
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let areas = root.split_evenly((panels.len(), 1));
    let xs = panels
        .iter()
        .flat_map(|p| p.series.iter().flat_map(|s| s.points.iter().map(|q| q.0)))
        .chain(
            panels
                .iter()
                .flat_map(|p| p.shade.iter().flat_map(|s| [s.0, s.1])),
        );
    let (mut x0, mut x1) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
        (a.min(x), b.max(x))
    });
    if !x0.is_finite() {
        (x0, x1) = (0.0, 1.0);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    for (area, p) in areas.iter().zip(panels) {
        draw_panel(area, p, x_label, x0, x1)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    p: &Panel,
    x_label: &str,
    x0: f64,
    x1: f64,
) -> Result<()> {
    let ys: Vec<f64> = p
        .series
        .iter()
        .flat_map(|s| s.points.iter().filter_map(|q| tf(p.log_y, q.1)))
        .chain(p.hlines.iter().filter_map(|h| tf(p.log_y, h.0)))
        .collect();
    let (mut y0, mut y1) = ys
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &y| {
            (a.min(y), b.max(y))
        });
    if !y0.is_finite() {
        (y0, y1) = (0.0, 1.0);
    }
    if p.y_from_zero && !p.log_y {
        y0 = y0.min(0.0);
    }
    let pad = ((y1 - y0) * 0.08).max(if p.log_y { 0.1 } else { 1e-3 });
    let (y0, y1) = if p.log_y {
        (y0.floor(), (y1 + pad).ceil())
    } else if p.y_from_zero {
        (y0, y1 + pad)
    } else {
        (y0 - pad, y1 + pad)
    };
    let log = p.log_y;
    let mut chart = ChartBuilder::on(area)
        .caption(&p.title, ("sans-serif", 18))
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    let y_fmt = move |v: &f64| {
        if log {
            fmt_tick(10f64.powf(*v))
        } else {
            fmt_tick(*v)
        }
    };
    let x_fmt = |v: &f64| fmt_tick(*v);
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_label)
        .y_desc(p.y_label.as_str())
        .y_label_formatter(&y_fmt)
        .x_label_formatter(&x_fmt)
        .light_line_style(WHITE.mix(0.0));
    if log {
        mesh.y_labels(((y1 - y0) as usize + 1).max(2));
    }
    mesh.draw().map_err(err)?;
    for &(a, b) in &p.shade {
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(a, y0), (b, y1)],
                SHADE.mix(0.6).filled(),
            )))
            .map_err(err)?;
    }
    for (v, label) in &p.hlines {
        let Some(v) = tf(log, *v) else { continue };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(x0, v), (x1, v)],
                RED.mix(0.7).stroke_width(1),
            )))
            .map_err(err)?
            .label(label.as_str())
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], RED));
    }
    for s in &p.series {
        let pts: Vec<(f64, f64)> = s
            .points
            .iter()
            .filter_map(|&(x, y)| tf(log, y).map(|y| (x, y)))
            .collect();
        let color = s.color;
        match s.style {
            Style::Line => chart
                .draw_series(LineSeries::new(pts, color.stroke_width(1)))
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2))
                }),
            Style::Dots => chart
                .draw_series(
                    pts.into_iter()
                        .map(move |q| Circle::new(q, 3, color.filled())),
                )
                .map_err(err)?
                .label(s.label.as_str())
                .legend(move |(x, y)| Circle::new((x + 8, y), 3, color.filled())),
        };
    }
    for (x, label) in &p.marks {
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(*x, y0), (*x, y1)],
                BLACK.stroke_width(1),
            )))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(
                label.clone(),
                (*x, y1 - (y1 - y0) * 0.04),
                ("sans-serif", 12).into_font().color(&BLACK),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK.mix(0.3))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// A latency distribution: bars per power of two (left) and the cumulative distribution
/// (right). `buckets` are (power of two of the lower bound in ns, count).
pub fn histogram_cdf(path: &Path, title: &str, buckets: &[(u32, u64)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 300)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let (left, right) = root.split_horizontally(450);
    let total: u64 = buckets.iter().map(|b| b.1).sum();
    let lo = buckets.iter().map(|b| b.0).min().unwrap_or(0) as f64;
    let hi = buckets.iter().map(|b| b.0).max().unwrap_or(1) as f64 + 1.0;
    let label = |v: &f64| pow2_label(*v);
    // Bars: log10 of the count, so a few slow calls stay visible next to millions of fast ones.
    let ymax = buckets
        .iter()
        .map(|b| (b.1 as f64).log10())
        .fold(0.0, f64::max)
        .ceil()
        + 0.5;
    let mut c = ChartBuilder::on(&left)
        .caption(
            format!("{title}: calls per latency bucket"),
            ("sans-serif", 15),
        )
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(lo..hi, 0f64..ymax)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("latency (bucket lower bound)")
        .y_desc("calls")
        .x_label_formatter(&label)
        .y_label_formatter(&|v| fmt_tick(10f64.powf(*v)))
        .x_labels(((hi - lo) as usize / 2).max(2) + 1)
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(err)?;
    c.draw_series(buckets.iter().filter(|b| b.1 > 0).map(|&(p, n)| {
        Rectangle::new(
            [
                (p as f64 + 0.05, 0.0),
                (p as f64 + 0.95, (n as f64).log10().max(0.05)),
            ],
            BLUE.filled(),
        )
    }))
    .map_err(err)?;
    let mut c = ChartBuilder::on(&right)
        .caption(
            format!("{title}: cumulative distribution"),
            ("sans-serif", 15),
        )
        .margin(8)
        .x_label_area_size(36)
        .y_label_area_size(48)
        .build_cartesian_2d(lo..hi, 0f64..1.02)
        .map_err(err)?;
    c.configure_mesh()
        .x_desc("latency (bucket upper bound)")
        .y_desc("fraction of calls")
        .light_line_style(WHITE.mix(0.0))
        .x_label_formatter(&label)
        .x_labels(((hi - lo) as usize / 2).max(2) + 1)
        .draw()
        .map_err(err)?;
    let mut acc = 0u64;
    let mut pts = vec![(lo, 0.0)];
    for &(p, n) in buckets {
        acc += n;
        pts.push((p as f64 + 1.0, acc as f64 / total.max(1) as f64));
    }
    c.draw_series(LineSeries::new(pts.clone(), ORANGE.stroke_width(2)))
        .map_err(err)?;
    c.draw_series(pts.into_iter().map(|q| Circle::new(q, 2, ORANGE.filled())))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// `2^p` nanoseconds, readable.
pub fn pow2_label(p: f64) -> String {
    let ns = 2f64.powf(p.round());
    if ns >= 1e9 {
        format!("{:.0}s", ns / 1e9)
    } else if ns >= 1e6 {
        format!("{:.0}ms", ns / 1e6)
    } else if ns >= 1e3 {
        format!("{:.0}µs", ns / 1e3)
    } else {
        format!("{ns:.0}ns")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels() {
        assert_eq!(fmt_tick(12_500.0), "12k");
        assert_eq!(fmt_tick(3.25), "3.2");
        assert_eq!(fmt_tick(42.0), "42");
        assert_eq!(pow2_label(10.0), "1µs");
        assert_eq!(pow2_label(20.0), "1ms");
    }

    #[test]
    fn writes_svg() {
        let dir = std::env::temp_dir().join(format!("ckb-probe-soak-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.svg");
        let panel = Panel {
            title: "t".into(),
            y_label: "y".into(),
            series: vec![Series::line("s", BLUE, vec![(0.0, 1.0), (1.0, 100.0)])],
            log_y: true,
            shade: vec![(0.2, 0.4)],
            marks: vec![(0.3, "alert".into())],
            hlines: vec![(50.0, "limit".into())],
            y_from_zero: false,
        };
        stacked(&p, "minutes", &[panel], 600).unwrap();
        let svg = std::fs::read_to_string(&p).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("alert") && svg.contains("limit"));
        let h = dir.join("h.svg");
        histogram_cdf(&h, "GET", &[(10, 5), (11, 100), (14, 1)]).unwrap();
        assert!(std::fs::read_to_string(&h).unwrap().contains("cumulative"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
