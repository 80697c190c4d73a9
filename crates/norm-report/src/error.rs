//! `ReportError`: why a figure could not be drawn or a report file could not be written.

use std::path::PathBuf;

use thiserror::Error;

/// Why rendering or writing the report failed.
#[derive(Debug, Error)]
pub enum ReportError {
    /// A panel's data is malformed in a way the renderer cannot skip over.
    #[error("panel `{panel}`: {reason}")]
    BadPanel {
        /// The panel title.
        panel: String,
        /// What is wrong, with the offending sizes.
        reason: String,
    },
    /// Rasterizing the SVG or encoding the PNG failed.
    #[error("making the PNG failed: {0}")]
    Png(String),
    /// Serializing a result to JSON failed.
    #[error("serializing study `{id}` to JSON failed: {source}")]
    Json {
        /// Study id.
        id: String,
        /// The serde_json error.
        source: serde_json::Error,
    },
    /// A file or folder could not be written.
    #[error("cannot write `{}`: {source}", path.display())]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
}
