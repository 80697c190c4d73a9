//! Block diagrams as SVG: columns of stacked blocks joined by arrows, residual skips as
//! dashed red paths entering their addition block from the side, and a legend of block
//! kinds under the columns.

use norm_experiments::result::{BlockDiagram, BlockKind, DiagramColumn, Panel};

use super::charts::{Glyph, legend_rows, title};
use super::style::{Rgb, block_color};
use super::svg::{Anchor, Font, Svg, fit, wrap};
use super::{PANEL_W, PanelSvg};

const DARK: Rgb = Rgb(40, 40, 40);
/// Height given to each block's slot.
const SLOT: f64 = 52.0;

/// Draws an arrow from `a` to `b` with a filled head at `b`.
fn arrow(svg: &mut Svg, a: (f64, f64), b: (f64, f64), color: Rgb, width: f64) {
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt().max(1e-9);
    let (ux, uy) = (dx / len, dy / len);
    let (l, hw) = (10.0, 5.0);
    let base = (b.0 - ux * l, b.1 - uy * l);
    svg.line(a, base, color, width, None);
    svg.polygon(
        &[
            b,
            (base.0 - uy * hw, base.1 + ux * hw),
            (base.0 + uy * hw, base.1 - ux * hw),
        ],
        color,
    );
}

/// Lanes for skips so overlapping ones run side by side.
fn skip_lanes(skips: &[(usize, usize)]) -> Vec<usize> {
    let mut lanes: Vec<usize> = Vec::with_capacity(skips.len());
    for (i, &(f, t)) in skips.iter().enumerate() {
        let mut lane = 0;
        while skips[..i]
            .iter()
            .zip(&lanes)
            .any(|(&(f2, t2), &l)| l == lane && f <= t2 && f2 <= t)
        {
            lane += 1;
        }
        lanes.push(lane);
    }
    lanes
}

/// The diagram panel.
pub(super) fn draw(panel: &Panel, d: &BlockDiagram) -> PanelSvg {
    let mut svg = Svg::new();
    let top = title(&mut svg, &panel.title);
    let ncol = d.columns.len().max(1) as f64;
    let col_w = PANEL_W / ncol;
    let max_blocks = d.columns.iter().map(|c| c.blocks.len()).max().unwrap_or(0) as f64;
    let heading = Font::new(18.0).bold();
    let head_lines = d
        .columns
        .iter()
        .map(|c| wrap(&c.title, heading, col_w - 10.0).len())
        .max()
        .unwrap_or(1) as f64;
    let blocks_top = top + 24.0 * head_lines + 8.0;
    let blocks_bottom = blocks_top + SLOT * max_blocks.max(1.0);
    let model_font = Font::new(16.0).color(Rgb(60, 60, 60));
    let model_lines = d
        .columns
        .iter()
        .map(|c| wrap(&c.models, model_font, col_w - 12.0).len())
        .max()
        .unwrap_or(1) as f64;
    for (ci, col) in d.columns.iter().enumerate() {
        let cx = col_w * ci as f64 + col_w / 2.0;
        for (k, line) in wrap(&col.title, heading, col_w - 10.0).iter().enumerate() {
            svg.text(
                cx,
                top + 18.0 + 24.0 * k as f64,
                line,
                heading,
                Anchor::Middle,
                0.0,
            );
        }
        for (k, line) in wrap(&col.models, model_font, col_w - 12.0).iter().enumerate() {
            svg.text(
                cx,
                blocks_bottom + 24.0 + 20.0 * k as f64,
                line,
                model_font,
                Anchor::Middle,
                0.0,
            );
        }
        draw_column(&mut svg, col, cx, col_w, blocks_bottom);
    }
    let legend: Vec<(Glyph, Rgb, String)> = d
        .legend
        .iter()
        .map(|(kind, label)| {
            let glyph = if *kind == BlockKind::Skip {
                Glyph::Line(norm_experiments::result::LineStyle::Dashed)
            } else {
                Glyph::Square(1.0)
            };
            (glyph, block_color(*kind), label.clone())
        })
        .collect();
    let y = legend_rows(&mut svg, blocks_bottom + 20.0 + 20.0 * model_lines, &legend);
    PanelSvg {
        body: svg.into_body(),
        width: PANEL_W,
        height: (y + 12.0).ceil(),
    }
}

fn draw_column(svg: &mut Svg, col: &DiagramColumn, cx: f64, col_w: f64, bottom: f64) {
    let box_h = 34.0;
    let box_w = (col_w * 0.76).min(230.0);
    let center_y = |i: usize| bottom - SLOT * (i as f64 + 0.5);
    for (i, b) in col.blocks.iter().enumerate() {
        let y = center_y(i);
        let (x0, y0) = (cx - box_w / 2.0, y - box_h / 2.0);
        svg.rect(
            (x0, y0, box_w, box_h),
            Some(block_color(b.kind)),
            Some(Rgb(80, 80, 80)),
            Some(&b.label),
        );
        let f = fit(&b.label, Font::new(16.0), box_w - 6.0);
        svg.text(cx, y + 5.5, &b.label, f, Anchor::Middle, 0.0);
        if i + 1 < col.blocks.len() {
            arrow(svg, (cx, y0), (cx, center_y(i + 1) + box_h / 2.0), DARK, 1.5);
        }
    }
    // Skips: leave the main path just below block `from`, run up beside the column,
    // and enter the Add block `to` from the right.
    let skip = block_color(BlockKind::Skip);
    for ((from, to), lane) in col.skips.iter().copied().zip(skip_lanes(&col.skips)) {
        let start_y = if from == 0 {
            center_y(0) + box_h / 2.0 + 8.0
        } else {
            (center_y(from) + box_h / 2.0 + center_y(from - 1) - box_h / 2.0) / 2.0
        };
        let end_y = center_y(to);
        let side = cx + box_w / 2.0 + 10.0 + 8.0 * lane as f64;
        svg.circle(cx, start_y, 3.5, skip, 1.0, None);
        svg.polyline(
            &[(cx, start_y), (side, start_y), (side, end_y)],
            skip,
            2.0,
            Some("7 4"),
            Some("residual connection (skip)"),
        );
        arrow(svg, (side, end_y), (cx + box_w / 2.0, end_y), skip, 2.0);
    }
}

#[cfg(test)]
mod tests {
    use super::skip_lanes;

    #[test]
    fn overlapping_skips_get_separate_lanes() {
        assert_eq!(skip_lanes(&[(1, 3), (4, 6)]), vec![0, 0]);
        assert_eq!(skip_lanes(&[(1, 5), (2, 3), (4, 6)]), vec![0, 1, 1]);
    }
}
