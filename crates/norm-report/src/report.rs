//! The report as a whole: the types the caller hands in (each study's result, its
//! rendered figures, its timings, and the run's metadata) and `write_report`, which
//! writes every file of the report into one folder.

use std::path::{Path, PathBuf};
use std::time::Duration;

use norm_experiments::{ConfigChange, StudyResult};

use crate::{FigureSvg, ReportError, data, page, render_figure, svg_to_png};

/// Which figure files to produce. The page inlines each panel's SVG whatever the
/// format; `report.md` shows the PNG when present (else the SVG).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// SVG only.
    Svg,
    /// PNG only.
    Png,
    /// Both SVG and PNG.
    Both,
}

impl Format {
    /// Parses `svg`, `png` or `both`.
    ///
    /// ```
    /// assert_eq!(norm_report::Format::parse("both"), Some(norm_report::Format::Both));
    /// assert_eq!(norm_report::Format::parse("jpg"), None);
    /// ```
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "svg" => Some(Self::Svg),
            "png" => Some(Self::Png),
            "both" => Some(Self::Both),
            _ => None,
        }
    }

    /// Whether SVG files are produced.
    pub fn svg(self) -> bool {
        self != Self::Png
    }

    /// Whether PNG files are produced.
    pub fn png(self) -> bool {
        self != Self::Svg
    }
}

/// One study, ready for the report: its result, its rendered figure, and how long the
/// run and the rendering took (the times go only to the timings files).
#[derive(Debug, Clone)]
pub struct StudyOutput {
    /// The study's result.
    pub result: StudyResult,
    /// The figure as SVG: each panel (inlined in the page) and the whole figure.
    pub figure: FigureSvg,
    /// The figure as PNG bytes, if requested.
    pub png: Option<Vec<u8>>,
    /// Which figure files to write.
    pub format: Format,
    /// Wall time of the study run.
    pub run_time: Duration,
    /// Wall time of rendering its figure.
    pub render_time: Duration,
}

impl StudyOutput {
    /// Renders `result`'s figure (SVG always, since the page inlines it; PNG if `format`
    /// asks for it) and records the times.
    ///
    /// # Errors
    /// Any [`ReportError`] from [`render_figure`] or [`svg_to_png`].
    pub fn render(result: StudyResult, format: Format, run_time: Duration) -> Result<Self, ReportError> {
        let start = std::time::Instant::now();
        let figure = render_figure(&result.figure)?;
        let png = if format.png() {
            Some(svg_to_png(&figure.figure)?)
        } else {
            None
        };
        Ok(Self {
            result,
            figure,
            png,
            format,
            run_time,
            render_time: start.elapsed(),
        })
    }
}

/// What the page says about the run itself (no wall-clock date, so reruns are identical).
/// New fields get a default, so callers build it with `..RunInfo::default()`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunInfo {
    /// The run seed.
    pub seed: u64,
    /// Study size, e.g. "full" or "small (test configs)".
    pub size: String,
    /// `(crate, version)` pairs to list.
    pub versions: Vec<(String, String)>,
    /// The command that reproduces this report.
    pub command: String,
    /// Every study config value that differs from the defaults (empty: defaults used).
    pub config_changes: Vec<ConfigChange>,
}

/// Every top-level entry [`write_report`] may create in its folder. A tool that cleans up
/// leftover report folders can check a folder holds nothing else before deleting it.
pub const REPORT_ENTRIES: [&str; 6] = [
    "index.html",
    "report.md",
    "figures",
    "data",
    "timings.json",
    "timings.md",
];

/// Writes the report into `dir` (created if missing): `index.html`, `report.md`,
/// `figures/<id>.svg|png`, `data/<id>.json`, `data/<id>-panel<k>.csv`, and the run's
/// timings in `timings.json` and `timings.md` (the only files that differ between two
/// runs with the same seed). Returns the path of `index.html`.
///
/// # Errors
/// [`ReportError::Io`] naming the path that could not be written;
/// [`ReportError::Json`] if a result cannot be serialized.
pub fn write_report(dir: &Path, run: &RunInfo, studies: &[StudyOutput]) -> Result<PathBuf, ReportError> {
    let write = |rel: &str, bytes: &[u8]| -> Result<(), ReportError> {
        let path = dir.join(rel);
        std::fs::write(&path, bytes).map_err(|source| ReportError::Io { path, source })
    };
    for sub in ["", "figures", "data"] {
        let path = dir.join(sub);
        std::fs::create_dir_all(&path).map_err(|source| ReportError::Io { path, source })?;
    }
    for s in studies {
        let id = &s.result.id;
        if s.format.svg() {
            write(&format!("figures/{id}.svg"), s.figure.figure.as_bytes())?;
        }
        if let Some(png) = &s.png {
            write(&format!("figures/{id}.png"), png)?;
        }
        write(
            &format!("data/{id}.json"),
            data::study_json(&s.result)?.as_bytes(),
        )?;
        for (name, csv) in data::panel_csvs(&s.result) {
            write(&format!("data/{name}"), csv.as_bytes())?;
        }
    }
    write("index.html", page::html(run, studies).as_bytes())?;
    write("report.md", page::markdown(run, studies).as_bytes())?;
    write("timings.json", page::timings_json(studies).as_bytes())?;
    write("timings.md", page::timings_markdown(run, studies).as_bytes())?;
    Ok(dir.join("index.html"))
}
