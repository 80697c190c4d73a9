//! The half-precision norms, `LayerNorm<bf16>`, `LayerNorm<f16>`, `RmsNorm<bf16>` and
//! `RmsNorm<f16>`: a thin layer around the f32 row kernels. Each row is widened into an
//! f32 scratch row that stays in L1 (thread-local, reused across rows and calls, never
//! allocated per row), normalized by the f32 kernel of the path (the same shifted,
//! blocked statistics, rescue and write pass as `LayerNorm<f32>`), and each output is
//! rounded once, to nearest with ties to even, into the storage type. Weight and bias
//! are widened to f32 once per call; eps and the statistics are f32.
//!
//! The fused residual add rounds `h = x + residual` to the storage type (as `x + r` on
//! `half`'s types does: the f32 sum of two bf16 or f16 values, rounded once, is the
//! correctly rounded sum) and normalizes that rounded `h`, so `y` is bit-identical to
//! what a user's unfused code computes: `h = x + r` stored, then `norm(h)`.

use std::cell::RefCell;

use half::{bf16, f16};
use ndarray::{Array, ArrayRef, Dimension, Zip};

use crate::convert::Half;
use crate::dispatch::ForcedPath;
use crate::fused::{check_add_nd, check_add_slices, drive_add_rows};
use crate::kernels::{Kind, Layer, Out, Rms, RowParams, norm_row};
use crate::params::Affine;
use crate::rows::{StatPair, check_nd, check_slices, check_stats_len, run_nd, run_rows};
use crate::simd::{Path, Store};
use crate::{Element as _, LayerNorm, LayerNormStats, NormError, RmsNorm, RmsNormStats};

/// A cache line of f32, so that scratch rows start on a line boundary.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([f32; 16]);

thread_local! {
    /// Two f32 rows per thread: the widened input, then the kernel's output (for the
    /// fused norms, first the residual).
    static SCRATCH: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` on two f32 scratch rows of `d` elements each, each starting on a cache line.
#[inline(always)]
fn with_scratch<R>(d: usize, f: impl FnOnce(&mut [f32], &mut [f32]) -> R) -> R {
    SCRATCH.with(|cell| {
        let mut lines = cell.borrow_mut();
        let per = d.div_ceil(16);
        if lines.len() < 2 * per {
            lines.resize(2 * per, Line::default());
        }
        let (a, b) = lines[..2 * per].split_at_mut(per);
        let (a, b) = (a.as_flattened_mut_f32(), b.as_flattened_mut_f32());
        f(&mut a[..d], &mut b[..d])
    })
}

/// `&mut [Line]` as the f32 it holds.
trait Flatten {
    fn as_flattened_mut_f32(&mut self) -> &mut [f32];
}

impl Flatten for [Line] {
    #[inline(always)]
    fn as_flattened_mut_f32(&mut self) -> &mut [f32] {
        let n = self.len() * 16;
        // SAFETY: `Line` is `repr(C)` over `[f32; 16]` with no padding (64 bytes, align
        // 64), so `len` lines are `16·len` contiguous, initialized f32.
        unsafe { std::slice::from_raw_parts_mut(self.as_mut_ptr().cast::<f32>(), n) }
    }
}

/// A half-precision norm's weight and bias widened to f32 (once per call), with eps.
pub(crate) struct Params32 {
    weight: Vec<f32>,
    bias: Option<Vec<f32>>,
    eps: f32,
}

impl Params32 {
    pub(crate) fn of<H: Half>(p: &Affine<H>) -> Self {
        let path = Path::detected();
        let widen = |v: &[H]| {
            let mut w = vec![0.0f32; v.len()];
            H::widen(path, v, &mut w);
            w
        };
        Params32 {
            weight: widen(&p.weight),
            bias: p.bias.as_deref().map(widen),
            eps: p.eps,
        }
    }

    pub(crate) fn row(&self) -> RowParams<'_, f32> {
        RowParams {
            weight: &self.weight,
            bias: self.bias.as_deref(),
            eps: self.eps,
        }
    }
}

/// One half-precision row of norm `K` on `path`: widen `x`, run the f32 kernel into
/// scratch, round into `out`; returns the f32 statistics.
#[inline(always)]
fn half_row<K: Kind, H: Half>(path: Path, p: RowParams<'_, f32>, x: &[H], out: Out<'_, H>) -> (f32, f32) {
    with_scratch(x.len(), |xs, ys| {
        H::widen(path, x, xs);
        let stats = norm_row::<K, f32>(
            path,
            xs,
            p,
            Out {
                y: ys,
                store: Store::Cached,
            },
        );
        H::narrow(path, ys, out.y, out.store);
        stats
    })
}

/// One fused half-precision row: `h = round(x + r)` (`r = None`: `h` holds the
/// residual), then [`half_row`] of the rounded `h`.
#[inline(always)]
fn half_add_row<K: Kind, H: Half>(
    path: Path,
    p: RowParams<'_, f32>,
    (x, r): (&[H], Option<&[H]>),
    h: &mut [H],
    out: Out<'_, H>,
) {
    with_scratch(x.len(), |xs, ys| {
        H::widen(path, x, xs);
        H::widen(path, r.unwrap_or(h), ys);
        for (a, b) in xs.iter_mut().zip(ys.iter()) {
            *a += *b;
        }
        H::narrow(path, xs, h, Store::Cached);
        // The norm reads the rounded h (from L1), as unfused code would.
        H::widen(path, h, xs);
        norm_row::<K, f32>(
            path,
            xs,
            p,
            Out {
                y: ys,
                store: Store::Cached,
            },
        );
        H::narrow(path, ys, out.y, out.store);
    });
}

/// The row kernel of norm `K` for storage type `H` on `path`.
#[inline(always)]
fn row<K: Kind, H: Half>(
    path: Path,
    p: RowParams<'_, f32>,
) -> impl Fn(&[H], Out<'_, H>) -> (f32, f32) + Sync {
    move |x, out| half_row::<K, H>(path, p, x, out)
}

/// An output array and its per-row f32 statistics.
type WithStats<H, D> = (Array<H, D>, StatPair<f32, D>);

/// `norm(x)` over the last axis into a new array (with the statistics when `want_stats`).
pub(crate) fn half_forward_nd<K: Kind, H: Half, D: Dimension>(
    p: &Affine<H>,
    x: &ArrayRef<H, D>,
    want_stats: bool,
) -> Result<WithStats<H, D>, NormError> {
    check_nd(x.shape(), None, p.weight.len())?;
    let mut out = Array::from_elem(x.raw_dim(), H::default());
    let p32 = Params32::of(p);
    let stats = run_nd(x, &mut out, want_stats, row::<K, H>(Path::detected(), p32.row()))?;
    Ok((out, stats))
}

/// `norm(x)` over the last axis into the caller's `out`.
pub(crate) fn half_forward_into_nd<K: Kind, H: Half, D: Dimension>(
    p: &Affine<H>,
    x: &ArrayRef<H, D>,
    out: &mut ArrayRef<H, D>,
) -> Result<(), NormError> {
    check_nd(x.shape(), Some(out.shape()), p.weight.len())?;
    let p32 = Params32::of(p);
    run_nd::<H, f32, D>(x, out, false, row::<K, H>(Path::detected(), p32.row()))?;
    Ok(())
}

/// `norm(x)` over row-major slices on `how`'s path and stores, writing the statistics
/// that are given.
pub(crate) fn half_forward_slice<K: Kind, H: Half>(
    how: ForcedPath,
    p: &Affine<H>,
    x: &[H],
    out: &mut [H],
    [s0, s1]: [Option<&mut [f32]>; 2],
) -> Result<(), NormError> {
    let d = p.weight.len();
    let rows = check_slices(x.len(), out.len(), d)?;
    for (name, s) in K::STATS.into_iter().zip([&s0, &s1]) {
        if let Some(s) = s {
            check_stats_len(name, s.len(), rows)?;
        }
    }
    let p32 = Params32::of(p);
    run_rows(
        x,
        out,
        d,
        s0,
        s1,
        how.stores(),
        row::<K, H>(how.simd_path(), p32.row()),
    );
    Ok(())
}

/// The fused norm `K` over row-major slices on `how`'s path: `h = x + r` rounded, then
/// the norm of `h` (`r = None`: `h` holds the residual and is overwritten); lengths
/// checked here.
pub(crate) fn half_add_slice<K: Kind, H: Half>(
    how: ForcedPath,
    p: &Affine<H>,
    (x, r): (&[H], Option<&[H]>),
    h: &mut [H],
    out: &mut [H],
) -> Result<(), NormError> {
    let d = p.weight.len();
    let (rl, hl) = (r.map_or(h.len(), <[H]>::len), r.is_some().then_some(h.len()));
    check_add_slices(d, x.len(), rl, hl, out.len())?;
    let p32 = Params32::of(p);
    let (path, pr) = (how.simd_path(), p32.row());
    let row = move |xr: &[H], rr: Option<&[H]>, hr: &mut [H], y: Out<'_, H>| {
        half_add_row::<K, H>(path, pr, (xr, rr), hr, y);
    };
    drive_add_rows(how, d, (x, r), h, out, row);
    Ok(())
}

/// The in-place fused norm `K` over arrays (`residual` becomes the rounded `h`): the
/// one-sweep kernel for contiguous arrays, else the rounded add and then the norm (the
/// same bits).
fn half_add_inplace_nd<K: Kind, H: Half, D: Dimension>(
    p: &Affine<H>,
    x: &ArrayRef<H, D>,
    residual: &mut ArrayRef<H, D>,
    out: &mut ArrayRef<H, D>,
) -> Result<(), NormError> {
    check_add_nd(p.weight.len(), x.shape(), residual.shape(), &[out.shape()])?;
    if let (Some(xs), Some(rs), Some(os)) = (x.as_slice(), residual.as_slice_mut(), out.as_slice_mut()) {
        return half_add_slice::<K, H>(ForcedPath::detected(), p, (xs, None), rs, os);
    }
    Zip::from(&mut *residual)
        .and(x)
        .for_each(|r, &a| *r = H::from_acc(a.to_acc() + r.to_acc()));
    half_forward_into_nd::<K, H, D>(p, residual, out)
}

/// Generates the methods `LayerNorm<$h>` and `RmsNorm<$h>` share, for norm `$kind`.
macro_rules! impl_half {
    ($name:ident, $kind:ty, $h:ident) => {
        impl $name<$h> {
            #[doc = concat!("Normalizes `x` (", stringify!($h), ") over its last axis into a new array of the same shape and type.")]
            ///
            /// Computed in f32 (the f32 kernels, on rows widened exactly), each output
            /// rounded once to nearest, ties to even. Any rank ≥ 1 and any layout.
            ///
            /// # Errors
            /// [`NormError::ZeroRank`] for a 0-d input; [`NormError::FeatureMismatch`] if the
            /// last axis is not [`dim`](Self::dim) long.
            pub fn forward<D: Dimension>(&self, x: &ArrayRef<$h, D>) -> Result<Array<$h, D>, NormError> {
                Ok(half_forward_nd::<$kind, $h, D>(&self.p, x, false)?.0)
            }

            /// Normalizes `x` over its last axis into the caller's `out` (same shape, any layout).
            ///
            /// # Errors
            /// As [`forward`](Self::forward), plus [`NormError::OutputShape`] if `out`'s shape
            /// differs from `x`'s.
            pub fn forward_into<D: Dimension>(&self, x: &ArrayRef<$h, D>, out: &mut ArrayRef<$h, D>) -> Result<(), NormError> {
                half_forward_into_nd::<$kind, $h, D>(&self.p, x, out)
            }

            /// Plain-slice form: `x` holds rows of length [`dim`](Self::dim), row-major.
            ///
            /// # Errors
            /// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`;
            /// [`NormError::BufferLen`] if `out.len() != x.len()`.
            pub fn forward_slice(&self, x: &[$h], out: &mut [$h]) -> Result<(), NormError> {
                half_forward_slice::<$kind, $h>(ForcedPath::detected(), &self.p, x, out, [None, None])
            }

            /// Fused residual add + norm over plain row-major slices: `h = x + residual`
            /// rounded to the storage type, `out = norm(h)` of that rounded `h` (bit-identical
            /// to adding in the storage type and then calling
            /// [`forward_slice`](Self::forward_slice)).
            ///
            /// # Errors
            /// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`;
            /// [`NormError::BufferLen`] if `residual`, `h` or `out` differ in length from `x`.
            pub fn add_forward_slice(&self, x: &[$h], residual: &[$h], h: &mut [$h], out: &mut [$h]) -> Result<(), NormError> {
                half_add_slice::<$kind, $h>(ForcedPath::detected(), &self.p, (x, Some(residual)), h, out)
            }

            /// In-place fused residual add + norm: `residual` becomes `h = x + residual`
            /// (rounded), `out = norm(h)`.
            ///
            /// # Errors
            /// [`NormError::SliceLen`] if `x.len()` is not a multiple of `dim`;
            /// [`NormError::BufferLen`] if `residual` or `out` differ in length from `x`.
            pub fn add_forward_slice_inplace(&self, x: &[$h], residual: &mut [$h], out: &mut [$h]) -> Result<(), NormError> {
                half_add_slice::<$kind, $h>(ForcedPath::detected(), &self.p, (x, None), residual, out)
            }

            /// Fused residual add + norm over the last axis: returns `(h, y)` with
            /// `h = x + residual` rounded to the storage type and `y = norm(h)`.
            ///
            /// # Errors
            /// [`NormError::ZeroRank`] for 0-d input; [`NormError::FeatureMismatch`] if the
            /// last axis is not `dim` long; [`NormError::ResidualShape`] if `residual`'s
            /// shape differs from `x`'s.
            #[allow(clippy::type_complexity)]
            pub fn add_forward<D: Dimension>(
                &self,
                x: &ArrayRef<$h, D>,
                residual: &ArrayRef<$h, D>,
            ) -> Result<(Array<$h, D>, Array<$h, D>), NormError> {
                check_add_nd(self.dim(), x.shape(), residual.shape(), &[])?;
                let mut h = residual.to_owned();
                let mut y = Array::from_elem(x.raw_dim(), $h::default());
                half_add_inplace_nd::<$kind, $h, D>(&self.p, x, &mut h, &mut y)?;
                Ok((h, y))
            }

            /// Fused residual add + norm into the caller's arrays: `h = x + residual`
            /// (rounded), `out = norm(h)`.
            ///
            /// # Errors
            /// As [`add_forward`](Self::add_forward), plus [`NormError::OutputShape`] if `h` or
            /// `out` is shaped differently from `x`.
            pub fn add_forward_into<D: Dimension>(
                &self,
                x: &ArrayRef<$h, D>,
                residual: &ArrayRef<$h, D>,
                h: &mut ArrayRef<$h, D>,
                out: &mut ArrayRef<$h, D>,
            ) -> Result<(), NormError> {
                check_add_nd(self.dim(), x.shape(), residual.shape(), &[h.shape(), out.shape()])?;
                if let (Some(xs), Some(rs), Some(hs), Some(os)) =
                    (x.as_slice(), residual.as_slice(), h.as_slice_mut(), out.as_slice_mut())
                {
                    return self.add_forward_slice(xs, rs, hs, os);
                }
                Zip::from(&mut *h)
                    .and(x)
                    .and(residual)
                    .for_each(|h, &a, &b| *h = $h::from_acc(a.to_acc() + b.to_acc()));
                self.forward_into(h, out)
            }

            /// In-place fused residual add + norm over the last axis: `residual` becomes
            /// `h = x + residual` (rounded), `out = norm(h)`.
            ///
            /// # Errors
            /// As [`add_forward`](Self::add_forward), plus [`NormError::OutputShape`] if `out`
            /// is shaped differently from `x`.
            pub fn add_forward_inplace<D: Dimension>(
                &self,
                x: &ArrayRef<$h, D>,
                residual: &mut ArrayRef<$h, D>,
                out: &mut ArrayRef<$h, D>,
            ) -> Result<(), NormError> {
                half_add_inplace_nd::<$kind, $h, D>(&self.p, x, residual, out)
            }
        }
    };
}

/// Generates `LayerNorm<$h>`'s statistics forms (mean and `1/std` in f32).
macro_rules! impl_half_layer_stats {
    ($h:ident) => {
        impl LayerNorm<$h> {
            /// Like [`forward`](Self::forward), also returning the per-row mean and `1/std`,
            /// in f32 (the precision they were computed in).
            ///
            /// # Errors
            /// As [`forward`](Self::forward).
            #[allow(clippy::type_complexity)]
            pub fn forward_with_stats<D: Dimension>(
                &self,
                x: &ArrayRef<$h, D>,
            ) -> Result<(Array<$h, D>, LayerNormStats<f32, D::Smaller>), NormError> {
                let (out, (mean, rstd)) = half_forward_nd::<Layer, $h, D>(&self.p, x, true)?;
                Ok((out, LayerNormStats { mean, rstd }))
            }

            /// Plain-slice form that also writes each row's mean and `1/std` (f32, one per row).
            ///
            /// # Errors
            /// As [`forward_slice`](Self::forward_slice), plus [`NormError::StatsShape`] if
            /// `mean` or `rstd` does not hold one value per row.
            pub fn forward_slice_with_stats(
                &self,
                x: &[$h],
                out: &mut [$h],
                mean: &mut [f32],
                rstd: &mut [f32],
            ) -> Result<(), NormError> {
                let stats = [Some(mean), Some(rstd)];
                half_forward_slice::<Layer, $h>(ForcedPath::detected(), &self.p, x, out, stats)
            }
        }
    };
}

/// Generates `RmsNorm<$h>`'s statistics forms (`1/rms` in f32).
macro_rules! impl_half_rms_stats {
    ($h:ident) => {
        impl RmsNorm<$h> {
            /// Like [`forward`](Self::forward), also returning the per-row `1/rms` in f32.
            ///
            /// # Errors
            /// As [`forward`](Self::forward).
            #[allow(clippy::type_complexity)]
            pub fn forward_with_stats<D: Dimension>(
                &self,
                x: &ArrayRef<$h, D>,
            ) -> Result<(Array<$h, D>, RmsNormStats<f32, D::Smaller>), NormError> {
                let (out, (rrms, _)) = half_forward_nd::<Rms, $h, D>(&self.p, x, true)?;
                Ok((out, RmsNormStats { rrms }))
            }

            /// Plain-slice form that also writes each row's `1/rms` (f32, one per row).
            ///
            /// # Errors
            /// As [`forward_slice`](Self::forward_slice), plus [`NormError::StatsShape`] if
            /// `rrms` does not hold one value per row.
            pub fn forward_slice_with_stats(
                &self,
                x: &[$h],
                out: &mut [$h],
                rrms: &mut [f32],
            ) -> Result<(), NormError> {
                let stats = [Some(rrms), None];
                half_forward_slice::<Rms, $h>(ForcedPath::detected(), &self.p, x, out, stats)
            }
        }
    };
}

impl_half!(LayerNorm, Layer, bf16);
impl_half!(LayerNorm, Layer, f16);
impl_half!(RmsNorm, Rms, bf16);
impl_half!(RmsNorm, Rms, f16);
impl_half_layer_stats!(bf16);
impl_half_layer_stats!(f16);
impl_half_rms_stats!(bf16);
impl_half_rms_stats!(f16);
