//! Backward row kernels over contiguous rows, written once for both norms (the
//! compile-time [`Kind`] switch: LayerNorm centers, RMSNorm does not) and for every
//! storage type (the [`Storage`] switch: `f32`/`f64` rows, or bf16/f16 rows computed in
//! f32, widened in registers as they are loaded and each dx rounded once as it is
//! stored) against the vector abstraction shared with `norm-core` (`norm_core::simd`),
//! and run on the path the CPU supports (AVX-512F, AVX2+FMA or portable).
//!
//! Each row is read twice: one pass for its reductions (several vector accumulators,
//! prefetching 4 KiB ahead into the next rows), then, with the row still in L1/L2, one
//! pass that writes dx and adds each row's `dy·x̂` and `dy` into the block's
//! dgamma/dbeta partials. In cache the write pass runs over a group of rows, so gamma and
//! the partials are loaded once per group. For dx arrays far beyond the caches
//! (`norm_core::simd::Stores`) dx goes out as non-temporal stores and rows are
//! pipelined: the reduction pass of row `i + 1` runs inside the write pass of row `i`
//! (vector step by vector step), so the loads of the next row from memory and the
//! stores of this row's dx are in flight together, as in a copy (one by one instead
//! under `norm_core::simd::Pipelining::Never`, a benchmark hook). Neither the grouping
//! nor the pipelining changes a bit: the reductions use the same accumulators in the
//! same order, each dx column is computed by the same operations, and the partials take
//! their rows in row order.
//!
//! Nothing here validates: the slice and ndarray layers in `norm_backward/` check
//! lengths first; the fixed reduction blocks are `norm_backward/blocks.rs`.
//! Derivations: `docs/math.md`, section "Backward".

use std::marker::PhantomData;

use norm_core::simd::{
    HeldHalf, Pipelining, Simd, SimdOp, Store, Stores, pipelining, prefetches_ahead, software_prefetch_pays,
    stream_fence,
};
use norm_core::{Float, Half};

/// How the kernels read and write the rows of `x`, `dy` and `dx`: elements of a storage
/// type [`X`](Storage::X) computed in `F`. [`Plain`] rows are `F` itself; [`Halves`] rows
/// are bf16/f16 computed in f32 (the widening is exact, so the kernels see the f32 row
/// the f32 backward of the widened inputs would see, and only dx's store rounds).
pub(crate) trait Storage<F: Float>: Copy + Send + Sync + 'static {
    /// The element type of `x`, `dy` and `dx`.
    type X: Copy + Send + Sync;
    /// `W` elements of `v` from `i`, widened to `F`.
    ///
    /// # Safety
    /// `i + W <= v.len()`.
    unsafe fn load_at<S: Simd<E = F>>(s: S, v: &[Self::X], i: usize) -> S::V;
    /// Stores the lanes of `v`, each rounded once to `X`, to `dx[i..i + W]`,
    /// non-temporally when `nt`.
    ///
    /// # Safety
    /// `i + W <= dx.len()`; with `nt`, `dx[i..]` starts at a multiple of the vector's
    /// bytes (`W` elements of `X`).
    unsafe fn store_at<S: Simd<E = F>>(s: S, dx: &mut [Self::X], i: usize, v: S::V, nt: bool);
    /// Stores `v` rounded once to `X` to `dx[i]` (checked), non-temporally when `nt`
    /// where the element allows it ([`Simd::stream1`]: 4- and 8-byte elements; 16-bit
    /// ones are stored plainly). For the columns of a streamed row outside its whole
    /// cache lines: a plain store there, in a line shared with the row beside it when
    /// dx is not aligned to a cache line, first reads the line from memory and holds up
    /// the stores behind it. Intel Xeon (Sapphire Rapids class, `lscpu` "Intel(R)
    /// Xeon(R) Processor"), f32 65536×512 with rows 16 bytes past a line, one binary,
    /// four rounds, non-temporal over plain edge stores: LayerNorm 0.68-0.72 -> 0.75-0.82
    /// of the `z = a + c·b` ceiling, RmsNorm 0.70-0.80 -> 0.81-0.87, both vector paths
    /// (docs/performance.md, run of 5 December).
    ///
    /// 16-bit elements go out in pairs, one 4-byte store for two neighbours: the first
    /// waits in `held` for the second ([`HeldHalf`]), which the caller flushes at the
    /// end of its columns.
    fn put1<S: Simd<E = F>>(s: S, dx: &mut [Self::X], i: usize, v: F, nt: bool, held: &mut HeldHalf<Self::X>);
    /// One element, widened.
    fn widen(x: Self::X) -> F;
    /// One value rounded to `X` (to nearest, ties to even).
    fn narrow(v: F) -> Self::X;
}

/// Rows stored in the element type itself (`f32`, `f64`).
#[derive(Clone, Copy)]
pub(crate) struct Plain;

impl<F: Float> Storage<F> for Plain {
    type X = F;
    #[inline(always)]
    unsafe fn load_at<S: Simd<E = F>>(s: S, v: &[F], i: usize) -> S::V {
        // SAFETY: in bounds per the contract.
        unsafe { s.load_at(v, i) }
    }
    #[inline(always)]
    unsafe fn store_at<S: Simd<E = F>>(s: S, dx: &mut [F], i: usize, v: S::V, nt: bool) {
        // SAFETY: in bounds (and aligned with `nt`) per the contract.
        unsafe {
            if nt {
                s.stream_at(dx, i, v);
            } else {
                s.store_at(dx, i, v);
            }
        }
    }
    #[inline(always)]
    fn put1<S: Simd<E = F>>(s: S, dx: &mut [F], i: usize, v: F, nt: bool, _: &mut HeldHalf<F>) {
        if nt {
            s.stream1(dx, i, v);
        } else {
            dx[i] = v;
        }
    }
    #[inline(always)]
    fn widen(x: F) -> F {
        x
    }
    #[inline(always)]
    fn narrow(v: F) -> F {
        v
    }
}

/// bf16/f16 rows computed in f32: loads widen in registers ([`Simd::load_half`]), dx
/// stores round each lane once ([`Simd::store_half`], as `norm_core::simd::narrow`).
pub(crate) struct Halves<H>(PhantomData<H>);

impl<H> Clone for Halves<H> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<H> Copy for Halves<H> {}

impl<H: Half> Storage<f32> for Halves<H> {
    type X = H;
    #[inline(always)]
    unsafe fn load_at<S: Simd<E = f32>>(s: S, v: &[H], i: usize) -> S::V {
        debug_assert!(i + S::W <= v.len());
        // SAFETY: in bounds per the contract.
        unsafe { s.load_half(v.as_ptr().add(i)) }
    }
    #[inline(always)]
    unsafe fn store_at<S: Simd<E = f32>>(s: S, dx: &mut [H], i: usize, v: S::V, nt: bool) {
        debug_assert!(i + S::W <= dx.len());
        let store = if nt { Store::Streaming } else { Store::Cached };
        // SAFETY: in bounds, and aligned to `2·W` bytes with `nt`, per the contract.
        unsafe { s.store_half(dx.as_mut_ptr().add(i), v, store) }
    }
    #[inline(always)]
    fn put1<S: Simd<E = f32>>(s: S, dx: &mut [H], i: usize, v: f32, nt: bool, held: &mut HeldHalf<H>) {
        held.put(s, dx, i, <Self as Storage<f32>>::narrow(v), nt);
    }
    #[inline(always)]
    fn widen(x: H) -> f32 {
        x.to_acc()
    }
    #[inline(always)]
    fn narrow(v: f32) -> H {
        H::from_acc(v)
    }
}

/// Prefetches the cache lines of `x` and `dy` that lie `at` elements past their starts
/// (into the next rows when `at` passes the row), one line per 64 bytes of a `W`-wide
/// step. The address may lie past the arrays: prefetches never fault, and
/// `wrapping_add` never makes a pointer invalid to form.
#[inline(always)]
fn touch_ahead<S: Simd, X>(s: S, x: *const X, dy: *const X, at: usize) {
    let bytes = S::W * std::mem::size_of::<X>();
    let mut off = 0;
    while off < bytes {
        s.prefetch(x.wrapping_add(at).wrapping_byte_add(off).cast());
        s.prefetch(dy.wrapping_add(at).wrapping_byte_add(off).cast());
        off += 64;
    }
}

/// Sequential reader of the vectors `v[kW..(k + 1)W]`, `k = 0, 1, …` of a row, widened
/// to `F` ([`Storage::load_at`]). Where the backend recombines two vectors in one
/// shuffle ([`Simd::SHIFT`]) and a vector fills a cache line, the middle vectors are
/// built from 64-byte-aligned loads: the same values in the same lanes (so not a bit
/// changes), without loads that straddle two cache lines, which cost two. The first and
/// last vectors are plain loads, so nothing outside the row is read.
struct Stream<'a, S: Simd, T: Storage<S::E>> {
    v: &'a [T::X],
    /// Misalignment of `v` in elements (0: plain loads).
    m: usize,
    nv: usize,
    k: usize,
    carry: S::V,
    sh: S::Shift,
}

impl<'a, S: Simd, T: Storage<S::E>> Stream<'a, S, T> {
    #[inline(always)]
    fn new(s: S, v: &'a [T::X], zero: S::V) -> Self {
        let size = std::mem::size_of::<T::X>();
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
            let v = unsafe { T::load_at(s, self.v, k * wd) };
            if m != 0 && k == 0 && self.nv >= 3 {
                // SAFETY: the aligned vector at W − m ends at 2W − m <= len.
                self.carry = unsafe { T::load_at(s, self.v, wd - m) };
            }
            return v;
        }
        // The aligned vector at (k + 1)W − m (ends at (k + 2)W − m <= nv·W); vector k is
        // the last W − m lanes of the previous aligned one and the first m of this one.
        // SAFETY: 1 <= k <= nv − 2, so the load is in bounds.
        let a = unsafe { T::load_at(s, self.v, (k + 1) * wd - m) };
        let out = s.combine(self.carry, a, self.sh);
        self.carry = a;
        out
    }
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
/// of them when `stores` is [`Stores::Streaming`] and the row's first body vector (at column `head`) sits
/// at a cache-line boundary (then every body vector is at a vector boundary). Only
/// vectors that fill whole lines are streamed ([`stream_end`]), so no line is written
/// partly by plain and partly by non-temporal stores. Non-temporal stores go to memory
/// without first reading the line into the cache (a plain store reads it: one memory
/// transfer more per line), which pays for outputs far larger than the caches, when
/// nothing reads them again soon. The values are the same either way.
#[inline(always)]
fn streamed_rows<F, const G: usize>(stores: Stores, dx: *const F, head: usize, d: usize) -> [bool; G] {
    let size = std::mem::size_of::<F>();
    std::array::from_fn(|k| {
        stores == Stores::Streaming && (dx as usize + (k * d + head) * size).is_multiple_of(64)
    })
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

/// Rows per group of the write pass for rows of `d` elements of `X` in cache: 4, or
/// fewer when four rows of x and dy would not fit in half of a 2 MiB L2. gamma, dgamma
/// and dbeta are loaded and stored once per group instead of once per row. Out of cache
/// ([`run_rows`]) rows go one at a time, pipelined. The additions into the partials stay
/// in row order, so the group size never changes a bit.
#[inline(always)]
fn group_rows<X>(d: usize) -> usize {
    const BUDGET: usize = 1 << 20;
    let row_bytes = 2 * d * std::mem::size_of::<X>();
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

/// [`AHEAD_BYTES`] in elements of `X`.
#[inline(always)]
fn ahead<X>() -> usize {
    AHEAD_BYTES / std::mem::size_of::<X>()
}

mod sealed {
    /// Keeps [`Kind`](super::Kind) to the two norms of this module.
    pub trait Sealed {}
}

/// Which norm a backward kernel computes: the one compile-time switch between
/// LayerNorm and RMSNorm, so that each algorithm below is written once.
pub(crate) trait Kind: sealed::Sealed + Copy + Send + Sync + 'static {
    /// Whether rows are centered (LayerNorm: `x̂ = (x − μ)·r`, with the mean terms of
    /// dx) or not (RMSNorm: `x̂ = x·r`).
    const CENTER: bool;
    /// Vector accumulators per sum in the reduction pass (three sums for LayerNorm,
    /// one for RMSNorm, so RMSNorm can afford more to hide the FMA latency).
    const ACC: usize;
}

/// LayerNorm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ln;
impl sealed::Sealed for Ln {}
impl Kind for Ln {
    const CENTER: bool = true;
    const ACC: usize = 2;
}

/// RMSNorm.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rms;
impl sealed::Sealed for Rms {}
impl Kind for Rms {
    const CENTER: bool = false;
    const ACC: usize = 4;
}

/// The lanes of `v[..n]` (`n` = 1, 2 or 4) added as a balanced tree: `v0`,
/// `v0 + v1`, `(v0 + v1) + (v2 + v3)`.
#[inline(always)]
fn tree<S: Simd>(s: S, v: [S::V; 4], n: usize) -> S::V {
    match n {
        1 => v[0],
        2 => s.add(v[0], v[1]),
        _ => s.add(s.add(v[0], v[1]), s.add(v[2], v[3])),
    }
}

/// Work that rides along the vector steps of a reduction pass ([`row_sums`]): one of
/// its steps after each of the pass's (the pipelined write pass of the previous row,
/// [`Writer`]), or nothing (`()`). A trait rather than a closure: a closure is a
/// function of its own, compiled without the entry point's target features unless it
/// happens to be inlined.
trait Ride<S: Simd> {
    /// One step of the riding work, if any is left.
    fn ride(&mut self, s: S);
}

impl<S: Simd> Ride<S> for () {
    #[inline(always)]
    fn ride(&mut self, _: S) {}
}

/// A row's reductions in one pass: `(Σ c, Σ g, Σ g·c)` with `g = dy·w` and
/// `c = x − mean` (LayerNorm) or `c = x` (RMSNorm, which needs only the last sum and
/// returns zeros for the others). [`Kind::ACC`] vector accumulators per sum, combined
/// as a balanced tree, then the scalar tail. `rider` takes one step after each vector
/// step (it never touches the sums). With `read_ahead` the pass prefetches x and dy
/// [`AHEAD_BYTES`] ahead of itself (into the next rows).
#[inline(always)]
fn row_sums<F: Float, T: Storage<F>, S: Simd<E = F>, K: Kind, R: Ride<S>>(
    s: S,
    (x, dy): (&[T::X], &[T::X]),
    w: &[F],
    mean: F,
    read_ahead: bool,
    rider: &mut R,
) -> (F, F, F) {
    let (wd, n, u) = (S::W, x.len(), K::ACC);
    assert!(dy.len() >= n && w.len() >= n);
    let vm = s.splat(mean);
    let z = s.splat(F::zero());
    let (mut c, mut g, mut p) = ([z; 4], [z; 4], [z; 4]);
    let (mut sx, mut sd, mut sw) = (
        Stream::<S, T>::new(s, x, z),
        Stream::<S, T>::new(s, &dy[..n], z),
        Stream::<S, Plain>::new(s, &w[..n], z),
    );
    // A macro, not a closure (see `Ride`).
    macro_rules! step {
        ($k:expr) => {{
            let k = $k;
            let xv = sx.next(s);
            let xc = if K::CENTER { s.sub(xv, vm) } else { xv };
            let gg = s.mul(sd.next(s), sw.next(s));
            if K::CENTER {
                c[k] = s.add(c[k], xc);
                g[k] = s.add(g[k], gg);
            }
            p[k] = s.mul_add(gg, xc, p[k]);
            rider.ride(s);
        }};
    }
    let mut i = 0;
    while i + u * wd <= n {
        if read_ahead {
            for k in 0..u {
                touch_ahead(s, x.as_ptr(), dy.as_ptr(), i + ahead::<T::X>() + k * wd);
            }
        }
        for k in 0..u {
            step!(k);
        }
        i += u * wd;
    }
    while i + wd <= n {
        step!(0);
        i += wd;
    }
    let (mut tc, mut tg, mut tp) = (F::zero(), F::zero(), F::zero());
    while i < n {
        let xi = T::widen(x[i]);
        let cc = if K::CENTER { xi - mean } else { xi };
        let gg = T::widen(dy[i]) * w[i];
        if K::CENTER {
            tc += cc;
            tg += gg;
        }
        tp = s.mul_add1(gg, cc, tp);
        i += 1;
    }
    if K::CENTER {
        (
            s.sum(tree(s, c, u)) + tc,
            s.sum(tree(s, g, u)) + tg,
            s.sum(tree(s, p, u)) + tp,
        )
    } else {
        (F::zero(), F::zero(), s.sum(tree(s, p, u)) + tp)
    }
}

/// The read-only side of a backward over a run of whole rows of `d = weight.len()`, in
/// storage type `X` (statistics, gamma and eps in the compute type `F`).
#[derive(Clone, Copy)]
pub(crate) struct Rows<'a, F, X = F> {
    /// `rows·d` inputs.
    pub x: &'a [X],
    /// `rows·d` output gradients.
    pub dy: &'a [X],
    /// Saved per-row mean (`rows`; LayerNorm only, empty for RMSNorm).
    pub mean: &'a [F],
    /// Saved per-row `1/std` (LayerNorm) or `1/rms` (RMSNorm) (`rows`).
    pub r: &'a [F],
    /// gamma (`d`).
    pub weight: &'a [F],
    /// The norm's eps (only [`rescue_row`] reads it: it recomputes the statistics).
    pub eps: F,
}

/// Where a backward over a run of rows writes.
pub(crate) struct Grads<'a, F, X = F> {
    /// `rows·d` input gradients, overwritten.
    pub dx: &'a mut [X],
    /// How dx is stored: [`Stores::Streaming`] (non-temporal, see [`streamed_rows`]) or
    /// anything else for plain stores; resolved by the caller for the whole array.
    pub stores: Stores,
    /// dgamma partial (`d`), added to.
    pub dgamma: &'a mut [F],
    /// dbeta partial (`d`), added to; empty when no dbeta is wanted.
    pub dbeta: &'a mut [F],
}

/// The backward of norm `K` over a run of whole rows (one reduction block, or any run)
/// stored as `T` says: writes `dx` and adds each row's `dy·x̂` to `dgamma` and `dy` to
/// `dbeta` (when it is not empty), in row order.
///
/// ```text
/// LayerNorm:  x̂ = (x − mean)·rstd,  g = dy·gamma,  dx = rstd·(g − mean(g) − x̂·mean(g·x̂))
/// RMSNorm:    x̂ = x·rrms,           g = dy·gamma,  dx = rrms·(g − x̂·mean(g·x̂))
/// ```
///
/// LayerNorm's `mean` is the forward's mean rounded to `F`; the kernel also measures the
/// residual `c = mean(x − mean)` (each difference is exact, and the rounding of the
/// mean is at most half a spacing of `F` at the mean, so `c` is small against the
/// spread but need not be negligible against the rounding of the outputs) and uses
/// `x̂ = ((x − mean) − c)·rstd`; the residual comes out of the same pass as the two
/// gradient sums.
pub(crate) struct Backward<'a, F: Float, K, T: Storage<F> = Plain> {
    /// What is read.
    pub rows: Rows<'a, F, T::X>,
    /// What is written.
    pub grads: Grads<'a, F, T::X>,
    /// The norm and the storage.
    pub kind: PhantomData<(K, T)>,
}

impl<F: Float, K: Kind, T: Storage<F>> SimdOp<F> for Backward<'_, F, K, T> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) {
        let Backward { rows, mut grads, .. } = self;
        if grads.dbeta.is_empty() {
            run_rows::<F, T, S, K, false>(s, &rows, &mut grads);
        } else {
            run_rows::<F, T, S, K, true>(s, &rows, &mut grads);
        }
    }
}

/// The body of [`Backward`]; `DB` says whether dbeta is accumulated.
#[inline(always)]
fn run_rows<F: Float, T: Storage<F>, S: Simd<E = F>, K: Kind, const DB: bool>(
    s: S,
    rows: &Rows<'_, F, T::X>,
    out: &mut Grads<'_, F, T::X>,
) {
    let n = rows.r.len();
    if out.stores == Stores::Streaming {
        // Out of cache (dx streamed), one row at a time: a group of G rows read column
        // by column is 2·G + G concurrent streams of x, dy and dx, more than some
        // hardware prefetchers follow (AMD Zen 3 ran 4-row groups at 0.2-0.35x the
        // bandwidth ceiling, 2-3x slower than single rows). Pipelined or not as
        // `backward_pipelines` says.
        if backward_pipelines() {
            piped_rows::<F, T, S, K, DB>(s, rows, out);
        } else {
            let read_ahead = prefetches_ahead(true);
            for i in 0..n {
                rows_at::<F, T, S, K, 1, DB>(s, i, rows, out, read_ahead);
            }
        }
        stream_fence();
        return;
    }
    // In cache, where no prefetcher is needed, groups save the loads and stores of
    // gamma and the partials; the reduction pass reads ahead only where software
    // prefetch pays (not on AMD CPUs: measured slower there, `prefetching_backward`).
    let group = group_rows::<T::X>(rows.weight.len());
    let read_ahead = prefetches_ahead(software_prefetch_pays());
    let mut i = 0;
    while group >= 4 && i + 4 <= n {
        rows_at::<F, T, S, K, 4, DB>(s, i, rows, out, read_ahead);
        i += 4;
    }
    while group >= 2 && i + 2 <= n {
        rows_at::<F, T, S, K, 2, DB>(s, i, rows, out, read_ahead);
        i += 2;
    }
    while i < n {
        rows_at::<F, T, S, K, 1, DB>(s, i, rows, out, read_ahead);
        i += 1;
    }
}

/// Whether the rows out of cache run pipelined ([`piped_rows`]) or one after another,
/// as [`pipelining`] says (`Auto`: pipelined on every CPU). On an AMD EPYC (Zen 4),
/// three rounds of `pipelining_backward` (f32, 65536×512 and 8192×4096), one by one over
/// pipelined: forced AVX2 0.85-1.26 (11 of 12 pairs at least 1.02), AVX-512 0.86-1.36 for
/// rows of 2 KiB and 0.75-0.94 for rows of 16 KiB: no rule that serves every path and
/// row length was clear enough to change `Auto` on.
#[inline(always)]
fn backward_pipelines() -> bool {
    pipelining() != Pipelining::Never
}

/// Every row, one at a time, with the reduction pass of row `i + 1` riding on the write
/// pass of row `i` ([`Ride`]): while row `i`'s dx goes out, row `i + 1` comes in. The
/// same sums and the same dx as [`rows_at`] row by row (each pass does what it does
/// alone), and the partials take the rows in row order.
#[inline(always)]
fn piped_rows<F: Float, T: Storage<F>, S: Simd<E = F>, K: Kind, const DB: bool>(
    s: S,
    rows: &Rows<'_, F, T::X>,
    out: &mut Grads<'_, F, T::X>,
) {
    let n = rows.r.len();
    if n == 0 {
        return;
    }
    // Out of cache the reduction pass reads ahead on every CPU (measured faster with it
    // on AMD too, unlike the forward: `prefetching_backward`).
    let read_ahead = prefetches_ahead(true);
    let mut co = coeffs::<F, T, S, K, ()>(s, rows, 0, read_ahead, &mut ());
    for i in 0..n {
        let last = i + 1 == n;
        if !co.usable() {
            rescue_row::<F, T, K, DB>(i, rows, out);
            if !last {
                co = coeffs::<F, T, S, K, ()>(s, rows, i + 1, read_ahead, &mut ());
            }
            continue;
        }
        // The last row has no next row to read: it keeps reading ahead itself (into
        // whatever follows this run of rows).
        let mut wr = Writer::<F, T, S, K, 1, DB>::new(s, i, rows, out, [co], last);
        if !last {
            co = coeffs::<F, T, S, K, _>(s, rows, i + 1, read_ahead, &mut wr);
        }
        wr.finish(s);
    }
}

/// Rows `i..i + G`: their reductions, then one write pass over all `G` when every row's
/// coefficients are usable ([`Coeffs::usable`]); otherwise row by row, each usable row
/// on its own (the same bits: the group size never changes one) and the others through
/// [`rescue_row`]. Either way the rows' dgamma/dbeta terms go in in row order.
#[inline(always)]
fn rows_at<F: Float, T: Storage<F>, S: Simd<E = F>, K: Kind, const G: usize, const DB: bool>(
    s: S,
    i: usize,
    rows: &Rows<'_, F, T::X>,
    out: &mut Grads<'_, F, T::X>,
    read_ahead: bool,
) {
    // A loop, not `array::from_fn` with a closure (see `Ride`).
    let mut co = [Coeffs::<F>::default(); G];
    for (k, c) in co.iter_mut().enumerate() {
        *c = coeffs::<F, T, S, K, ()>(s, rows, i + k, read_ahead, &mut ());
    }
    if co.iter().all(Coeffs::usable) {
        Writer::<F, T, S, K, G, DB>::new(s, i, rows, out, co, true).finish(s);
        return;
    }
    for (k, c) in co.into_iter().enumerate() {
        if c.usable() {
            Writer::<F, T, S, K, 1, DB>::new(s, i + k, rows, out, [c], true).finish(s);
        } else {
            rescue_row::<F, T, K, DB>(i + k, rows, out);
        }
    }
}

/// The per-row coefficients of the write pass:
///
/// ```text
/// x̂ = (x − m)·r + nc,   dx = g·r + nb + x̂·ne
/// ```
///
/// with `nc = −c·r` (`c = mean(x − m)`, the rounding of the saved mean), `nb = −mean(g)·r`,
/// `ne = −mean(g·x̂)·r` for LayerNorm, where `Σ g·x̂ = r·(Σ g·(x − m) − c·Σ g)`; and
/// `m = nc = nb = 0`, `ne = −mean(g·x̂)·r` with `Σ g·x̂ = r·Σ g·x` for RMSNorm.
#[derive(Clone, Copy, Default)]
struct Coeffs<F> {
    m: F,
    r: F,
    nc: F,
    nb: F,
    ne: F,
}

impl<F: Float> Coeffs<F> {
    /// Whether the write pass can use these: `r` a normal number (not 0, subnormal or
    /// infinite, as for eps = 0 rows of subnormals, or rows near ±MAX whose `1/std` is
    /// below the normal range) and every coefficient finite (a sum that overflowed, as
    /// `Σ g·x` on rows near MAX/2, or `x − mean` on rows spanning ±MAX, is not).
    #[inline(always)]
    fn usable(&self) -> bool {
        self.r.is_normal() && (self.nc + self.nb + self.ne).is_finite()
    }
}

/// [`Coeffs`] of row `i` from its reductions ([`row_sums`], with `rider` riding along,
/// reading ahead as `read_ahead` says).
#[inline(always)]
fn coeffs<F: Float, T: Storage<F>, S: Simd<E = F>, K: Kind, R: Ride<S>>(
    s: S,
    rows: &Rows<'_, F, T::X>,
    i: usize,
    read_ahead: bool,
    rider: &mut R,
) -> Coeffs<F> {
    let d = rows.weight.len();
    let inv_d = inv_len::<F>(d);
    let (x, dy) = (&rows.x[i * d..(i + 1) * d], &rows.dy[i * d..(i + 1) * d]);
    let r = rows.r[i];
    let m = if K::CENTER { rows.mean[i] } else { F::zero() };
    let (sc, sg, sgc) = row_sums::<F, T, S, K, R>(s, (x, dy), rows.weight, m, read_ahead, rider);
    if K::CENTER {
        let c = sc * inv_d;
        let mg = sg * inv_d;
        let mgx = r * (sgc - c * sg) * inv_d;
        Coeffs {
            m,
            r,
            nc: -(c * r),
            nb: -(mg * r),
            ne: -(mgx * r),
        }
    } else {
        let mgx = r * sgc * inv_d;
        Coeffs {
            m,
            r,
            nc: F::zero(),
            nb: F::zero(),
            ne: -(mgx * r),
        }
    }
}

/// The write pass of rows `i..i + G` from their coefficients, over the columns of all
/// `G` rows: [`new`](Writer::new) does the scalar columns (up to the first 64-byte
/// boundary of dx and after the last full vector; in streamed rows, after the last
/// whole line), then each [`Ride::ride`] one vector column, and
/// [`finish`](Writer::finish) the columns left.
struct Writer<'r, 'o, F: Float, T: Storage<F>, S: Simd<E = F>, K, const G: usize, const DB: bool> {
    xs: &'r [T::X],
    dys: &'r [T::X],
    w: &'r [F],
    dxs: &'o mut [T::X],
    dg: &'o mut [F],
    db: &'o mut [F],
    vm: [S::V; G],
    vr: [S::V; G],
    vnc: [S::V; G],
    vnb: [S::V; G],
    vne: [S::V; G],
    /// Next vector column.
    j: usize,
    body_end: usize,
    /// Rows whose vectors are streamed, up to column `nt_end`.
    nt: [bool; G],
    nt_end: usize,
    /// Whether each step prefetches `x` and `dy` ahead (out of cache, when no reduction
    /// pass rides along to do it).
    read_ahead: bool,
    kind: PhantomData<K>,
}

impl<'r, 'o, F: Float, T: Storage<F>, S: Simd<E = F>, K: Kind, const G: usize, const DB: bool>
    Writer<'r, 'o, F, T, S, K, G, DB>
{
    /// Sets up the write pass of rows `i..i + G` and writes its scalar columns.
    /// `alone`: no reduction pass rides along; out of cache the pass then reads ahead
    /// itself.
    #[inline(always)]
    fn new(
        s: S,
        i: usize,
        rows: &Rows<'r, F, T::X>,
        out: &'o mut Grads<'_, F, T::X>,
        co: [Coeffs<F>; G],
        alone: bool,
    ) -> Self {
        let w = rows.weight;
        let d = w.len();
        let z = s.splat(F::zero());
        let (xs, dys) = (&rows.x[i * d..(i + G) * d], &rows.dy[i * d..(i + G) * d]);
        let dxs = &mut out.dx[i * d..(i + G) * d];
        let (dg, db) = (&mut *out.dgamma, &mut *out.dbeta);
        let (mut vm, mut vr, mut vnc, mut vnb, mut vne) = ([z; G], [z; G], [z; G], [z; G], [z; G]);
        for (k, c) in co.iter().enumerate() {
            vm[k] = s.splat(c.m);
            vr[k] = s.splat(c.r);
            vnc[k] = s.splat(c.nc);
            vnb[k] = s.splat(c.nb);
            vne[k] = s.splat(c.ne);
        }
        assert!(dg.len() >= d && (!DB || db.len() >= d));
        // Scalar columns up to the first 64-byte boundary of dx (a vector store that
        // straddles two cache lines costs two) and after the last full vector. Each
        // column is independent (dgamma_j, dbeta_j take their rows in row order either
        // way) and the scalar code rounds like the vector body (the same operations,
        // fused where it fuses), so which columns go scalar, and when, never changes a
        // bit.
        let head = aligned_head::<T::X>(dxs.as_ptr(), d);
        let nt = streamed_rows::<T::X, G>(out.stores, dxs.as_ptr(), head, d);
        let nt_end = stream_end::<T::X>(head, d);
        // Streamed rows end their vectors with their whole lines: the columns after go
        // out one by one, non-temporally where the element allows (`Storage::put1`).
        let body_end = if nt.iter().all(|&b| b) {
            nt_end
        } else {
            head + (d - head) / S::W * S::W
        };
        {
            let mut held = [HeldHalf::NONE; G];
            macro_rules! column {
                ($j:expr) => {{
                    let j = $j;
                    for (k, c) in co.iter().enumerate() {
                        let o = k * d + j;
                        let dyo = T::widen(dys[o]);
                        let g = dyo * w[j];
                        let (xh, dx) = if K::CENTER {
                            let xh = s.mul_add1(T::widen(xs[o]) - c.m, c.r, c.nc);
                            (xh, s.mul_add1(xh, c.ne, s.mul_add1(g, c.r, c.nb)))
                        } else {
                            let xh = T::widen(xs[o]) * c.r;
                            (xh, s.mul_add1(xh, c.ne, g * c.r))
                        };
                        T::put1(s, dxs, o, dx, nt[k], &mut held[k]);
                        dg[j] = s.mul_add1(dyo, xh, dg[j]);
                        if DB {
                            db[j] += dyo;
                        }
                    }
                }};
            }
            for j in 0..head {
                column!(j);
            }
            for j in body_end..d {
                column!(j);
            }
            for h in &mut held {
                h.flush(dxs);
            }
        }
        Writer {
            xs,
            dys,
            w,
            dxs,
            dg,
            db,
            vm,
            vr,
            vnc,
            vnb,
            vne,
            j: head,
            body_end,
            nt,
            nt_end,
            // Out of cache (dx streamed), keep reading ahead while dx is written, so
            // reads and writes are in flight together as in a copy (measured: 10-20%
            // faster out of cache on both vector paths): the lines that the next row's
            // reduction pass will prefetch at this column. In cache the reduction
            // pass's prefetch is enough.
            read_ahead: alone && out.stores == Stores::Streaming && prefetches_ahead(true),
            kind: PhantomData,
        }
    }

    /// The vector columns not written yet.
    #[inline(always)]
    fn finish(mut self, s: S) {
        while self.j < self.body_end {
            self.ride(s);
        }
    }
}

impl<F: Float, T: Storage<F>, S: Simd<E = F>, K: Kind, const G: usize, const DB: bool> Ride<S>
    for Writer<'_, '_, F, T, S, K, G, DB>
{
    /// One vector column of the `G` rows, if any is left.
    #[inline(always)]
    fn ride(&mut self, s: S) {
        let j = self.j;
        if j >= self.body_end {
            return;
        }
        let (wd, d) = (S::W, self.w.len());
        let z = s.splat(F::zero());
        if self.read_ahead {
            touch_ahead(
                s,
                self.xs.as_ptr(),
                self.dys.as_ptr(),
                G * d + j + ahead::<T::X>(),
            );
        }
        // SAFETY (every load and store below): `j + W <= body_end <= d`, gamma and the
        // partials hold at least d, and xs, dys, dxs hold G rows of d, so
        // `k·d + j + W <= G·d`.
        let wv = unsafe { s.load_at(self.w, j) };
        let mut ga = unsafe { s.load_at(self.dg, j) };
        let mut ba = if DB { unsafe { s.load_at(self.db, j) } } else { z };
        // All loads of the column before any store: a store to row k at column j and
        // a load from row k + 1 at column j can share their low 12 address bits.
        let mut outv = [z; G];
        for (k, o) in outv.iter_mut().enumerate() {
            let at = k * d + j;
            let dv = unsafe { T::load_at(s, self.dys, at) };
            let xv = unsafe { T::load_at(s, self.xs, at) };
            let g = s.mul(dv, wv);
            let xh = if K::CENTER {
                s.mul_add(s.sub(xv, self.vm[k]), self.vr[k], self.vnc[k])
            } else {
                s.mul(xv, self.vr[k])
            };
            *o = if K::CENTER {
                s.mul_add(xh, self.vne[k], s.mul_add(g, self.vr[k], self.vnb[k]))
            } else {
                s.mul_add(xh, self.vne[k], s.mul(g, self.vr[k]))
            };
            ga = s.mul_add(dv, xh, ga);
            if DB {
                ba = s.add(ba, dv);
            }
        }
        for (k, v) in outv.into_iter().enumerate() {
            // Streamed: `streamed_rows` checked that the row starts a cache line at
            // `head`, so every vector from there is aligned.
            let nt = self.nt[k] && j + wd <= self.nt_end;
            unsafe { T::store_at(s, self.dxs, k * d + j, v, nt) };
        }
        unsafe { s.store_at(self.dg, j, ga) };
        if DB {
            unsafe { s.store_at(self.db, j, ba) };
        }
        self.j = j + wd;
    }
}

/// `v·2^k`, exact whenever the result is a normal number: in steps of at most 2^±1000
/// so that no intermediate leaves the range before the result does.
fn scale2(mut v: f64, mut k: i32) -> f64 {
    while k != 0 {
        let step = k.clamp(-1000, 1000);
        v *= f64::from_bits(((step + 1023) as u64) << 52);
        k -= step;
    }
    v
}

/// The backward of row `i` when its saved statistics or its sums left the normal range
/// of `F` ([`Coeffs::usable`] is false): the row is recomputed from `x` in f64 after an
/// exact power-of-two scaling `x' = x·2^k` that brings `max|x|` to [1, 2). In that
/// domain nothing overflows or underflows (`x̂` is unchanged by the scaling, and
/// `r = r'·2^k`):
///
/// ```text
/// c = x' − mean(x')  (LayerNorm; RMSNorm: c = x'),   r' = (mean(c²) + ε·4^k)^(−1/2)
/// x̂ = c·r',   g = dy·gamma,   dx = 2^k·r'·(g − mean(g) − x̂·mean(g·x̂))  (RMSNorm: no mean(g))
/// ```
///
/// (when `ε·4^k` overflows, ε swamps the row's variance: `r = ε^(−1/2)`, `x̂ = c·r/2^k`).
/// So eps = 0 rows of subnormals (saved `r = +∞`) give finite x̂ and dgamma, and dx is the
/// true value rounded to `F` (±∞ where it is beyond `F`); rows near ±MAX give finite dx.
/// A row holding ±∞ or NaN gives NaN in its own dx (and, through its x̂ and dy, in dgamma
/// and dbeta), never in another row's dx; so does a constant row with eps = 0 (0/0).
/// Written in plain scalar code: such rows are rare.
#[cold]
#[inline(never)]
fn rescue_row<F: Float, T: Storage<F>, K: Kind, const DB: bool>(
    i: usize,
    rows: &Rows<'_, F, T::X>,
    out: &mut Grads<'_, F, T::X>,
) {
    let w = rows.weight;
    let d = w.len();
    let df = d as f64;
    let x = &rows.x[i * d..(i + 1) * d];
    let dy = &rows.dy[i * d..(i + 1) * d];
    let wide = |v: &T::X| T::widen(*v).to_f64_exact();
    let big = x.iter().fold(0.0f64, |m, v| m.max(wide(v).abs()));
    let k = if big > 0.0 && big.is_finite() {
        -(big.log2().floor() as i32)
    } else {
        0
    };
    let mut c: Vec<f64> = x.iter().map(|v| scale2(wide(v), k)).collect();
    if K::CENTER {
        // Two passes, shifted by the first element (|x'| < 2: nothing overflows).
        let x0 = c[0];
        let m = x0 + c.iter().map(|v| v - x0).sum::<f64>() / df;
        c.iter_mut().for_each(|v| *v -= m);
    }
    let var = c.iter().map(|v| v * v).sum::<f64>() / df;
    let eps = rows.eps.to_f64_exact();
    let es = scale2(scale2(eps, k), k);
    // dx = (ra·B)·2^re,  x̂ = c·xs.
    let (ra, re, xs) = if es.is_finite() {
        let rs = 1.0 / (var + es).sqrt();
        (rs, k, rs)
    } else {
        let r = 1.0 / eps.sqrt();
        (r, 0, scale2(r, -k))
    };
    let g: Vec<f64> = dy
        .iter()
        .zip(w)
        .map(|(a, b)| wide(a) * b.to_f64_exact())
        .collect();
    let xh: Vec<f64> = c.iter().map(|v| v * xs).collect();
    let mg = if K::CENTER {
        g.iter().sum::<f64>() / df
    } else {
        0.0
    };
    let mgx = g.iter().zip(&xh).map(|(a, b)| a * b).sum::<f64>() / df;
    let dx = &mut out.dx[i * d..(i + 1) * d];
    for j in 0..d {
        // In F, then (half-precision storage) rounded once more, as the f32 dx is.
        dx[j] = T::narrow(F::from_f64_round(scale2(ra * (g[j] - mg - xh[j] * mgx), re)));
        let dyj = T::widen(dy[j]);
        out.dgamma[j] += dyj * F::from_f64_round(xh[j]);
        if DB {
            out.dbeta[j] += dyj;
        }
    }
}
