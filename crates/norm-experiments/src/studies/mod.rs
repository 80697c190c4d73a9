//! The registry: every study of the report, one line each, in report order. A line
//! declares the study's module and registers its [`Study`](crate::Study) type; nothing
//! else lists studies. Shared helpers live in `crate::common` and `crate::stats`.

use crate::study::Entry;

/// Declares each study module and lists its entry, in report order.
macro_rules! studies {
    ($($module:ident :: $study:ident),* $(,)?) => {
        $(pub mod $module;)*

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
