//! Backward row kernels over contiguous `&[F]` rows, written once against the vector
//! abstraction in `simd.rs` and run on the path the CPU supports (AVX-512F, AVX2+FMA or
//! portable), and the fixed-block bookkeeping that sums dgamma/dbeta deterministically.
//!
//! Each row is read twice: one pass for its two reductions (several vector
//! accumulators), then, with the row still in L1/L2, one pass that writes dx and adds
//! the row's `dy·x̂` and `dy` into the block's dgamma/dbeta partials. The write pass
//! prefetches the next row, so memory stays busy while the row in cache is finished.
//!
//! Nothing here validates: the slice and ndarray layers in `norm_backward.rs` check
//! lengths first. Derivations: `docs/math.md`, section "Backward".

use std::ops::Range;

use norm_core::Float;

use crate::simd::{Path, RowsOp, Simd, run_on};

/// Rows per reduction block: dgamma/dbeta are summed within blocks of this many rows
/// (in row order), and the block partials are added to the total in block order.
///
/// Because the blocks are fixed by the absolute row index, the result is the same bit
/// for bit however the rows are split across calls or threads.
pub const REDUCTION_BLOCK_ROWS: usize = 32;

/// Prefetches the cache lines of `x` and `dy` that lie `ahead` elements past element
/// `i` of the current row (the next row when `ahead` is the row length), one line per
/// 64 bytes of a `W`-wide step. The address may lie past the arrays: prefetches never
/// fault, and `wrapping_add` never makes a pointer invalid to form.
#[inline(always)]
fn touch_ahead<S: Simd>(s: S, x: *const S::E, dy: *const S::E, at: usize) {
    let bytes = S::W * std::mem::size_of::<S::E>();
    let mut off = 0;
    while off < bytes {
        s.prefetch(x.wrapping_add(at).wrapping_byte_add(off));
        s.prefetch(dy.wrapping_add(at).wrapping_byte_add(off));
        off += 64;
    }
}

/// LayerNorm's row reductions in one pass: `(Σ c, Σ g, Σ g·c)` with `c = x − mean`,
/// `g = dy·w`; two vector accumulators per sum, combined in a fixed order.
#[inline(always)]
fn ln_sums<F: Float, S: Simd<E = F>>(s: S, x: &[F], dy: &[F], w: &[F], mean: F) -> (F, F, F) {
    let (wd, n) = (S::W, x.len());
    let vm = s.splat(mean);
    let z = s.splat(F::zero());
    let (mut c0, mut c1, mut g0, mut g1, mut p0, mut p1) = (z, z, z, z, z, z);
    let mut i = 0;
    while i + 2 * wd <= n {
        let xc0 = s.sub(s.load(&x[i..]), vm);
        let xc1 = s.sub(s.load(&x[i + wd..]), vm);
        let gg0 = s.mul(s.load(&dy[i..]), s.load(&w[i..]));
        let gg1 = s.mul(s.load(&dy[i + wd..]), s.load(&w[i + wd..]));
        c0 = s.add(c0, xc0);
        c1 = s.add(c1, xc1);
        g0 = s.add(g0, gg0);
        g1 = s.add(g1, gg1);
        p0 = s.mul_add(gg0, xc0, p0);
        p1 = s.mul_add(gg1, xc1, p1);
        i += 2 * wd;
    }
    if i + wd <= n {
        let xc0 = s.sub(s.load(&x[i..]), vm);
        let gg0 = s.mul(s.load(&dy[i..]), s.load(&w[i..]));
        c0 = s.add(c0, xc0);
        g0 = s.add(g0, gg0);
        p0 = s.mul_add(gg0, xc0, p0);
        i += wd;
    }
    let (mut tc, mut tg, mut tp) = (F::zero(), F::zero(), F::zero());
    while i < n {
        let c = x[i] - mean;
        let g = dy[i] * w[i];
        tc += c;
        tg += g;
        tp = s.mul_add1(g, c, tp);
        i += 1;
    }
    (
        s.sum(s.add(c0, c1)) + tc,
        s.sum(s.add(g0, g1)) + tg,
        s.sum(s.add(p0, p1)) + tp,
    )
}

/// RmsNorm's row reduction `Σ g·x` (`g = dy·w`) with four vector accumulators.
#[inline(always)]
fn rms_sum<F: Float, S: Simd<E = F>>(s: S, x: &[F], dy: &[F], w: &[F]) -> F {
    let (wd, n) = (S::W, x.len());
    let z = s.splat(F::zero());
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    let mut i = 0;
    while i + 4 * wd <= n {
        let g0 = s.mul(s.load(&dy[i..]), s.load(&w[i..]));
        let g1 = s.mul(s.load(&dy[i + wd..]), s.load(&w[i + wd..]));
        let g2 = s.mul(s.load(&dy[i + 2 * wd..]), s.load(&w[i + 2 * wd..]));
        let g3 = s.mul(s.load(&dy[i + 3 * wd..]), s.load(&w[i + 3 * wd..]));
        a0 = s.mul_add(g0, s.load(&x[i..]), a0);
        a1 = s.mul_add(g1, s.load(&x[i + wd..]), a1);
        a2 = s.mul_add(g2, s.load(&x[i + 2 * wd..]), a2);
        a3 = s.mul_add(g3, s.load(&x[i + 3 * wd..]), a3);
        i += 4 * wd;
    }
    while i + wd <= n {
        let g0 = s.mul(s.load(&dy[i..]), s.load(&w[i..]));
        a0 = s.mul_add(g0, s.load(&x[i..]), a0);
        i += wd;
    }
    let mut t = F::zero();
    while i < n {
        t = s.mul_add1(dy[i] * w[i], x[i], t);
        i += 1;
    }
    s.sum(s.add(s.add(a0, a1), s.add(a2, a3))) + t
}

/// `1/d` in `F`.
#[inline(always)]
fn inv_len<F: Float>(d: usize) -> F {
    F::one() / F::from_usize(d).unwrap_or_else(F::one)
}

/// LayerNorm backward of the whole rows of one reduction block (or any run of rows):
/// writes `dx` and adds each row's `dy·x̂` to `dgamma` and `dy` to `dbeta` (when given),
/// in row order.
///
/// ```text
/// x̂  = (x - mean)·rstd,    g = dy·gamma
/// dx = rstd·(g - mean(g) - x̂·mean(g·x̂))
/// ```
///
/// `mean` is the forward's mean rounded to `F`; for rows with a large offset
/// (1e6 + N(0, 0.01) in f32) that rounding is larger than the spread, so the kernel
/// also measures the residual `c = mean(x - mean)` (the differences are exact) and uses
/// `x̂ = ((x - mean) - c)·rstd`; the residual comes out of the same pass as the two
/// gradient sums.
pub(crate) struct LnRows<'a, F> {
    /// `rows·d` inputs.
    pub x: &'a [F],
    /// `rows·d` output gradients.
    pub dy: &'a [F],
    /// Saved per-row mean (`rows`).
    pub mean: &'a [F],
    /// Saved per-row `1/std` (`rows`).
    pub rstd: &'a [F],
    /// gamma (`d`).
    pub weight: &'a [F],
    /// `rows·d` input gradients, written.
    pub dx: &'a mut [F],
    /// dgamma partial (`d`), added to.
    pub dgamma: &'a mut [F],
    /// dbeta partial (`d`), added to.
    pub dbeta: Option<&'a mut [F]>,
}

impl<F: Float> RowsOp<F> for LnRows<'_, F> {
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) {
        match self.dbeta {
            Some(db) => ln_rows::<S, true>(
                s,
                self.x,
                self.dy,
                self.mean,
                self.rstd,
                self.weight,
                self.dx,
                self.dgamma,
                db,
            ),
            None => ln_rows::<S, false>(
                s,
                self.x,
                self.dy,
                self.mean,
                self.rstd,
                self.weight,
                self.dx,
                self.dgamma,
                &mut [],
            ),
        }
    }
}

/// The body of [`LnRows`]; `DB` says whether `db` is accumulated (else it is empty).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_rows<S: Simd, const DB: bool>(
    s: S,
    x: &[S::E],
    dy: &[S::E],
    mean: &[S::E],
    rstd: &[S::E],
    w: &[S::E],
    dx: &mut [S::E],
    dg: &mut [S::E],
    db: &mut [S::E],
) {
    let d = w.len();
    let inv_d = inv_len::<S::E>(d);
    let wd = S::W;
    for ((((xr, dyr), dxr), &m), &r) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .zip(mean)
        .zip(rstd)
    {
        // With x̂ = ((x − m) − c)·r:  Σ g·x̂ = r·(Σ g·(x − m) − c·Σ g).
        let (sc, sg, sgc) = ln_sums(s, xr, dyr, w, m);
        let c = sc * inv_d;
        let mg = sg * inv_d;
        let mgx = r * (sgc - c * sg) * inv_d;
        // x̂ = (x − m)·r − c·r;   dx = g·r − mg·r − x̂·(mgx·r)
        let (nc, nb, ne) = (-(c * r), -(mg * r), -(mgx * r));
        let (vm, vr, vnc, vnb, vne) = (s.splat(m), s.splat(r), s.splat(nc), s.splat(nb), s.splat(ne));
        let (xp, dyp) = (xr.as_ptr(), dyr.as_ptr());
        let mut i = 0;
        while i + wd <= d {
            touch_ahead(s, xp, dyp, d + i);
            let xv = s.load(&xr[i..]);
            let dv = s.load(&dyr[i..]);
            let xh = s.mul_add(s.sub(xv, vm), vr, vnc);
            let g = s.mul(dv, s.load(&w[i..]));
            s.store(&mut dxr[i..], s.mul_add(xh, vne, s.mul_add(g, vr, vnb)));
            let pg = s.load(&dg[i..]);
            s.store(&mut dg[i..], s.mul_add(dv, xh, pg));
            if DB {
                let pb = s.load(&db[i..]);
                s.store(&mut db[i..], s.add(pb, dv));
            }
            i += wd;
        }
        while i < d {
            let xh = s.mul_add1(xr[i] - m, r, nc);
            let g = dyr[i] * w[i];
            dxr[i] = s.mul_add1(xh, ne, s.mul_add1(g, r, nb));
            dg[i] = s.mul_add1(dyr[i], xh, dg[i]);
            if DB {
                db[i] += dyr[i];
            }
            i += 1;
        }
    }
}

/// RmsNorm backward of a run of whole rows: writes `dx` and adds each row's `dy·x̂` to
/// `dgamma` and `dy` to `dbeta` (when given), in row order.
///
/// ```text
/// x̂  = x·rrms,    g = dy·gamma
/// dx = rrms·(g - x̂·mean(g·x̂))
/// ```
pub(crate) struct RmsRows<'a, F> {
    /// `rows·d` inputs.
    pub x: &'a [F],
    /// `rows·d` output gradients.
    pub dy: &'a [F],
    /// Saved per-row `1/rms` (`rows`).
    pub rrms: &'a [F],
    /// gamma (`d`).
    pub weight: &'a [F],
    /// `rows·d` input gradients, written.
    pub dx: &'a mut [F],
    /// dgamma partial (`d`), added to.
    pub dgamma: &'a mut [F],
    /// dbeta partial (`d`), added to.
    pub dbeta: Option<&'a mut [F]>,
}

impl<F: Float> RowsOp<F> for RmsRows<'_, F> {
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) {
        match self.dbeta {
            Some(db) => rms_rows::<S, true>(
                s,
                self.x,
                self.dy,
                self.rrms,
                self.weight,
                self.dx,
                self.dgamma,
                db,
            ),
            None => rms_rows::<S, false>(
                s,
                self.x,
                self.dy,
                self.rrms,
                self.weight,
                self.dx,
                self.dgamma,
                &mut [],
            ),
        }
    }
}

/// The body of [`RmsRows`]; `DB` says whether `db` is accumulated (else it is empty).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rms_rows<S: Simd, const DB: bool>(
    s: S,
    x: &[S::E],
    dy: &[S::E],
    rrms: &[S::E],
    w: &[S::E],
    dx: &mut [S::E],
    dg: &mut [S::E],
    db: &mut [S::E],
) {
    let d = w.len();
    let inv_d = inv_len::<S::E>(d);
    let wd = S::W;
    for (((xr, dyr), dxr), &r) in x
        .chunks_exact(d)
        .zip(dy.chunks_exact(d))
        .zip(dx.chunks_exact_mut(d))
        .zip(rrms)
    {
        // Σ g·x̂ = r·Σ g·x;   dx = g·r − x̂·(mean(g·x̂)·r)
        let mgx = r * rms_sum(s, xr, dyr, w) * inv_d;
        let ne = -(mgx * r);
        let (vr, vne) = (s.splat(r), s.splat(ne));
        let (xp, dyp) = (xr.as_ptr(), dyr.as_ptr());
        let mut i = 0;
        while i + wd <= d {
            touch_ahead(s, xp, dyp, d + i);
            let dv = s.load(&dyr[i..]);
            let xh = s.mul(s.load(&xr[i..]), vr);
            let g = s.mul(dv, s.load(&w[i..]));
            s.store(&mut dxr[i..], s.mul_add(xh, vne, s.mul(g, vr)));
            let pg = s.load(&dg[i..]);
            s.store(&mut dg[i..], s.mul_add(dv, xh, pg));
            if DB {
                let pb = s.load(&db[i..]);
                s.store(&mut db[i..], s.add(pb, dv));
            }
            i += wd;
        }
        while i < d {
            let xh = xr[i] * r;
            let g = dyr[i] * w[i];
            dxr[i] = s.mul_add1(xh, ne, g * r);
            dg[i] = s.mul_add1(dyr[i], xh, dg[i]);
            if DB {
                db[i] += dyr[i];
            }
            i += 1;
        }
    }
}

/// Runs [`LnRows`] on `path`.
#[inline]
pub(crate) fn ln_rows_on<F: Float>(path: Path, op: LnRows<'_, F>) {
    run_on!(path, F, LnRows, op)
}

/// Runs [`RmsRows`] on `path`.
#[inline]
pub(crate) fn rms_rows_on<F: Float>(path: Path, op: RmsRows<'_, F>) {
    run_on!(path, F, RmsRows, op)
}

/// Number of reduction blocks for `rows` rows.
pub(crate) fn block_count(rows: usize) -> usize {
    rows.div_ceil(REDUCTION_BLOCK_ROWS)
}

/// Row range of reduction block `b` among `rows` rows.
pub(crate) fn block_rows(b: usize, rows: usize) -> Range<usize> {
    let start = b * REDUCTION_BLOCK_ROWS;
    start..(start + REDUCTION_BLOCK_ROWS).min(rows)
}

/// Adds one block's partials into the totals: `dgamma += pg`, `dbeta += pb`.
pub(crate) fn add_partial<F: Float>(pg: &[F], pb: Option<&[F]>, dgamma: &mut [F], dbeta: Option<&mut [F]>) {
    for (t, &p) in dgamma.iter_mut().zip(pg) {
        *t += p;
    }
    if let (Some(db), Some(pb)) = (dbeta, pb) {
        for (t, &p) in db.iter_mut().zip(pb) {
            *t += p;
        }
    }
}
