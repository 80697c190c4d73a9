//! `RmsNorm<F>`: rescale each row to unit root-mean-square (no mean subtraction), then scale.
//! The ndarray layer (any rank, any layout) and the plain-slice layer both live here.

use ndarray::{Array, ArrayRef, Dimension};

use crate::dispatch::ForcedPath;
use crate::forward::impl_forward;
use crate::kernels::Rms;
use crate::params::{Affine, impl_norm_params};
use crate::{Element, NormError};

/// Root-mean-square normalization over the last axis (Zhang & Sennrich, 2019), as in
/// LLaMA, Mistral and T5.
///
/// ```text
/// ms  = (1/D) Σ x_i²
/// y_i = x_i / sqrt(ms + eps) · gamma_i (+ beta_i)
/// ```
///
/// The default eps is 1e-6 (LLaMA and T5 use 1e-6; LLaMA-2 and Mistral use 1e-5). There
/// is no bias by default; [`RmsNorm::with_zero_bias`] or [`RmsNorm::from_weights`] add
/// one (PyTorch's `nn.RMSNorm` has none).
///
/// Non-finite input: a row holding NaN or ±inf gives NaN in that row only. An all-zero
/// row gives 0 (`beta`) when eps > 0, and NaN (0/0) when eps = 0.
///
/// Element types: `f32`, `f64`, and `bf16`/`f16` computed in f32 and rounded once per
/// output, as for [`LayerNorm`](crate::LayerNorm).
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_core::RmsNorm;
///
/// let y = RmsNorm::<f32>::new(2)?.forward(&array![[3.0, 4.0]])?;
/// let ms = (y[[0, 0]].powi(2) + y[[0, 1]].powi(2)) / 2.0;
/// assert!((ms - 1.0).abs() < 1e-5);
/// # Ok::<(), norm_core::NormError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RmsNorm<F: Element> {
    pub(crate) p: Affine<F>,
}

impl_norm_params!(RmsNorm, 1e-6, false, "RmsNorm");
impl_forward!(RmsNorm, Rms);

/// The per-row statistic of an RmsNorm forward pass, shaped like the input without its
/// last axis: what the backward pass needs.
///
/// ```text
/// rrms = 1 / sqrt((1/D) Σ x_i² + eps)
/// ```
///
/// Rounded to the element type; saturates to `+inf` for a row whose RMS is below
/// `1/F::MAX` (and is `+inf` for an all-zero row with eps = 0).
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_core::RmsNorm;
///
/// let x = array![[3.0f64, 4.0], [0.0, 0.0]];
/// let (_, stats) = RmsNorm::<f64>::new(2)?.with_eps(0.0)?.forward_with_stats(&x)?;
/// assert!((stats.rrms[0] - 1.0 / 12.5f64.sqrt()).abs() < 1e-15);
/// assert!(stats.rrms[1].is_infinite());
/// # Ok::<(), norm_core::NormError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RmsNormStats<F, D: Dimension> {
    /// Row reciprocal RMS values, `1/sqrt(mean(x²) + eps)`.
    pub rrms: Array<F, D>,
}

impl<F: Element> RmsNorm<F> {
    /// Like [`forward`](Self::forward), also returning the per-row `1/rms`.
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use norm_core::RmsNorm;
    ///
    /// let norm = RmsNorm::<f64>::new(2)?.with_eps(0.0)?;
    /// let (_, stats) = norm.forward_with_stats(&array![[3.0, 4.0]])?;
    /// assert!((stats.rrms[0] - 1.0 / 12.5f64.sqrt()).abs() < 1e-15);
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn forward_with_stats<D: Dimension>(
        &self,
        x: &ArrayRef<F, D>,
    ) -> Result<(Array<F, D>, RmsNormStats<F::Acc, D::Smaller>), NormError> {
        let (out, (rrms, _)) = F::forward_nd::<Rms, D>(&self.p, x, true)?;
        Ok((out, RmsNormStats { rrms }))
    }

    /// Plain-slice form that also writes each row's `1/rms` (one per row).
    ///
    /// # Errors
    /// As [`forward_slice`](Self::forward_slice), plus [`NormError::StatsShape`] if
    /// `rrms` does not hold one value per row.
    ///
    /// # Example
    /// ```
    /// use norm_core::RmsNorm;
    ///
    /// let x = [3.0f64, 4.0, 6.0, 8.0]; // two rows of length 2
    /// let (mut y, mut rrms) = ([0.0; 4], [0.0; 2]);
    /// RmsNorm::new(2)?.with_eps(0.0)?.forward_slice_with_stats(&x, &mut y, &mut rrms)?;
    /// assert!((rrms[0] - 2.0 * rrms[1]).abs() < 1e-15);
    /// assert!((y[0] - y[2]).abs() < 1e-15); // RMS(2x) = RMS(x)
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    pub fn forward_slice_with_stats(
        &self,
        x: &[F],
        out: &mut [F],
        rrms: &mut [F::Acc],
    ) -> Result<(), NormError> {
        F::forward_slice::<Rms>(ForcedPath::detected(), &self.p, x, out, [Some(rrms), None])
    }
}
