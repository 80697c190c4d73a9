//! Fused residual add + norm, what Pre-Norm inference runs between blocks:
//! `h = x + residual; y = norm(h)`, returning both, in one sweep over the rows (the add
//! is the first pass of the norm; for outputs streamed past the caches, `x + r` is
//! computed in every pass and `h` written beside `y` in the last). Slice and ndarray
//! forms, each also in place (the residual buffer is overwritten with `h`), for
//! [`LayerNorm`] and [`RmsNorm`].
//!
//! The fused kernels share their bodies with the plain norms, so `y` is bit-identical to
//! `norm(x + residual)` computed in two steps on the same kernel path.

use ndarray::{Array, ArrayRef, Dimension, Zip};

use crate::dispatch::ForcedPath;
use crate::kernels::{Kind, Layer, Out, Rms, RowParams, add_rows as add_rows_kernel};
use crate::rows::{check_nd, check_slices};
#[cfg(feature = "rayon")]
use crate::rows::{go_parallel, rows_per_block};
use crate::simd::{Store, stream_fence};
use crate::{Element, Float, LayerNorm, NormError, RmsNorm};

/// Runs the fused kernel of norm `K` over every row on `how`'s path (lengths already
/// checked; `d = weight.len()`; `r = None`: `h` holds the residual and is overwritten).
/// Large batches are split into fixed row blocks on the rayon pool, like the plain norms;
/// `how`'s stores decide from the bytes the call moves (`x`, `r`, `h`, `y`) whether `y`
/// is written with non-temporal stores (each block fenced before it returns).
pub(crate) fn add_rows<K: Kind, F: Float>(
    how: ForcedPath,
    p: RowParams<'_, F>,
    (x, r): (&[F], Option<&[F]>),
    h: &mut [F],
    out: &mut [F],
) {
    let path = how.simd_path();
    let rows = move |xr: &[F], rr: Option<&[F]>, hr: &mut [F], out: Out<'_, F>| {
        add_rows_kernel::<K, F>(path, (xr, rr), hr, p, out);
    };
    drive_add_rows(how, p.weight.len(), (x, r), h, out, rows);
}

/// Runs `rows(x, r, h, out)` (fused rows, pipelined where the kernels' rule says) over
/// every row of length `d`, serially in one call or in fixed row blocks on the rayon
/// pool, a call per block; `how`'s stores decide from the bytes the call moves (`x`,
/// `r`, `h`, `y`) whether `y` is streamed (each block fenced before it returns). The
/// half-precision fused norms (`storage.rs`) run on it too.
pub(crate) fn drive_add_rows<E: Copy + Send + Sync>(
    how: ForcedPath,
    d: usize,
    (x, r): (&[E], Option<&[E]>),
    h: &mut [E],
    out: &mut [E],
    rows: impl Fn(&[E], Option<&[E]>, &mut [E], Out<'_, E>) + Sync,
) {
    if d == 0 {
        return;
    }
    // From the bytes the call moves: x and the residual read, h and y written.
    let moved = x.len() + r.map_or(h.len(), <[E]>::len) + h.len() + out.len();
    let moved = std::mem::size_of::<E>().saturating_mul(moved);
    let store = how.stores().store_moved(moved);
    let near = crate::kernels::near(moved);
    let serial = |x: &[E], r: Option<&[E]>, h: &mut [E], y: &mut [E]| {
        rows(
            x,
            r,
            h,
            Out {
                y,
                store,
                near,
                seam: None,
            },
        );
        if store == Store::Streaming {
            stream_fence();
        }
    };
    #[cfg(feature = "rayon")]
    if go_parallel::<E>(x.len()) {
        use rayon::prelude::*;
        let n = rows_per_block(d, std::mem::size_of::<E>()) * d;
        let mut rc = r.map(|r| r.chunks(n));
        let blocks: Vec<_> = x
            .chunks(n)
            .zip(h.chunks_mut(n))
            .zip(out.chunks_mut(n))
            .map(|((xb, hb), ob)| (xb, rc.as_mut().and_then(Iterator::next), hb, ob))
            .collect();
        blocks
            .into_par_iter()
            .for_each(|(xb, rb, hb, ob)| serial(xb, rb, hb, ob));
        return;
    }
    serial(x, r, h, out);
}

/// `a + b` rounded once to the storage type (for `f32`/`f64` the plain sum; for `bf16`/
/// `f16` the f32 sum of the widened values, which is the correctly rounded sum: f32
/// carries more than twice their precision plus two bits, so rounding twice is
/// harmless, and this equals `half`'s own `a + b`).
#[inline(always)]
pub(crate) fn add<E: Element>(a: E, b: E) -> E {
    E::from_acc(a.to_acc() + b.to_acc())
}

/// Checks the slices of a fused call: `x` whole rows, the others as long as `x`.
pub(crate) fn check_add_slices(
    d: usize,
    x: usize,
    r: usize,
    h: Option<usize>,
    out: usize,
) -> Result<(), NormError> {
    check_slices(x, out, d)?;
    if r != x {
        return Err(NormError::BufferLen {
            name: "residual",
            got: r,
            expected: x,
        });
    }
    if let Some(h) = h
        && h != x
    {
        return Err(NormError::BufferLen {
            name: "h",
            got: h,
            expected: x,
        });
    }
    Ok(())
}

/// Checks the arrays of a fused call: the residual and outputs shaped like `x`.
pub(crate) fn check_add_nd(dim: usize, x: &[usize], r: &[usize], outs: &[&[usize]]) -> Result<(), NormError> {
    check_nd(x, None, dim)?;
    if r != x {
        return Err(NormError::ResidualShape {
            input: x.to_vec(),
            residual: r.to_vec(),
        });
    }
    for o in outs {
        check_nd(x, Some(o), dim)?;
    }
    Ok(())
}

macro_rules! impl_fused {
    ($name:ident, $kind:ty, $title:literal, $formula:literal) => {
        impl<F: Element> $name<F> {
            #[doc = concat!("Fused residual add + ", $title, " over plain row-major slices: writes `h = x + residual` and `out = norm(h)`.")]
            ///
            /// ```text
            #[doc = $formula]
            /// ```
            ///
            /// One sweep over the rows instead of an add followed by a norm; `out` is
            /// bit-identical to the two-step result.
            ///
            /// # Errors
            /// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`;
            /// [`NormError::BufferLen`] if `residual`, `h` or `out` differ in length from `x`.
            ///
            /// # Example
            /// ```
            #[doc = concat!("use norm_core::", stringify!($name), ";")]
            ///
            /// let (x, res) = ([1.0f32, 2.0, 3.0, 4.0], [0.5f32, 0.5, -0.5, 1.0]);
            /// let (mut h, mut y) = ([0.0f32; 4], [0.0f32; 4]);
            #[doc = concat!("let norm = ", stringify!($name), "::<f32>::new(2)?;")]
            /// norm.add_forward_slice(&x, &res, &mut h, &mut y)?;
            /// assert_eq!(h, [1.5, 2.5, 2.5, 5.0]);
            /// let mut y2 = [0.0f32; 4];
            /// norm.forward_slice(&h, &mut y2)?;
            /// assert_eq!(y, y2);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn add_forward_slice(&self, x: &[F], residual: &[F], h: &mut [F], out: &mut [F]) -> Result<(), NormError> {
                check_add_slices(self.dim(), x.len(), residual.len(), Some(h.len()), out.len())?;
                F::add_rows::<$kind>(ForcedPath::detected(), &self.p, (x, Some(residual)), h, out);
                Ok(())
            }

            #[doc = concat!("In-place fused residual add + ", $title, ": `residual` is overwritten with `h = x + residual`, and `out = norm(h)`.")]
            ///
            /// # Errors
            /// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`;
            /// [`NormError::BufferLen`] if `residual` or `out` differ in length from `x`.
            ///
            /// # Example
            /// ```
            #[doc = concat!("use norm_core::", stringify!($name), ";")]
            ///
            /// let x = [1.0f64, 2.0, 3.0];
            /// let mut stream = [1.0f64, 1.0, 1.0]; // the residual stream, updated in place
            /// let mut y = [0.0f64; 3];
            #[doc = concat!(stringify!($name), "::<f64>::new(3)?.add_forward_slice_inplace(&x, &mut stream, &mut y)?;")]
            /// assert_eq!(stream, [2.0, 3.0, 4.0]);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn add_forward_slice_inplace(&self, x: &[F], residual: &mut [F], out: &mut [F]) -> Result<(), NormError> {
                check_add_slices(self.dim(), x.len(), residual.len(), None, out.len())?;
                F::add_rows::<$kind>(ForcedPath::detected(), &self.p, (x, None), residual, out);
                Ok(())
            }

            #[doc = concat!("Fused residual add + ", $title, " over the last axis: returns `(h, y)` with `h = x + residual` and `y = norm(h)`.")]
            ///
            /// ```text
            #[doc = $formula]
            /// ```
            ///
            /// Any rank ≥ 1 and any layout; contiguous inputs take the fused one-sweep kernel,
            /// others are added and then normalized (same result).
            ///
            /// # Errors
            /// [`NormError::ZeroRank`] for 0-d input; [`NormError::FeatureMismatch`] if the
            /// last axis is not `dim` long; [`NormError::ResidualShape`] if `residual`'s
            /// shape differs from `x`'s.
            ///
            /// # Example
            /// ```
            /// use ndarray::Array2;
            #[doc = concat!("use norm_core::", stringify!($name), ";")]
            ///
            /// let x = Array2::<f32>::from_shape_fn((4, 8), |(i, j)| (i * 8 + j) as f32);
            /// let res = Array2::<f32>::ones((4, 8));
            #[doc = concat!("let norm = ", stringify!($name), "::<f32>::new(8)?;")]
            /// let (h, y) = norm.add_forward(&x, &res)?;
            /// assert_eq!(h, &x + &res);
            /// assert_eq!(y, norm.forward(&h)?);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            #[allow(clippy::type_complexity)]
            pub fn add_forward<D: Dimension>(
                &self,
                x: &ArrayRef<F, D>,
                residual: &ArrayRef<F, D>,
            ) -> Result<(Array<F, D>, Array<F, D>), NormError> {
                check_add_nd(self.dim(), x.shape(), residual.shape(), &[])?;
                let mut h = Array::from_elem(x.raw_dim(), F::default());
                let mut y = Array::from_elem(x.raw_dim(), F::default());
                self.add_forward_into(x, residual, &mut h, &mut y)?;
                Ok((h, y))
            }

            #[doc = concat!("Fused residual add + ", $title, " into the caller's arrays: `h = x + residual`, `out = norm(h)`.")]
            ///
            /// # Errors
            /// As [`add_forward`](Self::add_forward), plus [`NormError::OutputShape`] if `h` or
            /// `out` is shaped differently from `x`.
            ///
            /// # Example
            /// ```
            /// use ndarray::Array3;
            #[doc = concat!("use norm_core::", stringify!($name), ";")]
            ///
            /// let x = Array3::<f64>::from_elem((2, 3, 4), 0.5);
            /// let res = Array3::<f64>::from_shape_fn((2, 3, 4), |(b, l, d)| (b + l * d) as f64);
            /// let (mut h, mut y) = (Array3::zeros((2, 3, 4)), Array3::zeros((2, 3, 4)));
            #[doc = concat!(stringify!($name), "::<f64>::new(4)?.add_forward_into(&x, &res, &mut h, &mut y)?;")]
            /// assert_eq!(h[[1, 2, 3]], 7.5);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn add_forward_into<D: Dimension>(
                &self,
                x: &ArrayRef<F, D>,
                residual: &ArrayRef<F, D>,
                h: &mut ArrayRef<F, D>,
                out: &mut ArrayRef<F, D>,
            ) -> Result<(), NormError> {
                check_add_nd(self.dim(), x.shape(), residual.shape(), &[h.shape(), out.shape()])?;
                if let (Some(xs), Some(rs), Some(hs), Some(os)) =
                    (x.as_slice(), residual.as_slice(), h.as_slice_mut(), out.as_slice_mut())
                {
                    F::add_rows::<$kind>(ForcedPath::detected(), &self.p, (xs, Some(rs)), hs, os);
                    return Ok(());
                }
                Zip::from(&mut *h).and(x).and(residual).for_each(|h, &a, &b| *h = add(a, b));
                self.forward_into(h, out)
            }

            #[doc = concat!("In-place fused residual add + ", $title, " over the last axis: `residual` becomes `h = x + residual`, `out = norm(h)`.")]
            ///
            /// # Errors
            /// As [`add_forward`](Self::add_forward), plus [`NormError::OutputShape`] if `out`
            /// is shaped differently from `x`.
            ///
            /// # Example
            /// ```
            /// use ndarray::Array2;
            #[doc = concat!("use norm_core::", stringify!($name), ";")]
            ///
            /// let x = Array2::<f32>::from_elem((2, 4), 1.0);
            /// let mut stream = Array2::<f32>::from_shape_fn((2, 4), |(i, j)| (i + j) as f32);
            /// let mut y = Array2::<f32>::zeros((2, 4));
            #[doc = concat!(stringify!($name), "::<f32>::new(4)?.add_forward_inplace(&x, &mut stream, &mut y)?;")]
            /// assert_eq!(stream[[1, 3]], 5.0);
            /// # Ok::<(), norm_core::NormError>(())
            /// ```
            pub fn add_forward_inplace<D: Dimension>(
                &self,
                x: &ArrayRef<F, D>,
                residual: &mut ArrayRef<F, D>,
                out: &mut ArrayRef<F, D>,
            ) -> Result<(), NormError> {
                check_add_nd(self.dim(), x.shape(), residual.shape(), &[out.shape()])?;
                if let (Some(xs), Some(rs), Some(os)) = (x.as_slice(), residual.as_slice_mut(), out.as_slice_mut()) {
                    F::add_rows::<$kind>(ForcedPath::detected(), &self.p, (xs, None), rs, os);
                    return Ok(());
                }
                Zip::from(&mut *residual).and(x).for_each(|r, &a| *r = add(a, *r));
                self.forward_into(residual, out)
            }
        }
    };
}

impl_fused!(
    LayerNorm,
    Layer,
    "LayerNorm",
    "h = x + residual;  y = (h - mean(h)) / sqrt(var(h) + eps) · gamma + beta"
);
impl_fused!(
    RmsNorm,
    Rms,
    "RmsNorm",
    "h = x + residual;  y = h / sqrt(mean(h²) + eps) · gamma (+ beta)"
);
