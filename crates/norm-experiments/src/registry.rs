//! Looking studies up: the registered list (declared in `studies`), lookup by id, and the
//! seed document's seven key points, each pointing at the studies that demonstrate it.

use crate::Study;
use crate::studies::{
    STUDIES, epsilon::Epsilon, gradient_flow::GradientFlow, layernorm_distribution::LayerNormDistribution,
    learnable_affine::LearnableAffine, pre_vs_post_norm::PreVsPostNorm,
    rmsnorm_distribution::RmsNormDistribution, sequence_3d::Sequence3d, training::Training,
};
use crate::study::Entry;

/// The seed document's seven key points, each with the ids of the studies that demonstrate
/// it (the first is the main one).
pub const KEY_POINTS: [(&str, &[&str]); 7] = [
    (
        "LayerNorm: normalizes to zero mean, unit variance (GPT-2, BERT)",
        &[LayerNormDistribution::ID],
    ),
    (
        "RMSNorm: rescales by root-mean-square, no mean subtraction (LLaMA, Mistral)",
        &[RmsNormDistribution::ID],
    ),
    (
        "Both behave identically at training and inference time",
        &[Sequence3d::ID],
    ),
    (
        "Epsilon prevents division by zero for near-constant inputs",
        &[Epsilon::ID],
    ),
    (
        "Learnable gamma/beta allow the network to undo normalization if needed",
        &[LearnableAffine::ID],
    ),
    (
        "Normalization stabilizes gradient flow through deep networks",
        &[GradientFlow::ID],
    ),
    (
        "Pre-Norm placement (before sub-layer) is standard in modern LLMs",
        &[PreVsPostNorm::ID, Training::ID],
    ),
];

/// The registered studies, in the order of the report.
pub fn registry() -> &'static [Entry] {
    STUDIES
}

/// Looks a study up by id.
pub fn find(id: &str) -> Option<&'static Entry> {
    STUDIES.iter().find(|s| s.id == id)
}
