//! `norm-experiments`: the eight studies of LayerNorm and RMSNorm. Each takes a `Config`
//! and a seed and returns a [`StudyResult`]: figure data plus measured findings.
//! This crate computes only; it neither draws nor writes files.

mod dd;
mod error;
mod format;
mod registry;
pub mod result;
mod rng;
mod stats;
pub mod studies;

pub use error::StudyError;
pub use registry::{KEY_POINTS, Size, Study, find, registry};
pub use result::{Figure, Finding, Panel, PanelContent, StudyResult};
pub use rng::study_rng;
