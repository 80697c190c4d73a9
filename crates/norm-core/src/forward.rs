//! The forward of either norm over arrays and slices, generic over the norm [`Kind`]:
//! shape checks, then the row drivers of `rows.rs` over the row kernel of that kind; and
//! the macro that gives `LayerNorm` and `RmsNorm` their shared forward methods
//! (`forward`, `forward_into`, `forward_slice`) from it.

use ndarray::{Array, ArrayRef, Dimension};

use crate::dispatch::ForcedPath;
use crate::kernels::{Kind, Out, RowParams, norm_rows};
use crate::rows::{RowKernel, StatPair, check_nd, check_slices, check_stats_len, run_nd, run_rows};
use crate::simd::Path;
use crate::{Float, NormError};

/// An output array and its per-row statistics (in the accumulation type).
pub type WithStats<E, D> = (Array<E, D>, StatPair<<E as crate::Element>::Acc, D>);

/// `norm(x)` over the last axis into a new array, with the per-row statistics when
/// `want_stats` (zeros otherwise).
pub(crate) fn forward_nd<K: Kind, F: Float, D: Dimension>(
    p: RowParams<'_, F>,
    x: &ArrayRef<F, D>,
    want_stats: bool,
) -> Result<WithStats<F, D>, NormError> {
    check_nd(x.shape(), None, p.weight.len())?;
    let mut out = Array::zeros(x.raw_dim());
    let stats = run_nd(x, &mut out, want_stats, &row::<K, F>(ForcedPath::detected(), p))?;
    Ok((out, stats))
}

/// `norm(x)` over the last axis into the caller's `out`.
pub(crate) fn forward_into_nd<K: Kind, F: Float, D: Dimension>(
    p: RowParams<'_, F>,
    x: &ArrayRef<F, D>,
    out: &mut ArrayRef<F, D>,
) -> Result<(), NormError> {
    check_nd(x.shape(), Some(out.shape()), p.weight.len())?;
    run_nd(x, out, false, &row::<K, F>(ForcedPath::detected(), p))?;
    Ok(())
}

/// `norm(x)` over row-major slices on `how`'s path and stores, writing the statistics
/// that are given (named as [`Kind::STATS`] in a shape error).
pub(crate) fn forward_slice<K: Kind, F: Float>(
    how: ForcedPath,
    p: RowParams<'_, F>,
    x: &[F],
    out: &mut [F],
    [s0, s1]: [Option<&mut [F]>; 2],
) -> Result<(), NormError> {
    let d = p.weight.len();
    let rows = check_slices(x.len(), out.len(), d)?;
    for (name, s) in K::STATS.into_iter().zip([&s0, &s1]) {
        if let Some(s) = s {
            check_stats_len(name, s.len(), rows)?;
        }
    }
    run_rows(x, out, d, s0, s1, how.stores(), &row::<K, F>(how, p));
    Ok(())
}

/// The row kernel of norm `K` on `how`'s path.
#[inline(always)]
fn row<K: Kind, F: Float>(how: ForcedPath, p: RowParams<'_, F>) -> NormKernel<'_, K, F> {
    NormKernel {
        path: how.simd_path(),
        p,
        kind: std::marker::PhantomData,
    }
}

/// The f32/f64 row kernel of norm `K` on a path, with its parameters.
struct NormKernel<'a, K, F> {
    path: Path,
    p: RowParams<'a, F>,
    kind: std::marker::PhantomData<K>,
}

impl<K: Kind, F: Float> RowKernel<F, F> for NormKernel<'_, K, F> {
    #[inline(always)]
    fn row(&self, x: &[F], out: Out<'_, F>) -> (F, F) {
        norm_rows::<K, F>(self.path, x, self.p, out, [None, None])
    }
    #[inline(always)]
    fn rows(&self, x: &[F], out: Out<'_, F>, stats: [Option<&mut [F]>; 2]) {
        norm_rows::<K, F>(self.path, x, self.p, out, stats);
    }
}

/// Generates the forward methods whose signatures `LayerNorm` and `RmsNorm` share, for
/// norm `$kind` (a [`Kind`]).
macro_rules! impl_forward {
    ($name:ident, $kind:ty) => {
        impl<F: Element> $name<F> {
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
            /// use ndarray::{Array2, Array3};
            #[doc = concat!(" use norm_core::", stringify!($name), ";")]
            ///
            /// let x = Array3::<f64>::from_shape_fn((2, 3, 8), |(b, l, d)| (b * 24 + l * 8 + d) as f64);
            #[doc = concat!(" let y = ", stringify!($name), "::<f64>::new(8)?.forward(&x)?;")]
            /// assert_eq!(y.shape(), &[2, 3, 8]);
            ///
            /// let x = Array2::<f32>::from_shape_fn((8, 4), |(i, j)| (i * 4 + j) as f32);
            #[doc = concat!(" let y = ", stringify!($name), "::<f32>::new(8)?.forward(&x.t())?; // a transposed view works too")]
            /// assert_eq!(y.shape(), &[4, 8]);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn forward<D: Dimension>(&self, x: &ArrayRef<F, D>) -> Result<Array<F, D>, NormError> {
                Ok(F::forward_nd::<$kind, D>(&self.p, x, false)?.0)
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
            #[doc = concat!(" use norm_core::", stringify!($name), ";")]
            ///
            /// let x = Array2::<f32>::from_shape_fn((4, 16), |(i, j)| (i + j) as f32);
            /// let mut y = Array2::<f32>::zeros((4, 16));
            #[doc = concat!(" ", stringify!($name), "::new(16)?.forward_into(&x, &mut y)?;")]
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn forward_into<D: Dimension>(
                &self,
                x: &ArrayRef<F, D>,
                out: &mut ArrayRef<F, D>,
            ) -> Result<(), NormError> {
                F::forward_into_nd::<$kind, D>(&self.p, x, out)
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
            #[doc = concat!(" use norm_core::", stringify!($name), ";")]
            ///
            /// let x = [1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0];
            /// let mut y = [0.0f32; 6];
            #[doc = concat!(" ", stringify!($name), "::new(3)?.forward_slice(&x, &mut y)?;")]
            /// assert!(y.iter().all(|v| v.abs() < 2.0));
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn forward_slice(&self, x: &[F], out: &mut [F]) -> Result<(), NormError> {
                let how = crate::dispatch::ForcedPath::detected();
                F::forward_slice::<$kind>(how, &self.p, x, out, [None, None])
            }
        }
    };
}
pub(crate) use impl_forward;
