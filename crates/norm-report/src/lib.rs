//! `norm-report`: turns study results into figures (SVG and PNG, drawn with plotters),
//! one HTML page and a `report.md`, and the data behind them as JSON and CSV.
//! It knows panel kinds, never studies: any [`Figure`](norm_experiments::result::Figure)
//! can be drawn, and the page is laid out from the results and the registry's key points.
//!
//! ```no_run
//! use std::time::Duration;
//! use norm_report::{Format, RunInfo, StudyOutput, write_report};
//! # fn demo(result: norm_experiments::StudyResult) -> Result<(), norm_report::ReportError> {
//! let out = StudyOutput::render(result, Format::Both, Duration::ZERO)?;
//! let run = RunInfo { seed: 42, size: "full".into(), versions: vec![], command: "cargo xtask report".into(), config_changes: vec![] };
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
pub use render::{render_png, render_svg};
pub use report::{Format, REPORT_ENTRIES, RunInfo, StudyOutput, write_report};
