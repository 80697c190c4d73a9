//! `GradError`: every way a forward or backward call in `norm-autograd` can be refused,
//! each naming the shapes or values involved. Errors from `norm-core` are wrapped as-is.

use norm_core::NormError;
use thiserror::Error;

/// Why a forward/backward pass, a layer constructor, a loss or an update was refused.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum GradError {
    /// An error from the `norm-core` forward kernels or a shape check shared with them.
    #[error(transparent)]
    Norm(#[from] NormError),
    /// Two arrays that must have the same (or a derived) shape do not.
    #[error("`{what}` has shape {got:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which array (e.g. `dy`, `dx`, `target`, `cache.x`).
        what: &'static str,
        /// The shape required.
        expected: Vec<usize>,
        /// The shape given.
        got: Vec<usize>,
    },
    /// A matrix product whose inner dimensions differ.
    #[error("cannot multiply `{what}`: {left:?} x {right:?} (inner dimensions differ)")]
    MatMul {
        /// Which product.
        what: &'static str,
        /// Shape of the left operand.
        left: Vec<usize>,
        /// Shape of the right operand.
        right: Vec<usize>,
    },
    /// A size parameter that must be at least 1 is 0.
    #[error("`{what}` must be >= 1, got 0")]
    ZeroSize {
        /// Which size.
        what: &'static str,
    },
    /// The model width is not a multiple of the number of attention heads.
    #[error("d_model = {d_model} is not divisible by n_heads = {n_heads}")]
    HeadsDontDivide {
        /// Model width.
        d_model: usize,
        /// Number of heads.
        n_heads: usize,
    },
    /// A class index in a cross-entropy target is out of range.
    #[error("target[{row}] = {class} is out of range for {classes} classes")]
    ClassOutOfRange {
        /// Row of the offending target.
        row: usize,
        /// The given class index.
        class: usize,
        /// Number of classes (columns of the logits).
        classes: usize,
    },
    /// A parameter value (init gain, learning rate, finite-difference step, ...) is
    /// negative, zero where it must be positive, NaN or infinite.
    #[error("`{what}` must be finite and > 0, got {value}")]
    InvalidValue {
        /// Which value.
        what: &'static str,
        /// The rejected value.
        value: f64,
    },
    /// A cache passed to `backward` was made by a different kind of layer (e.g. a
    /// LayerNorm cache given to an RmsNorm).
    #[error("cache was made by a {got} forward, but this layer is a {expected}")]
    CacheMismatch {
        /// The layer kind expected.
        expected: &'static str,
        /// The layer kind that made the cache.
        got: &'static str,
    },
    /// Gradients given to an update do not match the model's parameters.
    #[error("gradient `{name}` does not match the model: {reason}")]
    ParamMismatch {
        /// Parameter name.
        name: String,
        /// What is wrong (missing, shape).
        reason: String,
    },
    /// A layer's parts do not fit its configuration (e.g. a Peri-LN transformer block
    /// without its output norms, or another placement with them).
    #[error("a {placement} block {problem}")]
    LayerMismatch {
        /// The configuration (e.g. the block's placement name).
        placement: &'static str,
        /// What does not fit.
        problem: &'static str,
    },
}
