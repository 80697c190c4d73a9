//! Chart panels drawn on Cartesian axes: histograms with density overlays, scatter
//! plots, line charts (each axis linear or log) and grouped bars. Non-plottable values
//! (NaN, ±inf, and values <= 0 on a log axis) are skipped.

use norm_experiments::result::{
    BarSeries, HistogramSeries, LineSeries as Polyline, LineStyle, Panel, Scale, ScatterSeries,
};
use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fit_font;
use super::style::{FAMILY, axis_range, fraction, log_ticks, plottable, series_color, ticks};
use crate::ReportError;

/// Most points drawn per scatter series; larger series are thinned with a fixed stride
/// (the legend says so; the CSV keeps every point).
const MAX_POINTS: usize = 4000;

/// Panels with more legend entries than this get their legend under the chart.
const EXTERNAL_LEGEND_AFTER: usize = 4;

/// Overlay line colours in histogram panels (dark, to stand out from the bars).
const OVERLAY: [RGBColor; 3] = [RGBColor(20, 20, 20), RGBColor(170, 20, 20), RGBColor(20, 20, 170)];

/// A chart builder with the panel's title as caption and room for tick and axis labels.
fn builder<'a, 'b, DB: DrawingBackend>(
    area: &'a DrawingArea<DB, Shift>,
    title: &'b str,
) -> Result<ChartBuilder<'a, 'b, DB>, ReportError>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let size = fit_font(area, title, 17.0, w.saturating_sub(24))?;
    let mut b = ChartBuilder::on(area);
    b.caption(title, (FAMILY, size).into_font().style(FontStyle::Bold))
        .margin(10)
        .margin_right(20)
        .x_label_area_size(44)
        .y_label_area_size(64);
    Ok(b)
}

/// Draws the grid, tick labels and axis descriptions.
fn mesh<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    panel: &Panel,
    x_format: &dyn Fn(&f64) -> String,
    y_format: &dyn Fn(&f64) -> String,
    x_labels: usize,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_labels(x_labels)
        .y_labels(7)
        .x_label_formatter(x_format)
        .y_label_formatter(y_format)
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 14))
        .bold_line_style(RGBColor(220, 220, 220))
        .light_line_style(RGBColor(242, 242, 242))
        .max_light_lines(4)
        .draw()?;
    Ok(())
}

/// Legend corner with the fewest data points under it (ties: upper right first).
fn legend_corner(points: &[(f64, f64)]) -> SeriesLabelPosition {
    legend_corner_sized(points, 0.45, 0.38).0
}

/// The corner whose `w × h` box (fractions of the plot) covers the fewest points, and
/// that count (ties: upper right, upper left, lower right, lower left).
fn legend_corner_sized(points: &[(f64, f64)], w: f64, h: f64) -> (SeriesLabelPosition, usize) {
    let corners = [
        (SeriesLabelPosition::UpperRight, 1.0 - w, 1.0, 1.0 - h, 1.0),
        (SeriesLabelPosition::UpperLeft, 0.0, w, 1.0 - h, 1.0),
        (SeriesLabelPosition::LowerRight, 1.0 - w, 1.0, 0.0, h),
        (SeriesLabelPosition::LowerLeft, 0.0, w, 0.0, h),
    ];
    let mut best = (SeriesLabelPosition::UpperRight, usize::MAX);
    for (pos, x0, x1, y0, y1) in corners {
        let n = points
            .iter()
            .filter(|&&(x, y)| x >= x0 && x <= x1 && y >= y0 && y <= y1)
            .count();
        if n < best.1 {
            best = (pos, n);
        }
    }
    best
}

fn draw_legend<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    corner: SeriesLabelPosition,
    entries: usize,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    chart
        .configure_series_labels()
        .position(corner)
        .margin(8)
        .label_font((FAMILY, if entries > 5 { 11 } else { 12 }))
        .background_style(WHITE.mix(0.85))
        .border_style(RGBColor(160, 160, 160))
        .draw()?;
    Ok(())
}

/// `(x, y)` pairs of one series that can be drawn on these scales.
fn pairs(x: &[f64], y: &[f64], xs: Scale, ys: Scale) -> Vec<(f64, f64)> {
    x.iter()
        .zip(y)
        .map(|(&a, &b)| (a, b))
        .filter(|&(a, b)| plottable(a, xs) && plottable(b, ys))
        .collect()
}

/// Draws one polyline in the given style, with a matching legend entry.
fn draw_line<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    pts: Vec<(f64, f64)>,
    color: RGBColor,
    style: LineStyle,
    label: &str,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    let stroke = color.stroke_width(2);
    let anno = match style {
        LineStyle::Solid => chart.draw_series(LineSeries::new(pts, stroke))?,
        LineStyle::Dashed => chart.draw_series(DashedLineSeries::new(pts, 7, 5, stroke))?,
        LineStyle::Markers => chart.draw_series(LineSeries::new(pts, stroke).point_size(3))?,
    };
    if !label.is_empty() {
        let seg = move |a: i32, b: i32, y: i32| PathElement::new(vec![(a, y), (b, y)], color.stroke_width(2));
        match style {
            LineStyle::Solid => {
                anno.label(label).legend(move |(x, y)| seg(x, x + 18, y));
            }
            LineStyle::Dashed => {
                anno.label(label)
                    .legend(move |(x, y)| EmptyElement::at((x, y)) + seg(0, 7, 0) + seg(11, 18, 0));
            }
            LineStyle::Markers => {
                anno.label(label).legend(move |(x, y)| {
                    EmptyElement::at((x, y)) + seg(0, 18, 0) + Circle::new((9, 0), 3, color.filled())
                });
            }
        }
    }
    Ok(())
}

/// Scatter and line charts: point clouds first, then lines, on linear or log axes.
pub(super) fn xy<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    points: &[ScatterSeries],
    lines: &[Polyline],
    xs: Scale,
    ys: Scale,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    let pts: Vec<Vec<(f64, f64)>> = points.iter().map(|s| pairs(&s.x, &s.y, xs, ys)).collect();
    let lns: Vec<Vec<(f64, f64)>> = lines.iter().map(|s| pairs(&s.x, &s.y, xs, ys)).collect();
    let all = || pts.iter().chain(&lns).flatten();
    let xr = axis_range(all().map(|p| p.0), xs, 0.03);
    let yr = axis_range(all().map(|p| p.1), ys, 0.06);
    // A log axis may cut off values far below the rest (see MAX_DECADES).
    let inside = |&(x, y): &(f64, f64)| x >= xr.0 && x <= xr.1 && y >= yr.0 && y <= yr.1;
    let pts: Vec<Vec<(f64, f64)>> = pts
        .into_iter()
        .map(|p| p.into_iter().filter(inside).collect())
        .collect();
    let lns: Vec<Vec<(f64, f64)>> = lns
        .into_iter()
        .map(|p| p.into_iter().filter(inside).collect())
        .collect();
    // Where the data lies, as fractions of the plot; lines sampled along each segment.
    let to_frac = |&(x, y): &(f64, f64)| (fraction(x, xr, xs), fraction(y, yr, ys));
    let mut frac: Vec<(f64, f64)> = pts.iter().flatten().map(to_frac).collect();
    for line in &lns {
        let f: Vec<(f64, f64)> = line.iter().map(to_frac).collect();
        frac.extend(f.first().copied());
        for seg in f.windows(2) {
            let ((x0, y0), (x1, y1)) = (seg[0], seg[1]);
            frac.extend((1..=8).map(|k| {
                let t = f64::from(k) / 8.0;
                (x0 + t * (x1 - x0), y0 + t * (y1 - y0))
            }));
        }
    }
    // The legend goes inside only if it fits in a corner free of data; otherwise (or
    // with many entries) it goes in two columns under the chart.
    let entries = points.len() + lines.len();
    let longest = points
        .iter()
        .map(|p| point_label(p, p.x.len()).chars().count())
        .chain(lines.iter().map(|l| l.label.chars().count()))
        .max()
        .unwrap_or(0);
    let (w_frac, h_frac) = (
        (longest as f64 * 6.6 + 50.0) / 440.0,
        (entries as f64 * 17.0 + 16.0) / 300.0,
    );
    let (corner, covered) = legend_corner_sized(&frac, w_frac.min(0.95), h_frac.min(0.95));
    let external = entries > 1 && (entries > EXTERNAL_LEGEND_AFTER || covered > 0);
    let (_, h) = area.dim_in_pixel();
    let legend_h = if external {
        18 * entries.div_ceil(2) as u32 + 6
    } else {
        0
    };
    let (plot_area, legend_area) = area.split_vertically(h.saturating_sub(legend_h));
    let area = &plot_area;
    let job = XyJob {
        panel,
        points,
        lines,
        pts: &pts,
        lns: &lns,
        corner,
        external,
        xr,
        yr,
        xs,
        ys,
    };
    let mut b = builder(area, &panel.title)?;
    let log = |(lo, hi): (f64, f64)| {
        let (bold, light) = log_ticks(lo, hi);
        (lo..hi)
            .log_scale()
            .with_key_points(bold)
            .with_light_points(light)
    };
    let drawn = match (xs, ys) {
        (Scale::Linear, Scale::Linear) => job.draw(b.build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?),
        (Scale::Linear, Scale::Log) => job.draw(b.build_cartesian_2d(xr.0..xr.1, log(yr))?),
        (Scale::Log, Scale::Linear) => job.draw(b.build_cartesian_2d(log(xr), yr.0..yr.1)?),
        (Scale::Log, Scale::Log) => job.draw(b.build_cartesian_2d(log(xr), log(yr))?),
    };
    drawn?;
    // Say what could not be drawn, so a skipped point is never silently missing.
    let all_pairs = || {
        points
            .iter()
            .flat_map(|s| s.x.iter().zip(&s.y))
            .chain(lines.iter().flat_map(|l| l.x.iter().zip(&l.y)))
    };
    let nonfinite = all_pairs()
        .filter(|(x, y)| !x.is_finite() || !y.is_finite())
        .count();
    let nonpositive = all_pairs()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .filter(|&(&x, &y)| (xs == Scale::Log && x <= 0.0) || (ys == Scale::Log && y <= 0.0))
        .count();
    let mut notes = Vec::new();
    if nonpositive > 0 {
        notes.push(format!("{nonpositive} ≤ 0 (log axis)"));
    }
    if nonfinite > 0 {
        notes.push(format!("{nonfinite} non-finite"));
    }
    if !notes.is_empty() {
        skipped_note(area, &format!("not shown: {}", notes.join(", ")))?;
    }
    if external {
        let mut items = Vec::with_capacity(entries);
        for (i, (s, p)) in points.iter().zip(&pts).enumerate() {
            items.push((Glyph::Dot, series_color(i), point_label(s, p.len())));
        }
        for (j, l) in lines.iter().enumerate() {
            items.push((
                Glyph::Line(l.style),
                series_color(points.len() + j),
                l.label.clone(),
            ));
        }
        legend_below(&legend_area, &items)?;
    }
    Ok(())
}

/// What an x-y panel draws, once its axes are built.
struct XyJob<'a> {
    panel: &'a Panel,
    points: &'a [ScatterSeries],
    lines: &'a [Polyline],
    pts: &'a [Vec<(f64, f64)>],
    lns: &'a [Vec<(f64, f64)>],
    corner: SeriesLabelPosition,
    external: bool,
    xr: (f64, f64),
    yr: (f64, f64),
    xs: Scale,
    ys: Scale,
}

impl XyJob<'_> {
    fn draw<'a, DB: DrawingBackend + 'a, X, Y>(
        &self,
        mut chart: ChartContext<'a, DB, Cartesian2d<X, Y>>,
    ) -> Result<(), ReportError>
    where
        DB::ErrorType: 'static,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        mesh(
            &mut chart,
            self.panel,
            &ticks(self.xr, self.xs),
            &ticks(self.yr, self.ys),
            7,
        )?;
        for (i, (s, p)) in self.points.iter().zip(self.pts).enumerate() {
            let color = series_color(i);
            let stride = p.len().div_ceil(MAX_POINTS).max(1);
            let radius = if p.len() > 1500 { 1 } else { 2 };
            let anno = chart.draw_series(
                p.iter()
                    .step_by(stride)
                    .map(|&q| Circle::new(q, radius, color.mix(0.45).filled())),
            )?;
            let label = point_label(s, p.len());
            if !label.is_empty() {
                anno.label(label)
                    .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
            }
        }
        let offset = self.points.len();
        for (j, (s, p)) in self.lines.iter().zip(self.lns).enumerate() {
            draw_line(&mut chart, p.clone(), series_color(offset + j), s.style, &s.label)?;
        }
        if self.points.len() + self.lines.len() > 1 && !self.external {
            draw_legend(
                &mut chart,
                self.corner.clone(),
                self.points.len() + self.lines.len(),
            )?;
        }
        Ok(())
    }
}

/// Histograms as semi-transparent density bars, with overlay curves on top.
pub(super) fn histogram<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    series: &[HistogramSeries],
    overlays: &[Polyline],
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    // Bins with finite edges and density; the x range spans them.
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
    let yr = (0.0, if top > 0.0 { top * 1.1 } else { 1.0 });
    // Occupancy for the legend: each bar fills its column from 0 to its top.
    let mut frac = Vec::new();
    for &(a, b, d) in bins.iter().flatten() {
        let xf = fraction(0.5 * (a + b), xr, Scale::Linear);
        let yf = fraction(d, yr, Scale::Linear);
        frac.extend((0..=10).map(|k| (xf, yf * f64::from(k) / 10.0)));
    }
    frac.extend(
        lns.iter()
            .flatten()
            .map(|&(x, y)| (fraction(x, xr, Scale::Linear), fraction(y, yr, Scale::Linear))),
    );
    let mut chart = builder(area, &panel.title)?.build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?;
    mesh(
        &mut chart,
        panel,
        &ticks(xr, Scale::Linear),
        &ticks(yr, Scale::Linear),
        7,
    )?;
    for (i, (s, b)) in series.iter().zip(&bins).enumerate() {
        let color = series_color(i);
        let anno = chart
            .draw_series(b.iter().map(|&(lo, hi, d)| {
                Rectangle::new([(lo, 0.0), (hi, d.max(0.0))], color.mix(0.45).filled())
            }))?;
        if !s.label.is_empty() {
            anno.label(s.label.as_str())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.mix(0.6).filled()));
        }
    }
    for (j, (l, p)) in overlays.iter().zip(lns).enumerate() {
        draw_line(&mut chart, p, OVERLAY[j % OVERLAY.len()], l.style, &l.label)?;
    }
    if series.len() + overlays.len() > 1 {
        draw_legend(&mut chart, legend_corner(&frac), series.len() + overlays.len())?;
    }
    Ok(())
}

/// Grouped bars: one group per category, one bar per series, on a linear or log y axis.
pub(super) fn bars<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    categories: &[String],
    series: &[BarSeries],
    ys: Scale,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    let n = categories.len().max(1);
    let xr = (-0.5, n as f64 - 0.5);
    let values = || series.iter().flat_map(|s| s.values.iter().copied());
    let yr = match ys {
        Scale::Linear => {
            let (lo, hi) = axis_range(values().chain([0.0]), Scale::Linear, 0.0);
            let span = hi - lo;
            (
                if lo < 0.0 { lo - 0.06 * span } else { lo },
                if hi > 0.0 { hi + 0.1 * span } else { hi },
            )
        }
        Scale::Log => axis_range(values(), Scale::Log, 0.08),
    };
    let plottable = |v: f64, ys: Scale| plottable(v, ys) && v >= yr.0;
    let base = match ys {
        Scale::Linear => 0.0,
        Scale::Log => yr.0,
    };
    let k = series.len().max(1) as f64;
    let width = 0.8 / k;
    let mut frac = Vec::new();
    for (j, s) in series.iter().enumerate() {
        for (i, &v) in s.values.iter().enumerate() {
            if plottable(v, ys) {
                let xf = fraction(i as f64 - 0.4 + (j as f64 + 0.5) * width, xr, Scale::Linear);
                let top = fraction(v, yr, ys);
                frac.extend((0..=10).map(|q| (xf, top * f64::from(q) / 10.0)));
            }
        }
    }
    // Category labels are drawn by hand, wrapped at spaces to fit under their group.
    let (w, _) = area.dim_in_pixel();
    let slot = (f64::from(w.saturating_sub(94)) / n as f64 - 6.0).max(20.0) as u32;
    let label_style = TextStyle::from((FAMILY, 12).into_font());
    let mut labels = Vec::with_capacity(categories.len());
    for c in categories {
        labels.push(wrap(area, c, &label_style, slot)?);
    }
    let lines = labels.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let x_format = |_: &f64| String::new();
    let mut b = builder(area, &panel.title)?;
    b.x_label_area_size(30 + 15 * lines as u32);
    let y_format = ticks(yr, ys);
    let job = BarJob {
        panel,
        series,
        ys,
        base,
        width,
        x_format: &x_format,
        y_format: &y_format,
        labels: &labels,
    };
    match ys {
        Scale::Linear => job.draw(
            area,
            b.build_cartesian_2d(xr.0..xr.1, yr.0..yr.1)?,
            legend_corner(&frac),
        )?,
        Scale::Log => {
            let (bold, light) = log_ticks(yr.0, yr.1);
            let y = (yr.0..yr.1)
                .log_scale()
                .with_key_points(bold)
                .with_light_points(light);
            job.draw(area, b.build_cartesian_2d(xr.0..xr.1, y)?, legend_corner(&frac))?
        }
    }
    let nonfinite = values().filter(|v| !v.is_finite()).count();
    let nonpositive = values()
        .filter(|&v| v.is_finite() && ys == Scale::Log && v < yr.0)
        .count();
    let mut notes = Vec::new();
    if nonpositive > 0 {
        notes.push(format!("{nonpositive} ≤ 0 (log axis)"));
    }
    if nonfinite > 0 {
        notes.push(format!("{nonfinite} non-finite"));
    }
    if !notes.is_empty() {
        skipped_note(area, &format!("not shown: {}", notes.join(", ")))?;
    }
    Ok(())
}

/// What a bar panel draws, once its axes are built.
struct BarJob<'a> {
    panel: &'a Panel,
    series: &'a [BarSeries],
    ys: Scale,
    base: f64,
    width: f64,
    x_format: &'a dyn Fn(&f64) -> String,
    y_format: &'a dyn Fn(&f64) -> String,
    labels: &'a [Vec<String>],
}

impl BarJob<'_> {
    fn draw<'a, DB: DrawingBackend + 'a, Y>(
        &self,
        area: &DrawingArea<DB, Shift>,
        mut chart: ChartContext<'a, DB, Cartesian2d<RangedCoordf64, Y>>,
        corner: SeriesLabelPosition,
    ) -> Result<(), ReportError>
    where
        DB::ErrorType: 'static,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        mesh(&mut chart, self.panel, self.x_format, self.y_format, 0)?;
        let (bx, by) = area.get_base_pixel();
        let style = TextStyle::from((FAMILY, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, lines) in self.labels.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(i as f64, self.base));
            for (k, line) in lines.iter().enumerate() {
                area.draw(&Text::new(
                    line.clone(),
                    (x - bx, y - by + 6 + 15 * k as i32),
                    style.clone(),
                ))?;
            }
        }
        for (j, s) in self.series.iter().enumerate() {
            let color = series_color(j);
            let (ys, base, width) = (self.ys, self.base, self.width);
            let anno = chart.draw_series(
                s.values
                    .iter()
                    .enumerate()
                    .filter(move |(_, v)| plottable(**v, ys) && (ys == Scale::Linear || **v >= base))
                    .map(move |(i, &v)| {
                        let x0 = i as f64 - 0.4 + j as f64 * width;
                        Rectangle::new([(x0, base), (x0 + width * 0.92, v)], color.filled())
                    }),
            )?;
            if !s.label.is_empty() {
                anno.label(s.label.as_str())
                    .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 16, y + 5)], color.filled()));
            }
        }
        if self.series.len() > 1 {
            draw_legend(&mut chart, corner, self.series.len())?;
        }
        Ok(())
    }
}

/// Splits `text` at spaces into lines no wider than `max_width` pixels (a single word
/// wider than that keeps its own line).
fn wrap<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    style: &TextStyle,
    max_width: u32,
) -> Result<Vec<String>, ReportError>
where
    DB::ErrorType: 'static,
{
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        if let Some(last) = lines.last_mut() {
            let candidate = format!("{last} {word}");
            if area.estimate_text_size(&candidate, style)?.0 <= max_width {
                *last = candidate;
                continue;
            }
        }
        lines.push(word.to_string());
    }
    Ok(lines)
}

/// A scatter series' legend label, saying so when the series was thinned.
fn point_label(s: &ScatterSeries, drawable: usize) -> String {
    let stride = drawable.div_ceil(MAX_POINTS).max(1);
    if stride > 1 && !s.label.is_empty() {
        format!("{} (1 in {stride} of {drawable} points shown)", s.label)
    } else {
        s.label.clone()
    }
}

/// What a legend entry shows beside its label.
#[derive(Clone, Copy)]
enum Glyph {
    /// A filled dot (scatter series).
    Dot,
    /// A line in the series' style.
    Line(LineStyle),
}

/// Draws legend entries in two columns filling `area` (used under busy charts).
fn legend_below<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    items: &[(Glyph, RGBColor, String)],
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let left = 64;
    let col_w = (w as i32 - left - 20) / 2;
    for (k, (glyph, color, label)) in items.iter().filter(|i| !i.2.is_empty()).enumerate() {
        let x = left + col_w * (k % 2) as i32;
        let y = 9 + 18 * (k / 2) as i32;
        let stroke = color.stroke_width(2);
        match glyph {
            Glyph::Dot => area.draw(&Circle::new((x + 9, y), 4, color.filled()))?,
            Glyph::Line(LineStyle::Dashed) => {
                area.draw(&PathElement::new(vec![(x, y), (x + 7, y)], stroke))?;
                area.draw(&PathElement::new(vec![(x + 11, y), (x + 18, y)], stroke))?;
            }
            Glyph::Line(style) => {
                area.draw(&PathElement::new(vec![(x, y), (x + 18, y)], stroke))?;
                if *style == LineStyle::Markers {
                    area.draw(&Circle::new((x + 9, y), 3, color.filled()))?;
                }
            }
        }
        let size = fit_font(area, label, 11.0, (col_w - 30).max(1) as u32)?;
        let style = TextStyle::from((FAMILY, size).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
        area.draw(&Text::new(label.clone(), (x + 24, y), style))?;
    }
    Ok(())
}

/// A small grey note in the panel's lower left corner, clear of the centred axis label.
fn skipped_note<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, note: &str) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    let (_, h) = area.dim_in_pixel();
    let style = TextStyle::from((FAMILY, 10).into_font())
        .color(&RGBColor(110, 110, 110))
        .pos(Pos::new(HPos::Left, VPos::Bottom));
    area.draw(&Text::new(note.to_string(), (6, h as i32 - 3), style))?;
    Ok(())
}
