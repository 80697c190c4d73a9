//! The reductions of the row kernels: what a pass reads ([`Source`]: a plain row, the
//! row shifted and centered, or the residual sum `x + r`, computed again or written to
//! `h` as it is read), the work a write pass does beside its stores ([`Beside`]: the
//! prefetch of the rows ahead, [`Ahead`], or the next row's first reduction), and the
//! sums: `Σ (v - shift)` with `Σ (v - shift)²` from the same reads (LayerNorm's first
//! pass) and `Σ v²` (RmsNorm's, and LayerNorm's centered pass when it runs), each with
//! four independent vector accumulators folded into fixed blocked [`Totals`] in an order
//! set by the row length alone, run whole or a step at a time ([`Cursor`]) with the same
//! steps.

use std::marker::PhantomData;

use super::Kind;
use super::write::put;
use crate::Float;
use crate::simd::{Simd, Store};
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// What a pass reads at element `i`: a vector (`W` elements) or one scalar.
///
/// The vector reads are unchecked, so that the hot loops carry no bounds check per
/// vector (each cost a compare and a branch beside one load and one or two arithmetic
/// operations, and the loops ran at a third of their speed): the passes check
/// [`len`](Source::len) once per row instead.
pub(super) trait Source<S: Simd> {
    /// Whether reading an element again gives the same value and changes nothing (so
    /// the write pass may compute an element twice: `write::vector_head`); not so for
    /// sources that write a side output, which may read what they wrote.
    const PURE: bool = true;
    /// Elements that can be read (and, for sources that write a side output, written).
    fn len(&self) -> usize;
    /// Elements `i..i + W`.
    ///
    /// # Safety
    /// `i + W <= self.len()`.
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V;
    /// Element `i` (checked).
    fn one(&mut self, i: usize) -> S::E;
    /// [`one`](Source::one) in a write pass whose output element `i` is written as
    /// `store` says; sources that write a side output may stream it too.
    #[inline(always)]
    fn one_to(&mut self, s: S, i: usize, store: Store) -> S::E {
        let _ = (s, store);
        self.one(i)
    }
    /// [`vec`](Source::vec) in a write pass whose output vector at `i` is written as
    /// `store` says (`Streaming`: `i` is at a vector boundary of the output); sources
    /// that write a side output may stream it too.
    ///
    /// # Safety
    /// As [`vec`](Source::vec).
    #[inline(always)]
    unsafe fn vec_to(&mut self, s: S, i: usize, store: Store) -> S::V {
        let _ = store;
        // SAFETY: the same contract.
        unsafe { self.vec(s, i) }
    }
}

/// A plain row.
#[derive(Clone, Copy)]
pub(super) struct Plain<'a, E>(pub(super) &'a [E]);

impl<S: Simd> Source<S> for Plain<'_, S::E> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V {
        // SAFETY: `i + W <= len` per the contract.
        unsafe { s.load_at(self.0, i) }
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        self.0[i]
    }
}

/// The row of `src` shifted and centered: `(v_i - shift) - m`.
pub(super) struct Centered<Src, E> {
    pub(super) src: Src,
    pub(super) shift: E,
    pub(super) m: E,
}

impl<S: Simd, Src: Source<S>> Source<S> for Centered<Src, S::E> {
    const PURE: bool = Src::PURE;
    #[inline(always)]
    fn len(&self) -> usize {
        self.src.len()
    }
    #[inline(always)]
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V {
        // SAFETY: the same contract.
        let v = unsafe { self.src.vec(s, i) };
        s.sub(s.sub(v, s.splat(self.shift)), s.splat(self.m))
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        (self.src.one(i) - self.shift) - self.m
    }
}

/// The residual sum `x + r`, computed again wherever it is read (nothing written): the
/// streaming fused kernels write `h` only in their last pass.
pub(super) struct Sum<'a, E> {
    pub(super) x: &'a [E],
    pub(super) r: &'a [E],
}

impl<S: Simd> Source<S> for Sum<'_, S::E> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.x.len().min(self.r.len())
    }
    #[inline(always)]
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V {
        // SAFETY: `i + W <= len`, the shorter of the two, per the contract.
        unsafe { s.add(s.load_at(self.x, i), s.load_at(self.r, i)) }
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        self.x[i] + self.r[i]
    }
}

/// The residual sum `h = x + r`, written to `h` as it is read (`r = None`: `h` holds `r`).
/// With `h_store = Streaming`, vectors that [`Source::vec_to`] is told to stream go to
/// `h` as non-temporal stores too (set only where `write::stream_h` allows).
pub(super) struct AddInto<'a, E> {
    pub(super) x: &'a [E],
    pub(super) r: Option<&'a [E]>,
    pub(super) h: &'a mut [E],
    pub(super) h_store: Store,
}

impl<S: Simd> Source<S> for AddInto<'_, S::E> {
    const PURE: bool = false;
    #[inline(always)]
    fn len(&self) -> usize {
        let n = self.x.len().min(self.h.len());
        self.r.map_or(n, |r| n.min(r.len()))
    }
    #[inline(always)]
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V {
        // SAFETY: the same contract.
        unsafe { self.vec_to(s, i, Store::Cached) }
    }
    #[inline(always)]
    unsafe fn vec_to(&mut self, s: S, i: usize, store: Store) -> S::V {
        // SAFETY (the loads and the store): `i + W <= len`, the shortest of x, r and h,
        // per the contract; `Streaming` only at a vector boundary of `h` (`write::h_store`
        // streams `h` only where it shares the output's alignment).
        unsafe {
            let r = match self.r {
                Some(r) => s.load_at(r, i),
                None => s.load_at(self.h, i),
            };
            let v = s.add(s.load_at(self.x, i), r);
            let store = match (store, self.h_store) {
                (Store::Streaming, Store::Streaming) => Store::Streaming,
                _ => Store::Cached,
            };
            put(s, self.h, i, v, store);
            v
        }
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        let v = self.x[i] + self.r.map_or(self.h[i], |r| r[i]);
        self.h[i] = v;
        v
    }
    #[inline(always)]
    fn one_to(&mut self, s: S, i: usize, store: Store) -> S::E {
        // In place (`r = None`, `h` holds the residual) the next element's read would
        // follow a non-temporal store into the same line: plain stores there.
        match (self.r, store, self.h_store) {
            (Some(r), Store::Streaming, Store::Streaming) => {
                let v = self.x[i] + r[i];
                s.stream1(self.h, i, v);
                v
            }
            _ => <Self as Source<S>>::one(self, i),
        }
    }
}

/// The rows after the current one (up to two streams, e.g. `x` and the residual), to
/// prefetch while the current row is written: a row's first pass reads it from memory
/// and its write pass mostly writes, so prefetching the next row there keeps reads and
/// writes in flight together, as in a copy. The pointers are one row past the current
/// row's start, or [`AHEAD_MIN_BYTES`] when rows are shorter (then the write pass of
/// each row prefetches the stretch of the stream one to a few rows further on, and
/// consecutive rows cover it without gaps), and may point past the end of the data:
/// they are only ever prefetched, never read.
#[derive(Clone, Copy)]
pub(super) struct Ahead<E> {
    rows: [*const E; 2],
    far: bool,
}

/// Where the prefetches of the rows ahead ([`Ahead`]) bring their lines, if anywhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Reach {
    /// No prefetches ([`prefetches_ahead`](crate::simd::prefetches_ahead) says no).
    Off,
    /// Into L1: the rows of a call whose data fits in cache (outputs with plain stores),
    /// so the next row's lines come from L2 into L1 while this one is written.
    L1,
    /// Into L2 only: the rows of a call from memory (streamed outputs). A row of 16 KiB
    /// brought into L1 beside the current row, its weight and its bias (48 KiB, the
    /// whole L1 of an Intel core) evicts the lines the write pass is reading. By A/B
    /// measurement in one binary (the hint switched at run time; Intel Xeon family 6
    /// model 167, one thread, best of batches, two alternating rounds, AVX-512 and
    /// forced AVX2), L2 against L1 for streamed f32 rows: LayerNorm 8192×4096 12.4-12.8
    /// -> 16.7-18.0 GB/s (AVX-512), 11.8-12.6 -> 14.1-14.7 (AVX2); RmsNorm 8192×4096
    /// 16.0-16.9 -> 17.7-17.9 and 14.7-15.4 -> 17.5-18.1; 65536×512 0-16% faster; bf16
    /// rows the same or faster. For rows in cache the same change lost 3-15%
    /// (RmsNorm 64×768 62.7-69.8 -> 56.6-59.4 GB/s), so those keep L1. The criterion
    /// groups `prefetch_reach/*` (norm-core `benches/prefetching.rs`, same CPU, two
    /// runs) agree: L2 over L1 out of cache 1.00-1.47× for the plain rows (LayerNorm
    /// 8192×4096 AVX-512 1.23-1.47, RmsNorm 65536×512 1.13-1.20), 0.95-1.04× for the
    /// fused ones; in cache (512×768) 0.93-1.02×.
    L2,
}

impl Reach {
    /// The reach for a call whose outputs are written as `store`, on this CPU (or as
    /// the [`Prefetching`](crate::simd::Prefetching) hook forces it).
    #[inline(always)]
    pub(super) fn of(store: Store) -> Self {
        use crate::simd::Prefetching;
        match crate::simd::prefetching() {
            Prefetching::IntoL1 => return Reach::L1,
            Prefetching::IntoL2 => return Reach::L2,
            _ => {}
        }
        if !crate::simd::prefetches_ahead(crate::simd::software_prefetch_pays()) {
            Reach::Off
        } else if store == Store::Streaming {
            Reach::L2
        } else {
            Reach::L1
        }
    }
}

impl<E> Ahead<E> {
    /// The stretches of the streams of `a` (and `b`) ahead of them in memory; none
    /// (nothing is prefetched) when `reach` is [`Reach::Off`].
    #[inline(always)]
    pub(super) fn after(a: &[E], b: Option<&[E]>, reach: Reach) -> Self {
        let null = std::ptr::null();
        let next = |r: &[E]| {
            if reach == Reach::Off {
                null
            } else {
                r.as_ptr().wrapping_add(ahead_elems::<E>(r.len()))
            }
        };
        Ahead {
            rows: [next(a), b.map_or(null, next)],
            far: reach == Reach::L2,
        }
    }

    /// Prefetches elements `[i, i + span)` of the rows ahead (rows of `E`, which for
    /// the half-precision kernels is not the backend's element type).
    #[inline(always)]
    pub(super) fn touch<S: Simd>(&self, s: S, i: usize, span: usize) {
        let bytes = span * std::mem::size_of::<E>();
        for p in self.rows {
            if !p.is_null() {
                let mut off = 0;
                while off < bytes {
                    let at = p.wrapping_add(i).wrapping_byte_add(off).cast::<S::E>();
                    if self.far {
                        s.prefetch_far(at);
                    } else {
                        s.prefetch(at);
                    }
                    off += 64;
                }
            }
        }
    }
}

/// Work a write pass does beside its own, a step per group of output vectors (see
/// `write_pass!`): the prefetch of the rows ahead ([`Ahead`]), the first reduction of
/// the next row ([`Cursor`]: the pipelined rows), both, or nothing (`()`).
pub(super) trait Beside<S: Simd> {
    /// The step beside the output vectors at `at..at + span`.
    fn step(&mut self, s: S, at: usize, span: usize);
}

impl<S: Simd> Beside<S> for () {
    #[inline(always)]
    fn step(&mut self, _: S, _: usize, _: usize) {}
}

impl<S: Simd, E> Beside<S> for Ahead<E> {
    #[inline(always)]
    fn step(&mut self, s: S, at: usize, span: usize) {
        self.touch(s, at, span);
    }
}

impl<S: Simd, Src: Source<S>, T: Term<S>> Beside<S> for Cursor<S, Src, T> {
    #[inline(always)]
    fn step(&mut self, s: S, _: usize, _: usize) {
        Cursor::step(self, s);
    }
}

impl<S: Simd, A: Beside<S>, B: Beside<S>> Beside<S> for (A, B) {
    #[inline(always)]
    fn step(&mut self, s: S, at: usize, span: usize) {
        self.0.step(s, at, span);
        self.1.step(s, at, span);
    }
}

/// How far ahead of a row's start the prefetches reach, in elements: one row of `len`,
/// but at least [`AHEAD_MIN_BYTES`].
#[inline(always)]
fn ahead_elems<E>(len: usize) -> usize {
    len.max(AHEAD_MIN_BYTES / std::mem::size_of::<E>().max(1))
}

/// The shortest prefetch distance. Chosen by A/B measurement out of cache (65536×512
/// f32 rows of 2 KiB, Intel Xeon model 207, loaded shared machine): 8 KiB against one
/// row gave +8-24% on the forced AVX2 path (both norms) and AVX-512 RmsNorm, -5-12% on
/// AVX-512 LayerNorm; 16 KiB the same within noise; in cache (rows of 3 KiB) no change.
const AHEAD_MIN_BYTES: usize = 8192;

/// Iterations of the four-vector loop between folds of the accumulators into the running
/// totals (a block is `4 · W · BLOCK_ITERS` elements: 256 f32 on the portable and AVX2
/// paths, 512 on AVX-512).
const BLOCK_ITERS: usize = 8;
/// Blocks folded into the first-level total before it is folded into the second.
const BLOCKS_PER_GROUP: usize = 16;

/// Blocked totals of the vector accumulators, so that few terms are added in sequence
/// at the first two levels. A plain accumulator lane sums `d / (4·W)` terms one after
/// another, and its rounding error grows with `d` (f32 rows of 65536 elements lost
/// ~1e-5 relative in the variance). Here each accumulator sums `BLOCK_ITERS` terms, the
/// block total `BLOCKS_PER_GROUP` block sums, and the group total one term per
/// `4·W·BLOCK_ITERS·BLOCKS_PER_GROUP` elements (2048-8192), in sequence: at that third
/// level the error still grows with the row length, but 2048-8192 times more slowly
/// than a plain accumulator's. The order is fixed by the row length alone, so the
/// result still depends only on the row's values and the path. Rows shorter than one
/// block never fold: their sums are bit-identical to plain accumulation.
#[derive(Clone, Copy)]
struct Totals<V> {
    block: V,
    group: V,
    blocks: usize,
}

impl<V: Copy> Totals<V> {
    #[inline(always)]
    fn new<S: Simd<V = V>>(s: S) -> Self {
        let z = s.splat(S::E::zero());
        Totals {
            block: z,
            group: z,
            blocks: 0,
        }
    }

    /// Adds one block's accumulators `a`, in the fixed order `(a0 + a1) + (a2 + a3)`.
    #[inline(always)]
    fn fold<S: Simd<V = V>>(&mut self, s: S, a: [V; 4]) {
        self.block = s.add(self.block, s.add(s.add(a[0], a[1]), s.add(a[2], a[3])));
        self.blocks += 1;
        if self.blocks == BLOCKS_PER_GROUP {
            self.group = s.add(self.group, self.block);
            self.block = s.splat(S::E::zero());
            self.blocks = 0;
        }
    }

    /// The total with the last (partial) block's accumulators `a`, summed across lanes.
    #[inline(always)]
    fn finish<S: Simd<V = V>>(self, s: S, a: [V; 4]) -> S::E {
        let last = s.add(s.add(a[0], a[1]), s.add(a[2], a[3]));
        s.sum(s.add(self.group, s.add(self.block, last)))
    }
}

/// What one term of a reduction adds to its accumulators: to one sum, or (`PAIR`) to two
/// sums at once, `a` and `b`, read from the same vector.
pub(super) trait Term<S: Simd>: Copy {
    /// Whether the term feeds the second sum too.
    const PAIR: bool;
    /// Accumulators `a` (and `b`) plus the terms of vector `v`.
    fn vec(self, s: S, a: &mut S::V, b: &mut S::V, v: S::V);
    /// Scalar totals `t` plus the terms of element `x`.
    fn one(self, t: &mut [S::E; 2], x: S::E);
}

/// The terms `v - shift` and `(v - shift)²` of LayerNorm's first pass: the shifted sum
/// and the shifted sum of squares, from one read of the row.
#[derive(Clone, Copy)]
struct ShiftedPair<S: Simd>(S::V, S::E);

impl<S: Simd> Term<S> for ShiftedPair<S> {
    const PAIR: bool = true;
    #[inline(always)]
    fn vec(self, s: S, a: &mut S::V, b: &mut S::V, v: S::V) {
        let u = s.sub(v, self.0);
        *a = s.add(*a, u);
        *b = s.mul_add(u, u, *b);
    }
    #[inline(always)]
    fn one(self, t: &mut [S::E; 2], x: S::E) {
        let u = x - self.1;
        t[0] += u;
        t[1] += u * u;
    }
}

/// The term `v²` of [`sum_sq`].
#[derive(Clone, Copy)]
struct Square;

impl<S: Simd> Term<S> for Square {
    const PAIR: bool = false;
    #[inline(always)]
    fn vec(self, s: S, a: &mut S::V, _: &mut S::V, v: S::V) {
        *a = s.mul_add(v, v, *a);
    }
    #[inline(always)]
    fn one(self, t: &mut [S::E; 2], x: S::E) {
        t[0] += x * x;
    }
}

/// The term of the first pass of norm `K`: [`ShiftedPair`] (LayerNorm: `Σ (v - shift)`
/// and `Σ (v - shift)²`) or [`Square`] (RmsNorm: `Σ v²`).
#[derive(Clone, Copy)]
pub(super) struct First<K, S: Simd> {
    shifted: ShiftedPair<S>,
    kind: PhantomData<K>,
}

impl<K: Kind, S: Simd> First<K, S> {
    /// The first-pass term of a row whose shift is `shift` (zero for RmsNorm).
    #[inline(always)]
    pub(super) fn new(s: S, shift: S::E) -> Self {
        First {
            shifted: ShiftedPair(s.splat(shift), shift),
            kind: PhantomData,
        }
    }
}

impl<K: Kind, S: Simd> Term<S> for First<K, S> {
    const PAIR: bool = K::CENTER;
    #[inline(always)]
    fn vec(self, s: S, a: &mut S::V, b: &mut S::V, v: S::V) {
        if K::CENTER {
            self.shifted.vec(s, a, b, v)
        } else {
            Square.vec(s, a, b, v)
        }
    }
    #[inline(always)]
    fn one(self, t: &mut [S::E; 2], x: S::E) {
        if K::CENTER {
            self.shifted.one(t, x)
        } else {
            <Square as Term<S>>::one(Square, t, x)
        }
    }
}

/// A reduction `Σ term(v_i)` over `n` elements of `src` in progress (one sum, or two
/// from the same reads for a `PAIR` term), so that it can be
/// advanced a step at a time beside another loop (the write pass of the row before:
/// see [`Beside`]) and finished afterwards, or run whole ([`reduce`]). Either way it
/// takes the same steps in the same order, so it gives the same bits: four vector
/// accumulators per sum, four vectors a step, folded into blocked [`Totals`] every
/// [`BLOCK_ITERS`] steps while whole blocks remain; then four-vector steps without
/// folds, single vectors into the first accumulator, a scalar tail, combined in a fixed
/// order. The second sum takes exactly the steps of the first.
pub(super) struct Cursor<S: Simd, Src, T> {
    src: Src,
    term: T,
    n: usize,
    /// The next element to read.
    i: usize,
    a: [S::V; 4],
    /// The second sum's accumulators (untouched unless `T::PAIR`).
    b: [S::V; 4],
    totals: Totals<S::V>,
    totals_b: Totals<S::V>,
    /// Four-vector steps taken in the current block.
    iters: usize,
}

impl<S: Simd, Src: Source<S>, T: Term<S>> Cursor<S, Src, T> {
    /// A reduction over the first `n` elements of `src`, not started.
    #[inline(always)]
    pub(super) fn new(s: S, n: usize, src: Src, term: T) -> Self {
        // Once per row, so the vector reads below need no checks.
        assert!(n <= src.len());
        let z = s.splat(S::E::zero());
        Cursor {
            src,
            term,
            n,
            i: 0,
            a: [z; 4],
            b: [z; 4],
            totals: Totals::new(s),
            totals_b: Totals::new(s),
            iters: 0,
        }
    }

    /// Four vectors into the four accumulators (of each sum).
    ///
    /// # Safety
    /// `self.i + 4·W <= self.n`.
    #[inline(always)]
    unsafe fn quad(&mut self, s: S) {
        let w = S::W;
        for k in 0..4 {
            // SAFETY: i + 4·W <= n <= src.len() (the contract; asserted in `new`).
            let v = unsafe { self.src.vec(s, self.i + k * w) };
            self.term.vec(s, &mut self.a[k], &mut self.b[k], v);
        }
        self.i += 4 * w;
    }

    /// Folds the accumulators of a closed block into the totals and clears them.
    #[inline(always)]
    fn fold(&mut self, s: S) {
        let z = s.splat(S::E::zero());
        self.totals.fold(s, self.a);
        self.a = [z; 4];
        if T::PAIR {
            self.totals_b.fold(s, self.b);
            self.b = [z; 4];
        }
    }

    /// One four-vector step, and the fold that closes a block; nothing once fewer than
    /// four vectors remain ([`finish`](Cursor::finish) takes the rest).
    #[inline(always)]
    pub(super) fn step(&mut self, s: S) {
        if self.i + 4 * S::W <= self.n {
            // SAFETY: checked just above.
            unsafe { self.quad(s) };
            self.iters += 1;
            if self.iters == BLOCK_ITERS {
                self.fold(s);
                self.iters = 0;
            }
        }
    }

    /// The rest of the reduction, and its totals (the second is zero unless `T::PAIR`).
    #[inline(always)]
    pub(super) fn finish(mut self, s: S) -> [S::E; 2] {
        let w = S::W;
        // The block in progress, if any (it closes, or fewer than four vectors remain).
        while self.iters != 0 && self.i + 4 * w <= self.n {
            self.step(s);
        }
        // From a block boundary: whole blocks, then the last steps without a fold.
        while self.i + 4 * w <= self.n {
            if self.i + 4 * w * BLOCK_ITERS <= self.n {
                // A paired term's block (LayerNorm's first pass) runs as a loop of its
                // eight steps: with a constant count LLVM unrolled it whole and ran the
                // first sum's additions of all 32 vectors before the second sum's, so
                // every `v - shift` stayed alive in between and spilled to the stack on
                // AVX2's 16 registers (32 stores and reloads a block). Same steps, same
                // bits; only the unrolling differs. By the targets bench (one thread,
                // five alternating runs of five rounds, Intel Xeon family 6 model 167, 6
                // December 2026), forced AVX2, f32 64×768 in cache: LayerNorm / plain
                // copy 0.45-0.46 -> 0.48-0.49, LayerNorm / RmsNorm 0.66-0.67 ->
                // 0.71-0.72; AVX-512 and the rows out of cache unchanged within the
                // noise. RmsNorm's single sum keeps the unrolled block (as a loop it ran
                // 5% slower in cache on both paths).
                let iters = if T::PAIR {
                    std::hint::black_box(BLOCK_ITERS)
                } else {
                    BLOCK_ITERS
                };
                for _ in 0..iters {
                    // SAFETY: a whole block fits (checked just above).
                    unsafe { self.quad(s) };
                }
                self.fold(s);
                continue;
            }
            // SAFETY: checked by the loop condition.
            unsafe { self.quad(s) };
        }
        let mut i = self.i;
        while i + w <= self.n {
            // SAFETY: as above.
            let v = unsafe { self.src.vec(s, i) };
            self.term.vec(s, &mut self.a[0], &mut self.b[0], v);
            i += w;
        }
        let mut t = [S::E::zero(); 2];
        while i < self.n {
            let x = self.src.one(i);
            self.term.one(&mut t, x);
            i += 1;
        }
        let first = self.totals.finish(s, self.a) + t[0];
        if T::PAIR {
            [first, self.totals_b.finish(s, self.b) + t[1]]
        } else {
            [first, S::E::zero()]
        }
    }
}

/// `Σ term(v_i)` over `n` elements of `src`, whole (see [`Cursor`]).
#[inline(always)]
pub(super) fn reduce<S: Simd, T: Term<S>>(s: S, n: usize, src: impl Source<S>, term: T) -> [S::E; 2] {
    Cursor::new(s, n, src, term).finish(s)
}

/// `Σ v_i²` over `n` elements of `src` (see [`reduce`]).
#[inline(always)]
pub(super) fn sum_sq<S: Simd>(s: S, n: usize, src: impl Source<S>) -> S::E {
    reduce(s, n, src, Square)[0]
}

/// `1/d` for a row of length `d`.
#[inline(always)]
pub(super) fn inv_len<F: Float>(d: usize) -> F {
    F::one() / F::from_usize(d).unwrap_or_else(F::one)
}
