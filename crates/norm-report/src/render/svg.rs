//! A small SVG writer (shapes, text, tooltips) and text metrics from the embedded DejaVu
//! Sans, so layout can measure labels exactly as resvg and a browser will draw them.
//! Every number is written with fixed decimals, so the same figure gives the same bytes.

use std::fmt::Write;
use std::sync::OnceLock;

use super::style::Rgb;

/// Font family written into every `<text>`: DejaVu Sans first (embedded for PNGs).
pub const FONT_FAMILY: &str = "DejaVu Sans, Verdana, Arial, sans-serif";

/// Smallest font size used anywhere in a figure, in SVG user units. A panel is 540 units
/// wide and shown no narrower than ~340 CSS px (a 360 px phone), so text stays ≥ 10 px.
pub const MIN_FONT: f64 = 16.0;

/// Escapes text for XML content and attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// A coordinate with two decimals (no "-0.00").
pub fn n(v: f64) -> String {
    let s = format!("{v:.2}");
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".to_string() } else { s.to_string() }
}

/// Horizontal text anchor.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Anchor {
    /// Text starts at x.
    Start,
    /// Text is centred on x.
    Middle,
    /// Text ends at x.
    End,
}

impl Anchor {
    fn name(self) -> &'static str {
        match self {
            Anchor::Start => "start",
            Anchor::Middle => "middle",
            Anchor::End => "end",
        }
    }
}

/// A text element's look.
#[derive(Clone, Copy)]
pub struct Font {
    /// Size in user units.
    pub size: f64,
    /// Bold or regular.
    pub bold: bool,
    /// Fill colour.
    pub color: Rgb,
}

impl Font {
    /// Regular dark text of `size`.
    pub fn new(size: f64) -> Self {
        Self {
            size: size.max(MIN_FONT),
            bold: false,
            color: Rgb(34, 34, 34),
        }
    }

    /// The same in bold.
    pub fn bold(self) -> Self {
        Self { bold: true, ..self }
    }

    /// The same in another colour.
    pub fn color(self, color: Rgb) -> Self {
        Self { color, ..self }
    }
}

/// The body of an SVG document being written (elements only; [`Svg::into_body`] gives
/// them to [`document`]).
pub struct Svg {
    buf: String,
}

impl Svg {
    /// An empty body.
    pub fn new() -> Self {
        Self {
            buf: String::with_capacity(16 * 1024),
        }
    }

    /// Appends raw markup (already escaped).
    pub fn raw(&mut self, s: &str) {
        self.buf.push_str(s);
    }

    /// A rectangle; `stroke` draws its outline; `title` becomes a tooltip.
    pub fn rect(
        &mut self,
        (x, y, w, h): (f64, f64, f64, f64),
        fill: Option<Rgb>,
        stroke: Option<Rgb>,
        title: Option<&str>,
    ) {
        let _ = write!(
            self.buf,
            r#"<rect x="{}" y="{}" width="{}" height="{}""#,
            n(x),
            n(y),
            n(w.max(0.0)),
            n(h.max(0.0))
        );
        self.paint(fill, stroke, 1.0);
        self.close("rect", title);
    }

    /// A circle with a tooltip.
    pub fn circle(&mut self, cx: f64, cy: f64, r: f64, fill: Rgb, opacity: f64, title: Option<&str>) {
        let _ = write!(
            self.buf,
            r#"<circle cx="{}" cy="{}" r="{}" fill="{}""#,
            n(cx),
            n(cy),
            n(r),
            fill.hex()
        );
        if opacity < 1.0 {
            let _ = write!(self.buf, r#" fill-opacity="{}""#, n(opacity));
        }
        self.close("circle", title);
    }

    /// A straight line.
    pub fn line(
        &mut self,
        (x1, y1): (f64, f64),
        (x2, y2): (f64, f64),
        color: Rgb,
        width: f64,
        dash: Option<&str>,
    ) {
        let _ = write!(
            self.buf,
            r#"<line x1="{}" y1="{}" x2="{}" y2="{}" stroke="{}" stroke-width="{}""#,
            n(x1),
            n(y1),
            n(x2),
            n(y2),
            color.hex(),
            n(width)
        );
        if let Some(d) = dash {
            let _ = write!(self.buf, r#" stroke-dasharray="{d}""#);
        }
        self.buf.push_str("/>");
    }

    /// An open polyline through `pts`, with a tooltip naming it.
    pub fn polyline(
        &mut self,
        pts: &[(f64, f64)],
        color: Rgb,
        width: f64,
        dash: Option<&str>,
        title: Option<&str>,
    ) {
        if pts.is_empty() {
            return;
        }
        self.buf.push_str(r#"<polyline points=""#);
        for (i, &(x, y)) in pts.iter().enumerate() {
            if i > 0 {
                self.buf.push(' ');
            }
            let _ = write!(self.buf, "{},{}", n(x), n(y));
        }
        let _ = write!(
            self.buf,
            r#"" fill="none" stroke="{}" stroke-width="{}" stroke-linejoin="round""#,
            color.hex(),
            n(width)
        );
        if let Some(d) = dash {
            let _ = write!(self.buf, r#" stroke-dasharray="{d}""#);
        }
        self.close("polyline", title);
    }

    /// A closed filled polygon.
    pub fn polygon(&mut self, pts: &[(f64, f64)], fill: Rgb) {
        self.buf.push_str(r#"<polygon points=""#);
        for (i, &(x, y)) in pts.iter().enumerate() {
            if i > 0 {
                self.buf.push(' ');
            }
            let _ = write!(self.buf, "{},{}", n(x), n(y));
        }
        let _ = write!(self.buf, r#"" fill="{}"/>"#, fill.hex());
    }

    /// One line of text at `(x, y)` (y is the baseline), optionally rotated by `rotate`
    /// degrees about its anchor point.
    pub fn text(&mut self, x: f64, y: f64, s: &str, font: Font, anchor: Anchor, rotate: f64) {
        let _ = write!(
            self.buf,
            r#"<text x="{}" y="{}" font-size="{}""#,
            n(x),
            n(y),
            n(font.size)
        );
        if font.bold {
            self.buf.push_str(r#" font-weight="bold""#);
        }
        if anchor != Anchor::Start {
            let _ = write!(self.buf, r#" text-anchor="{}""#, anchor.name());
        }
        if font.color != Rgb(34, 34, 34) {
            let _ = write!(self.buf, r#" fill="{}""#, font.color.hex());
        }
        if rotate != 0.0 {
            let _ = write!(
                self.buf,
                r#" transform="rotate({} {} {})""#,
                n(rotate),
                n(x),
                n(y)
            );
        }
        let _ = write!(self.buf, ">{}</text>", escape(s));
    }

    /// Opens a group, e.g. `<g transform="translate(10 20)">`.
    pub fn open_group(&mut self, attrs: &str) {
        let _ = write!(self.buf, "<g {attrs}>");
    }

    /// Closes a group.
    pub fn close_group(&mut self) {
        self.buf.push_str("</g>");
    }

    fn paint(&mut self, fill: Option<Rgb>, stroke: Option<Rgb>, width: f64) {
        match fill {
            Some(c) => {
                let _ = write!(self.buf, r#" fill="{}""#, c.hex());
            }
            None => self.buf.push_str(r#" fill="none""#),
        }
        if let Some(c) = stroke {
            let _ = write!(self.buf, r#" stroke="{}" stroke-width="{}""#, c.hex(), n(width));
        }
    }

    fn close(&mut self, tag: &str, title: Option<&str>) {
        match title {
            Some(t) => {
                let _ = write!(self.buf, "><title>{}</title></{tag}>", escape(t));
            }
            None => self.buf.push_str("/>"),
        }
    }

    /// The body written so far.
    pub fn into_body(self) -> String {
        self.buf
    }
}

/// A complete SVG document of `w × h` user units around `body`, scaling to its container
/// (`width="100%"`, fixed aspect ratio), with an accessible name.
pub fn document(w: f64, h: f64, label: &str, body: &str) -> String {
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="{label}" font-family="{FONT_FAMILY}"><rect width="{w}" height="{h}" fill="#ffffff"/>{body}</svg>"##,
        w = n(w),
        h = n(h),
        label = escape(label),
    )
}

/// Advance widths of DejaVu Sans (regular, bold), per 1 unit of font size.
struct Metrics {
    regular: ttf_parser::Face<'static>,
    bold: ttf_parser::Face<'static>,
}

fn metrics() -> Option<&'static Metrics> {
    static M: OnceLock<Option<Metrics>> = OnceLock::new();
    M.get_or_init(|| {
        Some(Metrics {
            regular: ttf_parser::Face::parse(dejavu::sans::regular(), 0).ok()?,
            bold: ttf_parser::Face::parse(dejavu::sans::bold(), 0).ok()?,
        })
    })
    .as_ref()
}

/// Width of `s` in user units at `font` (sum of DejaVu Sans advances; a generous
/// estimate if the font cannot be read). Combining marks add their own advance (zero).
pub fn text_width(s: &str, font: Font) -> f64 {
    let Some(m) = metrics() else {
        return s.chars().count() as f64 * font.size * 0.62;
    };
    let face = if font.bold { &m.bold } else { &m.regular };
    let per_em = f64::from(face.units_per_em());
    let units: f64 = s
        .chars()
        .map(|c| {
            face.glyph_index(c)
                .and_then(|g| face.glyph_hor_advance(g))
                .map_or(0.6 * per_em, f64::from)
        })
        .sum();
    units / per_em * font.size
}

/// Splits `text` at spaces into lines no wider than `max` at `font` (a single word
/// wider than that keeps its own line).
pub fn wrap(text: &str, font: Font, max: f64) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        if let Some(last) = lines.last_mut() {
            let candidate = format!("{last} {word}");
            if text_width(&candidate, font) <= max {
                *last = candidate;
                continue;
            }
        }
        lines.push(word.to_string());
    }
    if lines.is_empty() {
        lines.push(String::new());
    }
    lines
}

/// The largest size ≤ `font.size` (not below [`MIN_FONT`]) at which `text` fits `max`.
pub fn fit(text: &str, font: Font, max: f64) -> Font {
    let mut f = font;
    while f.size > MIN_FONT && text_width(text, f) > max {
        f.size -= 1.0;
    }
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_escapes() {
        assert_eq!(n(1.0), "1");
        assert_eq!(n(-0.001), "0");
        assert_eq!(n(2.345), "2.35");
        assert_eq!(escape("a<b & \"c\""), "a&lt;b &amp; &quot;c&quot;");
    }

    #[test]
    fn measures_with_the_real_font() {
        let f = Font::new(20.0);
        let w = text_width("LayerNorm", f);
        // DejaVu Sans is wide: about 0.6 em per character here.
        assert!(w > 9.0 * 20.0 * 0.5 && w < 9.0 * 20.0 * 0.75, "{w}");
        assert!(text_width("LayerNorm", f.bold()) > w);
        assert_eq!(text_width("", f), 0.0);
        let lines = wrap("one two three four five six", f, 120.0);
        assert!(
            lines.len() > 1
                && lines
                    .iter()
                    .all(|l| text_width(l, f) <= 120.0 || !l.contains(' '))
        );
        assert!(fit("a very long title that cannot fit", f, 50.0).size >= MIN_FONT);
    }
}
