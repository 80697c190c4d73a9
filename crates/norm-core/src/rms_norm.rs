//! `RmsNorm<F>`: rescale each row to unit root-mean-square (no mean subtraction), then scale.
//! The ndarray layer (any rank, any layout) and the plain-slice layer both live here.

use ndarray::{Array, ArrayRef, Dimension};

use crate::kernels::rms_norm_row;
use crate::params::{Affine, impl_norm_params};
use crate::rows::{check_nd, check_slices, check_stats_len, run_nd, run_rows};
use crate::simd::Stores;
use crate::{Float, NormError};

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
pub struct RmsNorm<F: Float> {
    p: Affine<F>,
}

impl_norm_params!(RmsNorm, 1e-6, false, "RmsNorm");

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

impl<F: Float> RmsNorm<F> {
    /// Normalizes `x` over its last axis into a new array of the same shape.
    ///
    /// # Errors
    /// [`NormError::ZeroRank`] for a 0-d input; [`NormError::FeatureMismatch`] if the
    /// last axis is not [`dim`](Self::dim) long.
    ///
    /// # Example
    /// ```
    /// use ndarray::Array2;
    /// use norm_core::RmsNorm;
    ///
    /// let x = Array2::<f32>::from_shape_fn((8, 4), |(i, j)| (i * 4 + j) as f32);
    /// let y = RmsNorm::<f32>::new(8)?.forward(&x.t())?; // a transposed view works too
    /// assert_eq!(y.shape(), &[4, 8]);
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
    /// use ndarray::Array1;
    /// use norm_core::RmsNorm;
    ///
    /// let x = Array1::<f64>::linspace(-1.0, 1.0, 5);
    /// let mut y = Array1::<f64>::zeros(5);
    /// RmsNorm::new(5)?.forward_into(&x, &mut y)?;
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
    ) -> Result<(Array<F, D>, RmsNormStats<F, D::Smaller>), NormError> {
        check_nd(x.shape(), None, self.dim())?;
        let mut out = Array::zeros(x.raw_dim());
        let (rrms, _) = run_nd(x, &mut out, true, |xr, or, st| self.row(xr, or, st))?;
        Ok((out, RmsNormStats { rrms }))
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
    /// use norm_core::RmsNorm;
    ///
    /// let mut y = [0.0f32; 2];
    /// RmsNorm::new(2)?.forward_slice(&[3.0, 4.0], &mut y)?;
    /// assert!((y[0] - 0.8485).abs() < 1e-3);
    /// # Ok::<(), norm_core::NormError>(())
    /// ```
    pub fn forward_slice(&self, x: &[F], out: &mut [F]) -> Result<(), NormError> {
        check_slices(x.len(), out.len(), self.dim())?;
        run_rows(x, out, self.dim(), None, None, Stores::Auto, |xr, or, st| {
            self.row(xr, or, st)
        });
        Ok(())
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
    pub fn forward_slice_with_stats(&self, x: &[F], out: &mut [F], rrms: &mut [F]) -> Result<(), NormError> {
        let rows = check_slices(x.len(), out.len(), self.dim())?;
        check_stats_len("rrms", rrms.len(), rows)?;
        run_rows(
            x,
            out,
            self.dim(),
            Some(rrms),
            None,
            Stores::Auto,
            |xr, or, st| self.row(xr, or, st),
        );
        Ok(())
    }

    #[inline(always)]
    fn row(&self, x: &[F], out: &mut [F], stream: bool) -> (F, F) {
        let r = rms_norm_row(x, &self.p.weight, self.p.bias.as_deref(), self.p.eps, out, stream);
        (r, F::zero())
    }
}
