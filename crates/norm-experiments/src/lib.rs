//! `norm-experiments`: the studies of LayerNorm and RMSNorm. Each implements [`Study`]:
//! a typed config in, typed measurements out, then findings and a figure built from
//! those measurements. [`RunConfig`] holds every study's config for one run (defaults,
//! a TOML file, `ID.FIELD=VALUE` overrides). This crate computes only; it neither draws
//! nor writes files.

mod common;
mod config;
mod dd;
mod error;
mod format;
pub mod kernel_cost;
pub mod markov;
pub mod references;
mod registry;
pub mod result;
mod rng;
mod stats;
pub mod studies;
mod study;
#[cfg(test)]
mod testing;

pub use config::{ConfigChange, ConfigError, RunConfig};
pub use error::StudyError;
pub use references::Reference;
pub use registry::{KEY_POINTS, find, registry};
pub use result::{Figure, Finding, Panel, PanelContent, StudyResult};
pub use rng::study_rng;
pub use study::{Entry, Progress, ProgressFn, Size, Study, StudyConfig, no_progress};
