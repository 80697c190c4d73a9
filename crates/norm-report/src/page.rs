//! The page: `index.html` (built with maud, which escapes every text it is given) and
//! `report.md` with the same content, plus the separate timings files. Sections: title,
//! key points linked to their studies, one section per study (figure, explanation,
//! findings), the Summary of Findings, the formulas, and the run's metadata.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use norm_experiments::result::Finding;
use norm_experiments::{KEY_POINTS, StudyResult, find};

use crate::data::panel_csvs;
use crate::format_value;
use crate::formulas::FORMULAS;
use crate::report::{RunInfo, StudyOutput};

const TITLE: &str = "Normalization Layers";
const SUBTITLE: &str = "LayerNorm & RMSNorm — Comprehensive Demo with Visualizations";

const CSS: &str = "
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; max-width: 1180px;
  margin: 0 auto; padding: 1.5rem; color: #222; line-height: 1.5; }
h1 { margin-bottom: 0.2rem; } .subtitle { margin-top: 0; color: #555; font-size: 1.2rem; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2rem; margin-top: 2.5rem; }
figure { margin: 1rem 0; } figure img { width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.95rem; text-align: center; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; }
th, td { border: 1px solid #ddd; padding: 0.35rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f5f5f5; } td.num { font-family: ui-monospace, monospace; white-space: nowrap; }
pre { background: #f7f7f7; padding: 0.8rem; overflow-x: auto; line-height: 1.4; }
.data { font-size: 0.9rem; color: #555; } a { color: #1f5fa8; }
";

/// The summary finding of a result (the one flagged `summary`), if any.
fn summary_finding(r: &StudyResult) -> Option<&Finding> {
    r.findings.iter().find(|f| f.summary)
}

/// The seed document's summary line for a study id, if the registry knows it.
fn seed_summary(id: &str) -> &'static str {
    find(id).map_or("", |s| s.summary)
}

/// "value unit" as printed in tables.
fn value_with_unit(f: &Finding) -> String {
    let v = format_value(f.value);
    if f.unit.is_empty() {
        v
    } else {
        format!("{v} {}", f.unit)
    }
}

fn figure_src(s: &StudyOutput, prefer_png: bool) -> Option<String> {
    let id = &s.result.id;
    let svg = s.svg.as_ref().map(|_| format!("figures/{id}.svg"));
    let png = s.png.as_ref().map(|_| format!("figures/{id}.png"));
    if prefer_png { png.or(svg) } else { svg.or(png) }
}

fn findings_table(r: &StudyResult) -> Markup {
    html! {
        table.findings {
            thead { tr { th { "Finding" } th { "Value" } th { "What it shows" } } }
            tbody {
                @for f in &r.findings {
                    tr { td { code { (f.name) } } td.num { (value_with_unit(f)) } td { (f.statement) } }
                }
            }
        }
    }
}

/// The HTML page.
pub fn html(run: &RunInfo, studies: &[StudyOutput]) -> String {
    let present = |id: &str| studies.iter().any(|s| s.result.id == id);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (TITLE) ": LayerNorm & RMSNorm" }
                style { (PreEscaped(CSS)) }
            }
            body {
                header {
                    h1 { (TITLE) }
                    p.subtitle { (SUBTITLE) }
                    p { "Seed: " (run.seed) ". Every number on this page was measured in this run; "
                        "rerunning " code { (run.command) } " rewrites it byte for byte." }
                }
                section #key-points {
                    h2 { "Key points" }
                    ol {
                        @for (text, id) in KEY_POINTS {
                            li {
                                @if present(id) { a href={ "#" (id) } { (text) } }
                                @else { (text) " (study not in this run)" }
                            }
                        }
                    }
                }
                nav #contents {
                    h2 { "Contents" }
                    ol {
                        @for s in studies { li { a href={ "#" (s.result.id) } { (s.result.title) } } }
                        li { a href="#summary" { "Summary of Findings" } }
                        li { a href="#formulas" { "Formulas" } }
                        li { a href="#run" { "About this run" } }
                    }
                }
                @for (i, s) in studies.iter().enumerate() {
                    @let r = &s.result;
                    section id=(r.id) {
                        h2 { (i + 1) ". " (r.title) }
                        @if let Some(src) = figure_src(s, false) {
                            figure {
                                img src=(src) alt=(r.figure.title);
                                figcaption { (r.figure.title) }
                            }
                        }
                        @for para in &r.explanation { p { (para) } }
                        (findings_table(r))
                        p.data {
                            "Data: " a href={ "data/" (r.id) ".json" } { "JSON" }
                            @for (name, _) in panel_csvs(r) { " · " a href={ "data/" (name) } { (name) } }
                            @if s.png.is_some() { " · " a href={ "figures/" (r.id) ".png" } { "PNG" } }
                        }
                    }
                }
                section #summary {
                    h2 { "Summary of Findings" }
                    table {
                        thead { tr { th { "Study" } th { "Summary" } th { "Measured in this run" } th { "Value" } } }
                        tbody {
                            @for s in studies {
                                @let r = &s.result;
                                tr {
                                    td { a href={ "#" (r.id) } { (r.title) } }
                                    td { (seed_summary(&r.id)) }
                                    @if let Some(f) = summary_finding(r) {
                                        td { (f.statement) } td.num { (value_with_unit(f)) }
                                    } @else {
                                        td { "(no summary finding)" } td {}
                                    }
                                }
                            }
                        }
                    }
                }
                section #formulas {
                    h2 { "Formulas" }
                    p { "Per row x ∈ ℝᴰ, normalizing over the last axis; ⊙ is the elementwise product. "
                        "Derivations are in docs/math.md of the repository." }
                    @for (heading, body) in FORMULAS {
                        h3 { (heading) }
                        pre { (body) }
                    }
                }
                section #run {
                    h2 { "About this run" }
                    table {
                        tbody {
                            tr { th { "Seed" } td { (run.seed) } }
                            tr { th { "Study size" } td { (run.size) } }
                            tr { th { "Command" } td { code { (run.command) } } }
                            tr { th { "Configuration" } td {
                                @if run.config_changes.is_empty() {
                                    "Every study ran with its default configuration."
                                } @else {
                                    "Changed from the defaults: "
                                    @for (i, ch) in run.config_changes.iter().enumerate() {
                                        @if i > 0 { "; " }
                                        code { (ch.study) "." (ch.field) " = " (ch.value) }
                                        " (default " code { (ch.default) } ")"
                                    }
                                    "."
                                }
                            } }
                            tr { th { "Studies" } td { (studies.len()) } }
                            @for (name, version) in &run.versions { tr { th { (name) } td { (version) } } }
                        }
                    }
                    p { "Wall-clock times vary from run to run, so they are kept apart in "
                        a href="timings.md" { "timings.md" } " and " a href="timings.json" { "timings.json" }
                        "; every other file of this report is identical for the same seed. "
                        "The same content as Markdown with PNG figures: " a href="report.md" { "report.md" } "." }
                }
            }
        }
    };
    page.into_string()
}

/// Escapes text for Markdown: HTML-special characters, and `|` inside table cells.
fn md(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn md_cell(s: &str) -> String {
    md(s).replace('|', "\\|").replace('\n', " ")
}

/// `report.md`: the page's content as Markdown, with PNG figures.
pub fn markdown(run: &RunInfo, studies: &[StudyOutput]) -> String {
    let present = |id: &str| studies.iter().any(|s| s.result.id == id);
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!("# {TITLE}\n\n{}\n", md(SUBTITLE)));
    line(&format!(
        "Seed: {}. Every number here was measured in this run; rerunning `{}` rewrites it byte for byte.\n",
        run.seed, run.command
    ));
    line("## Key points\n");
    for (i, (text, id)) in KEY_POINTS.iter().enumerate() {
        if present(id) {
            line(&format!("{}. [{}](#{id})", i + 1, md(text)));
        } else {
            line(&format!("{}. {} (study not in this run)", i + 1, md(text)));
        }
    }
    line("");
    for (i, s) in studies.iter().enumerate() {
        let r = &s.result;
        line(&format!(
            "<a id=\"{}\"></a>\n\n## {}. {}\n",
            r.id,
            i + 1,
            md(&r.title)
        ));
        if let Some(src) = figure_src(s, true) {
            line(&format!("![{}]({src})\n", md(&r.figure.title)));
            line(&format!("*{}*\n", md(&r.figure.title)));
        }
        for para in &r.explanation {
            line(&format!("{}\n", md(para)));
        }
        line("| Finding | Value | What it shows |\n| --- | --- | --- |");
        for f in &r.findings {
            line(&format!(
                "| `{}` | {} | {} |",
                f.name,
                md_cell(&value_with_unit(f)),
                md_cell(&f.statement)
            ));
        }
        let mut data = format!("\nData: [JSON](data/{}.json)", r.id);
        for (name, _) in panel_csvs(r) {
            data.push_str(&format!(" · [{name}](data/{name})"));
        }
        line(&format!("{data}\n"));
    }
    line("## Summary of Findings\n");
    line("| Study | Summary | Measured in this run | Value |\n| --- | --- | --- | --- |");
    for s in studies {
        let r = &s.result;
        let (statement, value) = summary_finding(r)
            .map_or(("(no summary finding)".to_string(), String::new()), |f| {
                (md_cell(&f.statement), md_cell(&value_with_unit(f)))
            });
        line(&format!(
            "| [{}](#{}) | {} | {statement} | {value} |",
            md_cell(&r.title),
            r.id,
            md_cell(seed_summary(&r.id))
        ));
    }
    line("\n## Formulas\n");
    line(
        "Per row x ∈ ℝᴰ, normalizing over the last axis; ⊙ is the elementwise product. Derivations are in `docs/math.md` of the repository.\n",
    );
    for (heading, body) in FORMULAS {
        line(&format!("### {}\n\n```text\n{body}\n```\n", md(heading)));
    }
    line("## About this run\n");
    line("| | |\n| --- | --- |");
    line(&format!("| Seed | {} |", run.seed));
    line(&format!("| Study size | {} |", md_cell(&run.size)));
    line(&format!("| Command | `{}` |", run.command));
    if run.config_changes.is_empty() {
        line("| Configuration | Every study ran with its default configuration. |");
    } else {
        let changes: Vec<String> = run
            .config_changes
            .iter()
            .map(|c| {
                format!(
                    "`{}.{} = {}` (default `{}`)",
                    c.study, c.field, c.value, c.default
                )
            })
            .collect();
        line(&format!(
            "| Configuration | Changed from the defaults: {}. |",
            md_cell(&changes.join("; "))
        ));
    }
    line(&format!("| Studies | {} |", studies.len()));
    for (name, version) in &run.versions {
        line(&format!("| {} | {} |", md_cell(name), md_cell(version)));
    }
    line(
        "\nWall-clock times vary from run to run, so they are kept apart in [timings.md](timings.md) and [timings.json](timings.json); every other file of this report is identical for the same seed.",
    );
    out
}

/// `timings.json`: per study, run and render seconds and the study's own timing findings.
pub fn timings_json(studies: &[StudyOutput]) -> String {
    let rows: Vec<serde_json::Value> = studies
        .iter()
        .map(|s| {
            serde_json::json!({
                "id": s.result.id,
                "run_seconds": s.run_time.as_secs_f64(),
                "render_seconds": s.render_time.as_secs_f64(),
                "timings": s.result.timings,
            })
        })
        .collect();
    let mut out = serde_json::to_string_pretty(&serde_json::json!({ "studies": rows })).unwrap_or_default();
    out.push('\n');
    out
}

/// `timings.md`: the same as a table, with each timing finding's statement.
pub fn timings_markdown(run: &RunInfo, studies: &[StudyOutput]) -> String {
    let mut out = format!(
        "# Timings of this run (seed {})\n\nThese vary from run to run and machine to machine; \
         nothing else in the report does.\n\n| Study | Run (s) | Render (s) |\n| --- | --- | --- |\n",
        run.seed
    );
    for s in studies {
        out.push_str(&format!(
            "| {} | {:.3} | {:.3} |\n",
            s.result.id,
            s.run_time.as_secs_f64(),
            s.render_time.as_secs_f64()
        ));
    }
    let timed: Vec<_> = studies
        .iter()
        .flat_map(|s| s.result.timings.iter().map(move |t| (&s.result.id, t)))
        .collect();
    if !timed.is_empty() {
        out.push_str("\n## Timings measured by the studies\n\n| Study | Measure | Value | What it shows |\n| --- | --- | --- | --- |\n");
        for (id, t) in timed {
            out.push_str(&format!(
                "| {id} | `{}` | {} | {} |\n",
                t.name,
                md_cell(&value_with_unit(t)),
                md_cell(&t.statement)
            ));
        }
    }
    out
}

/// Reads the per-study run seconds from an earlier report's `timings.json` (empty if the
/// file is missing or unreadable). Used only to start the slowest studies first.
pub fn previous_run_seconds(timings_json: &std::path::Path) -> Vec<(String, f64)> {
    let Ok(text) = std::fs::read_to_string(timings_json) else {
        return Vec::new();
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
        return Vec::new();
    };
    value["studies"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter_map(|r| Some((r["id"].as_str()?.to_string(), r["run_seconds"].as_f64()?)))
                .collect()
        })
        .unwrap_or_default()
}
