//! `LayerNorm<F>`: normalize each row to zero mean and unit variance, then scale and shift.
//! The ndarray layer (any rank, any layout) and the plain-slice layer both live here.

use ndarray::{Array, ArrayRef, Dimension};

use crate::kernels::layer_norm_row;
use crate::params::{Affine, impl_norm_params};
use crate::rows::{check_nd, check_slices, check_stats_len, run_nd, run_rows};
use crate::simd::Stores;
use crate::{Float, NormError};

/// Layer normalization over the last axis (Ba et al., 2016), as in GPT-2, BERT and
/// PyTorch's `nn.LayerNorm`.
///
/// ```text
/// mean = (1/D) Σ x_i
/// var  = (1/D) Σ (x_i - mean)²          (two passes, never E[x²] - E[x]²)
/// y_i  = (x_i - mean) / sqrt(var + eps) · gamma_i + beta_i
/// ```
///
/// The default eps is 1e-5 (PyTorch's default, used by BERT and GPT-2; some models use
/// 1e-6 or 1e-12). The bias is optional: [`LayerNorm::without_bias`] matches PyTorch's
/// `bias=False`.
///
/// Non-finite input: a row holding NaN or ±inf gives NaN in that row only. A constant
/// row gives `beta` (0 without bias) when eps > 0, and NaN (0/0) when eps = 0.
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
pub struct LayerNorm<F: Float> {
    p: Affine<F>,
}

impl_norm_params!(LayerNorm, 1e-5, true, "LayerNorm");

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

impl<F: Float> LayerNorm<F> {
    /// Normalizes `x` over its last axis into a new array of the same shape.
    ///
    /// `x` may have any rank ≥ 1 and any layout (views, transposes, slices).
    ///
    /// # Errors
    /// [`NormError::ZeroRank`] for a 0-d input; [`NormError::FeatureMismatch`] if the
    /// last axis is not [`dim`](Self::dim) long.
    ///
    /// # Example
    /// ```
    /// use ndarray::Array3;
    /// use norm_core::LayerNorm;
    ///
    /// let x = Array3::<f64>::from_shape_fn((2, 3, 8), |(b, l, d)| (b * 24 + l * 8 + d) as f64);
    /// let y = LayerNorm::<f64>::new(8)?.forward(&x)?;
    /// assert_eq!(y.shape(), &[2, 3, 8]);
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    pub fn forward<D: Dimension>(&self, x: &ArrayRef<F, D>) -> Result<Array<F, D>, NormError> {
        check_nd(x.shape(), None, self.dim())?;
        let mut out = Array::zeros(x.raw_dim());
        self.forward_into(x, &mut out)?;
        Ok(out)
    }

    /// Normalizes `x` over its last axis into the caller's `out` (same shape, any layout).
    ///
    /// # Errors
    /// As [`forward`](Self::forward), plus [`NormError::OutputShape`] if `out`'s shape
    /// differs from `x`'s.
    ///
    /// # Example
    /// ```
    /// use ndarray::Array2;
    /// use norm_core::LayerNorm;
    ///
    /// let x = Array2::<f32>::from_shape_fn((4, 16), |(i, j)| (i + j) as f32);
    /// let mut y = Array2::<f32>::zeros((4, 16));
    /// LayerNorm::new(16)?.forward_into(&x, &mut y)?;
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    pub fn forward_into<D: Dimension>(
        &self,
        x: &ArrayRef<F, D>,
        out: &mut ArrayRef<F, D>,
    ) -> Result<(), NormError> {
        check_nd(x.shape(), Some(out.shape()), self.dim())?;
        run_nd(x, out, false, |xr, or, st| self.row(xr, or, st))?;
        Ok(())
    }

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
    ) -> Result<(Array<F, D>, LayerNormStats<F, D::Smaller>), NormError> {
        check_nd(x.shape(), None, self.dim())?;
        let mut out = Array::zeros(x.raw_dim());
        let (mean, rstd) = run_nd(x, &mut out, true, |xr, or, st| self.row(xr, or, st))?;
        Ok((out, LayerNormStats { mean, rstd }))
    }

    /// Plain-slice form: `x` holds rows of length [`dim`](Self::dim), row-major; `out`
    /// receives the normalized rows. An empty `x` is zero rows.
    ///
    /// # Errors
    /// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`;
    /// [`NormError::BufferLen`] if `out.len() != x.len()`.
    ///
    /// # Example
    /// ```
    /// use norm_core::LayerNorm;
    ///
    /// let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
    /// let mut y = [0.0f32; 6];
    /// LayerNorm::new(3)?.forward_slice(&x, &mut y)?;
    /// assert!((y[0] + 1.2247).abs() < 1e-3);
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    pub fn forward_slice(&self, x: &[F], out: &mut [F]) -> Result<(), NormError> {
        check_slices(x.len(), out.len(), self.dim())?;
        run_rows(x, out, self.dim(), None, None, Stores::Auto, |xr, or, st| {
            self.row(xr, or, st)
        });
        Ok(())
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
        mean: &mut [F],
        rstd: &mut [F],
    ) -> Result<(), NormError> {
        let rows = check_slices(x.len(), out.len(), self.dim())?;
        check_stats_len("mean", mean.len(), rows)?;
        check_stats_len("rstd", rstd.len(), rows)?;
        run_rows(
            x,
            out,
            self.dim(),
            Some(mean),
            Some(rstd),
            Stores::Auto,
            |xr, or, st| self.row(xr, or, st),
        );
        Ok(())
    }

    #[inline(always)]
    fn row(&self, x: &[F], out: &mut [F], stream: bool) -> (F, F) {
        layer_norm_row(x, &self.p.weight, self.p.bias.as_deref(), self.p.eps, out, stream)
    }
}
