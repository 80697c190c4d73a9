//! Row kernels over contiguous `&[F]` rows: the two-pass statistics and the fused
//! normalize+affine write, written once against the [`Simd`] vector abstraction and
//! compiled per [`KernelPath`](crate::KernelPath) (portable, AVX2+FMA, AVX-512F) through
//! the shared vector layer in `simd/`; the residual-add variants
//! (`h = x + r`, then the norm of `h`); and the rare rescue path for rows whose squares
//! overflow or underflow.
//!
//! Per row: the first pass reads the row from memory (for the fused variants: reads
//! `x` and `r` and writes `h`), the later passes find it in L1. Outputs far beyond the
//! caches (`simd::Stores`) are written with non-temporal stores; the fused variants then
//! write `h` in the write pass, beside `y`, and compute `x + r` again in the passes
//! before it. Four independent vector
//! accumulators per reduction, folded every few iterations into blocked totals (so the
//! rounding error does not grow with the row length) in a fixed order, so a row's result
//! depends only on its values and the path, never on threads or on where the row sits in
//! a batch.
//! The fused and unfused kernels share these bodies, so `norm(x + r)` is bit-identical
//! either way on one path.
//!
//! Nothing here validates: callers (the slice and ndarray layers) check lengths first
//! (a mismatch panics in a bounds check, it is never undefined behaviour).

use crate::Float;
use crate::simd::{Path, Simd, SimdOp, run_on};
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};

/// What a pass reads at element `i`: a vector (`W` elements) or one scalar.
trait Source<S: Simd> {
    fn vec(&mut self, s: S, i: usize) -> S::V;
    fn one(&mut self, i: usize) -> S::E;
    /// [`vec`](Source::vec) in a write pass whose output vector at `i` is streamed
    /// (`nt`: `i` is at a vector boundary of the output); sources that write a side
    /// output may stream it too.
    #[inline(always)]
    fn vec_nt(&mut self, s: S, i: usize, nt: bool) -> S::V {
        let _ = nt;
        self.vec(s, i)
    }
}

/// A plain row.
struct Plain<'a, E>(&'a [E]);

impl<S: Simd> Source<S> for Plain<'_, S::E> {
    #[inline(always)]
    fn vec(&mut self, s: S, i: usize) -> S::V {
        s.load(&self.0[i..])
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        self.0[i]
    }
}

/// The row of `src` shifted and centered: `(v_i - shift) - m`.
struct Centered<Src, E> {
    src: Src,
    shift: E,
    m: E,
}

impl<S: Simd, Src: Source<S>> Source<S> for Centered<Src, S::E> {
    #[inline(always)]
    fn vec(&mut self, s: S, i: usize) -> S::V {
        s.sub(s.sub(self.src.vec(s, i), s.splat(self.shift)), s.splat(self.m))
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        (self.src.one(i) - self.shift) - self.m
    }
}

/// The residual sum `x + r`, computed again wherever it is read (nothing written): the
/// streaming fused kernels write `h` only in their last pass.
struct Sum<'a, E> {
    x: &'a [E],
    r: &'a [E],
}

impl<S: Simd> Source<S> for Sum<'_, S::E> {
    #[inline(always)]
    fn vec(&mut self, s: S, i: usize) -> S::V {
        s.add(s.load(&self.x[i..]), s.load(&self.r[i..]))
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        self.x[i] + self.r[i]
    }
}

/// The residual sum `h = x + r`, written to `h` as it is read (`r = None`: `h` holds `r`).
/// With `stream`, vectors that [`Source::vec_nt`] is told to stream go to `h` as
/// non-temporal stores too (set only where [`stream_h`] allows).
struct AddInto<'a, E> {
    x: &'a [E],
    r: Option<&'a [E]>,
    h: &'a mut [E],
    stream: bool,
}

impl<S: Simd> Source<S> for AddInto<'_, S::E> {
    #[inline(always)]
    fn vec(&mut self, s: S, i: usize) -> S::V {
        self.vec_nt(s, i, false)
    }
    #[inline(always)]
    fn vec_nt(&mut self, s: S, i: usize, nt: bool) -> S::V {
        let r = match self.r {
            Some(r) => s.load(&r[i..]),
            None => s.load(&self.h[i..]),
        };
        let v = s.add(s.load(&self.x[i..]), r);
        put(s, self.h, i, v, nt && self.stream);
        v
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> S::E {
        let v = self.x[i] + self.r.map_or(self.h[i], |r| r[i]);
        self.h[i] = v;
        v
    }
}

/// The rows after the current one (up to two streams, e.g. `x` and the residual), to
/// prefetch while the current row is written: a row's first pass reads it from memory
/// and its write pass mostly writes, so prefetching the next row there keeps reads and
/// writes in flight together, as in a copy. The pointers are one row past the current
/// row's start and may point past the end of the data: they are only ever prefetched,
/// never read.
#[derive(Clone, Copy)]
struct Ahead<E>([*const E; 2]);

impl<E> Ahead<E> {
    const NONE: Self = Ahead([std::ptr::null(); 2]);

    /// The rows that follow `a` (and `b`) in memory.
    #[inline(always)]
    fn after(a: &[E], b: Option<&[E]>) -> Self {
        let next = |r: &[E]| r.as_ptr().wrapping_add(r.len());
        Ahead([next(a), b.map_or(std::ptr::null(), next)])
    }

    /// Prefetches elements `[i, i + span)` of the rows ahead.
    #[inline(always)]
    fn touch<S: Simd<E = E>>(self, s: S, i: usize, span: usize) {
        let bytes = span * std::mem::size_of::<E>();
        for p in self.0 {
            if !p.is_null() {
                let mut off = 0;
                while off < bytes {
                    s.prefetch(p.wrapping_add(i).wrapping_byte_add(off));
                    off += 64;
                }
            }
        }
    }
}

/// Iterations of the four-vector loop between folds of the accumulators into the running
/// totals (a block is `4 · W · BLOCK_ITERS` elements: 256 f32 on the portable and AVX2
/// paths, 512 on AVX-512).
const BLOCK_ITERS: usize = 8;
/// Blocks folded into the first-level total before it is folded into the second.
const BLOCKS_PER_GROUP: usize = 16;

/// Blocked (two-level pairwise) totals of the vector accumulators, so no lane adds more
/// than a few dozen terms in sequence, whatever the row length. A plain accumulator lane
/// sums `d / (4·W)` terms one after another, and its rounding error grows with `d`
/// (f32 rows of 65536 elements lost ~1e-5 relative in the variance). Here each
/// accumulator sums `BLOCK_ITERS` terms, the block total `BLOCKS_PER_GROUP` block sums,
/// and the group total one term per `4·W·BLOCK_ITERS·BLOCKS_PER_GROUP` elements. The
/// order is fixed by the row length alone, so the result still depends only on the row's
/// values and the path. Rows shorter than one block never fold: their sums are bit-identical
/// to plain accumulation.
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

/// `Σ (v_i - shift)` over `n` elements of `src` with four vector accumulators folded into
/// blocked [`Totals`], and a scalar tail, combined in a fixed order.
#[inline(always)]
fn sum_shifted<S: Simd>(s: S, n: usize, shift: S::E, mut src: impl Source<S>) -> S::E {
    let w = S::W;
    let vs = s.splat(shift);
    let z = s.splat(S::E::zero());
    let mut totals = Totals::new(s);
    let mut i = 0;
    while i + 4 * w * BLOCK_ITERS <= n {
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        for _ in 0..BLOCK_ITERS {
            a0 = s.add(a0, s.sub(src.vec(s, i), vs));
            a1 = s.add(a1, s.sub(src.vec(s, i + w), vs));
            a2 = s.add(a2, s.sub(src.vec(s, i + 2 * w), vs));
            a3 = s.add(a3, s.sub(src.vec(s, i + 3 * w), vs));
            i += 4 * w;
        }
        totals.fold(s, [a0, a1, a2, a3]);
    }
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    while i + 4 * w <= n {
        a0 = s.add(a0, s.sub(src.vec(s, i), vs));
        a1 = s.add(a1, s.sub(src.vec(s, i + w), vs));
        a2 = s.add(a2, s.sub(src.vec(s, i + 2 * w), vs));
        a3 = s.add(a3, s.sub(src.vec(s, i + 3 * w), vs));
        i += 4 * w;
    }
    while i + w <= n {
        a0 = s.add(a0, s.sub(src.vec(s, i), vs));
        i += w;
    }
    let mut t = S::E::zero();
    while i < n {
        t += src.one(i) - shift;
        i += 1;
    }
    totals.finish(s, [a0, a1, a2, a3]) + t
}

/// `Σ v_i²` over `n` elements of `src`, accumulated like [`sum_shifted`].
#[inline(always)]
fn sum_sq<S: Simd>(s: S, n: usize, mut src: impl Source<S>, ahead: Ahead<S::E>) -> S::E {
    let w = S::W;
    let z = s.splat(S::E::zero());
    let mut totals = Totals::new(s);
    let mut i = 0;
    while i + 4 * w * BLOCK_ITERS <= n {
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        for _ in 0..BLOCK_ITERS {
            ahead.touch(s, i, 4 * w);
            let v0 = src.vec(s, i);
            let v1 = src.vec(s, i + w);
            let v2 = src.vec(s, i + 2 * w);
            let v3 = src.vec(s, i + 3 * w);
            a0 = s.mul_add(v0, v0, a0);
            a1 = s.mul_add(v1, v1, a1);
            a2 = s.mul_add(v2, v2, a2);
            a3 = s.mul_add(v3, v3, a3);
            i += 4 * w;
        }
        totals.fold(s, [a0, a1, a2, a3]);
    }
    let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
    while i + 4 * w <= n {
        ahead.touch(s, i, 4 * w);
        let v0 = src.vec(s, i);
        let v1 = src.vec(s, i + w);
        let v2 = src.vec(s, i + 2 * w);
        let v3 = src.vec(s, i + 3 * w);
        a0 = s.mul_add(v0, v0, a0);
        a1 = s.mul_add(v1, v1, a1);
        a2 = s.mul_add(v2, v2, a2);
        a3 = s.mul_add(v3, v3, a3);
        i += 4 * w;
    }
    while i + w <= n {
        ahead.touch(s, i, w);
        let v = src.vec(s, i);
        a0 = s.mul_add(v, v, a0);
        i += w;
    }
    let mut t = S::E::zero();
    while i < n {
        let v = src.one(i);
        t += v * v;
        i += 1;
    }
    totals.finish(s, [a0, a1, a2, a3]) + t
}

/// `1/d` for a row of length `d`.
#[inline(always)]
fn inv_len<F: Float>(d: usize) -> F {
    F::one() / F::from_usize(d).unwrap_or_else(F::one)
}

/// The loop of a write pass over the `$n` elements of an output row: `$vector` (with
/// `$i` and `$nt` bound) writes elements `$i..$i + W` (`$nt`: with non-temporal stores,
/// `$i` then at a vector boundary of the output), `$scalar` writes element `$i`. Both must compute each
/// element with the same operations, so which of them writes an element never changes a
/// bit.
///
/// Plain (`$head = None`): vectors from element 0 on. Streaming (`$head = Some(a)`, `a`
/// the first element of the output at a cache-line boundary, `$line` elements per line):
/// scalars before `a`, then vectors, streamed while they fill whole lines, so no line is
/// written partly by plain and partly by non-temporal stores (that would flush a
/// half-filled write-combining buffer). Either way the elements after the last full
/// vector are scalars.
///
/// A macro, not a function taking closures: a closure is a function of its own, compiled
/// without the vector features of the kernel's `#[target_feature]` entry point, and when
/// the compiler did not inline it, every vector operation inside became a call (the
/// fused kernels ran 10× slower that way).
macro_rules! write_pass {
    ($n:expr, $w:expr, $head:expr, $line:expr, |$i:ident, $nt:ident| $vector:expr, |$j:ident| $scalar:expr $(,)?) => {{
        let (n, w) = ($n, $w);
        let (start, nt_end) = match $head {
            Some(a) if a + w <= n => (a, a + (n - a) / $line * $line),
            _ => (0, 0),
        };
        for $j in 0..start {
            $scalar;
        }
        let mut $i = start;
        while $i + w <= n {
            let $nt = $i + w <= nt_end;
            $vector;
            $i += w;
        }
        for $j in $i..n {
            $scalar;
        }
    }};
}

/// Bytes in a cache line.
const LINE: usize = 64;

/// Where a streaming write pass over `out` starts its vectors: the first element at a
/// cache-line boundary (also a vector boundary: vectors are at most a line); `None` for
/// a plain write pass (or an `out` not aligned to its element type, which a slice
/// always is).
#[inline(always)]
fn stream_head<S: Simd>(out: &[S::E], stream: bool) -> Option<usize> {
    let size = std::mem::size_of::<S::E>();
    let mis = out.as_ptr() as usize % LINE;
    (stream && mis.is_multiple_of(size) && S::W * size <= LINE).then_some((LINE - mis) % LINE / size)
}

/// Elements of `E` per cache line.
#[inline(always)]
fn line<E>() -> usize {
    LINE / std::mem::size_of::<E>()
}

/// Stores vector `v` to `out[i..i + W]`, non-temporally when `nt` (see [`write_pass!`]).
#[inline(always)]
fn put<S: Simd>(s: S, out: &mut [S::E], i: usize, v: S::V, nt: bool) {
    if nt {
        assert!(i + S::W <= out.len());
        // SAFETY: in bounds (checked above); `write_pass!` hands out `nt` only at vector
        // boundaries of `out`.
        unsafe { s.stream_at(out, i, v) }
    } else {
        s.store(&mut out[i..], v);
    }
}

/// The LayerNorm write pass: `y = ((h - shift) - m) · (rstd·w) + b`, with non-temporal
/// stores when `stream`. The scalar edges round exactly like the vector body (fused
/// where it fuses), so the result never depends on the stores or the alignment.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_write<S: Simd>(
    s: S,
    mut h: impl Source<S>,
    n: usize,
    weight: &[S::E],
    bias: Option<&[S::E]>,
    (shift, m, rstd): (S::E, S::E, S::E),
    out: &mut [S::E],
    ahead: Ahead<S::E>,
    stream: bool,
) {
    let w = S::W;
    let (vs, vm, vr) = (s.splat(shift), s.splat(m), s.splat(rstd));
    let head = stream_head::<S>(out, stream);
    match bias {
        Some(b) => write_pass!(
            n,
            w,
            head,
            line::<S::E>(),
            |i, nt| {
                ahead.touch(s, i, w);
                let d = s.sub(s.sub(h.vec_nt(s, i, nt), vs), vm);
                let y = s.mul_add(d, s.mul(vr, s.load(&weight[i..])), s.load(&b[i..]));
                put(s, out, i, y, nt);
            },
            |i| out[i] = s.mul_add1((h.one(i) - shift) - m, rstd * weight[i], b[i]),
        ),
        None => write_pass!(
            n,
            w,
            head,
            line::<S::E>(),
            |i, nt| {
                ahead.touch(s, i, w);
                let d = s.sub(s.sub(h.vec_nt(s, i, nt), vs), vm);
                put(s, out, i, s.mul(d, s.mul(vr, s.load(&weight[i..]))), nt);
            },
            |i| out[i] = ((h.one(i) - shift) - m) * (rstd * weight[i]),
        ),
    }
}

/// The RMSNorm write pass: `y = h · (rrms·w) + b`, with non-temporal stores when
/// `stream`; scalar edges rounded like the vector body (as [`ln_write`]).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rms_write<S: Simd>(
    s: S,
    mut h: impl Source<S>,
    n: usize,
    weight: &[S::E],
    bias: Option<&[S::E]>,
    rrms: S::E,
    out: &mut [S::E],
    ahead: Ahead<S::E>,
    stream: bool,
) {
    let w = S::W;
    let vr = s.splat(rrms);
    let head = stream_head::<S>(out, stream);
    match bias {
        Some(b) => write_pass!(
            n,
            w,
            head,
            line::<S::E>(),
            |i, nt| {
                ahead.touch(s, i, w);
                let y = s.mul_add(
                    h.vec_nt(s, i, nt),
                    s.mul(vr, s.load(&weight[i..])),
                    s.load(&b[i..]),
                );
                put(s, out, i, y, nt);
            },
            |i| out[i] = s.mul_add1(h.one(i), rrms * weight[i], b[i]),
        ),
        None => write_pass!(
            n,
            w,
            head,
            line::<S::E>(),
            |i, nt| {
                ahead.touch(s, i, w);
                let v = h.vec_nt(s, i, nt);
                put(s, out, i, s.mul(v, s.mul(vr, s.load(&weight[i..]))), nt);
            },
            |i| out[i] = h.one(i) * (rrms * weight[i]),
        ),
    }
}

/// Whether a row whose (mean-square or) variance came out as `var` goes to the rescue
/// path: not finite, too small to be exact in `F`, or `var + eps` overflows although
/// both are finite (eps near `F::MAX`; rather than write rstd = 0).
#[inline(always)]
fn needs_rescue<F: Float>(var: F, eps: F) -> bool {
    !(var.is_finite() && var >= F::RESCUE_BELOW && (var + eps).is_finite())
}

/// Whether the fused write pass may stream `h` beside `out`: both must sit at the same
/// offset from a cache line, and in place (`h` also holds the residual, read just before
/// each store) every vector must be a whole line. With half-line vectors (AVX2) the
/// read of a line's second half would follow a non-temporal store to its first half,
/// which evicts the line and sends a half-filled write buffer to memory.
#[inline(always)]
fn stream_h<S: Simd>(h: *const S::E, out: *const S::E, in_place: bool) -> bool {
    h as usize % LINE == out as usize % LINE && (!in_place || S::W * std::mem::size_of::<S::E>() == LINE)
}

/// LayerNorm of row `h`, whose shifted sum `sum1 = Σ (h_i - shift)` the caller's first
/// pass already computed. Returns `(mean, rstd)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn ln_finish<S: Simd>(
    s: S,
    h: &[S::E],
    sum1: S::E,
    shift: S::E,
    weight: &[S::E],
    bias: Option<&[S::E]>,
    eps: S::E,
    out: &mut [S::E],
    ahead: Ahead<S::E>,
    stream: bool,
) -> (S::E, S::E) {
    let inv_d = inv_len::<S::E>(h.len());
    let m = sum1 * inv_d;
    let var = sum_sq(
        s,
        h.len(),
        Centered {
            src: Plain(h),
            shift,
            m,
        },
        Ahead::NONE,
    ) * inv_d;
    if needs_rescue(var, eps) {
        return layer_norm_row_rescue(h, weight, bias, eps, out);
    }
    let rstd = S::E::one() / (var + eps).sqrt();
    ln_write(
        s,
        Plain(h),
        h.len(),
        weight,
        bias,
        (shift, m, rstd),
        out,
        ahead,
        stream,
    );
    (shift + m, rstd)
}

/// RMSNorm of row `h`, whose sum of squares the caller's first pass computed.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rms_finish<S: Simd>(
    s: S,
    h: &[S::E],
    sumsq: S::E,
    weight: &[S::E],
    bias: Option<&[S::E]>,
    eps: S::E,
    out: &mut [S::E],
    ahead: Ahead<S::E>,
    stream: bool,
) -> S::E {
    let ms = sumsq * inv_len::<S::E>(h.len());
    if needs_rescue(ms, eps) {
        return rms_norm_row_rescue(h, weight, bias, eps, out);
    }
    let rrms = S::E::one() / (ms + eps).sqrt();
    rms_write(s, Plain(h), h.len(), weight, bias, rrms, out, ahead, stream);
    rrms
}

/// LayerNorm of one row: `out = LN(x)`; returns `(mean, rstd)`.
pub(crate) struct LnRow<'a, F> {
    pub(crate) x: &'a [F],
    pub(crate) weight: &'a [F],
    pub(crate) bias: Option<&'a [F]>,
    pub(crate) eps: F,
    pub(crate) out: &'a mut [F],
    /// Write `out` with non-temporal stores (the caller fences).
    pub(crate) stream: bool,
}

impl<F: Float> SimdOp<F> for LnRow<'_, F> {
    type Out = (F, F);
    /// Two passes: the mean of `x - x[0]` (the differences are exact for rows with a large
    /// offset), then the centered sum of squares; the write pass keeps the shift separate
    /// so an offset of 1e6 does not cost output precision.
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) -> (F, F) {
        let x = self.x;
        let shift = x[0];
        let sum1 = sum_shifted(s, x.len(), shift, Plain(x));
        let ahead = Ahead::after(x, None);
        ln_finish(
            s,
            x,
            sum1,
            shift,
            self.weight,
            self.bias,
            self.eps,
            self.out,
            ahead,
            self.stream,
        )
    }
}

/// RMSNorm of one row: `out = RMS(x)`; returns `rrms`.
pub(crate) struct RmsRow<'a, F> {
    pub(crate) x: &'a [F],
    pub(crate) weight: &'a [F],
    pub(crate) bias: Option<&'a [F]>,
    pub(crate) eps: F,
    pub(crate) out: &'a mut [F],
    /// Write `out` with non-temporal stores (the caller fences).
    pub(crate) stream: bool,
}

impl<F: Float> SimdOp<F> for RmsRow<'_, F> {
    type Out = F;
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) -> F {
        let x = self.x;
        let sumsq = sum_sq(s, x.len(), Plain(x), Ahead::NONE);
        let ahead = Ahead::after(x, None);
        rms_finish(
            s,
            x,
            sumsq,
            self.weight,
            self.bias,
            self.eps,
            self.out,
            ahead,
            self.stream,
        )
    }
}

/// Residual add + LayerNorm of one row: `h = x + r`, `out = LN(h)`; returns `(mean, rstd)`.
/// With `r = None` the residual is read from `h` and overwritten (in place).
pub(crate) struct LnAddRow<'a, F> {
    pub(crate) x: &'a [F],
    pub(crate) r: Option<&'a [F]>,
    pub(crate) h: &'a mut [F],
    pub(crate) weight: &'a [F],
    pub(crate) bias: Option<&'a [F]>,
    pub(crate) eps: F,
    pub(crate) out: &'a mut [F],
    /// Write `out` with non-temporal stores (the caller fences).
    pub(crate) stream: bool,
}

impl<F: Float> SimdOp<F> for LnAddRow<'_, F> {
    type Out = (F, F);
    /// Plain: the first pass writes `h` as it sums, the later passes read it from L1.
    /// Streaming: the passes before the write pass compute `x + r` again from L1 and the
    /// write pass writes `h` and `y` together, both streamed; the same operations on the
    /// same values, so the same bits.
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) -> (F, F) {
        let (x, r, h) = (self.x, self.r, self.h);
        let n = x.len();
        let shift = x[0] + r.map_or(h[0], |r| r[0]);
        let ahead = Ahead::after(x, Some(r.unwrap_or(h)));
        if !self.stream {
            let sum1 = sum_shifted(
                s,
                n,
                shift,
                AddInto {
                    x,
                    r,
                    h: &mut *h,
                    stream: false,
                },
            );
            return ln_finish(
                s,
                h,
                sum1,
                shift,
                self.weight,
                self.bias,
                self.eps,
                self.out,
                ahead,
                false,
            );
        }
        let inv_d = inv_len::<F>(n);
        let (m, var) = {
            let rv: &[F] = r.unwrap_or(h);
            let m = sum_shifted(s, n, shift, Sum { x, r: rv }) * inv_d;
            let c = Centered {
                src: Sum { x, r: rv },
                shift,
                m,
            };
            (m, sum_sq(s, n, c, Ahead::NONE) * inv_d)
        };
        if needs_rescue(var, self.eps) {
            sum_shifted(
                s,
                n,
                shift,
                AddInto {
                    x,
                    r,
                    h: &mut *h,
                    stream: false,
                },
            );
            return layer_norm_row_rescue(h, self.weight, self.bias, self.eps, self.out);
        }
        let rstd = F::one() / (var + self.eps).sqrt();
        let stream = stream_h::<S>(h.as_ptr(), self.out.as_ptr(), r.is_none());
        let src = AddInto { x, r, h, stream };
        let coef = (shift, m, rstd);
        ln_write(s, src, n, self.weight, self.bias, coef, self.out, ahead, true);
        (shift + m, rstd)
    }
}

/// Residual add + RMSNorm of one row: `h = x + r`, `out = RMS(h)`; returns `rrms`.
/// With `r = None` the residual is read from `h` and overwritten (in place).
pub(crate) struct RmsAddRow<'a, F> {
    pub(crate) x: &'a [F],
    pub(crate) r: Option<&'a [F]>,
    pub(crate) h: &'a mut [F],
    pub(crate) weight: &'a [F],
    pub(crate) bias: Option<&'a [F]>,
    pub(crate) eps: F,
    pub(crate) out: &'a mut [F],
    /// Write `out` with non-temporal stores (the caller fences).
    pub(crate) stream: bool,
}

impl<F: Float> SimdOp<F> for RmsAddRow<'_, F> {
    type Out = F;
    /// As [`LnAddRow`]: streaming writes `h` with `y` in the write pass.
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) -> F {
        let (x, r, h) = (self.x, self.r, self.h);
        let n = x.len();
        let ahead = Ahead::after(x, Some(r.unwrap_or(h)));
        if !self.stream {
            let sumsq = sum_sq(
                s,
                n,
                AddInto {
                    x,
                    r,
                    h: &mut *h,
                    stream: false,
                },
                Ahead::NONE,
            );
            return rms_finish(
                s,
                h,
                sumsq,
                self.weight,
                self.bias,
                self.eps,
                self.out,
                ahead,
                false,
            );
        }
        let ms = sum_sq(s, n, Sum { x, r: r.unwrap_or(h) }, Ahead::NONE) * inv_len::<F>(n);
        if needs_rescue(ms, self.eps) {
            sum_sq(
                s,
                n,
                AddInto {
                    x,
                    r,
                    h: &mut *h,
                    stream: false,
                },
                Ahead::NONE,
            );
            return rms_norm_row_rescue(h, self.weight, self.bias, self.eps, self.out);
        }
        let rrms = F::one() / (ms + self.eps).sqrt();
        let stream = stream_h::<S>(h.as_ptr(), self.out.as_ptr(), r.is_none());
        let src = AddInto { x, r, h, stream };
        rms_write(s, src, n, self.weight, self.bias, rrms, self.out, ahead, true);
        rrms
    }
}

/// LayerNorm of one row on the detected path. Returns `(mean, rstd)` with
/// `rstd = 1/sqrt(var + eps)`.
#[inline(always)]
pub(crate) fn layer_norm_row<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
    stream: bool,
) -> (F, F) {
    layer_norm_row_on(Path::detected(), x, weight, bias, eps, out, stream)
}

/// LayerNorm of one row on `path`.
#[inline(always)]
pub(crate) fn layer_norm_row_on<F: Float>(
    path: Path,
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
    stream: bool,
) -> (F, F) {
    run_on(
        path,
        LnRow {
            x,
            weight,
            bias,
            eps,
            out,
            stream,
        },
    )
}

/// RMSNorm of one row on the detected path. Returns `rrms = 1/sqrt(mean(x²) + eps)`.
#[inline(always)]
pub(crate) fn rms_norm_row<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
    stream: bool,
) -> F {
    rms_norm_row_on(Path::detected(), x, weight, bias, eps, out, stream)
}

/// RMSNorm of one row on `path`.
#[inline(always)]
pub(crate) fn rms_norm_row_on<F: Float>(
    path: Path,
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
    stream: bool,
) -> F {
    run_on(
        path,
        RmsRow {
            x,
            weight,
            bias,
            eps,
            out,
            stream,
        },
    )
}

/// `h = x + r` then LayerNorm of `h`, on `path` (`r = None`: the residual is `h`, in place).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_add_row_on<F: Float>(
    path: Path,
    x: &[F],
    r: Option<&[F]>,
    h: &mut [F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
    stream: bool,
) -> (F, F) {
    run_on(
        path,
        LnAddRow {
            x,
            r,
            h,
            weight,
            bias,
            eps,
            out,
            stream,
        },
    )
}

/// `h = x + r` then RMSNorm of `h`, on `path` (`r = None`: the residual is `h`, in place).
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(crate) fn rms_norm_add_row_on<F: Float>(
    path: Path,
    x: &[F],
    r: Option<&[F]>,
    h: &mut [F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
    stream: bool,
) -> F {
    run_on(
        path,
        RmsAddRow {
            x,
            r,
            h,
            weight,
            bias,
            eps,
            out,
            stream,
        },
    )
}

/// `1/sqrt(s² · q + eps)` without forming `s²` (which may overflow or underflow).
fn scaled_rsqrt(s: f64, q: f64, eps: f64) -> f64 {
    if s == 0.0 {
        return 1.0 / eps.sqrt();
    }
    let t = (eps / s) / s;
    if t.is_finite() {
        1.0 / (s * (q + t).sqrt())
    } else {
        // s is so small that s²·q is negligible next to eps.
        1.0 / eps.sqrt()
    }
}

/// `c / sqrt(s² · q + eps)` for `|c| <= s`, `s > 0`, without forming `s²` or `1/s`:
/// for f64 rows of subnormals `1/s` (and so `rstd`) overflows although every output is
/// an ordinary number.
fn scaled_div(c: f64, s: f64, q: f64, eps: f64) -> f64 {
    let t = (eps / s) / s;
    if t.is_finite() {
        (c / s) / (q + t).sqrt()
    } else {
        // s is so small that s²·q is negligible next to eps.
        c / eps.sqrt()
    }
}

/// Slow path for rows whose variance overflowed, underflowed, is zero, or is not finite.
/// Works in f64 with the row scaled by its largest magnitude.
#[cold]
#[inline(never)]
fn layer_norm_row_rescue<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
) -> (F, F) {
    let d = x.len() as f64;
    let eps = eps.to_f64_exact();
    let nan = F::nan();
    if x.iter().any(|v| !v.is_finite()) {
        out.iter_mut().for_each(|o| *o = nan);
        let m = x.iter().map(|v| v.to_f64_exact()).sum::<f64>() / d;
        return (F::from_f64_round(m), nan);
    }
    // Shift by the row's first value, as the fast path does, unless a difference
    // overflows (|x| near f64::MAX): the mean's error then scales with the spread, not
    // with the offset (f64 rows like 1e200 + 1e192·N(0, 1) land here).
    let x0 = x[0].to_f64_exact();
    let shift = if x.iter().all(|v| (v.to_f64_exact() - x0).is_finite()) {
        x0
    } else {
        0.0
    };
    let dev = |v: F| v.to_f64_exact() - shift;
    let a = x.iter().fold(0.0f64, |a, &v| a.max(dev(v).abs()));
    let m = if a == 0.0 {
        0.0
    } else {
        a * (x.iter().map(|&v| dev(v) / a).sum::<f64>() / d)
    };
    let mean = shift + m;
    let s = x.iter().fold(0.0f64, |s, &v| s.max((dev(v) - m).abs()));
    let q = if s == 0.0 {
        0.0
    } else {
        x.iter()
            .map(|&v| {
                let c = (dev(v) - m) / s;
                c * c
            })
            .sum::<f64>()
            / d
    };
    let rstd = scaled_rsqrt(s, q, eps);
    for (i, o) in out.iter_mut().enumerate() {
        let c = dev(x[i]) - m;
        // 0 * inf = NaN for a constant row with eps = 0 (documented).
        let y = if s == 0.0 && rstd.is_infinite() {
            f64::NAN
        } else {
            scaled_div(c, s, q, eps)
        };
        let y = y * weight[i].to_f64_exact() + bias.map_or(0.0, |b| b[i].to_f64_exact());
        *o = F::from_f64_round(y);
    }
    (F::from_f64_round(mean), F::from_f64_round(rstd))
}

/// Slow path for RMSNorm rows whose mean square overflowed, underflowed or is not finite.
#[cold]
#[inline(never)]
fn rms_norm_row_rescue<F: Float>(x: &[F], weight: &[F], bias: Option<&[F]>, eps: F, out: &mut [F]) -> F {
    let d = x.len() as f64;
    let eps = eps.to_f64_exact();
    let nan = F::nan();
    if x.iter().any(|v| !v.is_finite()) {
        out.iter_mut().for_each(|o| *o = nan);
        return nan;
    }
    let s = x.iter().fold(0.0f64, |a, v| a.max(v.to_f64_exact().abs()));
    let q = if s == 0.0 {
        0.0
    } else {
        x.iter()
            .map(|v| {
                let c = v.to_f64_exact() / s;
                c * c
            })
            .sum::<f64>()
            / d
    };
    let rrms = scaled_rsqrt(s, q, eps);
    for (i, o) in out.iter_mut().enumerate() {
        let y = if s == 0.0 && rrms.is_infinite() {
            f64::NAN
        } else {
            scaled_div(x[i].to_f64_exact(), s, q, eps)
        };
        let y = y * weight[i].to_f64_exact() + bias.map_or(0.0, |b| b[i].to_f64_exact());
        *o = F::from_f64_round(y);
    }
    F::from_f64_round(rrms)
}
