//! Figure rendering: lays a [`Figure`]'s panels out in a grid (title band on top) and
//! draws each panel with plotters, into an SVG string or PNG bytes. Knows panel kinds,
//! never studies.

mod charts;
mod diagram;
mod heatmap;
pub(crate) mod style;

use norm_experiments::result::{Figure, Panel, PanelContent};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::ReportError;
use style::{FAMILY, ensure_fonts};

/// Width of one panel, pixels.
const PANEL_W: u32 = 560;
/// Height of one chart panel, pixels.
const PANEL_H: u32 = 410;
/// Height of a grid row that holds a block diagram, pixels.
const DIAGRAM_H: u32 = 600;
/// Height of the figure title band, pixels.
const TITLE_H: u32 = 52;

/// Pixel size of a figure and the height of each grid row.
struct Layout {
    width: u32,
    height: u32,
    columns: usize,
    row_heights: Vec<u32>,
}

fn layout(fig: &Figure) -> Layout {
    let columns = fig.columns.clamp(1, fig.panels.len().max(1));
    let row_heights: Vec<u32> = fig
        .panels
        .chunks(columns)
        .map(|row| {
            if row.iter().any(|p| matches!(p.content, PanelContent::Diagram(_))) {
                DIAGRAM_H
            } else {
                PANEL_H
            }
        })
        .collect();
    Layout {
        width: PANEL_W * columns as u32,
        height: TITLE_H + row_heights.iter().sum::<u32>(),
        columns,
        row_heights,
    }
}

/// Renders a figure as an SVG document.
///
/// Non-finite values (and non-positive values on log axes) are skipped, never drawn.
///
/// # Errors
/// [`ReportError::BadPanel`] when a panel's arrays disagree in length (e.g. a histogram
/// whose `edges.len() != density.len() + 1`); [`ReportError::Draw`] if plotters fails.
///
/// ```
/// use norm_experiments::result::*;
/// let fig = Figure {
///     title: "Demo".into(),
///     columns: 1,
///     panels: vec![Panel {
///         title: "y = x²".into(),
///         x_label: "x".into(),
///         y_label: "y".into(),
///         content: PanelContent::Lines {
///             series: vec![LineSeries {
///                 label: "x²".into(),
///                 x: vec![0.0, 1.0, 2.0],
///                 y: vec![0.0, 1.0, 4.0],
///                 style: LineStyle::Solid,
///             }],
///             x_scale: Scale::Linear,
///             y_scale: Scale::Linear,
///         },
///     }],
/// };
/// let svg = norm_report::render_svg(&fig)?;
/// assert!(svg.starts_with("<svg") && svg.contains("Demo"));
/// # Ok::<(), norm_report::ReportError>(())
/// ```
pub fn render_svg(fig: &Figure) -> Result<String, ReportError> {
    ensure_fonts();
    validate(fig)?;
    let lay = layout(fig);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (lay.width, lay.height)).into_drawing_area();
        draw_figure(&root, fig, &lay)?;
        root.present()?;
    }
    Ok(svg)
}

/// Renders a figure as PNG bytes (RGB, 8 bit), text drawn with the embedded DejaVu font.
///
/// # Errors
/// As [`render_svg`], plus [`ReportError::Png`] if encoding fails.
pub fn render_png(fig: &Figure) -> Result<Vec<u8>, ReportError> {
    ensure_fonts();
    validate(fig)?;
    let lay = layout(fig);
    let mut pixels = vec![0u8; lay.width as usize * lay.height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (lay.width, lay.height)).into_drawing_area();
        draw_figure(&root, fig, &lay)?;
        root.present()?;
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, lay.width, lay.height);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut writer = enc.write_header().map_err(|e| ReportError::Png(e.to_string()))?;
    writer
        .write_image_data(&pixels)
        .map_err(|e| ReportError::Png(e.to_string()))?;
    writer.finish().map_err(|e| ReportError::Png(e.to_string()))?;
    Ok(out)
}

fn bad(panel: &Panel, reason: String) -> ReportError {
    ReportError::BadPanel {
        panel: panel.title.clone(),
        reason,
    }
}

/// Checks that every panel's arrays agree in length, so drawing never guesses.
fn validate(fig: &Figure) -> Result<(), ReportError> {
    for p in &fig.panels {
        let xy = |label: &str, x: usize, y: usize| -> Result<(), ReportError> {
            if x == y {
                Ok(())
            } else {
                Err(bad(
                    p,
                    format!("series `{label}` has {x} x values but {y} y values"),
                ))
            }
        };
        match &p.content {
            PanelContent::Histogram { series, overlays } => {
                for s in series {
                    if s.edges.len() != s.density.len() + 1 {
                        return Err(bad(
                            p,
                            format!(
                                "histogram `{}` has {} edges for {} bins (need bins + 1)",
                                s.label,
                                s.edges.len(),
                                s.density.len()
                            ),
                        ));
                    }
                }
                for l in overlays {
                    xy(&l.label, l.x.len(), l.y.len())?;
                }
            }
            PanelContent::Scatter { series, lines, .. } => {
                for s in series {
                    xy(&s.label, s.x.len(), s.y.len())?;
                }
                for l in lines {
                    xy(&l.label, l.x.len(), l.y.len())?;
                }
            }
            PanelContent::Lines { series, .. } => {
                for l in series {
                    xy(&l.label, l.x.len(), l.y.len())?;
                }
            }
            PanelContent::Bars {
                categories, series, ..
            } => {
                for s in series {
                    if s.values.len() != categories.len() {
                        return Err(bad(
                            p,
                            format!(
                                "bar series `{}` has {} values for {} categories",
                                s.label,
                                s.values.len(),
                                categories.len()
                            ),
                        ));
                    }
                }
            }
            PanelContent::Heatmap(h) => {
                if h.rows.checked_mul(h.cols) != Some(h.values.len()) {
                    return Err(bad(
                        p,
                        format!(
                            "heatmap is {} x {} but has {} values",
                            h.rows,
                            h.cols,
                            h.values.len()
                        ),
                    ));
                }
            }
            PanelContent::Diagram(d) => {
                for c in &d.columns {
                    for &(from, to) in &c.skips {
                        if from > to || to >= c.blocks.len() {
                            return Err(bad(
                                p,
                                format!(
                                    "column `{}`: skip ({from}, {to}) outside its {} blocks",
                                    c.title,
                                    c.blocks.len()
                                ),
                            ));
                        }
                    }
                }
            }
        }
    }
    Ok(())
}

fn draw_figure<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    fig: &Figure,
    lay: &Layout,
) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE)?;
    let (title_area, mut rest) = root.split_vertically(TITLE_H);
    let (w, h) = title_area.dim_in_pixel();
    let size = fit_font(&title_area, &fig.title, 22.0, w.saturating_sub(20))?;
    title_area.draw(&Text::new(
        fig.title.clone(),
        (w as i32 / 2, h as i32 / 2 + 2),
        TextStyle::from((FAMILY, size).into_font().style(FontStyle::Bold))
            .pos(Pos::new(HPos::Center, VPos::Center)),
    ))?;
    for (r, (row_panels, &row_h)) in fig.panels.chunks(lay.columns).zip(&lay.row_heights).enumerate() {
        let (row, below) = rest.split_vertically(row_h);
        rest = below;
        let cells = row.split_evenly((1, lay.columns));
        for (cell, panel) in cells.iter().zip(row_panels) {
            draw_panel(cell, panel).map_err(|e| match e {
                ReportError::Draw(m) => ReportError::Draw(format!("row {r}, panel `{}`: {m}", panel.title)),
                other => other,
            })?;
        }
    }
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, panel: &Panel) -> Result<(), ReportError>
where
    DB::ErrorType: 'static,
{
    match &panel.content {
        PanelContent::Histogram { series, overlays } => charts::histogram(area, panel, series, overlays),
        PanelContent::Scatter {
            series,
            lines,
            x_scale,
            y_scale,
        } => charts::xy(area, panel, series, lines, *x_scale, *y_scale),
        PanelContent::Lines {
            series,
            x_scale,
            y_scale,
        } => charts::xy(area, panel, &[], series, *x_scale, *y_scale),
        PanelContent::Bars {
            categories,
            series,
            y_scale,
        } => charts::bars(area, panel, categories, series, *y_scale),
        PanelContent::Heatmap(h) => heatmap::draw(area, panel, h),
        PanelContent::Diagram(d) => diagram::draw(area, panel, d),
    }
}

/// The largest font size <= `size` (down to 9) at which `text` fits in `max_width` pixels.
fn fit_font<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    text: &str,
    size: f64,
    max_width: u32,
) -> Result<f64, ReportError>
where
    DB::ErrorType: 'static,
{
    let mut s = size;
    while s > 9.0 {
        let (w, _) = area.estimate_text_size(text, &TextStyle::from((FAMILY, s).into_font()))?;
        if w <= max_width {
            break;
        }
        s -= 1.0;
    }
    Ok(s)
}
