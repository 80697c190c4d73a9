//! Data export: each study's result as JSON and each chart panel's series as one CSV,
//! with numbers written so they read back exactly (NaN and ±inf as `NaN`, `inf`, `-inf`).

use norm_experiments::result::{PanelContent, StudyResult};

use crate::ReportError;

/// A number as CSV text: shortest form that reads back to the same f64.
fn num(v: f64) -> String {
    let a = v.abs();
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "inf".into() } else { "-inf".into() }
    } else if v == 0.0 || (1e-4..1e15).contains(&a) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The study's result as pretty JSON (NaN and infinities become `null`).
///
/// # Errors
/// [`ReportError::Json`] if serialization fails.
pub fn study_json(result: &StudyResult) -> Result<String, ReportError> {
    let mut s = serde_json::to_string_pretty(result).map_err(|source| ReportError::Json {
        id: result.id.clone(),
        source,
    })?;
    s.push('\n');
    Ok(s)
}

/// One CSV per chart panel (diagrams have no data): `(file name, contents)`, named
/// `<id>-panel<k>.csv` with `k` counting panels from 1.
///
/// Columns by panel kind: histograms `series,kind,x,x_end,y` (kind `bin` with density y,
/// or `curve` for overlays); scatter and lines `series,kind,x,y` (kind `point` or
/// `line`); bars `series,category,value`; heatmaps `row,col,value`.
pub fn panel_csvs(result: &StudyResult) -> Vec<(String, String)> {
    let mut files = Vec::new();
    for (k, panel) in result.figure.panels.iter().enumerate() {
        let mut out = String::new();
        let mut row = |cells: &[String]| {
            out.push_str(&cells.join(","));
            out.push('\n');
        };
        match &panel.content {
            PanelContent::Histogram { series, overlays } => {
                row(&[
                    "series".into(),
                    "kind".into(),
                    "x".into(),
                    "x_end".into(),
                    "y".into(),
                ]);
                for s in series {
                    for (e, d) in s.edges.windows(2).zip(&s.density) {
                        row(&[field(&s.label), "bin".into(), num(e[0]), num(e[1]), num(*d)]);
                    }
                }
                for l in overlays {
                    for (x, y) in l.x.iter().zip(&l.y) {
                        row(&[field(&l.label), "curve".into(), num(*x), String::new(), num(*y)]);
                    }
                }
            }
            PanelContent::Scatter { series, lines, .. } => {
                row(&["series".into(), "kind".into(), "x".into(), "y".into()]);
                for s in series {
                    for (x, y) in s.x.iter().zip(&s.y) {
                        row(&[field(&s.label), "point".into(), num(*x), num(*y)]);
                    }
                }
                for l in lines {
                    for (x, y) in l.x.iter().zip(&l.y) {
                        row(&[field(&l.label), "line".into(), num(*x), num(*y)]);
                    }
                }
            }
            PanelContent::Lines { series, .. } => {
                row(&["series".into(), "kind".into(), "x".into(), "y".into()]);
                for l in series {
                    for (x, y) in l.x.iter().zip(&l.y) {
                        row(&[field(&l.label), "line".into(), num(*x), num(*y)]);
                    }
                }
            }
            PanelContent::Bars {
                categories, series, ..
            } => {
                row(&["series".into(), "category".into(), "value".into()]);
                for s in series {
                    for (c, v) in categories.iter().zip(&s.values) {
                        row(&[field(&s.label), field(c), num(*v)]);
                    }
                }
            }
            PanelContent::Heatmap(h) => {
                row(&["row".into(), "col".into(), "value".into()]);
                for (i, v) in h.values.iter().enumerate() {
                    let (r, c) = (i / h.cols.max(1), i % h.cols.max(1));
                    row(&[r.to_string(), c.to_string(), num(*v)]);
                }
            }
            PanelContent::Diagram(_) => continue,
        }
        files.push((format!("{}-panel{}.csv", result.id, k + 1), out));
    }
    files
}

#[cfg(test)]
mod tests {
    use super::{field, num};

    #[test]
    fn numbers_round_trip() {
        for v in [
            0.0,
            -0.0,
            1.0,
            0.1,
            1e-8,
            -3.25e-300,
            1e300,
            123456.789,
            f64::MIN_POSITIVE,
        ] {
            let s = num(v);
            assert_eq!(s.parse::<f64>().unwrap(), v, "{s}");
        }
        assert_eq!(num(f64::NAN), "NaN");
        assert_eq!(num(f64::NEG_INFINITY), "-inf");
        assert_eq!(num(1e-8), "1e-8");
    }

    #[test]
    fn fields_are_quoted() {
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("plain"), "plain");
    }
}
