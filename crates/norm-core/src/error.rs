//! `NormError`: every way a call into `norm-core` can be refused, each naming the shapes or values.

use thiserror::Error;

/// Why a norm could not be built or applied. Messages name the offending shapes or values.
///
/// Every public function of `norm-core` that can fail returns this instead of panicking,
/// and checks all shapes before it writes anything.
///
/// # Example
/// ```
/// use ndarray::Array2;
/// use norm_core::{LayerNorm, NormError};
///
/// let ln = LayerNorm::<f32>::new(4)?;
/// let err = ln.forward(&Array2::<f32>::zeros((2, 3))).unwrap_err();
/// assert_eq!(err, NormError::FeatureMismatch { shape: vec![2, 3], got: 3, dim: 4 });
/// assert_eq!(
///     err.to_string(),
///     "input has shape [2, 3]: last axis is 3, but the layer normalizes 4 features"
/// );
/// # Ok::<(), NormError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum NormError {
    /// A norm over zero features was requested (`new(0)`, an empty weight, or an
    /// input whose last axis has length 0).
    #[error("the normalized (last) axis must have length >= 1, got 0")]
    ZeroDim,
    /// The weight (gamma) length differs from the normalized dimension.
    #[error("weight (gamma) has length {weight}, expected {dim} (the normalized dimension)")]
    WeightLen {
        /// Length of the given weight.
        weight: usize,
        /// The normalized dimension.
        dim: usize,
    },
    /// The bias (beta) length differs from the weight length.
    #[error("bias (beta) has length {bias}, expected {dim} (the weight's length)")]
    BiasLen {
        /// Length of the given bias.
        bias: usize,
        /// The normalized dimension.
        dim: usize,
    },
    /// `eps` is negative, NaN or infinite.
    #[error("eps must be finite and >= 0, got {eps}")]
    InvalidEps {
        /// The rejected value.
        eps: f64,
    },
    /// A 0-dimensional array has no last axis to normalize.
    #[error("input is 0-dimensional (a scalar); normalization needs at least one axis")]
    ZeroRank,
    /// The input's last axis differs from the layer's dimension.
    #[error("input has shape {shape:?}: last axis is {got}, but the layer normalizes {dim} features")]
    FeatureMismatch {
        /// Full input shape.
        shape: Vec<usize>,
        /// Its last-axis length.
        got: usize,
        /// The layer's dimension.
        dim: usize,
    },
    /// The output array's shape differs from the input's.
    #[error("output has shape {output:?}, but the input has shape {input:?}")]
    OutputShape {
        /// Input shape.
        input: Vec<usize>,
        /// Output shape.
        output: Vec<usize>,
    },
    /// A flat slice is not a whole number of rows.
    #[error("slice of length {len} is not a multiple of the row length {dim}")]
    SliceLen {
        /// Slice length.
        len: usize,
        /// Row length.
        dim: usize,
    },
    /// An output (or other same-sized) slice differs in length from the input slice.
    #[error("slice `{name}` has length {got}, expected {expected} (the input's length)")]
    BufferLen {
        /// Which buffer.
        name: &'static str,
        /// Its length.
        got: usize,
        /// The required length.
        expected: usize,
    },
    /// A per-row statistics buffer has the wrong length or shape.
    #[error(
        "statistics `{name}` have shape {got:?}, expected {expected:?} (the input shape without its last axis)"
    )]
    StatsShape {
        /// Which statistic (`mean`, `rstd`, `rrms`).
        name: &'static str,
        /// Shape given.
        got: Vec<usize>,
        /// Shape required.
        expected: Vec<usize>,
    },
    /// The residual of a fused residual-add + norm differs in shape from the input.
    #[error("residual has shape {residual:?}, but the input has shape {input:?}")]
    ResidualShape {
        /// Input shape.
        input: Vec<usize>,
        /// Residual shape.
        residual: Vec<usize>,
    },
}
