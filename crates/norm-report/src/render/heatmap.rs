//! Heatmap panels as SVG: one viridis cell per matrix entry (row 0 at the top, each with
//! a tooltip of its exact value when the matrix is small enough), integer ticks, and a
//! colour bar with round tick values.

use norm_experiments::result::{Heatmap, Panel, Scale};

use super::charts::{title, y_label, y_label_lines};
use super::style::{Rgb, axis_range, exact, linear_ticks, ticks, viridis};
use super::svg::{Anchor, Font, Svg, fit, text_width};
use super::{PANEL_W, PanelSvg};

/// Largest matrix whose cells get tooltips (larger ones would bloat the page).
const MAX_TIPS: usize = 4096;

fn tick_font() -> Font {
    Font::new(16.0).color(Rgb(51, 51, 51))
}

/// The heatmap panel.
pub(super) fn draw(panel: &Panel, h: &Heatmap) -> PanelSvg {
    let mut svg = Svg::new();
    let top = title(&mut svg, &panel.title);
    let (lo, hi) = match h.range {
        Some((lo, hi)) if lo.is_finite() && hi.is_finite() && lo < hi => (lo, hi),
        _ => axis_range(h.values.iter().copied(), Scale::Linear, 0.0),
    };
    let span = if hi > lo { hi - lo } else { 1.0 };
    let format = ticks((lo, hi), Scale::Linear);
    let bar_ticks = linear_ticks(lo, hi, 5);
    let bar_label_w = bar_ticks
        .iter()
        .map(|v| text_width(&format(v), tick_font()))
        .fold(0.0, f64::max);
    let (rows, cols) = (h.rows.max(1), h.cols.max(1));
    let row_ticks: Vec<usize> = int_ticks(rows);
    let y_label_w = row_ticks
        .iter()
        .map(|r| text_width(&r.to_string(), tick_font()))
        .fold(0.0, f64::max);
    let left = 10.0 + 22.0 * y_label_lines(&panel.y_label, 260.0).len() as f64 + y_label_w + 8.0;
    let bar_x = PANEL_W - 10.0 - 24.0 - bar_label_w - 8.0 - 18.0;
    let right = bar_x - 16.0;
    let plot_h = 260.0;
    let bottom = top + plot_h;
    let (cw, ch) = ((right - left) / cols as f64, plot_h / rows as f64);
    let tips = h.values.len() <= MAX_TIPS;
    // Crisp edges: no anti-aliasing seams between cells, and much faster to rasterize.
    svg.open_group(r#"shape-rendering="crispEdges""#);
    for (k, &v) in h.values.iter().enumerate() {
        let (r, c) = (k / cols, k % cols);
        let fill = viridis((v - lo) / span);
        let tip = tips.then(|| format!("row {r}, column {c}: {}", exact(v)));
        svg.rect(
            (left + c as f64 * cw, top + r as f64 * ch, cw + 0.3, ch + 0.3),
            Some(fill),
            None,
            tip.as_deref(),
        );
    }
    svg.close_group();
    svg.rect(
        (left, top, right - left, plot_h),
        None,
        Some(Rgb(120, 120, 120)),
        None,
    );
    for r in row_ticks {
        let y = top + (r as f64 + 0.5) * ch;
        svg.text(left - 6.0, y + 5.5, &r.to_string(), tick_font(), Anchor::End, 0.0);
    }
    for c in int_ticks(cols) {
        let x = left + (c as f64 + 0.5) * cw;
        svg.text(x, bottom + 21.0, &c.to_string(), tick_font(), Anchor::Middle, 0.0);
    }
    let mut below = bottom + 24.0;
    if !panel.x_label.is_empty() {
        let f = fit(&panel.x_label, Font::new(17.0), PANEL_W - 20.0);
        svg.text(
            (left + right) / 2.0,
            below + 24.0,
            &panel.x_label,
            f,
            Anchor::Middle,
            0.0,
        );
        below += 30.0;
    }
    y_label(&mut svg, &panel.y_label, (top + bottom) / 2.0, plot_h);
    // Colour bar: 64 strips from lo (bottom) to hi (top).
    let strips = 64;
    svg.open_group(r#"shape-rendering="crispEdges""#);
    for i in 0..strips {
        let t0 = f64::from(i) / f64::from(strips);
        let y = bottom - (t0 + 1.0 / f64::from(strips)) * plot_h;
        svg.rect(
            (bar_x, y, 18.0, plot_h / f64::from(strips) + 0.3),
            Some(viridis(t0 + 0.5 / f64::from(strips))),
            None,
            None,
        );
    }
    svg.close_group();
    svg.rect((bar_x, top, 18.0, plot_h), None, Some(Rgb(90, 90, 90)), None);
    for v in bar_ticks {
        let y = bottom - (v - lo) / span * plot_h;
        svg.line((bar_x + 18.0, y), (bar_x + 23.0, y), Rgb(90, 90, 90), 1.0, None);
        svg.text(
            bar_x + 26.0,
            y + 5.5,
            &format(&v),
            tick_font(),
            Anchor::Start,
            0.0,
        );
    }
    if !h.colorbar_label.is_empty() {
        let f = fit(&h.colorbar_label, Font::new(16.0), plot_h + 40.0);
        svg.text(
            PANEL_W - 12.0,
            (top + bottom) / 2.0,
            &h.colorbar_label,
            f,
            Anchor::Middle,
            -90.0,
        );
    }
    PanelSvg {
        body: svg.into_body(),
        width: PANEL_W,
        height: (below + 12.0).ceil(),
    }
}

/// Up to about 6 evenly spaced integer ticks in `0..n` (steps of 1, 2, 5, 10, ...).
fn int_ticks(n: usize) -> Vec<usize> {
    let step = [
        1, 2, 4, 5, 8, 10, 16, 20, 25, 32, 50, 64, 100, 128, 200, 256, 500, 512, 1000,
    ]
    .into_iter()
    .find(|s| n.div_ceil(*s) <= 6)
    .unwrap_or(n.div_ceil(6).max(1));
    (0..n).step_by(step).collect()
}

#[cfg(test)]
mod tests {
    use super::int_ticks;

    #[test]
    fn integer_ticks_are_few_and_inside() {
        assert_eq!(int_ticks(4), vec![0, 1, 2, 3]);
        assert_eq!(int_ticks(64), vec![0, 16, 32, 48]);
        assert!(int_ticks(1000).len() <= 6);
        assert_eq!(int_ticks(1), vec![0]);
    }
}
