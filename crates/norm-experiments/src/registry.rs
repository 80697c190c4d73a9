//! The registry: the eight studies in order, with stable ids, titles, the seed's summary
//! line for each, and a uniform way to run one at full or test size.

use crate::{StudyError, StudyResult, studies};

/// Which config a registry run uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Size {
    /// The full-size study (each study's `Config::default()`).
    Full,
    /// The small config used by tests.
    Small,
}

/// One registered study.
#[derive(Debug, Clone, Copy)]
pub struct Study {
    /// Stable id, e.g. `layernorm-distribution`.
    pub id: &'static str,
    /// Title, e.g. "LayerNorm Distribution".
    pub title: &'static str,
    /// The seed document's summary line for this study.
    pub summary: &'static str,
    /// Runs the study with the given seed at the given size.
    pub run: fn(u64, Size) -> Result<StudyResult, StudyError>,
}

/// The seed document's seven key points, each with the id of the study that demonstrates it.
pub const KEY_POINTS: [(&str, &str); 7] = [
    (
        "LayerNorm: normalizes to zero mean, unit variance (GPT-2, BERT)",
        "layernorm-distribution",
    ),
    (
        "RMSNorm: rescales by root-mean-square, no mean subtraction (LLaMA, Mistral)",
        "rmsnorm-distribution",
    ),
    (
        "Both behave identically at training and inference time",
        "sequence-3d",
    ),
    (
        "Epsilon prevents division by zero for near-constant inputs",
        "epsilon",
    ),
    (
        "Learnable gamma/beta allow the network to undo normalization if needed",
        "learnable-affine",
    ),
    (
        "Normalization stabilizes gradient flow through deep networks",
        "gradient-flow",
    ),
    (
        "Pre-Norm placement (before sub-layer) is standard in modern LLMs",
        "pre-vs-post-norm",
    ),
];

/// The registered studies, in the order of the report.
pub fn registry() -> &'static [Study] {
    STUDIES
}

/// Looks a study up by id.
pub fn find(id: &str) -> Option<&'static Study> {
    STUDIES.iter().find(|s| s.id == id)
}

/// The studies, in report order: one line per study, each module's `STUDY` constant.
static STUDIES: &[Study] = &[
    studies::layernorm_distribution::STUDY,
    studies::rmsnorm_distribution::STUDY,
    studies::layernorm_vs_rmsnorm::STUDY,
    studies::epsilon::STUDY,
    studies::learnable_affine::STUDY,
    studies::gradient_flow::STUDY,
    studies::pre_vs_post_norm::STUDY,
    studies::sequence_3d::STUDY,
];
