//! LayerNorm and RmsNorm backward passes, by concern: the plain-slice layer
//! (`slice.rs`: row-major `&[F]` rows, validation, path and store choice), the block
//! driver (`blocks.rs`: fixed reduction blocks, serial or on the rayon pool, the same
//! bits either way), the ndarray layer (`nd.rs`: any rank, any layout) and the
//! half-precision backward (`half.rs`: bf16/f16 rows around the f32 kernels). The row
//! kernels they drive are `kernels.rs`.

use ndarray::Array1;

mod blocks;
mod half;
mod nd;
mod slice;

pub use blocks::{PAR_MIN_BYTES, REDUCTION_BLOCK_ROWS, Sweep};
pub use half::{
    backward_half_slice_on, layer_norm_backward_half, layer_norm_backward_half_slice, rms_norm_backward_half,
    rms_norm_backward_half_slice,
};
pub use nd::{layer_norm_backward, layer_norm_backward_into, rms_norm_backward, rms_norm_backward_into};
pub use slice::{
    BackwardInput, GradSlices, Saved, backward_slice_on, layer_norm_backward_slice, rms_norm_backward_slice,
};

/// The parameter gradients of a norm: dL/dgamma and, when there is a bias, dL/dbeta.
///
/// ```text
/// dgamma_j = Σ_rows dy_j · x̂_j        dbeta_j = Σ_rows dy_j
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NormGrads<F> {
    /// Gradient of the weight (gamma), length `dim`.
    pub dgamma: Array1<F>,
    /// Gradient of the bias (beta), length `dim`; `None` when the norm has no bias.
    pub dbeta: Option<Array1<F>>,
}
