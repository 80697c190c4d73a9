//! Heatmap panels: a matrix of coloured cells (viridis; NaN cells grey), rows drawn top
//! to bottom, with a colour bar on the right labelled with the value scale.

use norm_experiments::result::{Heatmap, Panel, Scale};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fit_font;
use super::style::{FAMILY, axis_range, ticks, viridis};
use crate::ReportError;

/// Width of the colour bar strip, pixels (bar, ticks and label).
const BAR_W: u32 = 100;

/// Draws a heatmap and its colour bar.
pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    h: &Heatmap,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    let (w, _) = area.dim_in_pixel();
    let (lo, hi) = axis_range(h.values.iter().copied(), Scale::Linear, 0.0);
    let (main, bar) = area.split_horizontally(w.saturating_sub(BAR_W));
    let (rows, cols) = (h.rows.max(1) as f64, h.cols.max(1) as f64);
    let size = fit_font(area, &panel.title, 17.0, w.saturating_sub(24))?;
    let caption = (FAMILY, size).into_font().style(FontStyle::Bold);
    let mut chart = ChartBuilder::on(&main)
        .caption(panel.title.as_str(), caption.clone())
        .margin(10)
        .margin_right(4)
        .x_label_area_size(44)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..cols, 0.0..rows)?;
    // y runs upward in the chart; row r (top to bottom) occupies [rows - r - 1, rows - r].
    let int_label = |v: f64, max: f64| {
        if (v - v.round()).abs() < 1e-6 && v >= 0.0 && v <= max {
            format!("{}", v.round() as i64)
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(panel.x_label.as_str())
        .y_desc(panel.y_label.as_str())
        .x_labels(8)
        .y_labels(8)
        .x_label_formatter(&|v| int_label(*v, cols))
        .y_label_formatter(&|v| int_label(rows - *v, rows))
        .label_style((FAMILY, 12))
        .axis_desc_style((FAMILY, 14))
        .draw()?;
    let span = if hi > lo { hi - lo } else { 1.0 };
    chart.draw_series(h.values.iter().enumerate().map(|(k, &v)| {
        let (r, c) = ((k / h.cols.max(1)) as f64, (k % h.cols.max(1)) as f64);
        let y1 = rows - r;
        Rectangle::new([(c, y1 - 1.0), (c + 1.0, y1)], viridis((v - lo) / span).filled())
    }))?;

    // The colour bar, drawn by hand beside the plot: same height as the plotting area.
    let (_, py) = chart.plotting_area().get_pixel_range();
    let (_, by) = bar.get_base_pixel();
    let (top, bottom) = (py.start - by, py.end - by);
    let (x0, x1) = (10, 26);
    let strips = 64;
    for i in 0..strips {
        let t0 = f64::from(i) / f64::from(strips);
        let t1 = f64::from(i + 1) / f64::from(strips);
        let y = |t: f64| bottom - (t * f64::from(bottom - top)).round() as i32;
        bar.draw(&Rectangle::new(
            [(x0, y(t1)), (x1, y(t0))],
            viridis((t0 + t1) / 2.0).filled(),
        ))?;
    }
    bar.draw(&Rectangle::new(
        [(x0, top), (x1, bottom)],
        RGBColor(90, 90, 90).stroke_width(1),
    ))?;
    let format = ticks((lo, hi), Scale::Linear);
    let label_style = TextStyle::from((FAMILY, 11).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    for v in nice_ticks(lo, hi) {
        let y = bottom - ((v - lo) / span * f64::from(bottom - top)).round() as i32;
        bar.draw(&PathElement::new(
            vec![(x1, y), (x1 + 4, y)],
            RGBColor(90, 90, 90).stroke_width(1),
        ))?;
        bar.draw(&Text::new(format(&v), (x1 + 6, y), label_style.clone()))?;
    }
    let (bw, _) = bar.dim_in_pixel();
    let desc = TextStyle::from((FAMILY, 12).into_font().transform(FontTransform::Rotate90))
        .pos(Pos::new(HPos::Center, VPos::Center));
    bar.draw(&Text::new(
        h.colorbar_label.clone(),
        (bw as i32 - 10, (top + bottom) / 2),
        desc,
    ))?;
    Ok(())
}

/// Up to about six "nice" values (1, 2 or 5 times a power of ten apart) inside [lo, hi].
fn nice_ticks(lo: f64, hi: f64) -> Vec<f64> {
    let span = hi - lo;
    if span.is_nan() || span <= 0.0 || span.is_infinite() {
        return vec![lo];
    }
    let raw = span / 5.0;
    let pow = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * pow)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * pow);
    let first = (lo / step).ceil() as i64;
    let last = (hi / step).floor() as i64;
    (first..=last).map(|k| k as f64 * step).collect()
}

#[cfg(test)]
mod tests {
    use super::nice_ticks;

    #[test]
    fn nice_ticks_cover_the_range() {
        assert_eq!(
            nice_ticks(0.0, 1.0),
            vec![0.0, 0.2, 0.4, 0.6000000000000001, 0.8, 1.0]
        );
        assert_eq!(nice_ticks(-3.0, 4.5), vec![-2.0, 0.0, 2.0, 4.0]);
        assert_eq!(nice_ticks(2.0, 2.0), vec![2.0]);
        assert!(
            nice_ticks(0.99999, 1.00001)
                .iter()
                .all(|v| (0.99999..=1.00001).contains(v))
        );
    }
}
