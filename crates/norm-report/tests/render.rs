//! Renderer tests: every panel kind draws to well-formed SVG and a decodable PNG of the
//! same size, bytes are deterministic, non-finite data never reaches the output, and
//! malformed panels are typed errors.

mod fixtures;

use norm_experiments::result::*;
use norm_report::{ReportError, render_png, render_svg};

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
    assert!(svg.contains("not shown: 2 non-finite"), "scatter note missing");
    assert!(
        svg.contains("not shown: 1 ≤ 0 (log axis), 1 non-finite"),
        "log-axis note missing"
    );
    for bad in ["NaN", "inf"] {
        assert!(!svg.contains(bad), "SVG contains `{bad}`");
    }
    if let Some(dir) = option_env!("CARGO_TARGET_TMPDIR") {
        let _ = std::fs::write(format!("{dir}/all-kinds.svg"), &svg);
        let _ = std::fs::write(format!("{dir}/all-kinds.png"), &png);
    }
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
    }));
    check(PanelContent::Heatmap(Heatmap {
        rows: 0,
        cols: 0,
        values: vec![],
        colorbar_label: "v".into(),
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
        }),
        "2 x 3 but has 5 values",
    );
    let mut d = fixtures::block_diagram();
    d.columns[0].skips.push((2, 9));
    check(PanelContent::Diagram(d), "skip (2, 9)");
}
