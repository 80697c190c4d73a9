//! The page: `index.html` (built with maud, which escapes every text it is given; the
//! figures' panels are inlined as SVG so their tooltips work and the page needs no other
//! file to show them) and `report.md` with the same content in plain characters, plus
//! the separate timings files. Sections: title, why normalize, key points, one section
//! per study (figure, what to look at, explanation, findings), the Summary of Findings,
//! the formulas (MathML) with the PyTorch equivalents, references, and the run.

use maud::{DOCTYPE, Markup, PreEscaped, html};
use norm_experiments::result::Finding;
use norm_experiments::{KEY_POINTS, StudyResult, find};

use crate::data::panel_csvs;
use crate::format_value;
use crate::formulas::FORMULAS;
use crate::report::{RunInfo, StudyOutput};

const TITLE: &str = "Normalization Layers";
const SUBTITLE: &str = "LayerNorm and RMSNorm, measured: what they do to activations and gradients";

/// The introduction, one paragraph per entry (general background; no measured numbers).
const WHY_NORMALIZE: [&str; 3] = [
    "A deep network passes each example through many layers. If the numbers flowing \
     between layers drift in scale (growing or shrinking from one layer to the next), \
     gradients explode or vanish and training stalls or diverges. A normalization layer \
     rescales each activation vector to a standard size at every step, so each layer \
     sees inputs of a predictable scale whatever happened before it.",
    "LayerNorm (Ba et al. 2016) subtracts each vector's mean and divides by its standard \
     deviation, then applies a learned scale γ and shift β. RMSNorm (Zhang & Sennrich 2019) \
     skips the mean: it divides by the root mean square and applies γ only. Both work on \
     one example at a time, unlike BatchNorm (Ioffe & Szegedy 2015), which needs statistics \
     of a whole batch.",
    "The studies below measure, on this run, what each norm does to a distribution, how \
     the two compare, what the small constant ε is for, what γ and β learn, how \
     normalization keeps gradients alive in deep stacks, and why modern transformers put \
     the norm before each sub-layer rather than after.",
];

const CSS: &str = r#"
:root { --fg: #1a1a1a; --muted: #454545; --link: #0b57a4; --rule: #cfcfcf; --soft: #f4f5f7; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; text-size-adjust: 100%; }
body { margin: 0; color: var(--fg); background: #fff;
  font: 17px/1.6 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1240px; margin: 0 auto; padding: 1rem clamp(0.75rem, 3vw, 2rem) 3rem; }
/* Prose stays at a readable measure (about 80 characters); figures may be wider. */
p, li, h1, h2, h3, figcaption, .formula-note, .measure { max-width: 40rem; }
h1 { font-size: clamp(1.7rem, 5vw, 2.4rem); line-height: 1.2; margin: 0.5rem 0 0.2rem; }
h2 { font-size: clamp(1.3rem, 3.6vw, 1.7rem); line-height: 1.25; margin: 2.6rem 0 0.8rem;
  padding-bottom: 0.25rem; border-bottom: 1px solid var(--rule); max-width: none; }
h3 { font-size: 1.1rem; margin: 1.6rem 0 0.4rem; }
.subtitle { color: var(--muted); font-size: 1.15rem; margin-top: 0; }
.lede { font-size: 1.08rem; }
a { color: var(--link); text-underline-offset: 0.15em; }
a:focus-visible { outline: 3px solid #f0a500; outline-offset: 2px; }
code { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 0.92em;
  background: var(--soft); padding: 0.05em 0.3em; border-radius: 3px; overflow-wrap: anywhere; }
nav.toc ol { padding-left: 1.4rem; columns: 2 18rem; column-gap: 2rem; }
nav.toc li { break-inside: avoid; }
figure.fig { margin: 1.2rem 0 1.4rem; }
.panels { display: grid; gap: 0.9rem 1.1rem; grid-template-columns: minmax(0, 1fr);
  align-items: start; }
.panel { min-width: 0; max-width: 640px; width: 100%; justify-self: center; }
.panel svg { display: block; width: 100%; height: auto; border: 1px solid #e4e4e4; }
@media (min-width: 760px) {
  .panels.cols-2, .panels.cols-3, .panels.cols-4 { grid-template-columns: repeat(2, minmax(0, 1fr)); }
}
@media (min-width: 1120px) {
  .panels.cols-3, .panels.cols-4 { grid-template-columns: repeat(3, minmax(0, 1fr)); }
}
figcaption { color: var(--muted); font-size: 0.98rem; margin-top: 0.7rem; }
figcaption b { color: var(--fg); }
.table-wrap { max-width: 100%; overflow-x: auto; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; max-width: 72rem; font-size: 0.97rem; }
th, td { border: 1px solid var(--rule); padding: 0.4rem 0.6rem; text-align: left; vertical-align: top; }
th { background: var(--soft); }
table.findings { max-width: 60rem; }
table.findings td:first-child { width: 24%; }
td.num { font-family: ui-monospace, "DejaVu Sans Mono", monospace; white-space: nowrap; }
sup.cite a { text-decoration: none; padding: 0 0.1em; }
.data { font-size: 0.95rem; color: var(--muted); overflow-wrap: anywhere; }
.formula { max-width: 100%; overflow-x: auto; padding: 0.2rem 0; }
math { font-size: 1.15em; }
.formula-note { color: var(--muted); font-size: 0.97rem; margin: 0.2rem 0; }
pre { background: var(--soft); padding: 0.7rem; overflow-x: auto; line-height: 1.45; max-width: 40rem; }
aside.note { border-left: 4px solid #7aa7d6; background: #f2f7fc; padding: 0.6rem 1rem;
  margin: 1.2rem 0; max-width: 40rem; }
aside.note p { margin: 0.4rem 0; }
ol.refs li { margin-bottom: 0.5rem; }
ol.refs li:target { background: #fff6d6; }
/* Phones: tables become one card per row, each cell labelled. */
@media (max-width: 640px) {
  body { font-size: 16px; }
  table.reflow, table.reflow tbody, table.reflow tr, table.reflow td, table.reflow th { display: block; width: 100%; }
  table.reflow thead { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); }
  table.reflow tr { border: 1px solid var(--rule); border-radius: 4px; margin-bottom: 0.8rem; }
  table.reflow td, table.reflow th { border: none; border-bottom: 1px solid #ececec; }
  table.reflow td::before, table.reflow th[data-label]::before { content: attr(data-label);
    display: block; font-size: 0.82rem; font-weight: 600; color: var(--muted); }
  table.reflow td.num { white-space: normal; }
  nav.toc ol { columns: 1; }
}
@media print {
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  nav.toc, .data { display: none; }
  a { color: inherit; text-decoration: none; }
  h2 { break-after: avoid; }
  .panel, table tr, figure.fig figcaption { break-inside: avoid; }
  .panels.cols-2, .panels.cols-3, .panels.cols-4 { grid-template-columns: repeat(2, minmax(0, 1fr)); }
  .panel svg { border: none; }
}
"#;

/// A paper cited by a finding: key (anchor), short form, full entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cite {
    key: &'static str,
    short: &'static str,
    full: &'static str,
}

/// The references a finding cites.
fn cites(f: &Finding) -> Vec<Cite> {
    f.refs
        .iter()
        .map(|r| Cite {
            key: r.key(),
            short: r.short(),
            full: r.full(),
        })
        .collect()
}

/// Every cited reference, numbered by first citation in page order.
fn reference_list(studies: &[StudyOutput]) -> Vec<Cite> {
    let mut list: Vec<Cite> = Vec::new();
    for s in studies {
        for f in &s.result.findings {
            for c in cites(f) {
                if !list.contains(&c) {
                    list.push(c);
                }
            }
        }
    }
    list
}

/// The number of reference `c` in `list` (1-based).
fn ref_number(list: &[Cite], c: &Cite) -> usize {
    list.iter().position(|x| x == c).map_or(0, |i| i + 1)
}

/// A finding's plain-language label (its id, made readable, if it has none).
fn label(f: &Finding) -> String {
    if !f.label.is_empty() {
        return f.label.clone();
    }
    let mut s = f.name.replace('_', " ");
    if let Some(first) = s.get(..1) {
        s = first.to_uppercase() + &s[1..];
    }
    s
}

/// The summary finding of a result (the one flagged `summary`), if any.
fn summary_finding(r: &StudyResult) -> Option<&Finding> {
    r.findings.iter().find(|f| f.summary)
}

/// The seed document's summary line for a study id, if the registry knows it.
fn seed_summary(id: &str) -> &'static str {
    find(id).map_or("", |s| s.summary)
}

/// The registered title of study `id` (the id itself if it is not registered).
fn study_title(id: &str) -> &str {
    find(id).map_or(id, |s| s.title)
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

/// Panel letters: (a), (b), ...
fn letter(i: usize) -> String {
    let c = char::from(b'a' + (i % 26) as u8);
    format!("({c})")
}

/// What the caption tells the reader to look at: each panel by letter, then the study's
/// reading guide (or, for a study without one, the measured finding the figure backs).
fn caption_text(r: &StudyResult) -> (String, String) {
    let panels = if r.figure.panels.len() > 1 {
        let list: Vec<String> = r
            .figure
            .panels
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{} {}", letter(i), p.title))
            .collect();
        format!("Panels: {}.", list.join("; "))
    } else {
        String::new()
    };
    let look = if r.caption.is_empty() {
        summary_finding(r).map_or_else(String::new, |f| {
            format!("Look for: {} (measured: {}).", f.statement, value_with_unit(f))
        })
    } else {
        r.caption.clone()
    };
    (panels, look)
}

fn citations(f: &Finding, refs: &[Cite]) -> Markup {
    html! {
        @for c in cites(f) {
            sup.cite { a href={ "#ref-" (c.key) } title=(c.short) { "[" (ref_number(refs, &c)) "]" } }
        }
    }
}

fn findings_table(r: &StudyResult, refs: &[Cite]) -> Markup {
    html! {
        div.table-wrap {
            table.findings.reflow {
                thead { tr { th { "Finding" } th { "Value" } th { "What it shows" } } }
                tbody {
                    @for f in &r.findings {
                        tr {
                            td data-label="Finding" { (label(f)) }
                            td.num data-label="Value" { (value_with_unit(f)) }
                            td data-label="What it shows" { (f.statement) (citations(f, refs)) }
                        }
                    }
                }
            }
        }
    }
}

fn figure(i: usize, s: &StudyOutput) -> Markup {
    let r = &s.result;
    let cols = r.figure.columns.clamp(1, 4).min(r.figure.panels.len().max(1));
    let (panels, look) = caption_text(r);
    html! {
        figure.fig id={ "fig-" (r.id) } {
            div class={ "panels cols-" (cols) } {
                @for svg in &s.figure.panels { div.panel { (PreEscaped(svg)) } }
            }
            figcaption {
                b { "Figure " (i + 1) ". " (r.figure.title) "." }
                @if !panels.is_empty() { " " (panels) }
                @if !look.is_empty() { " " (look) }
            }
        }
    }
}

fn pytorch_note() -> Markup {
    let ln = norm_core::LayerNorm::<f32>::new(1);
    let rms = norm_core::RmsNorm::<f32>::new(1);
    let bias = |b: Option<bool>| match b {
        Some(true) => "with a bias β",
        Some(false) => "without a bias",
        None => "",
    };
    html! {
        aside.note #pytorch {
            p { b { "Defaults, and their PyTorch equivalents." } " norm-core's "
                code { "LayerNorm::new(d)" } " uses ε = " (format_value(norm_core::LayerNorm::<f32>::DEFAULT_EPS))
                ", γ = 1 " (bias(ln.ok().map(|n| n.bias().is_some())))
                "; PyTorch's equivalent is "
                code { "nn.LayerNorm(d, eps=1e-5, elementwise_affine=True, bias=True)" } "." }
            p { code { "RmsNorm::new(d)" } " uses ε = " (format_value(norm_core::RmsNorm::<f32>::DEFAULT_EPS))
                ", γ = 1 " (bias(rms.ok().map(|n| n.bias().is_some())))
                ". PyTorch's " code { "nn.RMSNorm(d, eps=None)" }
                " defaults to the machine epsilon of the input's dtype (about 1.19e-7 for float32); "
                "pass " code { "eps=1e-6" } " to match norm-core." }
        }
    }
}

/// The HTML page.
pub fn html(run: &RunInfo, studies: &[StudyOutput]) -> String {
    let present = |id: &str| studies.iter().any(|s| s.result.id == id);
    let refs = reference_list(studies);
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light";
                title { (TITLE) ": LayerNorm and RMSNorm" }
                style { (PreEscaped(CSS)) }
            }
            body {
                main {
                    header {
                        h1 { (TITLE) }
                        p.subtitle { (SUBTITLE) }
                        p { "Seed " (run.seed) ". Every number on this page was measured in this run; rerunning "
                            code { (run.command) } " rewrites it byte for byte." }
                    }
                    nav.toc aria-label="Contents" {
                        h2 { "Contents" }
                        ol {
                            li { a href="#why" { "Why normalize?" } }
                            li { a href="#key-points" { "Key points" } }
                            @for s in studies { li { a href={ "#" (s.result.id) } { (s.result.title) } } }
                            li { a href="#summary" { "Summary of Findings" } }
                            li { a href="#formulas" { "Formulas and defaults" } }
                            @if !refs.is_empty() { li { a href="#references" { "References" } } }
                            li { a href="#run" { "About this run" } }
                        }
                    }
                    section #why {
                        h2 { "Why normalize?" }
                        @for p in WHY_NORMALIZE { p { (p) } }
                    }
                    section #key-points {
                        h2 { "Key points" }
                        ol {
                            @for (text, ids) in KEY_POINTS {
                                @let shown: Vec<&str> = ids.iter().copied().filter(|id| present(id)).collect();
                                li {
                                    @if let Some((first, more)) = shown.split_first() {
                                        a href={ "#" (first) } { (text) }
                                        @for id in more {
                                            " · see also " a href={ "#" (id) } { (study_title(id)) }
                                        }
                                    } @else { (text) " (study not in this run)" }
                                }
                            }
                        }
                    }
                    @for (i, s) in studies.iter().enumerate() {
                        @let r = &s.result;
                        section id=(r.id) {
                            h2 { (i + 1) ". " (r.title) }
                            @let lede = seed_summary(&r.id);
                            @if !lede.is_empty() { p.lede { (lede) } }
                            (figure(i, s))
                            @for para in &r.explanation { p { (para) } }
                            (findings_table(r, &refs))
                            p.data {
                                "Data: " a href={ "data/" (r.id) ".json" } { "JSON" }
                                @for (name, _) in panel_csvs(r) { " · " a href={ "data/" (name) } { (name) } }
                                @if s.format.svg() { " · " a href={ "figures/" (r.id) ".svg" } { "SVG" } }
                                @if s.png.is_some() { " · " a href={ "figures/" (r.id) ".png" } { "PNG" } }
                            }
                        }
                    }
                    section #summary {
                        h2 { "Summary of Findings" }
                        div.table-wrap {
                            table.reflow {
                                thead { tr { th { "Study" } th { "Summary" } th { "Measured in this run" } th { "Value" } } }
                                tbody {
                                    @for s in studies {
                                        @let r = &s.result;
                                        tr {
                                            td data-label="Study" { a href={ "#" (r.id) } { (r.title) } }
                                            td data-label="Summary" { (seed_summary(&r.id)) }
                                            @if let Some(f) = summary_finding(r) {
                                                td data-label="Measured in this run" { (f.statement) (citations(f, &refs)) }
                                                td.num data-label="Value" { (value_with_unit(f)) }
                                            } @else {
                                                td data-label="Measured in this run" { "(no summary finding)" } td {}
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                    section #formulas {
                        h2 { "Formulas and defaults" }
                        p { "Both norms work over the last axis: each row x of length D (one token's "
                            "features) is normalized on its own; ⊙ is the elementwise product. "
                            "Derivations are in docs/math.md of the repository." }
                        @for f in FORMULAS {
                            h3 { (f.heading) }
                            p.formula-note { (f.note) }
                            div.formula { (PreEscaped(f.mathml)) }
                        }
                        (pytorch_note())
                    }
                    @if !refs.is_empty() {
                        section #references {
                            h2 { "References" }
                            ol.refs {
                                @for c in &refs { li id={ "ref-" (c.key) } { (c.full) } }
                            }
                        }
                    }
                    section #run {
                        h2 { "About this run" }
                        div.table-wrap {
                            table {
                                tbody {
                                    tr { th scope="row" { "Seed" } td { (run.seed) } }
                                    tr { th scope="row" { "Study size" } td { (run.size) } }
                                    tr { th scope="row" { "Configuration" } td {
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
                                    tr { th scope="row" { "Command" } td { code { (run.command) } } }
                                    tr { th scope="row" { "Studies" } td { (studies.len()) } }
                                    @for (name, version) in &run.versions { tr { th scope="row" { (name) } td { (version) } } }
                                }
                            }
                        }
                        p { "Wall-clock times vary from run to run, so they are kept apart in "
                            a href="timings.md" { "timings.md" } " and " a href="timings.json" { "timings.json" }
                            "; every other file of this report is identical for the same seed. "
                            "The same content as Markdown with PNG figures: " a href="report.md" { "report.md" } "." }
                    }
                }
            }
        }
    };
    page.into_string()
}

/// Text for Markdown in plain characters: only what Markdown would misread is escaped
/// (a `<` that could open an HTML tag).
fn md(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '<'
            && chars
                .peek()
                .is_some_and(|n| n.is_ascii_alphabetic() || matches!(n, '/' | '!' | '?'))
        {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A table cell: as [`md`], with `|` escaped and line breaks folded.
fn md_cell(s: &str) -> String {
    md(s).replace('|', "\\|").replace('\n', " ")
}

/// `report.md`: the page's content as Markdown, with PNG figures.
pub fn markdown(run: &RunInfo, studies: &[StudyOutput]) -> String {
    let present = |id: &str| studies.iter().any(|s| s.result.id == id);
    let refs = reference_list(studies);
    let cite_md = |f: &Finding| -> String {
        cites(f)
            .iter()
            .map(|c| format!(" [[{}]](#ref-{})", ref_number(&refs, c), c.key))
            .collect()
    };
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!("# {TITLE}\n\n{}\n", md(SUBTITLE)));
    line(&format!(
        "Seed {}. Every number here was measured in this run; rerunning `{}` rewrites it byte for byte.\n",
        run.seed, run.command
    ));
    line("## Why normalize?\n");
    for p in WHY_NORMALIZE {
        line(&format!("{}\n", md(p)));
    }
    line("## Key points\n");
    for (i, (text, ids)) in KEY_POINTS.iter().enumerate() {
        let shown: Vec<&str> = ids.iter().copied().filter(|id| present(id)).collect();
        match shown.split_first() {
            Some((first, more)) => {
                let also: String = more
                    .iter()
                    .map(|id| format!(" · see also [{}](#{id})", md(study_title(id))))
                    .collect();
                line(&format!("{}. [{}](#{first}){also}", i + 1, md(text)));
            }
            None => line(&format!("{}. {} (study not in this run)", i + 1, md(text))),
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
        let lede = seed_summary(&r.id);
        if !lede.is_empty() {
            line(&format!("{}\n", md(lede)));
        }
        let src = if s.png.is_some() {
            Some(format!("figures/{}.png", r.id))
        } else {
            s.format.svg().then(|| format!("figures/{}.svg", r.id))
        };
        if let Some(src) = src {
            line(&format!("![{}]({src})\n", md(&r.figure.title)));
        }
        let (panels, look) = caption_text(r);
        let caption: Vec<String> = [format!("Figure {}. {}.", i + 1, r.figure.title), panels, look]
            .into_iter()
            .filter(|p| !p.is_empty())
            .collect();
        line(&format!("*{}*\n", md(&caption.join(" "))));
        for para in &r.explanation {
            line(&format!("{}\n", md(para)));
        }
        line("| Finding | Value | What it shows |\n| --- | --- | --- |");
        for f in &r.findings {
            line(&format!(
                "| {} | {} | {}{} |",
                md_cell(&label(f)),
                md_cell(&value_with_unit(f)),
                md_cell(&f.statement),
                cite_md(f)
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
        let (statement, value) =
            summary_finding(r).map_or(("(no summary finding)".to_string(), String::new()), |f| {
                (
                    format!("{}{}", md_cell(&f.statement), cite_md(f)),
                    md_cell(&value_with_unit(f)),
                )
            });
        line(&format!(
            "| [{}](#{}) | {} | {statement} | {value} |",
            md_cell(&r.title),
            r.id,
            md_cell(seed_summary(&r.id))
        ));
    }
    line("\n## Formulas and defaults\n");
    line(
        "Both norms work over the last axis: each row x of length D is normalized on its own; ⊙ is the elementwise product. Derivations are in `docs/math.md` of the repository.\n",
    );
    for f in FORMULAS {
        line(&format!(
            "### {}\n\n{}\n\n```text\n{}\n```\n",
            md(f.heading),
            md(f.note),
            f.text
        ));
    }
    line(&format!(
        "Defaults: norm-core's `LayerNorm::new(d)` uses eps = {}, like PyTorch's `nn.LayerNorm(d, eps=1e-5, elementwise_affine=True, bias=True)`. `RmsNorm::new(d)` uses eps = {}; PyTorch's `nn.RMSNorm(d, eps=None)` defaults to the machine epsilon of the input's dtype (about 1.19e-7 for float32), so pass `eps=1e-6` to match.\n",
        format_value(norm_core::LayerNorm::<f32>::DEFAULT_EPS),
        format_value(norm_core::RmsNorm::<f32>::DEFAULT_EPS)
    ));
    if !refs.is_empty() {
        line("## References\n");
        for (i, c) in refs.iter().enumerate() {
            line(&format!("{}. <a id=\"ref-{}\"></a>{}", i + 1, c.key, md(c.full)));
        }
        line("");
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
                "| {id} | {} | {} | {} |\n",
                md_cell(&label(t)),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_text_stays_plain() {
        assert_eq!(md("a & b < c > d"), "a & b < c > d");
        assert_eq!(md("<b>bold"), "\\<b>bold");
        assert_eq!(md_cell("x | y"), "x \\| y");
    }

    #[test]
    fn labels_read_as_words() {
        let f = Finding::new("max_abs_output_mean", 0.0, "", String::new());
        assert_eq!(label(&f), "Max abs output mean");
        assert_eq!(label(&f.labelled("Largest |mean|")), "Largest |mean|");
    }
}
