//! Renderer tests: every panel kind draws to well-formed SVG (one per panel, and one for
//! the figure) and a decodable PNG of the same size rasterized with the embedded font,
//! text is never smaller than `MIN_FONT`, points and bars carry tooltips, bytes are
//! deterministic, non-finite data never reaches the output, and malformed panels are
//! typed errors.

mod fixtures;

use norm_experiments::result::*;
use norm_report::{MIN_FONT, ReportError, render_figure, render_png, render_svg, svg_to_png};

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
    let reader = decoder.read_info().expect("PNG decodes");
    let info = reader.info();
    (info.width, info.height)
}

fn svg_size(svg: &str) -> (u32, u32) {
    let doc = roxmltree::Document::parse(svg).expect("SVG is well-formed XML");
    let root = doc.root_element();
    let num = |a: &str| {
        root.attribute(a)
            .and_then(|v| v.parse().ok())
            .expect("svg width/height")
    };
    (num("width"), num("height"))
}

#[test]
fn every_panel_kind_renders_to_svg_and_png() {
    let fig = fixtures::all_kinds_figure();
    let svg = render_svg(&fig).unwrap();
    let png = render_png(&fig).unwrap();
    assert_eq!(
        svg_size(&svg),
        png_size(&png),
        "SVG and PNG have the same pixel size"
    );
    assert!(svg.contains("Every Panel Kind: a Test Figure"));
    for text in [
        "Residual Connection (skip)",
        "GPT-2, LLaMA, Mistral",
        "Post-Norm",
        "N(0, 1)",
        "std",
        "density",
    ] {
        assert!(svg.contains(text), "SVG lacks `{text}`");
    }
    // The scatter has two non-finite points; the log-y lines a zero and a NaN.
    assert!(
        svg.contains("Not shown: 2 non-finite value(s)."),
        "scatter note missing"
    );
    assert!(
        svg.contains("Not shown: 1 value(s) ≤ 0 on the log axis, 1 non-finite value(s)."),
        "log-axis note missing"
    );
    for bad in ["NaN", "inf"] {
        let at = svg
            .find(bad)
            .map(|i| &svg[i.saturating_sub(80)..(i + 20).min(svg.len())]);
        assert!(at.is_none(), "SVG contains `{bad}`: {at:?}");
    }
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        let _ = std::fs::write(format!("{dir}/all-kinds.svg"), &svg);
        let _ = std::fs::write(format!("{dir}/all-kinds.png"), &png);
    }
}

#[test]
fn panels_are_separate_documents_with_readable_text_and_tooltips() {
    let fig = fixtures::all_kinds_figure();
    let out = render_figure(&fig).unwrap();
    assert_eq!(out.panels.len(), fig.panels.len());
    for (svg, panel) in out.panels.iter().zip(&fig.panels) {
        let doc = roxmltree::Document::parse(svg).expect("panel SVG is XML");
        assert!(
            svg.contains(&panel.title.replace('&', "&amp;")),
            "panel lacks its title"
        );
        let texts: Vec<_> = doc.descendants().filter(|n| n.has_tag_name("text")).collect();
        assert!(!texts.is_empty());
        for t in texts {
            let size: f64 = t
                .attribute("font-size")
                .and_then(|v| v.parse().ok())
                .expect("font-size");
            assert!(size >= MIN_FONT, "`{:?}` at {size} < {MIN_FONT}", t.text());
        }
    }
    // Points, bars and bins: every data mark has a tooltip with its value.
    let all = out.panels.join("");
    assert!(all.matches("<title>").count() > 100);
    assert!(all.contains("density"), "histogram bins lack tooltips");
    for (i, content) in fig.panels.iter().map(|p| &p.content).enumerate() {
        if let PanelContent::Bars {
            categories, series, ..
        } = content
        {
            let tip = format!("{}, {}: ", series[0].label, categories[0]);
            assert!(out.panels[i].contains(&tip), "bar tooltip `{tip}` missing");
        }
    }
}

#[test]
fn png_text_uses_the_embedded_font() {
    // Only text: if no font were found, resvg would draw nothing and the PNG stays white.
    let svg = r#"<svg xmlns="http://www.w3.org/2000/svg" width="200" height="40"><text x="5" y="30" font-size="24" font-family="No Such Font">x̂ = σ·x</text></svg>"#;
    let png = svg_to_png(svg).unwrap();
    let decoder = png::Decoder::new(std::io::Cursor::new(&png));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut buf).unwrap();
    let dark = buf.chunks(3).filter(|p| p[0] < 100).count();
    assert!(dark > 100, "text was not drawn ({dark} dark pixels)");
}

/// Decoded RGB pixels of a PNG.
fn pixels(png: &[u8]) -> Vec<u8> {
    let mut reader = png::Decoder::new(std::io::Cursor::new(png)).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    reader.next_frame(&mut buf).unwrap();
    buf
}

#[test]
fn tooltips_do_not_change_the_png() {
    // The rasterizer drops `<title>` tooltips before parsing: the pixels must be those of
    // the same document without them, and text elsewhere must still be drawn.
    let body = |t: &str| {
        format!(
            r##"<svg xmlns="http://www.w3.org/2000/svg" width="120" height="40"><title>doc</title><rect x="2" y="2" width="30" height="30" fill="#d00">{t}</rect><text x="40" y="30" font-size="20">a&lt;b</text><title>unclosed"##
        )
    };
    let with = format!("{}</title></svg>", body("<title>x = 1, y = 2</title>"));
    let without = format!("{}</title></svg>", body(""));
    let a = pixels(&svg_to_png(&with).unwrap());
    assert_eq!(a, pixels(&svg_to_png(&without).unwrap()));
    let red = a.chunks(3).filter(|p| p[0] > 200 && p[1] < 50).count();
    let dark = a.chunks(3).filter(|p| p[0] < 100 && p[1] < 100).count();
    assert!(red > 500 && dark > 20, "red {red}, dark {dark}");
}

#[test]
fn rendering_is_deterministic() {
    let fig = fixtures::all_kinds_figure();
    assert_eq!(render_svg(&fig).unwrap(), render_svg(&fig).unwrap());
    assert_eq!(render_png(&fig).unwrap(), render_png(&fig).unwrap());
}

fn one_panel(content: PanelContent) -> Figure {
    Figure {
        title: "t".into(),
        columns: 1,
        panels: vec![Panel {
            title: "p".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            content,
        }],
    }
}

#[test]
fn degenerate_data_still_renders() {
    let nan = f64::NAN;
    let check = |content: PanelContent| {
        let fig = one_panel(content);
        let svg = render_svg(&fig).unwrap_or_else(|e| panic!("{e}"));
        roxmltree::Document::parse(&svg).unwrap();
        render_png(&fig).unwrap();
    };
    let l = |x: Vec<f64>, y: Vec<f64>| LineSeries {
        label: "a".into(),
        x,
        y,
        style: LineStyle::Dashed,
    };
    check(PanelContent::Lines {
        series: vec![],
        x_scale: Scale::Log,
        y_scale: Scale::Log,
    });
    check(PanelContent::Lines {
        series: vec![l(vec![nan, 1.0], vec![0.0, -1.0])],
        x_scale: Scale::Log,
        y_scale: Scale::Log,
    });
    check(PanelContent::Lines {
        series: vec![l(vec![1.0, 1.0], vec![5.0, 5.0])],
        x_scale: Scale::Linear,
        y_scale: Scale::Linear,
    });
    check(PanelContent::Histogram {
        series: vec![HistogramSeries {
            label: "h".into(),
            edges: vec![0.0, nan, 2.0],
            density: vec![1.0, f64::INFINITY],
        }],
        overlays: vec![],
    });
    check(PanelContent::Bars {
        categories: vec![],
        series: vec![],
        y_scale: Scale::Linear,
    });
    check(PanelContent::Bars {
        categories: vec!["a".into()],
        series: vec![BarSeries {
            label: "b".into(),
            values: vec![-2.0],
        }],
        y_scale: Scale::Linear,
    });
    check(PanelContent::Heatmap(Heatmap {
        rows: 2,
        cols: 2,
        values: vec![nan; 4],
        colorbar_label: "v".into(),
        range: None,
    }));
    check(PanelContent::Heatmap(Heatmap {
        rows: 0,
        cols: 0,
        values: vec![],
        colorbar_label: "v".into(),
        range: None,
    }));
    check(PanelContent::Scatter {
        series: vec![ScatterSeries {
            label: "s".into(),
            x: vec![1e-300, 1e300],
            y: vec![f64::MIN_POSITIVE, 1.0],
        }],
        lines: vec![],
        x_scale: Scale::Log,
        y_scale: Scale::Log,
    });
}

#[test]
fn mismatched_lengths_are_typed_errors() {
    let check = |content: PanelContent, needle: &str| match render_svg(&one_panel(content)) {
        Err(ReportError::BadPanel { panel, reason }) => {
            assert_eq!(panel, "p");
            assert!(reason.contains(needle), "`{reason}` lacks `{needle}`");
        }
        other => panic!("expected BadPanel, got {other:?}"),
    };
    check(
        PanelContent::Histogram {
            series: vec![HistogramSeries {
                label: "h".into(),
                edges: vec![0.0, 1.0],
                density: vec![1.0, 2.0],
            }],
            overlays: vec![],
        },
        "2 edges for 2 bins",
    );
    check(
        PanelContent::Scatter {
            series: vec![ScatterSeries {
                label: "s".into(),
                x: vec![1.0],
                y: vec![],
            }],
            lines: vec![],
            x_scale: Scale::Linear,
            y_scale: Scale::Linear,
        },
        "1 x values but 0 y values",
    );
    check(
        PanelContent::Bars {
            categories: vec!["a".into(), "b".into()],
            series: vec![BarSeries {
                label: "b".into(),
                values: vec![1.0],
            }],
            y_scale: Scale::Linear,
        },
        "1 values for 2 categories",
    );
    check(
        PanelContent::Heatmap(Heatmap {
            rows: 2,
            cols: 3,
            values: vec![0.0; 5],
            colorbar_label: String::new(),
            range: None,
        }),
        "2 x 3 but has 5 values",
    );
    let mut d = fixtures::block_diagram();
    d.columns[0].skips.push((2, 9));
    check(PanelContent::Diagram(d), "skip (2, 9)");
}
