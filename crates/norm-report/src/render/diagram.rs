//! Block diagrams: side-by-side columns of labelled boxes (bottom = input), arrows between
//! consecutive boxes, residual skip paths routed beside the column into their `Add` box,
//! column titles above, model names below, and a legend of box kinds underneath.

use norm_experiments::result::{BlockDiagram, BlockKind, DiagramColumn, Panel};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::fit_font;
use super::style::{FAMILY, block_color};
use crate::ReportError;

/// Height of the area under the columns reserved for model names and the legend.
const LEGEND_ROW_H: i32 = 22;

fn text_style(size: f64, bold: bool, color: RGBColor, h: HPos) -> TextStyle<'static> {
    let font = (FAMILY, size).into_font();
    let font = if bold { font.style(FontStyle::Bold) } else { font };
    TextStyle {
        font,
        color: color.to_backend_color(),
        pos: Pos::new(h, VPos::Center),
    }
}

/// Draws an arrow from `a` to `b` (head at `b`).
fn arrow<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    a: (i32, i32),
    b: (i32, i32),
    color: RGBColor,
    width: u32,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    area.draw(&PathElement::new(vec![a, b], color.stroke_width(width)))?;
    let (dx, dy) = (f64::from(b.0 - a.0), f64::from(b.1 - a.1));
    let len = (dx * dx + dy * dy).sqrt().max(1e-9);
    let (ux, uy) = (dx / len, dy / len);
    let (l, hw) = (9.0, 4.5);
    let base = (f64::from(b.0) - ux * l, f64::from(b.1) - uy * l);
    let p1 = (
        (base.0 - uy * hw).round() as i32,
        (base.1 + ux * hw).round() as i32,
    );
    let p2 = (
        (base.0 + uy * hw).round() as i32,
        (base.1 - ux * hw).round() as i32,
    );
    area.draw(&Polygon::new(vec![b, p1, p2], color.filled()))?;
    Ok(())
}

/// Draws a dashed polyline.
fn dashed<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    pts: &[(i32, i32)],
    color: RGBColor,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    for seg in pts.windows(2) {
        let (a, b) = (seg[0], seg[1]);
        let (dx, dy) = (f64::from(b.0 - a.0), f64::from(b.1 - a.1));
        let len = (dx * dx + dy * dy).sqrt();
        let (dash, gap) = (7.0, 4.0);
        let mut t = 0.0;
        while t < len {
            let t1 = (t + dash).min(len);
            let at = |s: f64| {
                (
                    (f64::from(a.0) + dx * s / len).round() as i32,
                    (f64::from(a.1) + dy * s / len).round() as i32,
                )
            };
            area.draw(&PathElement::new(vec![at(t), at(t1)], color.stroke_width(2)))?;
            t = t1 + gap;
        }
    }
    Ok(())
}

/// Lane (0, 1, ...) for each skip so that skips whose spans overlap never share a lane.
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

/// Draws the whole diagram panel.
pub(super) fn draw<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    d: &BlockDiagram,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    let (w, h) = area.dim_in_pixel();
    let (w, h) = (w as i32, h as i32);
    let title_size = fit_font(area, &panel.title, 17.0, (w - 24).max(1) as u32)?;
    area.draw(&Text::new(
        panel.title.clone(),
        (w / 2, 20),
        text_style(title_size, true, RGBColor(0, 0, 0), HPos::Center),
    ))?;

    // Legend entries, wrapped into rows that fit the width.
    let legend_style = text_style(12.0, false, RGBColor(30, 30, 30), HPos::Left);
    let mut legend_rows: Vec<Vec<(BlockKind, &str, i32)>> = vec![Vec::new()];
    let mut used = 0;
    for (kind, label) in &d.legend {
        let (tw, _) = area.estimate_text_size(label, &legend_style)?;
        let item = 26 + tw as i32 + 18;
        if used + item > w - 20 && used > 0 {
            legend_rows.push(Vec::new());
            used = 0;
        }
        used += item;
        if let Some(row) = legend_rows.last_mut() {
            row.push((*kind, label.as_str(), item));
        }
    }
    let legend_h = LEGEND_ROW_H * legend_rows.len() as i32 + 8;
    let legend_top = h - legend_h;
    for (r, row) in legend_rows.iter().enumerate() {
        let total: i32 = row.iter().map(|e| e.2).sum();
        let mut x = (w - total) / 2;
        let y = legend_top + LEGEND_ROW_H * r as i32 + LEGEND_ROW_H / 2;
        for &(kind, label, item) in row {
            let color = block_color(kind);
            if kind == BlockKind::Skip {
                dashed(area, &[(x, y), (x + 20, y)], color)?;
            } else {
                area.draw(&Rectangle::new([(x, y - 7), (x + 20, y + 7)], color.filled()))?;
                area.draw(&Rectangle::new(
                    [(x, y - 7), (x + 20, y + 7)],
                    RGBColor(90, 90, 90).stroke_width(1),
                ))?;
            }
            area.draw(&Text::new(label.to_string(), (x + 26, y), legend_style.clone()))?;
            x += item;
        }
    }

    let ncol = d.columns.len().max(1) as i32;
    let col_w = w / ncol;
    let top = 44 + 30; // panel title, then column titles
    let bottom = legend_top - 30; // model names sit in the 30 px above the legend
    for (ci, col) in d.columns.iter().enumerate() {
        let cx = col_w * ci as i32 + col_w / 2;
        draw_column(area, col, cx, col_w, top, bottom)?;
    }
    Ok(())
}

fn draw_column<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    col: &DiagramColumn,
    cx: i32,
    col_w: i32,
    top: i32,
    bottom: i32,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    let dark = RGBColor(40, 40, 40);
    let title_size = fit_font(area, &col.title, 15.0, (col_w - 10).max(1) as u32)?;
    area.draw(&Text::new(
        col.title.clone(),
        (cx, top - 16),
        text_style(title_size, true, dark, HPos::Center),
    ))?;
    let model_size = fit_font(area, &col.models, 12.0, (col_w - 10).max(1) as u32)?;
    area.draw(&Text::new(
        col.models.clone(),
        (cx, bottom + 16),
        text_style(model_size, false, RGBColor(70, 70, 70), HPos::Center),
    ))?;
    let n = col.blocks.len() as i32;
    if n == 0 {
        return Ok(());
    }
    // Slots of equal height, bottom (block 0) to top; the box fills 60% of its slot.
    let slot = f64::from(bottom - top) / f64::from(n);
    let box_h = (slot * 0.6).clamp(12.0, 40.0) as i32;
    let box_w = (f64::from(col_w) * 0.55) as i32;
    let center_y = |i: usize| (f64::from(bottom) - slot * (i as f64 + 0.5)).round() as i32;
    for (i, b) in col.blocks.iter().enumerate() {
        let y = center_y(i);
        let (x0, x1) = (cx - box_w / 2, cx + box_w / 2);
        let (y0, y1) = (y - box_h / 2, y + box_h / 2);
        area.draw(&Rectangle::new(
            [(x0, y0), (x1, y1)],
            block_color(b.kind).filled(),
        ))?;
        area.draw(&Rectangle::new(
            [(x0, y0), (x1, y1)],
            RGBColor(80, 80, 80).stroke_width(1),
        ))?;
        let size = fit_font(area, &b.label, 13.0, (box_w - 8).max(1) as u32)?;
        area.draw(&Text::new(
            b.label.clone(),
            (cx, y),
            text_style(size, false, dark, HPos::Center),
        ))?;
        if i + 1 < col.blocks.len() {
            arrow(area, (cx, y0), (cx, center_y(i + 1) + box_h / 2), dark, 1)?;
        }
    }
    // Skips: leave the main path just below block `from`, run up beside the column,
    // and enter the Add block `to` from the right.
    let skip_color = block_color(BlockKind::Skip);
    for ((from, to), lane) in col.skips.iter().copied().zip(skip_lanes(&col.skips)) {
        let start_y = if from == 0 {
            center_y(0) + box_h / 2 + 6
        } else {
            (center_y(from) + box_h / 2 + center_y(from - 1) - box_h / 2) / 2
        };
        let end_y = center_y(to);
        let side = cx + box_w / 2 + 18 + 14 * lane as i32;
        area.draw(&Circle::new((cx, start_y), 3, skip_color.filled()))?;
        dashed(area, &[(cx, start_y), (side, start_y), (side, end_y)], skip_color)?;
        arrow(area, (side, end_y), (cx + box_w / 2, end_y), skip_color, 2)?;
    }
    Ok(())
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
