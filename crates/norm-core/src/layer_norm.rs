//! `LayerNorm<F>`: normalize each row to zero mean and unit variance, then scale and shift.
//! The ndarray layer (any rank, any layout) and the plain-slice layer both live here.

use ndarray::{Array, ArrayRef, Dimension};

use crate::dispatch::ForcedPath;
use crate::forward::impl_forward;
use crate::kernels::Layer;
use crate::params::{Affine, impl_norm_params};
use crate::{Element, NormError};

/// Layer normalization over the last axis (Ba et al., 2016), as in GPT-2, BERT and
/// PyTorch's `nn.LayerNorm`.
///
/// ```text
/// mean = (1/D) Σ x_i
/// var  = (1/D) Σ (x_i - mean)²          (shifted sums, never E[x²] - E[x]²)
/// y_i  = (x_i - mean) / sqrt(var + eps) · gamma_i + beta_i
/// ```
///
/// The default eps is 1e-5 (PyTorch's default, used by GPT-2; BERT uses 1e-12, some
/// models 1e-6). The bias is optional: [`LayerNorm::without_bias`] matches PyTorch's
/// `bias=False`.
///
/// Non-finite input: a row holding NaN or ±inf gives NaN in that row only. A constant
/// row gives `beta` (0 without bias) when eps > 0, and NaN (0/0) when eps = 0.
///
/// Element types ([`Element`]): `f32` and `f64` compute in their own precision; `bf16`
/// and `f16` (weight and bias in the same type) are widened to f32, normalized by the
/// f32 kernels, and each output rounded once to nearest, ties to even; their eps and
/// statistics are f32. Within 1 ulp of the f64 result rounded to the storage type.
///
/// ```
/// use ndarray::Array2;
/// use norm_core::{LayerNorm, bf16};
///
/// let x = Array2::from_shape_fn((2, 8), |(i, j)| bf16::from_f32((i * 8 + j) as f32));
/// let (y, stats) = LayerNorm::<bf16>::new(8)?.forward_with_stats(&x)?;
/// assert_eq!(y[[0, 0]], bf16::from_f32(-1.5275)); // (0 - 3.5) / sqrt(5.25 + 1e-5), rounded
/// assert_eq!(stats.mean[1], 11.5f32); // statistics in f32
/// # Ok::<(), norm_core::NormError>(())
/// ```
///
/// # Example
/// ```
/// use ndarray::array;
/// use norm_core::LayerNorm;
///
/// let ln = LayerNorm::<f32>::new(4)?;
/// let y = ln.forward(&array![[1.0, 2.0, 3.0, 4.0], [2.0, 2.0, 2.0, 10.0]])?;
/// let mean: f32 = y.row(0).sum() / 4.0;
/// assert!(mean.abs() < 1e-6);
/// # Ok::<(), norm_core::NormError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNorm<F: Element> {
    pub(crate) p: Affine<F>,
}

impl_norm_params!(LayerNorm, 1e-5, true, "LayerNorm");
impl_forward!(LayerNorm, Layer);

/// The per-row statistics of a LayerNorm forward pass, shaped like the input without its
/// last axis: what the backward pass needs.
///
/// ```text
/// mean = (1/D) Σ x_i          rstd = 1 / sqrt(var + eps)
/// ```
///
/// Both are rounded to the element type; `rstd` saturates to `+inf` for a row whose
/// spread is below `1/F::MAX` (and is `+inf` for a constant row with eps = 0).
///
/// # Example
/// ```
/// use ndarray::Array3;
/// use norm_core::LayerNorm;
///
/// let x = Array3::<f64>::from_shape_fn((2, 3, 4), |(b, l, d)| (b + l * d) as f64);
/// let (_, stats) = LayerNorm::<f64>::new(4)?.forward_with_stats(&x)?;
/// assert_eq!(stats.mean.shape(), &[2, 3]);
/// assert_eq!(stats.mean[[1, 0]], 1.0); // the row [1, 1, 1, 1]
/// assert!((stats.rstd[[1, 0]] - 1.0 / 1e-5f64.sqrt()).abs() < 1e-9);
/// # Ok::<(), norm_core::NormError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LayerNormStats<F, D: Dimension> {
    /// Row means.
    pub mean: Array<F, D>,
    /// Row reciprocal standard deviations, `1/sqrt(var + eps)`.
    pub rstd: Array<F, D>,
}

impl<F: Element> LayerNorm<F> {
    /// Like [`forward`](Self::forward), also returning the per-row mean and `1/std`.
    ///
    /// # Errors
    /// As [`forward`](Self::forward).
    ///
    /// # Example
    /// ```
    /// use ndarray::array;
    /// use norm_core::LayerNorm;
    ///
    /// let (y, stats) = LayerNorm::<f64>::new(2)?.forward_with_stats(&array![[1.0, 3.0]])?;
    /// assert_eq!(stats.mean[0], 2.0);
    /// assert!((stats.rstd[0] - 1.0 / (1.0f64 + 1e-5).sqrt()).abs() < 1e-15);
    /// # let _ = y;
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    #[allow(clippy::type_complexity)]
    pub fn forward_with_stats<D: Dimension>(
        &self,
        x: &ArrayRef<F, D>,
    ) -> Result<(Array<F, D>, LayerNormStats<F::Acc, D::Smaller>), NormError> {
        let (out, (mean, rstd)) = F::forward_nd::<Layer, D>(&self.p, x, true)?;
        Ok((out, LayerNormStats { mean, rstd }))
    }

    /// Plain-slice form that also writes each row's mean and `1/std` (one per row).
    ///
    /// # Errors
    /// As [`forward_slice`](Self::forward_slice), plus [`NormError::StatsShape`] if
    /// `mean` or `rstd` does not hold one value per row.
    ///
    /// # Example
    /// ```
    /// use norm_core::LayerNorm;
    ///
    /// let x = [1.0f32, 3.0, 10.0, 10.0]; // two rows of length 2
    /// let (mut y, mut mean, mut rstd) = ([0.0f32; 4], [0.0f32; 2], [0.0f32; 2]);
    /// LayerNorm::new(2)?.with_eps(0.0)?.forward_slice_with_stats(&x, &mut y, &mut mean, &mut rstd)?;
    /// assert_eq!((mean, rstd[0]), ([2.0, 10.0], 1.0));
    /// assert!(rstd[1].is_infinite() && y[2].is_nan()); // constant row, eps = 0: 0/0
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    pub fn forward_slice_with_stats(
        &self,
        x: &[F],
        out: &mut [F],
        mean: &mut [F::Acc],
        rstd: &mut [F::Acc],
    ) -> Result<(), NormError> {
        F::forward_slice::<Layer>(ForcedPath::detected(), &self.p, x, out, [Some(mean), Some(rstd)])
    }
}
