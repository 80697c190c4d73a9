//! `norm-report`: turns study results into figures (SVG written directly, one document
//! per panel and one per figure; PNG rasterized from that SVG by resvg), one responsive
//! HTML page and a `report.md`, and the data behind them as JSON and CSV.
//! It knows panel kinds, never studies: any [`Figure`](norm_experiments::result::Figure)
//! can be drawn, and the page is laid out from the results and the registry's key points.
//!
//! ```no_run
//! use std::time::Duration;
//! use norm_report::{Format, RunInfo, StudyOutput, write_report};
//! # fn demo(result: norm_experiments::StudyResult) -> Result<(), norm_report::ReportError> {
//! let out = StudyOutput::render(result, Format::Both, Duration::ZERO)?;
//! let run = RunInfo { seed: 42, command: "cargo xtask report".into(), ..RunInfo::default() };
//! let index = write_report(std::path::Path::new("target/report"), &run, &[out])?;
//! # Ok(()) }
//! ```

pub mod data;
mod error;
mod formulas;
pub mod page;
mod render;
mod report;

pub use error::ReportError;
pub use formulas::FORMULAS;
pub use render::style::format_value;
pub use render::{FigureSvg, MIN_FONT, PANEL_W, render_figure, render_png, render_svg, svg_to_png};
pub use report::{Format, REPORT_ENTRIES, RunInfo, StudyOutput, write_report};
