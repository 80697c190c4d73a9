//! Figure rendering: each panel of a [`Figure`] becomes its own SVG (so a page can lay
//! panels out in a responsive grid), the panels together make the figure's SVG, and the
//! PNG is that SVG rasterized by resvg with the embedded DejaVu fonts (no system fonts),
//! so PNG and SVG show the same thing. Knows panel kinds, never studies.

mod charts;
mod diagram;
mod heatmap;
pub(crate) mod style;
mod svg;

use std::sync::{Arc, OnceLock};

use norm_experiments::result::{Figure, Panel, PanelContent};
use resvg::{tiny_skia, usvg};

use crate::ReportError;
use svg::{Anchor, Font, Svg, document, wrap};

pub use svg::MIN_FONT;

/// Width of one panel, in SVG user units (a panel is drawn at this many CSS pixels or
/// fewer; text is at least [`MIN_FONT`] units, so ≥ 10 px on a 360 px phone).
pub const PANEL_W: f64 = 540.0;

/// Most panels side by side in a figure's SVG and PNG.
const MAX_COLUMNS: usize = 3;

/// One drawn panel: its SVG body and size in user units.
pub(crate) struct PanelSvg {
    body: String,
    width: f64,
    height: f64,
}

/// A figure drawn as SVG: one document per panel, and all of them in one document.
#[derive(Debug, Clone, PartialEq)]
pub struct FigureSvg {
    /// Each panel as a complete SVG document, in reading order.
    pub panels: Vec<String>,
    /// The whole figure (title and panels in a grid) as one SVG document.
    pub figure: String,
}

/// Renders every panel of `fig`, and the figure as a whole, as SVG.
///
/// Non-finite values (and non-positive values on log axes) are skipped, never drawn,
/// and a note under the panel counts them. Points, bars, bins and heatmap cells carry
/// `<title>` tooltips with their exact values.
///
/// # Errors
/// [`ReportError::BadPanel`] when a panel's arrays disagree in length (e.g. a histogram
/// whose `edges.len() != density.len() + 1`).
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
///                 style: LineStyle::Markers,
///             }],
///             x_scale: Scale::Linear,
///             y_scale: Scale::Linear,
///         },
///     }],
/// };
/// let out = norm_report::render_figure(&fig)?;
/// assert_eq!(out.panels.len(), 1);
/// assert!(out.figure.starts_with("<svg") && out.figure.contains("Demo"));
/// assert!(out.panels[0].contains("<title>x²: x = 2, y = 4</title>"));
/// # Ok::<(), norm_report::ReportError>(())
/// ```
pub fn render_figure(fig: &Figure) -> Result<FigureSvg, ReportError> {
    validate(fig)?;
    let drawn: Vec<PanelSvg> = fig.panels.iter().map(draw_panel).collect();
    let panels = drawn
        .iter()
        .zip(&fig.panels)
        .map(|(p, panel)| document(p.width, p.height, &panel.title, &p.body))
        .collect();
    Ok(FigureSvg {
        panels,
        figure: compose(fig, &drawn),
    })
}

/// Renders a figure as one SVG document (title band, panels in a grid).
///
/// # Errors
/// As [`render_figure`].
pub fn render_svg(fig: &Figure) -> Result<String, ReportError> {
    Ok(render_figure(fig)?.figure)
}

/// Renders a figure as PNG bytes: [`render_svg`] rasterized by resvg.
///
/// # Errors
/// As [`render_figure`], plus [`ReportError::Png`] if rasterizing fails.
pub fn render_png(fig: &Figure) -> Result<Vec<u8>, ReportError> {
    svg_to_png(&render_svg(fig)?)
}

/// Rasterizes an SVG document with resvg at its own size, text in the embedded DejaVu
/// Sans (bold for bold text); other font names fall back to it.
///
/// # Errors
/// [`ReportError::Png`] if the SVG cannot be parsed or the PNG cannot be encoded.
pub fn svg_to_png(svg: &str) -> Result<Vec<u8>, ReportError> {
    let tree = usvg::Tree::from_str(&without_titles(svg), options())
        .map_err(|e| ReportError::Png(format!("parsing SVG: {e}")))?;
    let size = tree.size().to_int_size();
    let mut pixmap = tiny_skia::Pixmap::new(size.width(), size.height())
        .ok_or_else(|| ReportError::Png(format!("empty image {}x{}", size.width(), size.height())))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(&tree, tiny_skia::Transform::identity(), &mut pixmap.as_mut());
    encode_rgb(&pixmap)
}

/// `svg` without its `<title>` elements: tooltips a raster image cannot show, and which
/// resvg would parse only to drop (they are up to 40% of a figure's bytes, one per point,
/// bar and cell). Titles hold text only (the writer escapes `<`), so the first
/// `</title>` after a `<title>` closes it.
fn without_titles(svg: &str) -> std::borrow::Cow<'_, str> {
    const OPEN: &str = "<title>";
    const CLOSE: &str = "</title>";
    if !svg.contains(OPEN) {
        return svg.into();
    }
    let mut out = String::with_capacity(svg.len());
    let mut rest = svg;
    while let Some(i) = rest.find(OPEN) {
        let Some(j) = rest[i..].find(CLOSE) else { break };
        out.push_str(&rest[..i]);
        rest = &rest[i + j + CLOSE.len()..];
    }
    out.push_str(rest);
    out.into()
}

/// The pixmap (opaque: filled white first) as an 8-bit RGB PNG.
///
/// fdeflate with the Paeth filter on every row: on the report's figures (mostly white,
/// flat colours, anti-aliased edges) that is within 4% of the size that `Compression::Fast`'s
/// adaptive per-row filter choice gives, at a fifth of its encoding time.
fn encode_rgb(pixmap: &tiny_skia::Pixmap) -> Result<Vec<u8>, ReportError> {
    let rgba = pixmap.data();
    let mut rgb = vec![0u8; rgba.len() / 4 * 3];
    for (d, s) in rgb.chunks_exact_mut(3).zip(rgba.chunks_exact(4)) {
        d.copy_from_slice(&s[..3]);
    }
    let mut out = Vec::new();
    let mut enc = png::Encoder::new(&mut out, pixmap.width(), pixmap.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_deflate_compression(png::DeflateCompression::FdeflateUltraFast);
    enc.set_filter(png::Filter::Paeth);
    let png_err = |e: png::EncodingError| ReportError::Png(e.to_string());
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(&rgb).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(out)
}

/// resvg options with a font database holding only the embedded DejaVu Sans.
fn options() -> &'static usvg::Options<'static> {
    static OPTIONS: OnceLock<usvg::Options<'static>> = OnceLock::new();
    OPTIONS.get_or_init(|| {
        let mut db = usvg::fontdb::Database::new();
        db.load_font_data(dejavu::sans::regular().to_vec());
        db.load_font_data(dejavu::sans::bold().to_vec());
        db.set_sans_serif_family("DejaVu Sans");
        db.set_serif_family("DejaVu Sans");
        db.set_monospace_family("DejaVu Sans");
        usvg::Options {
            font_family: "DejaVu Sans".to_string(),
            fontdb: Arc::new(db),
            ..usvg::Options::default()
        }
    })
}

/// The figure's SVG: its title, then the panels in rows of up to `columns` (at most
/// [`MAX_COLUMNS`]), each row as tall as its tallest panel.
fn compose(fig: &Figure, panels: &[PanelSvg]) -> String {
    let columns = fig.columns.clamp(1, MAX_COLUMNS).min(panels.len().max(1));
    let width = PANEL_W * columns as f64;
    let font = Font::new(22.0).bold();
    let mut body = Svg::new();
    let mut y = 6.0;
    for line in wrap(&fig.title, font, width - 30.0) {
        y += 30.0;
        body.text(width / 2.0, y, &line, font, Anchor::Middle, 0.0);
    }
    y += 12.0;
    for row in panels.chunks(columns) {
        let h = row.iter().map(|p| p.height).fold(0.0, f64::max);
        for (c, p) in row.iter().enumerate() {
            body.open_group(&format!(
                r#"transform="translate({} {})""#,
                svg::n(c as f64 * PANEL_W),
                svg::n(y)
            ));
            body.raw(&p.body);
            body.close_group();
        }
        y += h;
    }
    document(width, y.ceil(), &fig.title, &body.into_body())
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

fn draw_panel(panel: &Panel) -> PanelSvg {
    match &panel.content {
        PanelContent::Histogram { series, overlays } => charts::histogram(panel, series, overlays),
        PanelContent::Scatter {
            series,
            lines,
            x_scale,
            y_scale,
        } => charts::xy(panel, series, lines, *x_scale, *y_scale),
        PanelContent::Lines {
            series,
            x_scale,
            y_scale,
        } => charts::xy(panel, &[], series, *x_scale, *y_scale),
        PanelContent::Bars {
            categories,
            series,
            y_scale,
        } => charts::bars(panel, categories, series, *y_scale),
        PanelContent::Heatmap(h) => heatmap::draw(panel, h),
        PanelContent::Diagram(d) => diagram::draw(panel, d),
    }
}
