//! Page tests on hand-built results: text is escaped, key points link only to studies
//! present, the summary table and formulas are there, and the timings stay out of every
//! file but the timings files.

mod fixtures;

use std::time::Duration;

use norm_report::page::{html, markdown, timings_markdown};
use norm_report::{Format, RunInfo, StudyOutput, write_report};

fn run_info() -> RunInfo {
    RunInfo {
        seed: 42,
        size: "small".into(),
        versions: vec![("resvg".into(), "0.49.0".into())],
        command: "cargo xtask report --seed 42".into(),
        ..RunInfo::default()
    }
}

fn outputs() -> Vec<StudyOutput> {
    vec![
        StudyOutput::render(
            fixtures::study("layernorm-distribution", "LayerNorm Distribution"),
            Format::Svg,
            Duration::from_millis(5),
        )
        .unwrap(),
        StudyOutput::render(
            fixtures::study("epsilon", "Epsilon Effect"),
            Format::Png,
            Duration::from_millis(7),
        )
        .unwrap(),
    ]
}

#[test]
fn page_escapes_text_and_links_present_studies() {
    let outs = outputs();
    let page = html(&run_info(), &outs);
    assert!(page.starts_with("<!DOCTYPE html>"));
    assert!(
        page.contains("&lt;angle brackets&gt; &amp; ampersands"),
        "explanation not escaped"
    );
    assert!(!page.contains("<angle brackets>"));
    assert!(page.contains("spread ratio &lt; 20 &amp; &gt; 10"));
    assert!(page.contains("href=\"#layernorm-distribution\""));
    assert!(page.contains(
        "Pre-Norm placement (before sub-layer) is standard in modern LLMs (study not in this run)"
    ));
    // Every panel inlined as SVG whatever the file format; files linked as written.
    let panels = outs[0].result.figure.panels.len();
    assert_eq!(page.matches("<div class=\"panel\"><svg").count(), 2 * panels);
    assert!(page.contains("href=\"figures/layernorm-distribution.svg\""));
    assert!(!page.contains("href=\"figures/layernorm-distribution.png\""));
    assert!(page.contains("href=\"figures/epsilon.png\""));
    for needle in [
        "Summary of Findings",
        "Why normalize?",
        "3.2e-8",
        "NaN",
        "12.5 ×",
        "<math display=\"block\">",
        "nn.LayerNorm(d, eps=1e-5, elementwise_affine=True, bias=True)",
        "nn.RMSNorm(d, eps=None)",
        "label of max_abs_mean",
        "Spread across layers",
        "href=\"#ref-xiong2020\"",
        "id=\"ref-xiong2020\"",
        "Xiong et al. 2020",
        "Compare (a) with (b): the caption &lt;points&gt; &amp; names panels.",
        "Seed 42",
    ] {
        assert!(page.contains(needle), "page lacks `{needle}`");
    }
    // Timings never reach the page or the Markdown.
    assert!(!page.contains("1.7x faster"));
    let md = markdown(&run_info(), &outs);
    assert!(!md.contains("1.7x faster"));
    assert!(md.contains("Compare (a) with (b): the caption"));
    assert!(timings_markdown(&run_info(), &outs).contains("1.7x faster"));
    // Markdown: PNG preferred, plain characters, anchors for the key points.
    assert!(md.contains("![Every Panel Kind: a Test Figure](figures/epsilon.png)"));
    assert!(md.contains("![Every Panel Kind: a Test Figure](figures/layernorm-distribution.svg)"));
    assert!(
        md.contains("spread ratio < 20 & > 10"),
        "report.md escapes plain text"
    );
    assert!(!md.contains("&amp;") && !md.contains("&lt;"));
    assert!(md.contains("dxᵢ = r · ( gᵢ − mean(g) − x̂ᵢ · mean(g ⊙ x̂) )"));
    assert!(md.contains(
        "[LayerNorm: normalizes to zero mean, unit variance (GPT-2, BERT)](#layernorm-distribution)"
    ));
    assert!(md.contains("<a id=\"epsilon\"></a>"));
}

#[test]
fn write_report_writes_every_file() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("page-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let index = write_report(&dir, &run_info(), &outputs()).unwrap();
    assert_eq!(index, dir.join("index.html"));
    for f in [
        "index.html",
        "report.md",
        "timings.json",
        "timings.md",
        "figures/layernorm-distribution.svg",
        "figures/epsilon.png",
        "data/epsilon.json",
        "data/epsilon-panel1.csv",
        "data/epsilon-panel5.csv",
    ] {
        assert!(dir.join(f).is_file(), "missing {f}");
    }
    assert!(
        !dir.join("data/epsilon-panel6.csv").exists(),
        "a diagram has no CSV"
    );
    let csv = std::fs::read_to_string(dir.join("data/epsilon-panel1.csv")).unwrap();
    assert!(csv.starts_with("series,kind,x,x_end,y\ninput,bin,"));
    let json = std::fs::read_to_string(dir.join("data/epsilon.json")).unwrap();
    assert!(
        json.contains("\"value\": null") && !json.contains("speed_ratio"),
        "NaN as null, no timings"
    );
    let timings = std::fs::read_to_string(dir.join("timings.json")).unwrap();
    assert!(timings.contains("speed_ratio") && timings.contains("run_seconds"));
    let _ = std::fs::remove_dir_all(&dir);
}
