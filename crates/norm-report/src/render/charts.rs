//! Chart panels on Cartesian axes, written as SVG: histograms with density overlays,
//! scatter plots, line charts (each axis linear or log) and grouped bars. Legends sit
//! under the plot, never over data. Points, bars and bins carry `<title>` tooltips with
//! their exact values. Non-plottable values (NaN, ±inf, and values ≤ 0 on a log axis)
//! are skipped and counted in a note under the chart.

use norm_experiments::result::{
    BarSeries, HistogramSeries, LineSeries, LineStyle, Panel, Scale, ScatterSeries,
};

use super::style::{
    Rgb, axis_range, exact, format_value, linear_ticks, log_ticks, plottable, series_color, ticks,
};
use super::svg::{Anchor, Font, Svg, fit, text_width, wrap};
use super::{PANEL_W, PanelSvg};

/// Most points drawn per scatter series; larger series are thinned with a fixed stride
/// (the legend says so; the CSV keeps every point).
pub const MAX_POINTS: usize = 1500;

/// Height of the plotting rectangle.
const PLOT_H: f64 = 270.0;
/// Overlay line colours in histogram panels (dark, to stand out from the bars).
const OVERLAY: [Rgb; 3] = [Rgb(20, 20, 20), Rgb(170, 20, 20), Rgb(20, 20, 170)];
const GRID: Rgb = Rgb(228, 228, 228);
const FRAME: Rgb = Rgb(120, 120, 120);
const NOTE: Rgb = Rgb(85, 85, 85);

fn title_font() -> Font {
    Font::new(19.0).bold()
}
fn tick_font() -> Font {
    Font::new(16.0).color(Rgb(51, 51, 51))
}
fn label_font() -> Font {
    Font::new(17.0)
}
fn legend_font() -> Font {
    Font::new(16.0)
}

/// One axis: its data range and scale.
#[derive(Clone, Copy)]
struct Axis {
    range: (f64, f64),
    scale: Scale,
}

impl Axis {
    /// Position of `v` as a fraction of the axis (log space on log axes).
    fn frac(&self, v: f64) -> f64 {
        super::style::fraction(v, self.range, self.scale)
    }

    fn contains(&self, v: f64) -> bool {
        plottable(v, self.scale) && v >= self.range.0 && v <= self.range.1
    }

    /// `(value, label, grid only)` ticks.
    fn ticks(&self, target: usize) -> Vec<(f64, String, bool)> {
        let format = ticks(self.range, self.scale);
        match self.scale {
            Scale::Linear => linear_ticks(self.range.0, self.range.1, target)
                .into_iter()
                .map(|v| (v, format(&v), false))
                .collect(),
            Scale::Log => {
                let (bold, light) = log_ticks(self.range.0, self.range.1);
                bold.into_iter()
                    .map(|v| (v, format(&v), false))
                    .chain(light.into_iter().map(|v| (v, String::new(), true)))
                    .collect()
            }
        }
    }
}

/// A legend entry's glyph.
#[derive(Clone, Copy)]
pub(super) enum Glyph {
    Dot,
    Square(f64),
    Line(LineStyle),
}

/// A panel being laid out: title, plot rectangle, axes, and what goes under the plot.
struct Chart<'a> {
    panel: &'a Panel,
    svg: Svg,
    left: f64,
    top: f64,
    right: f64,
    bottom: f64,
    x: Axis,
    y: Axis,
}

impl<'a> Chart<'a> {
    /// Writes the title and lays out the plot rectangle for these axes; `x_ticks` false
    /// leaves the x tick labels to the caller (bar categories).
    fn new(panel: &'a Panel, x: Axis, y: Axis) -> Self {
        let mut svg = Svg::new();
        let top = title(&mut svg, &panel.title);
        let y_ticks = y.ticks(6);
        let tick_w = y_ticks
            .iter()
            .map(|t| text_width(&t.1, tick_font()))
            .fold(0.0, f64::max);
        let left = 10.0 + 22.0 * y_label_lines(&panel.y_label, PLOT_H).len() as f64 + tick_w + 8.0;
        Self {
            panel,
            svg,
            left,
            top,
            right: PANEL_W - 20.0,
            bottom: top + PLOT_H,
            x,
            y,
        }
    }

    fn px(&self, v: f64) -> f64 {
        self.left + self.x.frac(v) * (self.right - self.left)
    }

    fn py(&self, v: f64) -> f64 {
        self.bottom - self.y.frac(v) * (self.bottom - self.top)
    }

    /// Grid, frame, tick labels and axis labels; returns the y below the x axis label.
    /// Without `x_ticks`, `reserved` units stay free under the axis (bar categories).
    fn axes(&mut self, x_ticks: bool, reserved: f64) -> f64 {
        let (l, r, t, b) = (self.left, self.right, self.top, self.bottom);
        for (v, label, light) in self.y.ticks(6) {
            if !self.y.contains(v) {
                continue;
            }
            let y = self.py(v);
            self.svg.line(
                (l, y),
                (r, y),
                if light { Rgb(243, 243, 243) } else { GRID },
                1.0,
                None,
            );
            if !label.is_empty() {
                self.svg
                    .text(l - 6.0, y + 5.5, &label, tick_font(), Anchor::End, 0.0);
            }
        }
        let mut below = b + reserved;
        if x_ticks {
            // As many x ticks as fit side by side.
            let mut target = 6;
            let mut xt = self.x.ticks(target);
            while target > 2 {
                let widest = xt
                    .iter()
                    .map(|t| text_width(&t.1, tick_font()))
                    .fold(0.0, f64::max);
                let shown = xt.iter().filter(|t| !t.1.is_empty()).count().max(1) as f64;
                if widest * shown * 1.3 < r - l {
                    break;
                }
                target -= 1;
                xt = self.x.ticks(target);
            }
            for (v, label, light) in xt {
                if !self.x.contains(v) {
                    continue;
                }
                let x = self.px(v);
                self.svg.line(
                    (x, t),
                    (x, b),
                    if light { Rgb(243, 243, 243) } else { GRID },
                    1.0,
                    None,
                );
                if !label.is_empty() {
                    self.svg
                        .text(x, b + 21.0, &label, tick_font(), Anchor::Middle, 0.0);
                }
            }
            below = b + 24.0;
        }
        self.svg.rect((l, t, r - l, b - t), None, Some(FRAME), None);
        if !self.panel.x_label.is_empty() {
            let f = fit(&self.panel.x_label, label_font(), PANEL_W - 20.0);
            self.svg.text(
                (l + r) / 2.0,
                below + 24.0,
                &self.panel.x_label,
                f,
                Anchor::Middle,
                0.0,
            );
            below += 30.0;
        }
        y_label(&mut self.svg, &self.panel.y_label, (t + b) / 2.0, b - t);
        below
    }

    /// Legend rows and notes under the plot; returns the finished panel.
    fn finish(mut self, below: f64, legend: &[(Glyph, Rgb, String)], notes: &[String]) -> PanelSvg {
        let mut y = legend_rows(&mut self.svg, below + 6.0, legend);
        for note in notes {
            for line in wrap(note, legend_font().color(NOTE), PANEL_W - 20.0) {
                y += 22.0;
                self.svg
                    .text(10.0, y, &line, legend_font().color(NOTE), Anchor::Start, 0.0);
            }
        }
        PanelSvg {
            body: self.svg.into_body(),
            width: PANEL_W,
            height: (y + 12.0).ceil(),
        }
    }
}

/// A y-axis label in one line, or two if it is longer than the axis (`height`) allows.
pub(super) fn y_label_lines(label: &str, height: f64) -> Vec<String> {
    if label.is_empty() {
        return vec![];
    }
    let lines = wrap(label, label_font(), height + 30.0);
    if lines.len() <= 1 {
        lines
    } else {
        // Two balanced lines: break at the space nearest the middle.
        let mid = label.len() / 2;
        let cut = label
            .match_indices(' ')
            .map(|(i, _)| i)
            .min_by_key(|&i| i.abs_diff(mid))
            .unwrap_or(mid);
        vec![label[..cut].to_string(), label[cut + 1..].to_string()]
    }
}

/// Writes the rotated y-axis label left of a plot centred at `mid`.
pub(super) fn y_label(svg: &mut Svg, label: &str, mid: f64, height: f64) {
    for (k, line) in y_label_lines(label, height).iter().enumerate() {
        let f = fit(line, label_font(), height + 30.0);
        svg.text(22.0 + 22.0 * k as f64, mid, line, f, Anchor::Middle, -90.0);
    }
}

/// Writes a (wrapped) bold panel title; returns the y where the content may start.
pub(super) fn title(svg: &mut Svg, text: &str) -> f64 {
    let mut y = 8.0;
    for line in wrap(text, title_font(), PANEL_W - 24.0) {
        y += 24.0;
        svg.text(PANEL_W / 2.0, y, &line, title_font(), Anchor::Middle, 0.0);
    }
    y + 14.0
}

/// Legend entries in rows (wrapping at the panel width) from `y`; returns the y of the
/// last row's baseline area bottom.
pub(super) fn legend_rows(svg: &mut Svg, y: f64, items: &[(Glyph, Rgb, String)]) -> f64 {
    let items: Vec<_> = items.iter().filter(|i| !i.2.is_empty()).collect();
    if items.is_empty() {
        return y;
    }
    let font = legend_font();
    let max_w = PANEL_W - 24.0;
    // Each row: (item, its wrapped label lines, its width).
    type Placed<'a> = (&'a (Glyph, Rgb, String), Vec<String>, f64);
    let mut rows: Vec<Vec<Placed<'_>>> = vec![Vec::new()];
    let mut used = 0.0;
    for item in items {
        let lines = wrap(&item.2, font, max_w - 30.0);
        let w = 30.0 + lines.iter().map(|l| text_width(l, font)).fold(0.0, f64::max) + 18.0;
        if used + w > max_w && used > 0.0 {
            rows.push(Vec::new());
            used = 0.0;
        }
        used += w;
        if let Some(row) = rows.last_mut() {
            row.push((item, lines, w));
        }
    }
    let mut y = y;
    for row in rows {
        let total: f64 = row.iter().map(|e| e.2).sum::<f64>() - 18.0;
        let mut x = ((PANEL_W - total) / 2.0).max(12.0);
        let height = row.iter().map(|e| e.1.len()).max().unwrap_or(1) as f64 * 21.0;
        let cy = y + 14.0;
        for ((glyph, color, _), lines, w) in row {
            draw_glyph(svg, *glyph, *color, x, cy);
            for (k, line) in lines.iter().enumerate() {
                svg.text(
                    x + 30.0,
                    cy + 5.5 + 21.0 * k as f64,
                    line,
                    font,
                    Anchor::Start,
                    0.0,
                );
            }
            x += w;
        }
        y += height + 4.0;
    }
    y
}

fn draw_glyph(svg: &mut Svg, glyph: Glyph, color: Rgb, x: f64, cy: f64) {
    match glyph {
        Glyph::Dot => svg.circle(x + 11.0, cy, 5.0, color, 1.0, None),
        Glyph::Square(opacity) => {
            svg.raw(&format!(
                r#"<rect x="{}" y="{}" width="22" height="14" fill="{}" fill-opacity="{}"/>"#,
                super::svg::n(x),
                super::svg::n(cy - 7.0),
                color.hex(),
                super::svg::n(opacity)
            ));
        }
        Glyph::Line(style) => {
            let dash = (style == LineStyle::Dashed).then_some("7 4");
            svg.line((x, cy), (x + 22.0, cy), color, 2.5, dash);
            if style == LineStyle::Markers {
                svg.circle(x + 11.0, cy, 4.0, color, 1.0, None);
            }
        }
    }
}

/// `(x, y)` pairs of one series that can be drawn on these axes.
fn pairs(x: &[f64], y: &[f64], xs: Scale, ys: Scale) -> Vec<(f64, f64)> {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| (a, b))
        .filter(|&(a, b)| plottable(a, xs) && plottable(b, ys))
        .collect()
}

/// The note under a chart saying how many values could not be drawn.
fn skipped_note(nonpositive: usize, nonfinite: usize) -> Vec<String> {
    let mut parts = Vec::new();
    if nonpositive > 0 {
        parts.push(format!("{nonpositive} value(s) ≤ 0 on the log axis"));
    }
    if nonfinite > 0 {
        parts.push(format!("{nonfinite} non-finite value(s)"));
    }
    if parts.is_empty() {
        vec![]
    } else {
        vec![format!("Not shown: {}.", parts.join(", "))]
    }
}

fn dash(style: LineStyle) -> Option<&'static str> {
    (style == LineStyle::Dashed).then_some("8 5")
}

/// Draws a polyline clipped to the axes (points outside are dropped), with markers
/// carrying tooltips when its style asks for them.
fn draw_line(c: &mut Chart<'_>, pts: &[(f64, f64)], color: Rgb, style: LineStyle, label: &str) {
    let px: Vec<(f64, f64)> = pts.iter().map(|&(x, y)| (c.px(x), c.py(y))).collect();
    let name = if label.is_empty() { "line" } else { label };
    c.svg.polyline(&px, color, 2.5, dash(style), Some(name));
    if style == LineStyle::Markers {
        for (&(x, y), &(a, b)) in pts.iter().zip(&px) {
            let tip = format!("{name}: x = {}, y = {}", exact(x), exact(y));
            c.svg.circle(a, b, 4.0, color, 1.0, Some(&tip));
        }
    }
}

/// Scatter and line charts: point clouds first, then lines, on linear or log axes.
pub(super) fn xy(
    panel: &Panel,
    points: &[ScatterSeries],
    lines: &[LineSeries],
    xs: Scale,
    ys: Scale,
) -> PanelSvg {
    let pts: Vec<Vec<(f64, f64)>> = points.iter().map(|s| pairs(&s.x, &s.y, xs, ys)).collect();
    let lns: Vec<Vec<(f64, f64)>> = lines.iter().map(|s| pairs(&s.x, &s.y, xs, ys)).collect();
    let all = || pts.iter().chain(&lns).flatten();
    let x = Axis {
        range: axis_range(all().map(|p| p.0), xs, 0.03),
        scale: xs,
    };
    let y = Axis {
        range: axis_range(all().map(|p| p.1), ys, 0.06),
        scale: ys,
    };
    let mut c = Chart::new(panel, x, y);
    let below = c.axes(true, 0.0);
    // A log axis may cut off values far below the rest (see MAX_DECADES).
    let inside = |&&(a, b): &&(f64, f64)| x.contains(a) && y.contains(b);
    let mut legend = Vec::new();
    for (i, (s, p)) in points.iter().zip(&pts).enumerate() {
        let color = series_color(i);
        let stride = p.len().div_ceil(MAX_POINTS).max(1);
        let radius = if p.len() > 800 { 2.5 } else { 3.5 };
        let name = if s.label.is_empty() {
            "point"
        } else {
            s.label.as_str()
        };
        for &(a, b) in p.iter().step_by(stride).filter(|q| inside(q)) {
            let tip = format!("{name}: x = {}, y = {}", exact(a), exact(b));
            let (cx, cy) = (c.px(a), c.py(b));
            c.svg.circle(cx, cy, radius, color, 0.55, Some(&tip));
        }
        let label = if stride > 1 && !s.label.is_empty() {
            format!("{} (1 in {stride} of {} points shown)", s.label, p.len())
        } else {
            s.label.clone()
        };
        legend.push((Glyph::Dot, color, label));
    }
    for (j, (l, p)) in lines.iter().zip(&lns).enumerate() {
        let color = series_color(points.len() + j);
        let p: Vec<(f64, f64)> = p.iter().filter(|q| inside(q)).copied().collect();
        draw_line(&mut c, &p, color, l.style, &l.label);
        legend.push((Glyph::Line(l.style), color, l.label.clone()));
    }
    if legend.len() < 2 {
        legend.clear();
    }
    let all_pairs = || {
        points
            .iter()
            .flat_map(|s| s.x.iter().zip(&s.y))
            .chain(lines.iter().flat_map(|l| l.x.iter().zip(&l.y)))
    };
    let nonfinite = all_pairs()
        .filter(|(a, b)| !a.is_finite() || !b.is_finite())
        .count();
    let outside = all_pairs()
        .filter(|(a, b)| a.is_finite() && b.is_finite())
        .filter(|&(&a, &b)| !(x.contains(a) && y.contains(b)))
        .count();
    c.finish(below, &legend, &skipped_note(outside, nonfinite))
}

/// Histograms as semi-transparent density bars, with overlay curves on top.
pub(super) fn histogram(panel: &Panel, series: &[HistogramSeries], overlays: &[LineSeries]) -> PanelSvg {
    let bins: Vec<Vec<(f64, f64, f64)>> = series
        .iter()
        .map(|s| {
            s.edges
                .windows(2)
                .zip(&s.density)
                .map(|(e, &d)| (e[0], e[1], d))
                .filter(|&(a, b, d)| a.is_finite() && b.is_finite() && d.is_finite() && b > a)
                .collect()
        })
        .collect();
    let xr = if bins.iter().all(Vec::is_empty) {
        axis_range(
            overlays.iter().flat_map(|l| l.x.iter().copied()),
            Scale::Linear,
            0.0,
        )
    } else {
        axis_range(
            bins.iter().flatten().flat_map(|&(a, b, _)| [a, b]),
            Scale::Linear,
            0.0,
        )
    };
    let lns: Vec<Vec<(f64, f64)>> = overlays
        .iter()
        .map(|l| {
            pairs(&l.x, &l.y, Scale::Linear, Scale::Linear)
                .into_iter()
                .filter(|&(x, _)| x >= xr.0 && x <= xr.1)
                .collect()
        })
        .collect();
    let top = bins
        .iter()
        .flatten()
        .map(|b| b.2)
        .chain(lns.iter().flatten().map(|p| p.1))
        .fold(0.0f64, f64::max);
    let x = Axis {
        range: xr,
        scale: Scale::Linear,
    };
    let y = Axis {
        range: (0.0, if top > 0.0 { top * 1.08 } else { 1.0 }),
        scale: Scale::Linear,
    };
    let mut c = Chart::new(panel, x, y);
    let below = c.axes(true, 0.0);
    let mut legend = Vec::new();
    for (i, (s, b)) in series.iter().zip(&bins).enumerate() {
        let color = series_color(i);
        let name = if s.label.is_empty() {
            "bin"
        } else {
            s.label.as_str()
        };
        c.svg
            .open_group(&format!(r#"fill="{}" fill-opacity="0.5""#, color.hex()));
        for &(lo, hi, d) in b {
            let (x0, x1, y0) = (c.px(lo), c.px(hi), c.py(d.max(0.0)));
            let tip = format!("{name}: [{}, {}) density {}", exact(lo), exact(hi), exact(d));
            c.svg.raw(&format!(
                r#"<rect x="{}" y="{}" width="{}" height="{}"><title>{}</title></rect>"#,
                super::svg::n(x0),
                super::svg::n(y0),
                super::svg::n((x1 - x0).max(0.0)),
                super::svg::n((c.bottom - y0).max(0.0)),
                super::svg::escape(&tip)
            ));
        }
        c.svg.close_group();
        legend.push((Glyph::Square(0.5), color, s.label.clone()));
    }
    for (j, (l, p)) in overlays.iter().zip(&lns).enumerate() {
        let color = OVERLAY[j % OVERLAY.len()];
        draw_line(&mut c, p, color, l.style, &l.label);
        legend.push((Glyph::Line(l.style), color, l.label.clone()));
    }
    if legend.len() < 2 {
        legend.clear();
    }
    c.finish(below, &legend, &[])
}

/// Grouped bars: one group per category, one bar per series, on a linear or log y axis.
/// A bar too short to see is labelled with its value.
pub(super) fn bars(panel: &Panel, categories: &[String], series: &[BarSeries], ys: Scale) -> PanelSvg {
    let n = categories.len().max(1);
    let values = || series.iter().flat_map(|s| s.values.iter().copied());
    let yr = match ys {
        Scale::Linear => {
            let (lo, hi) = axis_range(values().chain([0.0]), Scale::Linear, 0.0);
            let span = hi - lo;
            (
                if lo < 0.0 { lo - 0.06 * span } else { lo },
                if hi > 0.0 { hi + 0.08 * span } else { hi },
            )
        }
        Scale::Log => axis_range(values(), Scale::Log, 0.08),
    };
    let x = Axis {
        range: (-0.5, n as f64 - 0.5),
        scale: Scale::Linear,
    };
    let y = Axis { range: yr, scale: ys };
    let mut c = Chart::new(panel, x, y);
    // Category labels, wrapped to their group's width, under the axis.
    let slot = (c.right - c.left) / n as f64;
    let cat_font = tick_font();
    let labels: Vec<Vec<String>> = categories.iter().map(|s| wrap(s, cat_font, slot - 6.0)).collect();
    let lines = labels.iter().map(Vec::len).max().unwrap_or(1);
    let below = c.axes(false, 6.0 + 20.0 * lines as f64);
    for (i, lines) in labels.iter().enumerate() {
        let cx = c.px(i as f64);
        for (k, line) in lines.iter().enumerate() {
            c.svg.text(
                cx,
                c.bottom + 21.0 + 20.0 * k as f64,
                line,
                cat_font,
                Anchor::Middle,
                0.0,
            );
        }
    }
    let base = match ys {
        Scale::Linear => 0.0,
        Scale::Log => yr.0,
    };
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    let mut legend = Vec::new();
    for (j, s) in series.iter().enumerate() {
        let color = series_color(j);
        for (i, &v) in s.values.iter().enumerate() {
            let Some(cat) = categories.get(i) else { continue };
            if !(plottable(v, ys) && v >= yr.0) {
                continue;
            }
            let x0 = c.px(i as f64 - 0.4 + j as f64 * width);
            let x1 = c.px(i as f64 - 0.4 + (j as f64 + 0.92) * width);
            let (yb, yv) = (c.py(base), c.py(v));
            let (top, h) = (yb.min(yv), (yb - yv).abs());
            let tip = if s.label.is_empty() {
                format!("{cat}: {}", exact(v))
            } else {
                format!("{}, {cat}: {}", s.label, exact(v))
            };
            c.svg
                .rect((x0, top, x1 - x0, h.max(0.5)), Some(color), None, Some(&tip));
            if h < 3.0 {
                let label = format_value(v);
                let f = tick_font().color(NOTE);
                if text_width(&label, f) < slot / k + 24.0 {
                    c.svg
                        .text((x0 + x1) / 2.0, top - 5.0, &label, f, Anchor::Middle, 0.0);
                }
            }
        }
        legend.push((Glyph::Square(1.0), color, s.label.clone()));
    }
    if legend.len() < 2 {
        legend.clear();
    }
    let nonfinite = values().filter(|v| !v.is_finite()).count();
    let nonpositive = values()
        .filter(|&v| v.is_finite() && ys == Scale::Log && v < yr.0)
        .count();
    c.finish(below, &legend, &skipped_note(nonpositive, nonfinite))
}
