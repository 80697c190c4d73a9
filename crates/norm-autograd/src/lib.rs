//! `norm-autograd`: hand-written backward passes for LayerNorm and RMSNorm (on top of
//! `norm-core`'s forward kernels), the small layers needed to train with them (linear,
//! activations, MLP, multi-head attention, transformer blocks), losses, SGD, and a
//! finite-difference gradient checker. No tape, no graph: every layer has
//! `forward(&x) -> (y, cache)` and `backward(&cache, &dy) -> (dx, grads)`.
//!
//! ```
//! use ndarray::Array2;
//! use norm_core::LayerNorm;
//! use norm_autograd::layer_norm_backward;
//!
//! let ln = LayerNorm::<f32>::new(64)?;
//! let x = Array2::<f32>::from_shape_fn((8, 64), |(i, j)| (i as f32) + (j as f32).sin());
//! let (y, stats) = ln.forward_with_stats(&x)?;
//! let (dx, grads) = layer_norm_backward(&ln, &x, &stats, &y)?; // dL/dy = y for L = ½‖y‖²
//! assert_eq!(dx.shape(), x.shape());
//! assert_eq!(grads.dgamma.len(), 64);
//! # Ok::<(), norm_autograd::GradError>(())
//! ```
//!
//! Determinism: dgamma/dbeta are summed in fixed blocks of [`REDUCTION_BLOCK_ROWS`] rows
//! combined in block order, so they do not depend on how the rows are split.
//! Derivations: `docs/math.md`, section "Backward".

mod activation;
mod attention;
mod error;
mod ffn;
mod gradcheck;
mod kernels;
mod linear;
mod loss;
mod mlp;
mod norm_backward;
mod norm_layer;
mod params;
pub mod reference;
mod transformer;

pub use activation::{Activation, ActivationCache};
pub use attention::{AttentionCache, AttentionGrads, MultiHeadAttention};
pub use error::GradError;
pub use ffn::{FeedForward, FeedForwardCache, FeedForwardGrads};
pub use gradcheck::{GradCheck, GradChecker};
pub use kernels::{REDUCTION_BLOCK_ROWS, layer_norm_backward_row, rms_norm_backward_row};
pub use linear::{Init, Linear, LinearCache, LinearGrads};
pub use loss::{mse_loss, softmax_cross_entropy, softmax_rows};
pub use mlp::{Mlp, MlpCache, MlpConfig, MlpGrads, MlpLayer, MlpLayerCache, MlpLayerGrads};
pub use norm_backward::{
    NormGrads, layer_norm_backward, layer_norm_backward_into, layer_norm_backward_slice, rms_norm_backward,
    rms_norm_backward_into, rms_norm_backward_slice,
};
pub use norm_layer::{Norm, NormCache, NormKind, NormStats};
pub use params::{Gradients, Module, l2_norm, sgd_step};
pub use transformer::{
    BlockCache, BlockConfig, BlockGrads, Placement, StackCache, StackConfig, StackGrads, TransformerBlock,
    TransformerStack,
};

#[doc(hidden)]
pub mod __private {
    //! Test hooks: the chunked driver that mimics a thread pool's split of row blocks.
    pub use crate::norm_backward::{Sweep, layer_norm_backward_slice_sweep, rms_norm_backward_slice_sweep};
}
