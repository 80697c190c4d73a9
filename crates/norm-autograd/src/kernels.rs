//! Backward row kernels over contiguous `&[F]` rows, written once against the vector
//! abstraction shared with `norm-core` (`norm_core::simd`) and run on the path the CPU
//! supports (AVX-512F, AVX2+FMA or portable), and the fixed-block bookkeeping that sums
//! dgamma/dbeta deterministically.
//!
//! Each row is read twice: one pass for its two reductions (several vector
//! accumulators, prefetching 4 KiB ahead into the next rows), then, with the row still
//! in L1/L2, one pass over a group of rows that writes dx and adds each row's `dy·x̂`
//! and `dy` into the block's dgamma/dbeta partials. For dx arrays far beyond the caches
//! (`norm_core::simd::Stores`) dx goes out as non-temporal stores.
//!
//! Nothing here validates: the slice and ndarray layers in `norm_backward.rs` check
//! lengths first. Derivations: `docs/math.md`, section "Backward".

use std::ops::Range;

use norm_core::Float;

use norm_core::simd::{Path, Simd, SimdOp, run_on, stream_fence};

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

/// Sequential reader of the vectors `v[kW..(k + 1)W]`, `k = 0, 1, …` of a row. Where the
/// backend recombines two vectors in one shuffle ([`Simd::SHIFT`]), the middle vectors
/// are built from 64-byte-aligned loads: the same values in the same lanes (so not a bit
/// changes), without loads that straddle two cache lines, which cost two. The first and
/// last vectors are plain loads, so nothing outside the row is read.
struct Stream<'a, S: Simd> {
    v: &'a [S::E],
    /// Misalignment of `v` in elements (0: plain loads).
    m: usize,
    nv: usize,
    k: usize,
    carry: S::V,
    sh: S::Shift,
}

impl<'a, S: Simd> Stream<'a, S> {
    #[inline(always)]
    fn new(s: S, v: &'a [S::E], zero: S::V) -> Self {
        let size = std::mem::size_of::<S::E>();
        let mis = v.as_ptr() as usize % 64;
        let m = if S::SHIFT && S::W * size == 64 && mis.is_multiple_of(size) {
            mis / size
        } else {
            0
        };
        Stream {
            v,
            m,
            nv: v.len() / S::W,
            k: 0,
            carry: zero,
            sh: s.shift(m),
        }
    }

    /// The next vector (callers take at most `v.len() / W` of them).
    #[inline(always)]
    fn next(&mut self, s: S) -> S::V {
        let (k, wd, m) = (self.k, S::W, self.m);
        self.k += 1;
        debug_assert!(k < self.nv);
        if m == 0 || k == 0 || k + 1 >= self.nv {
            // SAFETY: k < nv, so (k + 1)·W <= len.
            let v = unsafe { s.load_at(self.v, k * wd) };
            if m != 0 && k == 0 && self.nv >= 3 {
                // SAFETY: the aligned vector at W − m ends at 2W − m <= len.
                self.carry = unsafe { s.load_at(self.v, wd - m) };
            }
            return v;
        }
        // The aligned vector at (k + 1)W − m (ends at (k + 2)W − m <= nv·W); vector k is
        // the last W − m lanes of the previous aligned one and the first m of this one.
        // SAFETY: 1 <= k <= nv − 2, so the load is in bounds.
        let a = unsafe { s.load_at(self.v, (k + 1) * wd - m) };
        let out = s.combine(self.carry, a, self.sh);
        self.carry = a;
        out
    }
}

/// LayerNorm's row reductions in one pass: `(Σ c, Σ g, Σ g·c)` with `c = x − mean`,
/// `g = dy·w`; two vector accumulators per sum, combined in a fixed order.
#[inline(always)]
fn ln_sums<F: Float, S: Simd<E = F>>(s: S, x: &[F], dy: &[F], w: &[F], mean: F) -> (F, F, F) {
    let (wd, n) = (S::W, x.len());
    assert!(dy.len() >= n && w.len() >= n);
    let vm = s.splat(mean);
    let z = s.splat(F::zero());
    let (mut c0, mut c1, mut g0, mut g1, mut p0, mut p1) = (z, z, z, z, z, z);
    let (mut sx, mut sd, mut sw) = (
        Stream::new(s, x, z),
        Stream::new(s, &dy[..n], z),
        Stream::new(s, &w[..n], z),
    );
    let mut i = 0;
    while i + 2 * wd <= n {
        touch_ahead(s, x.as_ptr(), dy.as_ptr(), i + ahead::<F>());
        touch_ahead(s, x.as_ptr(), dy.as_ptr(), i + ahead::<F>() + wd);
        let xc0 = s.sub(sx.next(s), vm);
        let xc1 = s.sub(sx.next(s), vm);
        let gg0 = s.mul(sd.next(s), sw.next(s));
        let gg1 = s.mul(sd.next(s), sw.next(s));
        c0 = s.add(c0, xc0);
        c1 = s.add(c1, xc1);
        g0 = s.add(g0, gg0);
        g1 = s.add(g1, gg1);
        p0 = s.mul_add(gg0, xc0, p0);
        p1 = s.mul_add(gg1, xc1, p1);
        i += 2 * wd;
    }
    if i + wd <= n {
        let xc0 = s.sub(sx.next(s), vm);
        let gg0 = s.mul(sd.next(s), sw.next(s));
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
    assert!(dy.len() >= n && w.len() >= n);
    let z = s.splat(F::zero());
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    let (mut sx, mut sd, mut sw) = (
        Stream::new(s, x, z),
        Stream::new(s, &dy[..n], z),
        Stream::new(s, &w[..n], z),
    );
    let mut i = 0;
    while i + 4 * wd <= n {
        for k in 0..4 {
            touch_ahead(s, x.as_ptr(), dy.as_ptr(), i + ahead::<F>() + k * wd);
        }
        let g0 = s.mul(sd.next(s), sw.next(s));
        let g1 = s.mul(sd.next(s), sw.next(s));
        let g2 = s.mul(sd.next(s), sw.next(s));
        let g3 = s.mul(sd.next(s), sw.next(s));
        a0 = s.mul_add(g0, sx.next(s), a0);
        a1 = s.mul_add(g1, sx.next(s), a1);
        a2 = s.mul_add(g2, sx.next(s), a2);
        a3 = s.mul_add(g3, sx.next(s), a3);
        i += 4 * wd;
    }
    while i + wd <= n {
        let g0 = s.mul(sd.next(s), sw.next(s));
        a0 = s.mul_add(g0, sx.next(s), a0);
        i += wd;
    }
    let mut t = F::zero();
    while i < n {
        t = s.mul_add1(dy[i] * w[i], x[i], t);
        i += 1;
    }
    s.sum(s.add(s.add(a0, a1), s.add(a2, a3))) + t
}

/// Elements before the first 64-byte boundary at or after `p` (at most `d`; 0 when `p`
/// is not even aligned to `F`).
#[inline(always)]
fn aligned_head<F>(p: *const F, d: usize) -> usize {
    let size = std::mem::size_of::<F>();
    let mis = p as usize % 64;
    if !mis.is_multiple_of(size) {
        return 0;
    }
    ((64 - mis) % 64 / size).min(d)
}

/// Which of a group's `G` rows write their vector body with non-temporal stores: all
/// of them when `stream` is set and the row's first body vector (at column `head`) sits
/// at a cache-line boundary (then every body vector is at a vector boundary). Only
/// vectors that fill whole lines are streamed ([`stream_end`]), so no line is written
/// partly by plain and partly by non-temporal stores. Non-temporal stores go to memory
/// without first reading the line into the cache (a plain store reads it: one memory
/// transfer more per line), which pays for outputs far larger than the caches, when
/// nothing reads them again soon. The values are the same either way.
#[inline(always)]
fn streamed_rows<F, const G: usize>(stream: bool, dx: *const F, head: usize, d: usize) -> [bool; G] {
    let size = std::mem::size_of::<F>();
    std::array::from_fn(|k| stream && (dx as usize + (k * d + head) * size).is_multiple_of(64))
}

/// The column up to which a streamed row's vectors fill whole 64-byte lines from `head`.
#[inline(always)]
fn stream_end<F>(head: usize, d: usize) -> usize {
    let line = 64 / std::mem::size_of::<F>();
    head + (d - head) / line * line
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
    /// Whether dx goes out as non-temporal stores (see [`streamed_rows`]).
    pub stream: bool,
}

impl<F: Float> SimdOp<F> for LnRows<'_, F> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) {
        match self.dbeta {
            Some(db) => ln_rows::<F, S, true>(
                s,
                self.stream,
                self.x,
                self.dy,
                self.mean,
                self.rstd,
                self.weight,
                self.dx,
                self.dgamma,
                db,
            ),
            None => ln_rows::<F, S, false>(
                s,
                self.stream,
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

/// Rows per group of the write pass for rows of `d` elements: 4, or fewer when four
/// rows of x and dy would not fit in half of a 2 MiB L2. gamma, dgamma and dbeta are
/// loaded and stored once per group instead of once per row (measured faster than
/// single rows even at d = 4096, where the group's rows are re-read from L2). The
/// additions into the partials stay in row order, so the group size never changes a
/// bit.
#[inline(always)]
fn group_rows<F>(d: usize) -> usize {
    const BUDGET: usize = 1 << 20;
    let row_bytes = 2 * d * std::mem::size_of::<F>();
    if 4 * row_bytes <= BUDGET {
        4
    } else if 2 * row_bytes <= BUDGET {
        2
    } else {
        1
    }
}

/// How far ahead (in bytes) the reduction pass prefetches `x` and `dy`; past the end of
/// a row this reaches into the next rows.
const AHEAD_BYTES: usize = 4096;

/// [`AHEAD_BYTES`] in elements of `F`.
#[inline(always)]
fn ahead<F>() -> usize {
    AHEAD_BYTES / std::mem::size_of::<F>()
}

/// The body of [`LnRows`]; `DB` says whether `db` is accumulated (else it is empty).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_rows<F: Float, S: Simd<E = F>, const DB: bool>(
    s: S,
    stream: bool,
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    w: &[F],
    dx: &mut [F],
    dg: &mut [F],
    db: &mut [F],
) {
    let d = w.len();
    let rows = mean.len();
    let mut i = 0;
    let group = group_rows::<F>(w.len());
    while group >= 4 && i + 4 <= rows {
        ln_group::<F, S, 4, DB>(s, stream, i, x, dy, mean, rstd, w, dx, dg, db);
        i += 4;
    }
    while group >= 2 && i + 2 <= rows {
        ln_group::<F, S, 2, DB>(s, stream, i, x, dy, mean, rstd, w, dx, dg, db);
        i += 2;
    }
    while i < rows {
        ln_group::<F, S, 1, DB>(s, stream, i, x, dy, mean, rstd, w, dx, dg, db);
        i += 1;
    }
    if stream {
        stream_fence();
    }
    let _ = d;
}

/// LayerNorm backward of rows `i..i + G`: the reductions row by row, then one write
/// pass over the columns of all `G` rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_group<F: Float, S: Simd<E = F>, const G: usize, const DB: bool>(
    s: S,
    stream: bool,
    i: usize,
    x: &[F],
    dy: &[F],
    mean: &[F],
    rstd: &[F],
    w: &[F],
    dx: &mut [F],
    dg: &mut [F],
    db: &mut [F],
) {
    let d = w.len();
    let inv_d = inv_len::<F>(d);
    let wd = S::W;
    let z = s.splat(F::zero());
    let (xs, dys) = (&x[i * d..(i + G) * d], &dy[i * d..(i + G) * d]);
    let dxs = &mut dx[i * d..(i + G) * d];
    // Per row: m, r, and the coefficients of
    //   x̂ = (x − m)·r − c·r,   dx = g·r − mg·r − x̂·(mgx·r)
    // where c = mean(x − m) (the rounding of the saved mean), and with that x̂,
    // Σ g·x̂ = r·(Σ g·(x − m) − c·Σ g).
    let mut cm = [F::zero(); G];
    let mut cr = [F::zero(); G];
    let mut cnc = [F::zero(); G];
    let mut cnb = [F::zero(); G];
    let mut cne = [F::zero(); G];
    for k in 0..G {
        let (m, r) = (mean[i + k], rstd[i + k]);
        let (sc, sg, sgc) = ln_sums(s, &xs[k * d..(k + 1) * d], &dys[k * d..(k + 1) * d], w, m);
        let c = sc * inv_d;
        let mg = sg * inv_d;
        let mgx = r * (sgc - c * sg) * inv_d;
        cm[k] = m;
        cr[k] = r;
        cnc[k] = -(c * r);
        cnb[k] = -(mg * r);
        cne[k] = -(mgx * r);
    }
    let vm: [S::V; G] = std::array::from_fn(|k| s.splat(cm[k]));
    let vr: [S::V; G] = std::array::from_fn(|k| s.splat(cr[k]));
    let vnc: [S::V; G] = std::array::from_fn(|k| s.splat(cnc[k]));
    let vnb: [S::V; G] = std::array::from_fn(|k| s.splat(cnb[k]));
    let vne: [S::V; G] = std::array::from_fn(|k| s.splat(cne[k]));
    assert!(w.len() == d && dg.len() >= d && (!DB || db.len() >= d));
    // One column of all G rows in scalar code, rounded exactly like the vector body
    // (the same operations, fused where it fuses), so which columns go through it never
    // changes a bit.
    macro_rules! column {
        ($j:expr) => {
            for k in 0..G {
                let o = k * d + $j;
                let xh = s.mul_add1(xs[o] - cm[k], cr[k], cnc[k]);
                let g = dys[o] * w[$j];
                dxs[o] = s.mul_add1(xh, cne[k], s.mul_add1(g, cr[k], cnb[k]));
                dg[$j] = s.mul_add1(dys[o], xh, dg[$j]);
                if DB {
                    db[$j] += dys[o];
                }
            }
        };
    }
    // Scalar columns up to the first 64-byte boundary of dx (a vector store that
    // straddles two cache lines costs two) and after the last full vector. Columns are
    // independent and the scalar code rounds like the vector code, so which columns go
    // scalar never changes a bit.
    let head = aligned_head::<F>(dxs.as_ptr(), d);
    let body_end = head + (d - head) / wd * wd;
    let nt = streamed_rows::<F, G>(stream, dxs.as_ptr(), head, d);
    let nt_end = stream_end::<F>(head, d);
    let mut j = 0;
    while j < head {
        column!(j);
        j += 1;
    }
    // SAFETY (every `load_at`/`store_at` in this loop): `j + W <= d`, gamma and the
    // partials hold at least d, and xs, dys, dxs hold G rows of d, so `k·d + j + W <= G·d`.
    while j < body_end {
        let wv = unsafe { s.load_at(w, j) };
        let mut ga = unsafe { s.load_at(dg, j) };
        let mut ba = if DB { unsafe { s.load_at(db, j) } } else { z };
        // All loads of the column before any store: a store to row k at column j and
        // a load from row k + 1 at column j can share their low 12 address bits.
        let mut out = [z; G];
        for k in 0..G {
            let o = k * d + j;
            let dv = unsafe { s.load_at(dys, o) };
            let xh = s.mul_add(s.sub(unsafe { s.load_at(xs, o) }, vm[k]), vr[k], vnc[k]);
            let g = s.mul(dv, wv);
            out[k] = s.mul_add(xh, vne[k], s.mul_add(g, vr[k], vnb[k]));
            ga = s.mul_add(dv, xh, ga);
            if DB {
                ba = s.add(ba, dv);
            }
        }
        for (k, v) in out.into_iter().enumerate() {
            if nt[k] && j + wd <= nt_end {
                // SAFETY: as above, and `streamed_rows` checked that the row starts a cache line at `head`, so every vector from there is aligned.
                unsafe { s.stream_at(dxs, k * d + j, v) };
            } else {
                unsafe { s.store_at(dxs, k * d + j, v) };
            }
        }
        unsafe { s.store_at(dg, j, ga) };
        if DB {
            unsafe { s.store_at(db, j, ba) };
        }
        j += wd;
    }
    while j < d {
        column!(j);
        j += 1;
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
    /// Whether dx goes out as non-temporal stores (see [`streamed_rows`]).
    pub stream: bool,
}

impl<F: Float> SimdOp<F> for RmsRows<'_, F> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) {
        match self.dbeta {
            Some(db) => rms_rows::<F, S, true>(
                s,
                self.stream,
                self.x,
                self.dy,
                self.rrms,
                self.weight,
                self.dx,
                self.dgamma,
                db,
            ),
            None => rms_rows::<F, S, false>(
                s,
                self.stream,
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
fn rms_rows<F: Float, S: Simd<E = F>, const DB: bool>(
    s: S,
    stream: bool,
    x: &[F],
    dy: &[F],
    rrms: &[F],
    w: &[F],
    dx: &mut [F],
    dg: &mut [F],
    db: &mut [F],
) {
    let rows = rrms.len();
    let mut i = 0;
    let group = group_rows::<F>(w.len());
    while group >= 4 && i + 4 <= rows {
        rms_group::<F, S, 4, DB>(s, stream, i, x, dy, rrms, w, dx, dg, db);
        i += 4;
    }
    while group >= 2 && i + 2 <= rows {
        rms_group::<F, S, 2, DB>(s, stream, i, x, dy, rrms, w, dx, dg, db);
        i += 2;
    }
    while i < rows {
        rms_group::<F, S, 1, DB>(s, stream, i, x, dy, rrms, w, dx, dg, db);
        i += 1;
    }
    if stream {
        stream_fence();
    }
}

/// RmsNorm backward of rows `i..i + G`: the reductions row by row, then one write pass
/// over the columns of all `G` rows.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rms_group<F: Float, S: Simd<E = F>, const G: usize, const DB: bool>(
    s: S,
    stream: bool,
    i: usize,
    x: &[F],
    dy: &[F],
    rrms: &[F],
    w: &[F],
    dx: &mut [F],
    dg: &mut [F],
    db: &mut [F],
) {
    let d = w.len();
    let inv_d = inv_len::<F>(d);
    let wd = S::W;
    let z = s.splat(F::zero());
    let (xs, dys) = (&x[i * d..(i + G) * d], &dy[i * d..(i + G) * d]);
    let dxs = &mut dx[i * d..(i + G) * d];
    // Σ g·x̂ = r·Σ g·x;   dx = g·r − x̂·(mean(g·x̂)·r)
    let mut cr = [F::zero(); G];
    let mut cne = [F::zero(); G];
    for k in 0..G {
        let r = rrms[i + k];
        let mgx = r * rms_sum(s, &xs[k * d..(k + 1) * d], &dys[k * d..(k + 1) * d], w) * inv_d;
        cr[k] = r;
        cne[k] = -(mgx * r);
    }
    let vr: [S::V; G] = std::array::from_fn(|k| s.splat(cr[k]));
    let vne: [S::V; G] = std::array::from_fn(|k| s.splat(cne[k]));
    assert!(w.len() == d && dg.len() >= d && (!DB || db.len() >= d));
    // One column of all G rows in scalar code, rounded exactly like the vector body.
    macro_rules! column {
        ($j:expr) => {
            for k in 0..G {
                let o = k * d + $j;
                let xh = xs[o] * cr[k];
                let g = dys[o] * w[$j];
                dxs[o] = s.mul_add1(xh, cne[k], g * cr[k]);
                dg[$j] = s.mul_add1(dys[o], xh, dg[$j]);
                if DB {
                    db[$j] += dys[o];
                }
            }
        };
    }
    // Scalar columns up to the first 64-byte boundary of dx (a vector store that
    // straddles two cache lines costs two) and after the last full vector. Columns are
    // independent and the scalar code rounds like the vector code, so which columns go
    // scalar never changes a bit.
    let head = aligned_head::<F>(dxs.as_ptr(), d);
    let body_end = head + (d - head) / wd * wd;
    let nt = streamed_rows::<F, G>(stream, dxs.as_ptr(), head, d);
    let nt_end = stream_end::<F>(head, d);
    let mut j = 0;
    while j < head {
        column!(j);
        j += 1;
    }
    // SAFETY (every `load_at`/`store_at` in this loop): `j + W <= d`, gamma and the
    // partials hold at least d, and xs, dys, dxs hold G rows of d, so `k·d + j + W <= G·d`.
    while j < body_end {
        let wv = unsafe { s.load_at(w, j) };
        let mut ga = unsafe { s.load_at(dg, j) };
        let mut ba = if DB { unsafe { s.load_at(db, j) } } else { z };
        let mut out = [z; G];
        for k in 0..G {
            let o = k * d + j;
            let dv = unsafe { s.load_at(dys, o) };
            let xh = s.mul(unsafe { s.load_at(xs, o) }, vr[k]);
            let g = s.mul(dv, wv);
            out[k] = s.mul_add(xh, vne[k], s.mul(g, vr[k]));
            ga = s.mul_add(dv, xh, ga);
            if DB {
                ba = s.add(ba, dv);
            }
        }
        for (k, v) in out.into_iter().enumerate() {
            if nt[k] && j + wd <= nt_end {
                // SAFETY: as above, and `streamed_rows` checked that the row starts a cache line at `head`, so every vector from there is aligned.
                unsafe { s.stream_at(dxs, k * d + j, v) };
            } else {
                unsafe { s.store_at(dxs, k * d + j, v) };
            }
        }
        unsafe { s.store_at(dg, j, ga) };
        if DB {
            unsafe { s.store_at(db, j, ba) };
        }
        j += wd;
    }
    while j < d {
        column!(j);
        j += 1;
    }
}

/// Runs [`LnRows`] on `path`.
#[inline]
pub(crate) fn ln_rows_on<F: Float>(path: Path, op: LnRows<'_, F>) {
    run_on(path, op)
}

/// Runs [`RmsRows`] on `path`.
#[inline]
pub(crate) fn rms_rows_on<F: Float>(path: Path, op: RmsRows<'_, F>) {
    run_on(path, op)
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
