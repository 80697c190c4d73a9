//! Row kernels over contiguous `&[F]` rows, one body per algorithm for both norms: the
//! norm is a compile-time [`Kind`] (LayerNorm centers, RmsNorm does not), so each body
//! is instantiated twice and each instantiation is as fast as a hand-written one.
//! Written once against the [`Simd`] vector abstraction and compiled per
//! [`KernelPath`](crate::KernelPath) (portable, AVX2+FMA, AVX-512F) through the shared
//! vector layer in `simd/`.
//!
//! - `stats.rs`: the reductions (`Σ (x - shift)` with `Σ (x - shift)²`, `Σ x²`) and what
//!   they read;
//! - `write.rs`: the write pass `y = center(x) · (r·w) + b`, plain or streaming;
//! - `rescue.rs`: rows whose squares overflow or underflow, redone scaled in f64;
//! - `fused.rs`: the residual-add variants (`h = x + r`, then the norm of `h`);
//! - `half.rs`: the bf16/f16 rows on the same bodies (16-bit loads widened in
//!   registers, outputs rounded once as they are stored; LayerNorm rows of small calls,
//!   and on AMD CPUs of calls with plain stores, widened once into f32 scratch rows by
//!   their first pass: [`Reader`]);
//! - here: the kinds, the parameter structs, and the forward rows themselves.
//!
//! Contiguous rows run a whole run of rows in one call of the vector entry point
//! ([`Rows`], and `fused.rs`'s `AddRows`), pipelined where [`pipelines`] says: the
//! first reduction of row `i + 1` runs inside the write pass of row `i`, a four-vector
//! step beside each group of output vectors, and is finished after it. So both norms
//! read a row once, beside the previous row's stores, as a copy does (LayerNorm's first
//! pass sums `x − shift` and its square together; a centred second pass from L1 runs
//! only for rows whose one-pass variance [`moments`] refuses), and one row's serial
//! chain (sums, mean, variance, root) overlaps the previous row's stores. The reduction takes
//! exactly the steps it takes alone ([`Cursor`]), so each row's bits never depend on
//! the row before it or on where a run of rows starts. A row alone (the strided lanes)
//! runs the same body with no successor. 16-bit rows (bf16, f16) run pipelined on every
//! CPU; f32/f64 rows in cache on AMD CPUs, and out of cache (streamed outputs) on the
//! x86-64 paths of other CPUs, where software prefetch pays (each measured faster there:
//! [`pipelines`]); rows longer than [`PIPELINE_MAX_ROW_BYTES`] (four such rows at once
//! no longer fit in L1) never. Rows that do not run pipelined run one after another,
//! each prefetching the next; pipelined rows prefetch the row after the one they reduce.
//! Both prefetch only where software prefetch pays (not on AMD CPUs,
//! [`software_prefetch_pays`](crate::simd::software_prefetch_pays)): into L1 for a call
//! in cache, into L2 for one out of cache ([`Reach`]).
//!
//! On AVX-512, calls of at least eight f32/f64 rows with plain stores whose input and output sit at
//! the same offset past a cache line (as large `Vec` buffers do) use copies of their weight and
//! bias starting at that offset ([`AlignedRow::from_slice_past`](crate::params::AlignedRow::from_slice_past); a norm keeps them per
//! offset, [`Matched`]): the write pass then runs line-aligned vectors
//! throughout, with one unaligned vector at each end of the row (`write::vector_head`).
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

pub(crate) use fused::add_rows;
pub(crate) use half::{half_add_rows, half_rows};

use crate::Float;
use crate::params::{LINE, Matched};
use crate::simd::{Path, Pipelining, Simd, SimdOp, Store, pipelining, run_on};
#[allow(unused_imports)]
use num_traits::{Float as _, One as _, Zero as _};
use rescue::rescue;
use stats::{
    AddInto, Ahead, Beside, Centered, Cursor, First, Plain, Reach, Source, Sum, inv_len, reduce, sum_sq,
};
pub(crate) use write::Seam;
use write::{Sink, write};

/// Which norm a kernel computes, at compile time. In a private module (`pub` only so
/// that the sealed element routes can name it), so closed to the two norms below.
pub trait Kind: Copy + Send + Sync + 'static {
    /// LayerNorm subtracts the row mean (its sums shifted by a value of the row:
    /// [`shift_of`]); RmsNorm does not.
    const CENTER: bool;
    /// The names of the row statistics, as the shape errors report them (RmsNorm has
    /// one: the second name is never used).
    const STATS: [&'static str; 2];
    /// The statistics a row returns, from its mean and `1/std` (LayerNorm) or its
    /// `1/rms` (RmsNorm, whose mean is not used): `(mean, rstd)` or `(rrms, 0)`.
    #[inline(always)]
    fn stats<F: Float>(mean: F, r: F) -> (F, F) {
        if Self::CENTER { (mean, r) } else { (r, F::zero()) }
    }
}

/// LayerNorm: `y = (x - mean) / sqrt(var + eps) · w + b`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layer;

impl Kind for Layer {
    const CENTER: bool = true;
    const STATS: [&'static str; 2] = ["mean", "rstd"];
}

/// RmsNorm: `y = x / sqrt(mean(x²) + eps) · w + b`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rms;

impl Kind for Rms {
    const CENTER: bool = false;
    const STATS: [&'static str; 2] = ["rrms", "rrms"];
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
    /// The copies of `weight` and `bias` matched to a call's rows, kept by whoever holds
    /// the parameters (a norm's [`Affine`](crate::params::Affine), a half-precision
    /// call's widened rows): made once per offset ([`Rows`]).
    pub(crate) matched: &'a Matched<F>,
}

/// An output row and how it is written (`Streaming`: the caller fences).
pub(crate) struct Out<'a, F> {
    pub(crate) y: &'a mut [F],
    pub(crate) store: Store,
    /// Whether the whole call this output belongs to is [`near`]: small, at most about
    /// a core's L2 (the half-precision LayerNorm rows then widen once, `Rows`).
    pub(crate) near: bool,
    /// Whether this row leaves the streamed elements of the lines it shares with the
    /// rows beside it in its call to the call (a [`Seam`] records it: half-precision
    /// rows of a run, `join`); `None`: stored one by one.
    pub(crate) seam: Option<&'a mut Seam>,
}

/// The most bytes a call may move (every array it reads and every array it writes,
/// each once) to count as [`near`]: two to four times a core's L2 (1-2 MiB on current
/// x86-64 CPUs), between the largest calls whose half-precision LayerNorm rows measured
/// even widened once (3 MiB) and the smallest measured slower (6 MiB) on an Intel Xeon
/// (see
/// [`widens_once_beyond_l2`](crate::simd::widens_once_beyond_l2)).
pub(crate) const NEAR_MAX_BYTES: usize = 4 << 20;

/// Whether a call that moves `bytes` (as [`NEAR_MAX_BYTES`] counts them) is small
/// enough that its half-precision LayerNorm rows widen once. Decided once per call,
/// like its store policy, so never differently per thread.
#[inline]
pub(crate) fn near(bytes: usize) -> bool {
    bytes <= NEAR_MAX_BYTES
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

/// How many of a row's first values its shift averages (fewer for shorter rows: the
/// largest power of two up to the row length).
const SHIFT_SPAN: usize = 8;

/// The shift of a row of `n` elements whose element `i` is `at(i)`: for LayerNorm the
/// mean of its first [`SHIFT_SPAN`] values (`k`, a power of two: each is scaled by the
/// exact `1/k` before the fixed-order pairwise sum, so nothing overflows), a value
/// inside the row's range (so the differences `v - shift` are exact for rows with a
/// large offset) and usually within a fraction of the spread of the row's mean (so the
/// one-pass variance of [`moments`] is accepted); none for RmsNorm.
#[inline(always)]
fn shift_of<K: Kind, E: Float>(n: usize, at: impl Fn(usize) -> E) -> E {
    if !K::CENTER || n == 0 {
        return E::zero();
    }
    let k = if n >= SHIFT_SPAN {
        SHIFT_SPAN
    } else {
        1 << n.ilog2()
    };
    let c = E::one() / E::from_usize(k).unwrap_or_else(E::one);
    if k == SHIFT_SPAN {
        // The loop below for the usual eight, written out: the same sums in the same
        // order (one level of pairs after another), without the stores and reloads
        // through the stack that the loop compiled to.
        let a = |i: usize| at(i) * c;
        return ((a(0) + a(1)) + (a(2) + a(3))) + ((a(4) + a(5)) + (a(6) + a(7)));
    }
    let mut v = [E::zero(); SHIFT_SPAN];
    for (i, vi) in v.iter_mut().enumerate().take(k) {
        *vi = at(i) * c;
    }
    let mut w = k;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            v[i] = v[2 * i] + v[2 * i + 1];
        }
    }
    v[0]
}

/// The first pass over a row: `[Σ (h - shift), Σ (h - shift)²]` (LayerNorm) or
/// `[Σ h², 0]` (RmsNorm).
#[inline(always)]
fn first_pass<K: Kind, S: Simd>(s: S, n: usize, shift: S::E, src: impl Source<S>) -> [S::E; 2] {
    reduce(s, n, src, First::<K, S>::new(s, shift))
}

/// The mean of the shifted row and the variance (LayerNorm) or the mean square (RmsNorm:
/// `m = 0`, `again` not read), from the first pass's sums `first`.
///
/// LayerNorm's variance comes from the first pass alone, `(Σ u² - m·Σ u) / n` with `u =
/// v - shift` and `m = Σ u / n`, when that is safe: when `m·Σ u ≤ Σ u² / 2`, so the
/// subtraction cancels at most one bit and the variance's relative error is at most
/// `2(1 + √2)·γ` (about 5γ, `γ` the error bound of a blocked sum of the row's terms)
/// at the edge of the condition, against about `γ` for the centred pass, and about the
/// same as the centred pass when the shift is near the mean, as it usually is (see
/// [`shift_of`]); and when the result is finite and not tiny (at least
/// `F::RESCUE_BELOW`). Otherwise (the shift far from the mean, a constant, tiny, huge or
/// non-finite row) a second pass sums the centered squares `((v - shift) - m)²` over
/// `again`, exactly as a two-pass kernel does, and the rescue rules apply to its
/// result.
#[inline(always)]
fn moments<K: Kind, S: Simd>(
    s: S,
    n: usize,
    shift: S::E,
    first: [S::E; 2],
    again: impl Source<S>,
) -> (S::E, S::E) {
    let inv_d = inv_len::<S::E>(n);
    if K::CENTER {
        let [su, suu] = first;
        let m = su * inv_d;
        let drop = m * su;
        let half = S::E::one() / (S::E::one() + S::E::one());
        let var = (suu - drop) * inv_d;
        if drop <= suu * half && var >= <S::E as Float>::RESCUE_BELOW && var.is_finite() {
            return (m, var);
        }
        let src = Centered { src: again, shift, m };
        (m, sum_sq(s, n, src) * inv_d)
    } else {
        (S::E::zero(), first[0] * inv_d)
    }
}

/// Whether a row whose variance (mean square) came out as `var` goes to the rescue
/// path: not finite, too small to be exact in `F`, or `var + eps` overflows although
/// both are finite (eps near `F::MAX`; rather than write rstd = 0).
#[inline(always)]
fn needs_rescue<F: Float>(var: F, eps: F) -> bool {
    !(var.is_finite() && var >= F::RESCUE_BELOW && (var + eps).is_finite())
}

/// How the row bodies read and write rows of storage type `E`, accumulating in `F`:
/// natively (`E = F`, [`Native`]) or as 16-bit values widened as they load and rounded
/// once as they store (`half.rs`).
trait Io<E, F: Float> {
    /// Row `x` as a pass reads it.
    fn src<S: Simd<E = F>>(x: &[E]) -> impl Source<S>;
    /// Output row `out` as the write pass writes it.
    fn sink<S: Simd<E = F>>(out: Out<'_, E>) -> impl Sink<S>;
    /// Row `x` as a first pass reads it, leaving its values (in `F`) in `buf` as it goes
    /// (`buf` is as long as `x`), for the later passes to read ([`Widened`]); only
    /// called for storage narrower than `F` ([`narrower`]), so rows of `F` itself keep
    /// this default, which reads `x` alone.
    fn tee<'a, S: Simd<E = F>>(x: &'a [E], buf: &'a mut [F]) -> impl Source<S> {
        let _ = buf;
        Self::src::<S>(x)
    }
    /// Element `i` of `x`, in `F`.
    fn at(x: &[E], i: usize) -> F;
    /// The rescue path for row `x` (rare): writes `y`, returns [`Kind::stats`].
    fn rescue<K: Kind>(x: &[E], p: RowParams<'_, F>, y: &mut [E]) -> (F, F);
    /// The residual sum `h = x + r` in `E`, written to `h` as a pass reads it (`r =
    /// None`: `h` holds `r`); with `h_store = Streaming`, streamed where the write pass
    /// streams its output.
    fn add_into<'a, S: Simd<E = F>>(
        x: &'a [E],
        r: Option<&'a [E]>,
        h: &'a mut [E],
        h_store: Store,
    ) -> impl Source<S> + 'a;
    /// The residual sum `x + r` in `E`, computed again as a pass reads it.
    fn sum<'a, S: Simd<E = F>>(x: &'a [E], r: &'a [E]) -> impl Source<S> + 'a;
    /// `x[i] + r[i]` in `E`, as `F`.
    fn add_at(x: &[E], r: &[E], i: usize) -> F;
}

/// Rows of the accumulation type itself (`f32`, `f64`).
struct Native;

impl<F: Float> Io<F, F> for Native {
    #[inline(always)]
    fn src<S: Simd<E = F>>(x: &[F]) -> impl Source<S> {
        Plain(x)
    }
    #[inline(always)]
    fn sink<S: Simd<E = F>>(out: Out<'_, F>) -> impl Sink<S> {
        out
    }
    #[inline(always)]
    fn at(x: &[F], i: usize) -> F {
        x[i]
    }
    #[inline(always)]
    fn rescue<K: Kind>(x: &[F], p: RowParams<'_, F>, y: &mut [F]) -> (F, F) {
        rescue::<K, F>(x, p, y)
    }
    #[inline(always)]
    fn add_into<'a, S: Simd<E = F>>(
        x: &'a [F],
        r: Option<&'a [F]>,
        h: &'a mut [F],
        h_store: Store,
    ) -> impl Source<S> + 'a {
        AddInto { x, r, h, h_store }
    }
    #[inline(always)]
    fn sum<'a, S: Simd<E = F>>(x: &'a [F], r: &'a [F]) -> impl Source<S> + 'a {
        Sum { x, r }
    }
    #[inline(always)]
    fn add_at(x: &[F], r: &[F], i: usize) -> F {
        x[i] + r[i]
    }
}

/// A row's statistics ([`Kind::stats`]) and the coefficients its write pass used
/// (`None`: the rescue path wrote it).
type Finished<F> = ((F, F), Option<Coef<F>>);

/// The norm of row `h` from its moments: the rescue path if they call for it, else
/// the write pass over `src` (`h` as the later passes read it), with `beside`'s steps
/// between its vectors (the next row's first
/// reduction is left untouched by a rescued row: its caller finishes it alone).
/// Returns the row's statistics, and the coefficients its write pass used.
#[inline(always)]
fn finish<K: Kind, S: Simd, E, I: Io<E, S::E>>(
    s: S,
    (h, src): (&[E], impl Source<S>),
    (shift, m, var): (S::E, S::E, S::E),
    p: RowParams<'_, S::E>,
    out: Out<'_, E>,
    beside: &mut impl Beside<S>,
) -> Finished<S::E> {
    if needs_rescue(var, p.eps) {
        return (I::rescue::<K>(h, p, out.y), None);
    }
    let r = S::E::one() / (var + p.eps).sqrt();
    let c = Coef { shift, m, r };
    write::<K, S, _, _>(s, src, p, c, I::sink::<S>(out), beside);
    (K::stats(shift + m, r), Some(c))
}

/// The cache line of the call's output `y` that starts at element `k` and holds the
/// last `t` elements of one row (`0 < t < ` the line's elements) and the first
/// elements of the next, which the write passes of both left unwritten where `parts`
/// says (`Seam`): computed whole, each lane as its own row's write pass computes it
/// (`write::value`, with that row's coefficients `coefs` and its feature's weight and
/// bias, read from `wrap`, the weight and bias twice over, at `d - t`: so the lanes of
/// the first row find the last `t` features and those of the second the first ones),
/// and streamed whole when both parts are left, or each left part stored plainly
/// (beside a row that wrote its own part with plain stores: one taken by the rescue
/// path, or one too short for its alignment to stream). The rows are `d`
/// long, at least a line.
#[inline(always)]
fn join<K: Kind, S: Simd, E: Copy, I: Io<E, S::E>>(
    s: S,
    (x, y): (&[E], &mut [E]),
    (k, t, d): (usize, usize, usize),
    wrap: RowParams<'_, S::E>,
    coefs: [Option<Coef<S::E>>; 2],
    parts: [bool; 2],
) {
    let n = LINE / std::mem::size_of::<E>();
    let (Some(a), Some(b)) = (coefs[0].or(coefs[1]), coefs[1].or(coefs[0])) else {
        return;
    };
    // Whole vectors in pairs per line, and the line within both rows.
    assert!(n.is_multiple_of(2 * S::W) && 0 < t && t < n && n <= d && k + n <= x.len().min(y.len()));
    let line = Line {
        x: &x[k..k + n],
        weight: &wrap.weight[d - t..d - t + n],
        bias: wrap.bias.map(|b| &b[d - t..d - t + n]),
        t,
        coefs: [a, b],
    };
    let out = |y| Out {
        y,
        store: Store::Cached,
        near: false,
        seam: None,
    };
    if parts == [true; 2] {
        let y = &mut y[k..k + n];
        line.write::<K, S, I>(
            s,
            Out {
                store: Store::Streaming,
                ..out(y)
            },
        );
    } else {
        let mut tmp = y[k..k + n].to_vec();
        line.write::<K, S, I>(s, out(&mut tmp));
        if parts[0] {
            y[k..k + t].copy_from_slice(&tmp[..t]);
        }
        if parts[1] {
            y[k + t..k + n].copy_from_slice(&tmp[t..]);
        }
    }
}

/// One line's worth of two rows for [`join`]: its `x`, weight and bias, and the
/// coefficients of the first row (its first `t` elements) and of the second.
struct Line<'a, E, F> {
    x: &'a [E],
    weight: &'a [F],
    bias: Option<&'a [F]>,
    t: usize,
    coefs: [Coef<F>; 2],
}

impl<E: Copy, F: Float> Line<'_, E, F> {
    /// The coefficients of the vector at element `i`, lane by lane: the first row's for
    /// the lanes before `t`, the second row's after.
    #[inline(always)]
    fn lanes<S: Simd<E = F>>(&self, s: S, i: usize) -> (S::V, S::V, S::V) {
        let [a, b] = self.coefs;
        let q = self.t.saturating_sub(i);
        if q >= S::W {
            (s.splat(a.shift), s.splat(a.m), s.splat(a.r))
        } else if q == 0 {
            (s.splat(b.shift), s.splat(b.m), s.splat(b.r))
        } else {
            let m = s.shift(S::W - q);
            (
                s.combine(s.splat(a.shift), s.splat(b.shift), m),
                s.combine(s.splat(a.m), s.splat(b.m), m),
                s.combine(s.splat(a.r), s.splat(b.r), m),
            )
        }
    }

    /// Computes the line into `out` (the line's elements), as `out.store` says.
    #[inline(always)]
    fn write<K: Kind, S: Simd<E = F>, I: Io<E, F>>(&self, s: S, out: Out<'_, E>) {
        let store = out.store;
        let n = self.x.len();
        let mut src = I::src::<S>(self.x);
        let mut sink = I::sink::<S>(out);
        let mut i = 0;
        while i + 2 * S::W <= n {
            // SAFETY: `i + 2·W <= n`: within the line's `x`, weight and bias (`n`
            // elements each) and output; streamed only from the line's start (on a
            // line boundary), at an even vector from it.
            unsafe {
                let u = write::value::<K, S>(
                    s,
                    &mut src,
                    i,
                    Store::Cached,
                    self.lanes(s, i),
                    self.weight,
                    self.bias,
                );
                let v = write::value::<K, S>(
                    s,
                    &mut src,
                    i + S::W,
                    Store::Cached,
                    self.lanes(s, i + S::W),
                    self.weight,
                    self.bias,
                );
                sink.put2(s, i, u, v, store);
            }
            i += 2 * S::W;
        }
        sink.flush();
    }
}

/// The first reduction of a row shifted by `shift` (see [`first_pass`]), not started: a
/// [`Cursor`] to advance beside the write pass of the row before.
#[inline(always)]
fn first_cursor<K: Kind, S: Simd, Src: Source<S>>(
    s: S,
    n: usize,
    shift: S::E,
    src: Src,
) -> Cursor<S, Src, First<K, S>> {
    Cursor::new(s, n, src, First::<K, S>::new(s, shift))
}

/// Consecutive rows of norm `K`, pipelined: the first reduction of row `i + 1` (`Σ (v -
/// shift)` and `Σ (v - shift)²` for LayerNorm, `Σ v²` for RmsNorm) runs inside the write
/// pass of row `i`, a four-vector step beside each group of output vectors, and is
/// finished after it; so each row is read once beside the previous row's stores (like a
/// copy), and one row's serial chain (sums, mean, variance, root) overlaps the previous
/// row's stores. The steps are those of the whole reduction ([`Cursor`]), so
/// every row's bits are those of the row alone: they never depend on the row before it
/// or on where a block of rows starts. Beside the next row's reduction the write pass
/// prefetches the row after that ([`Ahead`], where software prefetch pays: by A/B
/// measurement on an Intel Xeon, family 6 model 167, one thread, 4 December 2026, two
/// to three alternating rounds, bf16 rows out of cache (65536×512, 65536×1024,
/// 8192×4096) ran 0.96-1.52× the rows/s without it on the AVX-512 and forced AVX2
/// paths (mostly 1.1-1.4: LayerNorm 65536×1024 AVX-512 8.0-8.6 → 12.1-12.6 GB/s,
/// RmsNorm 65536×512 AVX2 9.7-10.1 → 12.8-14.5), the fused rows 1.04-1.31×, in cache
/// (64×768, 512×768) 0.91-1.07×, within the noise). A rescued row leaves the next
/// row's reduction to run alone; the last row prefetches what follows it.
struct Rows<'a, K, I, E, F> {
    /// Whole rows of `p.weight.len()` elements.
    x: &'a [E],
    p: RowParams<'a, F>,
    out: Out<'a, E>,
    /// Where each row's two statistics go, when given.
    stats: [Option<&'a mut [F]>; 2],
    kind: std::marker::PhantomData<(K, I)>,
}

impl<K: Kind, F: Float, E: Copy, I: Io<E, F>> SimdOp<F> for Rows<'_, K, I, E, F> {
    /// The statistics of the last row (zeros for no rows).
    type Out = (F, F);
    #[inline(always)]
    fn run<S: Simd<E = F>>(self, s: S) -> (F, F) {
        let d = self.p.weight.len();
        if narrower::<E, F>()
            && self.x.len() >= 2 * d
            && crate::simd::widens_once(widens_once_auto::<K>(d, self.out.store, self.out.near))
        {
            // Two scratch rows: the row being written, and the next one, widened by its
            // first pass beside that write.
            let mut buf = vec![F::zero(); 2 * d];
            let (a, b) = buf.split_at_mut(d);
            return rows::<K, S, E, I, Widened>(s, self, [a, b]);
        }
        // Only where a vector fills a line (AVX-512 f32/f64): with half-line vectors (AVX2)
        // the targets bench measured forced-AVX2 LayerNorm in cache slower matched
        // (64×768 0.43-0.45 of the copy unmatched against 0.36-0.37 matched, 512×768
        // 0.82-0.87 against 0.70-0.71; Intel Xeon family 6 model 167, two runs each).
        let fills_line = S::W * std::mem::size_of::<S::E>() == LINE;
        let mis = matches::<S::E>(self.x, self.out.y, d, self.out.store).filter(|_| fills_line);
        let kept = mis.and_then(|mis| self.p.matched.rows(mis, self.p.weight, self.p.bias));
        if let Some(k) = kept {
            let p = RowParams {
                weight: &k.weight,
                bias: k.bias.as_deref(),
                ..self.p
            };
            return rows::<K, S, E, I, Direct>(s, Rows { p, ..self }, [&mut [], &mut []]);
        }
        rows::<K, S, E, I, Direct>(s, self, [&mut [], &mut []])
    }
}

/// The fewest rows for which a call uses copies of its weight and bias matched to its
/// rows ([`AlignedRow::from_slice_past`](crate::params::AlignedRow::from_slice_past)): the first call at an offset makes them (two
/// rows' worth of loads and stores; kept after that, [`Matched`]).
const MATCH_MIN_ROWS: usize = 8;

/// The offset from a cache line (in bytes) at which a call's weight and bias are copied
/// ([`AlignedRow::from_slice_past`](crate::params::AlignedRow::from_slice_past)), if the call qualifies (and its backend's vectors fill a line, which
/// [`Rows`] checks): f32/f64 rows (`E` the accumulation type) with
/// plain stores, at least [`MATCH_MIN_ROWS`] rows of a whole number of cache lines,
/// `x` and `y` at the same offset from a line and not on one.
///
/// Why: the write pass's vectors, aligned
/// to the output (`write::vector_head`), then find the weight and bias aligned too, and
/// none of its loads and stores straddles two cache lines (each such access costs two).
/// The allocator puts large buffers 16 bytes past a line (glibc), so a user's
/// activations usually sit there. By A/B measurement (a harness outside the repository,
/// one binary per variant, three to four processes each, alternating, one thread,
/// 64×768 f32 in cache, `x` and `y` 16 bytes past a line; Intel Xeon family 6 model
/// 167, 5 December 2026), GB/s over the plain copy's on AVX-512: LayerNorm 0.49-0.57 ->
/// 0.53-0.60, RmsNorm 0.72-0.79 -> 0.81-0.83; rows on a line unchanged (LayerNorm
/// 0.64-0.66). Same bits: the rows' values are read and combined as before, only the
/// weight and bias come from another address. Not on AVX2 (half-line vectors): see
/// [`Rows`]'s `run`.
#[inline(always)]
fn matches<F>(x: &[impl Sized], y: &[impl Sized], d: usize, store: Store) -> Option<usize> {
    let size = std::mem::size_of_val(x.first()?);
    let mis = x.as_ptr() as usize % LINE;
    (size == std::mem::size_of::<F>()
        && store == Store::Cached
        && mis != 0
        && mis == y.as_ptr() as usize % LINE
        && (d * size).is_multiple_of(LINE)
        && x.len() >= MATCH_MIN_ROWS * d)
        .then_some(mis)
}

/// Whether rows stored as `E` are narrower than the accumulation type `F` (bf16/f16
/// rows accumulated in f32): they are widened as read, so they may run pipelined and
/// widen once ([`Widened`]) where rows of `F` itself do not.
#[inline(always)]
const fn narrower<E, F>() -> bool {
    std::mem::size_of::<E>() < std::mem::size_of::<F>()
}

/// The longest half-precision rows (in elements) that `simd::Widening::Auto` widens
/// once: two f32 scratch rows of 4 KiB, beside the 16-bit rows and the f32 weight and
/// bias (4 KiB each), well inside an L1. Longer rows thrash it: by A/B measurement (a
/// harness outside the repository, one thread, bf16 LayerNorm in cache, plain stores,
/// `Widening::Once` against `EveryPass`, two rounds; Intel Xeon family 6 model 167, 48
/// KiB L1d, AVX-512, 5 December 2026), ns per row once / every pass: 32×4096 914-986 /
/// 592-668, 64×2048 317-333 / 294-309, 256×1024 148-173 / 157-170, 64×768 and 512×768
/// equal within 5%. (The bound was 4096 before: two 16 KiB scratch rows alone, as
/// measured at 768 on Zen 4, whose L1d is 32 KiB.)
const WIDEN_ONCE_MAX: usize = 1024;

/// Whether `simd::Widening::Auto` widens each half-precision row of a run once, for
/// norm `K`, rows of `d` elements, outputs written as `store`, in a call that is
/// [`near`] or not: LayerNorm rows of up to [`WIDEN_ONCE_MAX`] elements with plain
/// stores, in a call near the core or on a CPU where
/// [`widens_once_beyond_l2`](crate::simd::widens_once_beyond_l2).
#[inline(always)]
fn widens_once_auto<K: Kind>(d: usize, store: Store, near: bool) -> bool {
    K::CENTER
        && store == Store::Cached
        && d <= WIDEN_ONCE_MAX
        && (near || crate::simd::widens_once_beyond_l2())
}

/// How a run of rows reads the passes of each row: all from the row in storage
/// ([`Direct`]), or the first from storage, widening the row once into a scratch row of
/// the accumulation type that the later passes read ([`Widened`], the half-precision
/// rows: it saves the widening of every later pass for one store per vector). The
/// values are the same either way (the widening is exact).
trait Reader {
    /// Row `x` as its first pass reads it (`buf`: its scratch row).
    fn first<'a, S: Simd, E, I: Io<E, S::E>>(x: &'a [E], buf: &'a mut [S::E]) -> impl Source<S>;
    /// Row `x` as its later passes read it, after its first pass.
    fn again<'a, S: Simd, E, I: Io<E, S::E>>(x: &'a [E], buf: &'a [S::E]) -> impl Source<S>;
}

/// Every pass reads the row in storage.
struct Direct;

impl Reader for Direct {
    #[inline(always)]
    fn first<'a, S: Simd, E, I: Io<E, S::E>>(x: &'a [E], _: &'a mut [S::E]) -> impl Source<S> {
        I::src::<S>(x)
    }
    #[inline(always)]
    fn again<'a, S: Simd, E, I: Io<E, S::E>>(x: &'a [E], _: &'a [S::E]) -> impl Source<S> {
        I::src::<S>(x)
    }
}

/// The first pass widens the row into its scratch row, the later passes read that.
struct Widened;

impl Reader for Widened {
    #[inline(always)]
    fn first<'a, S: Simd, E, I: Io<E, S::E>>(x: &'a [E], buf: &'a mut [S::E]) -> impl Source<S> {
        I::tee::<S>(x, buf)
    }
    #[inline(always)]
    fn again<'a, S: Simd, E, I: Io<E, S::E>>(_: &'a [E], buf: &'a [S::E]) -> impl Source<S> {
        Plain(buf)
    }
}

/// The body of [`Rows`], reading each row as `R` says (`bufs`: two scratch rows for
/// [`Widened`], unused by [`Direct`]).
#[inline(always)]
fn rows<K: Kind, S: Simd, E: Copy, I: Io<E, S::E>, R: Reader>(
    s: S,
    this: Rows<'_, K, I, E, S::E>,
    bufs: [&mut [S::E]; 2],
) -> (S::E, S::E) {
    let Rows {
        x, p, out, mut stats, ..
    } = this;
    let [mut cur, mut nxt] = bufs;
    let d = p.weight.len();
    let (y, store, near) = (out.y, out.store, out.near);
    let rows = x.len().checked_div(d).unwrap_or(0);
    let mut last = (S::E::zero(), S::E::zero());
    if rows == 0 {
        return last;
    }
    assert!(y.len() >= rows * d);
    let pipelined = pipelines::<S, E>(d, store);
    let prefetch = Reach::of(store);
    let shift_at = |r: &[E]| shift_of::<K, S::E>(d, |i| I::at(r, i));
    let mut shift = shift_at(&x[..d]);
    let mut first = first_sum::<K, S, _>(s, shift, R::first::<S, E, I>(&x[..d], &mut *cur));
    // Half-precision rows (bf16, f16), of a line or more: the line a row starts in then
    // lies within it and the row before (`join`). Their streamed edges are otherwise
    // 16-bit scalars, each rounded one at a time; f32/f64 rows stream theirs as scalars
    // as they are, which measured faster than through a seam (see `Seam`).
    let size = std::mem::size_of::<E>();
    let seams = store == Store::Streaming && narrower::<E, S::E>() && d * size >= LINE;
    let mut seam = Seam::new();
    // The weight and bias twice over, for the lines two rows share (`join`).
    let twice = |r: &[S::E]| seams.then(|| [r, r].concat());
    let (ww, bb) = (twice(p.weight), p.bias.and_then(twice));
    // The row before: its coefficients (`None`: rescued) and whether it left its last
    // partial line to the seam.
    let mut before: (Option<Coef<S::E>>, bool) = (None, false);
    for i in 0..rows {
        let xr = &x[i * d..(i + 1) * d];
        let (m, var) = moments::<K, S>(s, d, shift, first, R::again::<S, E, I>(xr, &*cur));
        seam.row(i > 0, i + 1 < rows);
        let seam_of = seams.then_some(&mut seam);
        let out = Out {
            y: &mut y[i * d..(i + 1) * d],
            store,
            near,
            seam: seam_of,
        };
        let next = x.get((i + 1) * d..(i + 2) * d);
        let row = (xr, R::again::<S, E, I>(xr, &*cur));
        let (st, coef) = match next {
            Some(nx) if pipelined => {
                let src = R::first::<S, E, I>(nx, &mut *nxt);
                let shift_n = shift_at(nx);
                let next = first_cursor::<K, S, _>(s, d, shift_n, src);
                let mut beside = (next, Ahead::after(nx, None, prefetch));
                let st = finish::<K, S, E, I>(s, row, (shift, m, var), p, out, &mut beside);
                (first, shift) = (beside.0.finish(s), shift_n);
                st
            }
            _ => {
                let mut ahead = Ahead::after(xr, None, prefetch);
                let st = finish::<K, S, E, I>(s, row, (shift, m, var), p, out, &mut ahead);
                if let Some(nx) = next {
                    shift = shift_at(nx);
                    first = first_sum::<K, S, _>(s, shift, R::first::<S, E, I>(nx, &mut *nxt));
                }
                st
            }
        };
        last = st;
        if let Some(ww) = &ww {
            let left = seam.left();
            // The bytes of the line before row `i` starts in it: the row before's part.
            let off = (y.as_ptr() as usize + i * d * size) % LINE;
            if i > 0 && off != 0 && (before.1 || left[0]) {
                let (t, wrap) = (
                    off / size,
                    RowParams {
                        weight: ww,
                        bias: bb.as_deref(),
                        ..p
                    },
                );
                join::<K, S, E, I>(
                    s,
                    (x, y),
                    (i * d - t, t, d),
                    wrap,
                    [before.0, coef],
                    [before.1, left[0]],
                );
            }
            before = (coef, left[1]);
        }
        std::mem::swap(&mut cur, &mut nxt);
        for (st, v) in stats.iter_mut().zip([last.0, last.1]) {
            if let Some(st) = st.as_deref_mut() {
                st[i] = v;
            }
        }
    }
    last
}

/// The first reduction of a row shifted by `shift` (see [`first_pass`]), whole, over
/// `src`.
#[inline(always)]
fn first_sum<K: Kind, S: Simd, Src: Source<S>>(s: S, shift: S::E, src: Src) -> [S::E; 2] {
    let n = src.len();
    first_pass::<K, S>(s, n, shift, src)
}

/// The longest rows (in bytes of their storage type) that run pipelined. A pipelined
/// write pass touches four rows at once (`x` of this row and the next, `y`, the weight),
/// which must stay in L1 together: by A/B measurement on an Intel Xeon model 207 (48 KiB
/// L1d, shared loaded machine), f32 rows of 16 KiB ran ~10% slower pipelined (RmsNorm out
/// of cache, both paths), bf16 rows of 8 KiB 20-40% faster, f32 rows of 2-4 KiB as
/// fast or faster. Longer rows run one after another, each prefetching the next
/// ([`Ahead`]) as before.
const PIPELINE_MAX_ROW_BYTES: usize = 8192;

/// Whether rows of `d` elements of `E` whose outputs are written as `store` run
/// pipelined on backend `S`: rows no longer than [`PIPELINE_MAX_ROW_BYTES`], as
/// [`Pipelining`] says; under `Auto` (the default) 16-bit storage (bf16, f16) on every
/// CPU; f32/f64 rows with plain (in-cache) stores where
/// [`pipelines_wide_rows`](crate::simd::pipelines_wide_rows) says (AMD CPUs), and with
/// streamed stores (out of cache) on a backend that prefetches ([`Simd::PREFETCHES`])
/// where software prefetch pays
/// ([`software_prefetch_pays`](crate::simd::software_prefetch_pays): not on AMD CPUs),
/// whose rows ahead are then prefetched into L2 ([`Reach::L2`], unless
/// `Prefetching::IntoL1` forces L1; the [`Prefetching`](crate::simd::Prefetching) hook
/// does not change this rule). Not on the
/// portable backend, whose prefetches are no-ops: there streamed f32 rows ran 0.80-1.6×
/// as fast pipelined as one by one (LayerNorm 1.2-1.6×, RmsNorm 65536×512 and the fused
/// 65536×512 rows 0.80-0.90×; Intel Xeon family 6 model 167, two rounds).
///
/// By A/B measurement (`benches/pipelining.rs`, f32, one thread). AMD EPYC family 25
/// model 17 (Zen 4), one run of 3 December 2026, pipelined over one-by-one rows/s: in
/// cache (64×768, 512×768) 1.02-1.15 (plain) and 1.07-1.29 (fused) on the AVX2 and
/// AVX-512 paths, 2.0-2.2 for LayerNorm on the portable path; out of cache (65536×512,
/// streamed, no software prefetch) 0.90-1.08, the fused rows 0.90-0.97. Intel Xeon
/// model 207 (earlier runs, before the benchmark group existed): the f32 rows on AVX2
/// gained nothing and lost 8-15% (LayerNorm 65536×512, RmsNorm 64×768); on AVX-512 they
/// gained where 128 MiB arrays sat in a 260 MiB L3 but lost 10-30% for LayerNorm from
/// DRAM, and in cache neither way won beyond the ±15% noise; the f32 fused rows ran
/// 3-26% slower pipelined in cache. The bf16/f16 rows gained on both CPUs and paths.
/// Intel Xeon family 6 model 167, 4 December 2026, once the rows ahead were prefetched
/// (into L2 out of cache), one binary, three alternating rounds, best of batches, f32
/// out of cache (65536×512, 65536×1024, 16384×2048): LayerNorm pipelined 1.02-1.36×
/// the GB/s one by one (AVX2 65536×512 10.5-11.5 -> 13.5-14.2, AVX-512 13.2-14.6 ->
/// 15.2-16.2), RmsNorm 0.98-1.16×, the fused rows 0.95-1.14× (LayerNorm 1.0-1.14×);
/// f64 (same CPU and method, 4 December 21:45, two rounds, Auto over one by one):
/// LayerNorm 65536×512 1.26-1.34×, 16384×1024 1.09-1.29×, RmsNorm 0.98-1.10×
/// (rows of 32 KiB, 8192×4096, run one by one either way: 0.98-1.02×).
#[inline(always)]
fn pipelines<S: Simd, E>(d: usize, store: Store) -> bool {
    if d.saturating_mul(std::mem::size_of::<E>()) > PIPELINE_MAX_ROW_BYTES {
        return false;
    }
    match pipelining() {
        Pipelining::Always => true,
        Pipelining::Never => false,
        Pipelining::Auto => {
            narrower::<E, S::E>()
                || match store {
                    Store::Cached => crate::simd::pipelines_wide_rows(),
                    Store::Streaming => S::PREFETCHES && crate::simd::software_prefetch_pays(),
                }
        }
    }
}

/// Whole rows `x` of norm `K` on `path` into `out` (as long as `x`), pipelined
/// ([`Rows`]); each row's statistics ([`Kind::stats`]) go to `stats` where given.
/// Returns the last row's statistics (zeros for no rows): for one row, `(mean, rstd)`
/// (LayerNorm) or `(rrms, 0)` (RmsNorm).
#[inline(always)]
pub(crate) fn norm_rows<K: Kind, F: Float>(
    path: Path,
    x: &[F],
    p: RowParams<'_, F>,
    out: Out<'_, F>,
    stats: [Option<&mut [F]>; 2],
) -> (F, F) {
    let kind = std::marker::PhantomData::<(K, Native)>;
    run_on(
        path,
        Rows {
            x,
            p,
            out,
            stats,
            kind,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Portable;

    /// The `Auto` rule of [`pipelines`] (no test in this binary changes the
    /// process-wide [`Pipelining`]): the portable backend, whose prefetches are no-ops,
    /// never pipelines streamed f32/f64 rows; 16-bit rows pipeline on every backend and
    /// CPU; no row over `PIPELINE_MAX_ROW_BYTES` pipelines; rows in cache follow
    /// `pipelines_wide_rows`.
    #[test]
    fn auto_pipelines_as_documented() {
        assert_eq!(pipelining(), Pipelining::Auto);
        let wide = crate::simd::pipelines_wide_rows();
        for d in [1, 512, 2048] {
            assert!(!pipelines::<Portable<f32>, f32>(d, Store::Streaming));
            assert!(!pipelines::<Portable<f64>, f64>(d / 2 + 1, Store::Streaming));
            assert_eq!(pipelines::<Portable<f32>, f32>(d, Store::Cached), wide);
            for store in [Store::Cached, Store::Streaming] {
                assert!(pipelines::<Portable<f32>, crate::bf16>(d, store));
                assert!(pipelines::<Portable<f32>, crate::f16>(d, store));
            }
        }
        assert!(!pipelines::<Portable<f32>, f32>(2049, Store::Cached));
        assert!(!pipelines::<Portable<f32>, crate::bf16>(4097, Store::Streaming));
    }

    /// The `Auto` rule of the widening: LayerNorm rows with plain stores, up to
    /// `WIDEN_ONCE_MAX` elements, in a call near the core (at most `NEAR_MAX_BYTES`
    /// moved) or on a CPU that widens once beyond L2; never RmsNorm or streamed rows.
    #[test]
    fn auto_widens_once_as_documented() {
        assert!(near(0) && near(NEAR_MAX_BYTES) && !near(NEAR_MAX_BYTES + 1));
        let far = crate::simd::widens_once_beyond_l2();
        for d in [1, 768, WIDEN_ONCE_MAX] {
            assert!(widens_once_auto::<Layer>(d, Store::Cached, true));
            assert_eq!(widens_once_auto::<Layer>(d, Store::Cached, false), far);
            for near in [true, false] {
                assert!(!widens_once_auto::<Layer>(d, Store::Streaming, near));
                assert!(!widens_once_auto::<Rms>(d, Store::Cached, near));
            }
        }
        assert!(!widens_once_auto::<Layer>(
            WIDEN_ONCE_MAX + 1,
            Store::Cached,
            true
        ));
    }
}
