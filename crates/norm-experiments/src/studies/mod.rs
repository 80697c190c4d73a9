//! The registry: every study of the report, one line each, in report order, each line
//! registering a [`Study`](crate::Study) type (its module is declared just above);
//! nothing else lists studies. Shared helpers live in `crate::common` and `crate::stats`.

use crate::study::Entry;

// The modules are declared here, outside the list, so that rustfmt (which does not
// look into macro invocations) formats them.
pub mod epsilon;
pub mod gradient_flow;
pub mod layernorm_distribution;
pub mod layernorm_vs_rmsnorm;
pub mod learnable_affine;
pub mod pre_vs_post_norm;
pub mod rmsnorm_distribution;
pub mod sequence_3d;
pub mod training;

/// Lists each study's entry, in report order.
macro_rules! studies {
    ($($module:ident :: $study:ident),* $(,)?) => {
        /// The registered studies, in report order.
        pub(crate) static STUDIES: &[Entry] = &[$(Entry::of::<$module::$study>()),*];
    };
}

studies! {
    layernorm_distribution::LayerNormDistribution,
    rmsnorm_distribution::RmsNormDistribution,
    layernorm_vs_rmsnorm::LayerNormVsRmsNorm,
    epsilon::Epsilon,
    learnable_affine::LearnableAffine,
    gradient_flow::GradientFlow,
    pre_vs_post_norm::PreVsPostNorm,
    sequence_3d::Sequence3d,
    training::Training,
}
