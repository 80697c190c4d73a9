//! Row kernels over contiguous `&[F]` rows, one body per algorithm for both norms: the
//! norm is a compile-time [`Kind`] (LayerNorm centers, RmsNorm does not), so each body
//! is instantiated twice and each instantiation is as fast as a hand-written one.
//! Written once against the [`Simd`] vector abstraction and compiled per
//! [`KernelPath`](crate::KernelPath) (portable, AVX2+FMA, AVX-512F) through the shared
//! vector layer in `simd/`.
//!
//! - `stats.rs`: the reductions (`Σ (x - shift)`, `Σ x²`) and what they read;
//! - `write.rs`: the write pass `y = center(x) · (r·w) + b`, plain or streaming;
//! - `rescue.rs`: rows whose squares overflow or underflow, redone scaled in f64;
//! - `fused.rs`: the residual-add variants (`h = x + r`, then the norm of `h`);
//! - `half.rs`: the bf16/f16 rows on the same bodies (16-bit loads widened in
//!   registers, outputs rounded once as they are stored);
//! - here: the kinds, the parameter structs, and the forward row itself.
//!
//! Per row: the first pass reads the row from memory (for the fused variants: reads
//! `x` and `r` and writes `h`), the later passes find it in L1. Outputs far beyond the
//! caches (`simd::Stores`) are written with non-temporal stores; the fused variants then
//! write `h` in the write pass, beside `y`, and compute `x + r` again in the passes
//! before it. Four independent vector accumulators per reduction, folded every few
//! iterations into blocked totals in a fixed order, so a row's result depends only on
//! its values and the path, never on threads or on where the row sits in a batch.
//! The fused and unfused kernels share these bodies, so `norm(x + r)` is bit-identical
//! either way on one path.
//!
//! Nothing here validates: callers (the slice and ndarray layers) check lengths first
//! (a mismatch panics in a bounds check, it is never undefined behaviour).

mod fused;
mod half;
mod rescue;
mod stats;
mod write;

pub(crate) use fused::add_row;
pub(crate) use half::{half_add_row, half_row};

use crate::Float;
use crate::simd::{Path, Simd, SimdOp, Store, run_on};
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};
use rescue::rescue;
use stats::{Ahead, Centered, Plain, Source, inv_len, sum_shifted, sum_sq};
use write::write;

/// Which norm a kernel computes, at compile time. In a private module (`pub` only so
/// that the sealed element routes can name it), so closed to the two norms below.
pub trait Kind: Copy + Send + Sync + 'static {
    /// LayerNorm subtracts the row mean (shifted by the row's first value); RmsNorm
    /// does not.
    const CENTER: bool;
    /// The names of the row statistics, as the shape errors report them (RmsNorm has
    /// one: the second name is never used).
    const STATS: [&'static str; 2];
    /// The statistics a row returns, from its mean and `1/std` (LayerNorm) or its
    /// `1/rms` (RmsNorm, whose mean is not used): `(mean, rstd)` or `(rrms, 0)`.
    fn stats<F: Float>(mean: F, r: F) -> (F, F);
}

/// LayerNorm: `y = (x - mean) / sqrt(var + eps) · w + b`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layer;

impl Kind for Layer {
    const CENTER: bool = true;
    const STATS: [&'static str; 2] = ["mean", "rstd"];
    #[inline(always)]
    fn stats<F: Float>(mean: F, r: F) -> (F, F) {
        (mean, r)
    }
}

/// RmsNorm: `y = x / sqrt(mean(x²) + eps) · w + b`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rms;

impl Kind for Rms {
    const CENTER: bool = false;
    const STATS: [&'static str; 2] = ["rrms", "rrms"];
    #[inline(always)]
    fn stats<F: Float>(_mean: F, r: F) -> (F, F) {
        (r, F::zero())
    }
}

/// The parameters of a norm, as the kernels take them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowParams<'a, F> {
    /// gamma, one per feature (its length is the row length).
    pub(crate) weight: &'a [F],
    /// beta, if any.
    pub(crate) bias: Option<&'a [F]>,
    /// Added to the variance (mean square) under the square root.
    pub(crate) eps: F,
}

/// An output row and how it is written (`Streaming`: the caller fences).
pub(crate) struct Out<'a, F> {
    pub(crate) y: &'a mut [F],
    pub(crate) store: Store,
}

/// What the write pass applies: `center(h) = (h - shift) - m` (LayerNorm; RmsNorm leaves
/// `h`), times `r` (`1/std` or `1/rms`).
#[derive(Clone, Copy)]
struct Coef<E> {
    shift: E,
    m: E,
    r: E,
}

impl<E: Float> Coef<E> {
    /// `center` of one element.
    #[inline(always)]
    fn center<K: Kind>(self, v: E) -> E {
        if K::CENTER { (v - self.shift) - self.m } else { v }
    }
}

/// The shift of a row: its first value for LayerNorm (the differences are exact for rows
/// with a large offset), none for RmsNorm.
#[inline(always)]
fn shift_of<K: Kind, E: Float>(first: E) -> E {
    if K::CENTER { first } else { E::zero() }
}

/// The first pass over a row: `Σ (h - shift)` (LayerNorm) or `Σ h²` (RmsNorm).
#[inline(always)]
fn first_pass<K: Kind, S: Simd>(s: S, n: usize, shift: S::E, src: impl Source<S>) -> S::E {
    if K::CENTER {
        sum_shifted(s, n, shift, src)
    } else {
        sum_sq(s, n, src)
    }
}

/// The mean of the shifted row and the variance (LayerNorm: the second pass, centered,
/// over `again`) or the mean square (RmsNorm: `m = 0`, `again` not read), from the
/// first pass's `first`.
#[inline(always)]
fn moments<K: Kind, S: Simd>(
    s: S,
    n: usize,
    shift: S::E,
    first: S::E,
    again: impl Source<S>,
) -> (S::E, S::E) {
    let inv_d = inv_len::<S::E>(n);
    if K::CENTER {
        let m = first * inv_d;
        let src = Centered { src: again, shift, m };
        (m, sum_sq(s, n, src) * inv_d)
    } else {
        (S::E::zero(), first * inv_d)
    }
}

/// Whether a row whose variance (mean square) came out as `var` goes to the rescue
/// path: not finite, too small to be exact in `F`, or `var + eps` overflows although
/// both are finite (eps near `F::MAX`; rather than write rstd = 0).
#[inline(always)]
fn needs_rescue<F: Float>(var: F, eps: F) -> bool {
    !(var.is_finite() && var >= F::RESCUE_BELOW && (var + eps).is_finite())
}

/// The norm of row `h` from its moments: the rescue path if they call for it, else
/// the write pass. Returns the row's statistics.
#[inline(always)]
fn finish<K: Kind, S: Simd>(
    s: S,
    h: &[S::E],
    (shift, m, var): (S::E, S::E, S::E),
    p: RowParams<'_, S::E>,
    out: Out<'_, S::E>,
    ahead: Ahead<S::E>,
) -> (S::E, S::E) {
    if needs_rescue(var, p.eps) {
        return rescue::<K, S::E>(h, p, out.y);
    }
    let r = S::E::one() / (var + p.eps).sqrt();
    write::<K, S, S::E>(s, Plain(h), p, Coef { shift, m, r }, out, ahead);
    K::stats(shift + m, r)
}

/// One row of either norm: `out = norm(x)`; returns [`Kind::stats`].
struct Row<'a, K, F> {
    x: &'a [F],
    p: RowParams<'a, F>,
    out: Out<'a, F>,
    kind: std::marker::PhantomData<K>,
}

impl<K: Kind, F: Float> SimdOp<F> for Row<'_, K, F> {
    type Out = (F, F);
    /// Two passes for LayerNorm (the mean of `x - x[0]`, then the centered sum of
    /// squares; the write pass keeps the shift separate so an offset of 1e6 does not
    /// cost output precision), one for RmsNorm (the sum of squares); then the write pass.
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) -> (F, F) {
        let (x, n) = (self.x, self.x.len());
        let shift = shift_of::<K, F>(x[0]);
        let first = first_pass::<K, S>(s, n, shift, Plain(x));
        let (m, var) = moments::<K, S>(s, n, shift, first, Plain(x));
        finish::<K, S>(s, x, (shift, m, var), self.p, self.out, Ahead::after(x, None))
    }
}

/// One row of norm `K` on `path`: `out = norm(x)`; returns `(mean, rstd)` (LayerNorm) or
/// `(rrms, 0)` (RmsNorm).
#[inline(always)]
pub(crate) fn norm_row<K: Kind, F: Float>(
    path: Path,
    x: &[F],
    p: RowParams<'_, F>,
    out: Out<'_, F>,
) -> (F, F) {
    let kind = std::marker::PhantomData::<K>;
    run_on(path, Row { x, p, out, kind })
}
