//! The write pass of both norms, `y = center(h) · (r·w) + b` with `center` the identity
//! for RmsNorm: its loop over plain or streaming stores (`write_pass!`), the cache-line
//! geometry of streaming stores, and the one store helper ([`put`]).

use super::stats::{Beside, Source};
use super::{Coef, Kind, Out, RowParams};
use crate::params::LINE;
use crate::simd::{Simd, Store};

/// The loop of a write pass over the `$n` elements of an output row: `$vector` (with
/// `$i` and `$store` bound) writes elements `$i..$i + W` (`$store`: how; `Streaming`
/// only at a vector boundary of the output), `$pair` (with `$i2`, `$store2`) writes
/// elements `$i2..$i2 + 2·W` as `$vector` would write its two vectors (`Streaming` only
/// at an even vector from a cache-line boundary), `$scalar` writes element `$j` as
/// `$sst` says, `$touch`
/// (with `$t`, `$span` bound) is the work done beside the vectors at `$t..$t + $span`
/// (a prefetch of what they will want next, or a step of the next row's reduction),
/// `$leaves` says whether the pass leaves the streamed elements before `a` (its first
/// partial line) and after the last whole line (its last) unwritten, for a [`Seam`] to
/// write, and `$left` (with `$part` bound: 0 the first, 1 the last) tells the sink it
/// did (`Sink::leave`). `$vector` and `$scalar` must compute each element with the
/// same operations, so which of them writes an element never changes a bit.
///
/// Plain (`$head = None`): vectors from element 0 on, then the elements after the last
/// full vector as plain scalars. Plain from a vector boundary (`$head = Some((a,
/// Cached))`, `a` the first element of the output at a vector boundary, where the
/// weight and bias are aligned too: `vector_head`): one unaligned vector at element 0,
/// aligned vectors from `a` on, one unaligned vector ending at the row's end; the two
/// unaligned ones write a few elements the aligned ones write too, with the same
/// values (so `$vector` must read a source that may be read twice). Streaming (`$head =
/// Some((a, Streaming))`, `a` the first element of
/// the output at a cache-line boundary, `$line` elements per line): streamed scalars
/// before `a` (or nothing, where `$leaves` says), then streamed vectors while they
/// fill whole lines, then streamed scalars for the rest (or nothing), so no line is written
/// partly by plain and partly by non-temporal stores (that would flush a half-filled
/// write-combining buffer), and no plain store
/// reads a line from memory: the lines at the two ends of a row are shared with the
/// rows beside it when the output is not aligned to a cache line, and a plain store
/// that misses there holds up every store behind it until its line arrives (once per
/// row; measured in `norm-autograd`'s `Storage::put1`).
///
/// The streamed and the plain vectors are separate loops, each four vectors a step (two
/// pairs, one prefetch per step) where `$quads` says so and one vector a step otherwise
/// (see [`write()`]), so the store kind is a constant inside each and the loop
/// costs little beside the arithmetic. The caller guarantees that every vector
/// `$i..$i + W` with `$i + W <= $n` is in bounds of what `$vector` reads and writes.
///
/// A macro, not a function taking closures: a closure is a function of its own, compiled
/// without the vector features of the kernel's `#[target_feature]` entry point, and when
/// the compiler did not inline it, every vector operation inside became a call (the
/// fused kernels ran 10× slower that way).
macro_rules! write_pass {
    ($n:expr, $w:expr, $head:expr, $line:expr, $quads:expr,
     |$t:ident, $span:ident| $touch:expr,
     |$i:ident, $store:ident| $vector:expr,
     |$i2:ident, $store2:ident| $pair:expr,
     $leaves:expr, |$part:ident| $left:expr,
     |$j:ident, $sst:ident| $scalar:expr $(,)?) => {{
        let (n, w) = ($n, $w);
        let (start, nt_end, edge) = match $head {
            Some((a, Store::Streaming)) if a + w <= n => (a, a + (n - a) / $line * $line, Store::Streaming),
            Some((a, Store::Cached)) if a + w <= n => (a, a, Store::Cached),
            _ => (0, 0, Store::Cached),
        };
        let $sst = edge;
        // A plain head (`vector_head`): one unaligned vector over the elements before
        // `start` and the first few after it, which the aligned vectors write again.
        let lap = start > 0 && edge == Store::Cached;
        // Streamed partial lines left to a `Seam` (`Sink::leaves`).
        let leaves: [bool; 2] = if edge == Store::Streaming {
            $leaves
        } else {
            [false; 2]
        };
        if lap {
            let ($i, $store) = (0, Store::Cached);
            $vector;
        } else if leaves[0] && start > 0 {
            let $part = 0;
            $left;
        } else {
            for $j in 0..start {
                $scalar;
            }
        }
        let mut at = start;
        let plain_end = if edge == Store::Streaming { nt_end } else { n };
        for (end, $store) in [(nt_end, Store::Streaming), (plain_end, Store::Cached)] {
            while $quads && at + 4 * w <= end {
                {
                    let ($t, $span) = (at, 4 * w);
                    $touch;
                }
                for k in [0, 2] {
                    let ($i2, $store2) = (at + k * w, $store);
                    $pair;
                }
                at += 4 * w;
            }
            while at + w <= end {
                {
                    let ($t, $span) = (at, w);
                    $touch;
                }
                let $i = at;
                $vector;
                at += w;
            }
        }
        if lap && at < n {
            let ($i, $store) = (n - w, Store::Cached);
            $vector;
        } else if leaves[1] && at < n {
            let $part = 1;
            $left;
        } else {
            for $j in at..n {
                $scalar;
            }
        }
    }};
}

/// Where a write pass puts its output row: [`Out`], a row of the backend's own element
/// type, or a half-precision row (`half.rs`) whose values are rounded as they are
/// stored. Both store the same f32 (f64) values; only the rounding into the row differs.
pub(super) trait Sink<S: Simd> {
    /// Elements that can be written.
    fn len(&self) -> usize;
    /// How the row is written.
    fn store(&self) -> Store;
    /// The row's address and element size, for the cache-line geometry of streaming.
    fn geometry(&self) -> (usize, usize);
    /// Writes vector `v` to elements `i..i + W`, as `store` says.
    ///
    /// # Safety
    /// As [`put`]: `i + W <= self.len()`, and with `Streaming`, element `i` sits at a
    /// multiple of `W` elements from a cache-line boundary.
    unsafe fn put(&mut self, s: S, i: usize, v: S::V, store: Store);
    /// Writes `a` to elements `i..i + W` and `b` to `i + W..i + 2·W`, as `store` says:
    /// the bits of two [`put`](Sink::put)s (which the default makes), in fewer
    /// operations where the sink rounds both at once (bf16 rows, `half.rs`).
    ///
    /// # Safety
    /// `i + 2·W <= self.len()`, and with `Streaming`, element `i` sits at a multiple of
    /// `2·W` elements from a cache-line boundary.
    #[inline(always)]
    unsafe fn put2(&mut self, s: S, i: usize, a: S::V, b: S::V, store: Store) {
        // SAFETY: per the contract, each vector at a multiple of `W` elements from a
        // cache-line boundary.
        unsafe {
            self.put(s, i, a, store);
            self.put(s, i + S::W, b, store);
        }
    }
    /// Writes element `j` (checked), non-temporally where `store` says `Streaming` and
    /// the sink can ([`Simd::stream1`]).
    fn set(&mut self, s: S, j: usize, v: S::E, store: Store);
    /// Whether [`put2`](Sink::put2) rounds its two vectors in fewer operations than
    /// two [`put`](Sink::put)s (the half-precision rows): the write pass then keeps its
    /// steps of two pairs on every backend.
    const PAIRS: bool = false;
    /// Stores whatever [`set`](Sink::set) holds back (the half-precision rows pair
    /// their streamed scalars); the write pass calls it once at its end.
    #[inline(always)]
    fn flush(&mut self) {}
    /// Whether the write pass leaves the streamed elements of the row's first and last
    /// partial lines unwritten, for a [`Seam`] to write ([`leave`](Sink::leave)),
    /// rather than writing them one by one ([`set`](Sink::set)).
    #[inline(always)]
    fn leaves(&self) -> [bool; 2] {
        [false; 2]
    }
    /// The write pass left the row's first (`part` 0) or last (1) partial line
    /// unwritten, as [`leaves`](Sink::leaves) allowed.
    #[inline(always)]
    fn leave(&mut self, part: usize) {
        let _ = part;
    }
}

impl<S: Simd> Sink<S> for Out<'_, S::E> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.y.len()
    }
    #[inline(always)]
    fn store(&self) -> Store {
        self.store
    }
    #[inline(always)]
    fn geometry(&self) -> (usize, usize) {
        (self.y.as_ptr() as usize, std::mem::size_of::<S::E>())
    }
    #[inline(always)]
    unsafe fn put(&mut self, s: S, i: usize, v: S::V, store: Store) {
        // SAFETY: the same contract.
        unsafe { put(s, self.y, i, v, store) }
    }
    #[inline(always)]
    fn set(&mut self, s: S, j: usize, v: S::E, store: Store) {
        match store {
            Store::Streaming => s.stream1(self.y, j, v),
            Store::Cached => self.y[j] = v,
        }
    }
}

/// The cache lines that consecutive streamed half-precision output rows of one call
/// share (`rows`, whose output rows lie end to end): when the output is not aligned to
/// a line, each line boundary between rows falls inside a line holding the end of one
/// row and the start of the next. Without a seam a streamed row writes the elements of
/// its first and last partial lines one at a time, each rounded to 16 bits in scalar
/// code and stored in 4-byte non-temporal pairs (for bf16 rows of 512 on AVX-512, 32
/// scalar elements beside 15 lines of vectors). With a seam the write pass leaves
/// those partial lines alone (`write_pass!`, [`Sink::leave`]), and once both rows are
/// written the call computes the shared line whole, each lane with its own row's
/// statistics and its own feature's weight and bias (`kernels::join`), and streams it
/// with whole-line vector stores (plain ones on the portable backend). The first row's
/// head and the last row's tail are shared with whatever lies beside the call's output
/// and keep the scalar stores; a line beside a row that wrote its own part with plain
/// stores (one taken by the rescue path, or one too short for its alignment to stream)
/// gets plain stores of the other row's part. Same bits: each element is
/// computed by the same operations, only the stores differ.
///
/// By A/B measurement (a harness outside the repository, one thread, 65536×512 bf16
/// streamed, output 16 bytes past a line, alternating binaries; Intel Xeon family 6
/// model 167, 5 December 2026) the first seam, which computed the partial lines of each
/// row as extra vectors and merged their lanes through a buffer, took LayerNorm from
/// 10.0-10.5 to 12.0-13.1 GB/s and RmsNorm from 12.7-14.1 to 16.4-19.3 on AVX-512, and
/// still cost 10-13% against rows that do not write their partial lines at all. f32/f64
/// rows (16 scalar elements per 2 KiB row there, no rounding) keep their scalar edges:
/// through that first seam the targets bench measured them 6-9% slower out of cache.
pub(crate) struct Seam {
    /// Whether the current row leaves its first (a row before it in the call) and its
    /// last (a row after it) partial line to the seam.
    take: [bool; 2],
    /// Whether the current row's write pass did leave them (it streamed).
    left: [bool; 2],
}

impl Seam {
    /// No row yet.
    pub(crate) const fn new() -> Self {
        Seam {
            take: [false; 2],
            left: [false; 2],
        }
    }

    /// Before the write of a row: whether a row precedes it and follows it in the call.
    #[inline(always)]
    pub(crate) fn row(&mut self, before: bool, after: bool) {
        self.take = [before, after];
        self.left = [false; 2];
    }

    /// Whether the current row leaves its partial lines to the seam.
    #[inline(always)]
    pub(super) fn takes(&self) -> [bool; 2] {
        self.take
    }

    /// The current row's write pass left its first (`part` 0) or last (1) partial
    /// line unwritten.
    #[inline(always)]
    pub(super) fn leave(&mut self, part: usize) {
        self.left[part] = true;
    }

    /// Which partial lines the current row left unwritten (none for a rescued row).
    #[inline(always)]
    pub(crate) fn left(&self) -> [bool; 2] {
        self.left
    }
}

/// Where a streaming write pass over `out` starts its vectors: the first element at a
/// cache-line boundary (also a vector boundary: vectors are at most a line); `None` for
/// a plain write pass (or an `out` not aligned to its element type, which a slice
/// always is).
#[inline(always)]
fn stream_head<S: Simd>((addr, size): (usize, usize), store: Store) -> Option<usize> {
    let mis = addr % LINE;
    (store == Store::Streaming && mis.is_multiple_of(size) && S::W * size <= LINE)
        .then_some((LINE - mis) % LINE / size)
}

/// Where a plain write pass over `out` starts its aligned vectors when the output is
/// not on a vector boundary but the weight and bias are at the element where it is
/// (their matched copies, `kernels::matches`): that element, so that every vector load
/// and store of the pass but the two at the row's ends is aligned (`write_pass!`).
/// Also, with vectors of half a line (AVX2, f32 and f64 rows), for a pass with a weight
/// and no bias (RmsNorm as usually built) wherever the weight sits: aligned stores and
/// row loads then, and only the weight's loads straddle a line (every other one)
/// instead of every other store. By A/B measurement (a harness outside the repository,
/// one thread, f32 64×768 in cache, rows 16 bytes past a line, weight on a line,
/// forced AVX2, three alternating rounds; Intel Xeon family 6 model 167, 6 December
/// 2026): RmsNorm 99–104 → 92–96 ns per row (512×768: 216–223 → 209–218); LayerNorm
/// with its bias (two such loads a vector) 141–145 → 147–149, so a pass with a bias
/// keeps the rule above. The targets bench (three alternating runs): forced-AVX2
/// RmsNorm / plain copy at 64×768 0.67–0.71 → 0.72–0.76, the rest unchanged. The
/// same geometry holds for f64 rows (four lanes, also half a line), measured later the
/// same day (forced AVX2, rows 16 bytes past a line, three alternating rounds against a
/// build with the rule for f32 only): RmsNorm f64 32×768 and 64×768 160–176 ns per row
/// against 179–188 without it; 256×768 (beyond L2) 375–400 either way.
/// `None` (vectors from element 0) otherwise; the caller also requires a source that
/// may be read twice ([`Source::PURE`]).
#[inline(always)]
fn vector_head<S: Simd>(
    (addr, size): (usize, usize),
    store: Store,
    p: &RowParams<'_, S::E>,
) -> Option<usize> {
    let vbytes = S::W * size;
    let mis = addr % vbytes;
    if store != Store::Cached || mis == 0 || !mis.is_multiple_of(size) {
        return None;
    }
    let a = (vbytes - mis) / size;
    let wbytes = S::W * std::mem::size_of::<S::E>();
    let on = |r: &[S::E]| (r.as_ptr().wrapping_add(a) as usize).is_multiple_of(wbytes);
    let lone_weight =
        S::REGISTERS && p.bias.is_none() && size == std::mem::size_of::<S::E>() && wbytes < LINE;
    ((on(p.weight) || lone_weight) && p.bias.is_none_or(on)).then_some(a)
}

/// Stores vector `v` to `out[i..i + W]`, non-temporally when `store` says so (see
/// `write_pass!`).
///
/// # Safety
/// `i + W <= out.len()`, and with `Streaming`, `out[i..]` is aligned to the vector size.
#[inline(always)]
pub(super) unsafe fn put<S: Simd>(s: S, out: &mut [S::E], i: usize, v: S::V, store: Store) {
    match store {
        // SAFETY: per the contract.
        Store::Streaming => unsafe { s.stream_at(out, i, v) },
        // SAFETY: per the contract.
        Store::Cached => unsafe { s.store_at(out, i, v) },
    }
}

/// How the fused write pass writes `h` beside `out`: streamed only when both sit at the
/// same offset from a cache line, and in place (`h` also holds the residual, read just
/// before each store) only when every vector is a whole line. With half-line vectors
/// (AVX2) the read of a line's second half would follow a non-temporal store to its
/// first half, which evicts the line and sends a half-filled write buffer to memory.
#[inline(always)]
pub(super) fn h_store<S: Simd, T>(h: *const T, out: *const T, in_place: bool) -> Store {
    if h as usize % LINE == out as usize % LINE && (!in_place || S::W * std::mem::size_of::<T>() == LINE) {
        Store::Streaming
    } else {
        Store::Cached
    }
}

/// `(v - shift) - m` for LayerNorm (`vs`, `vm` splatted), `v` for RmsNorm: a function,
/// not a closure (see `write_pass!`).
#[inline(always)]
fn center<K: Kind, S: Simd>(s: S, v: S::V, vs: S::V, vm: S::V) -> S::V {
    if K::CENTER { s.sub(s.sub(v, vs), vm) } else { v }
}

/// The write pass: `y = center(h) · (r·w) + b` (`center(h) = (h - shift) - m` for
/// LayerNorm, `h` for RmsNorm), into `out` as its store policy says, with `beside`'s
/// steps (a prefetch, the next row's first reduction) between its groups of vectors. The scalar edges
/// round exactly like the vector body (fused where it fuses), so the result never
/// depends on the stores or the alignment.
#[inline(always)]
pub(super) fn write<K: Kind, S: Simd, Src: Source<S>, Y: Sink<S>>(
    s: S,
    mut h: Src,
    p: RowParams<'_, S::E>,
    c: Coef<S::E>,
    mut y: Y,
    beside: &mut impl Beside<S>,
) {
    // Four vectors a step where each vector is a register; on the portable backend
    // (arrays) one vector a step, unless the sink rounds pairs at once (`Sink::PAIRS`:
    // the half-precision rows, unchanged). With four, LLVM's SLP vectorizer packed the
    // same lane of the step's four vectors into one register for LayerNorm's f32 and
    // f64 write (scalar loads and shuffles per lane; it did so in some builds and not
    // in others). Same operations per element, same bits. By the targets bench
    // (three alternating runs, portable forced, Intel Xeon family 6 model 167, 6
    // December 2026): f32 LayerNorm / plain copy 64×768 0.10 -> 0.30-0.31, 512×768
    // 0.26-0.28 -> 0.69-0.71; the vector paths, RmsNorm, the bf16 rows and the rows
    // out of cache unchanged.
    let quads = S::REGISTERS || Y::PAIRS;
    let (w, n, weight) = (S::W, p.weight.len(), p.weight);
    let (vs, vm, vr) = (s.splat(c.shift), s.splat(c.m), s.splat(c.r));
    let geometry = y.geometry();
    let head = stream_head::<S>(geometry, y.store())
        .map(|a| (a, Store::Streaming))
        .or_else(|| {
            let a = vector_head::<S>(geometry, y.store(), &p);
            a.filter(|_| Src::PURE).map(|a| (a, Store::Cached))
        });
    // Once per row, so the vectors below need no checks.
    assert!(n <= y.len() && n <= h.len() && p.bias.is_none_or(|b| n <= b.len()));
    // SAFETY (every unchecked load and store below): `write_pass!` calls the vector
    // body only for `i + W <= n`, and every array read or written holds at least `n`
    // (asserted above); it streams only from a cache-line boundary of `y` (`head`), so
    // at vector boundaries.
    let coef = (vs, vm, vr);
    match p.bias {
        Some(b) => write_pass!(
            n,
            w,
            head,
            LINE / geometry.1,
            quads,
            |t, span| beside.step(s, t, span),
            |i, store| unsafe {
                y.put(
                    s,
                    i,
                    value::<K, S>(s, &mut h, i, store, coef, weight, Some(b)),
                    store,
                )
            },
            |i, store| unsafe {
                let v = value::<K, S>(s, &mut h, i, store, coef, weight, Some(b));
                let u = value::<K, S>(s, &mut h, i + w, store, coef, weight, Some(b));
                y.put2(s, i, v, u, store);
            },
            y.leaves(),
            |part| y.leave(part),
            |j, st| y.set(
                s,
                j,
                s.mul_add1(c.center::<K>(h.one_to(s, j, st)), c.r * weight[j], b[j]),
                st
            ),
        ),
        None => write_pass!(
            n,
            w,
            head,
            LINE / geometry.1,
            quads,
            |t, span| beside.step(s, t, span),
            |i, store| unsafe {
                y.put(
                    s,
                    i,
                    value::<K, S>(s, &mut h, i, store, coef, weight, None),
                    store,
                )
            },
            |i, store| unsafe {
                let v = value::<K, S>(s, &mut h, i, store, coef, weight, None);
                let u = value::<K, S>(s, &mut h, i + w, store, coef, weight, None);
                y.put2(s, i, v, u, store);
            },
            y.leaves(),
            |part| y.leave(part),
            |j, st| y.set(s, j, c.center::<K>(h.one_to(s, j, st)) * (c.r * weight[j]), st),
        ),
    }
    y.flush();
}

/// Output vector `i..i + W` of the write pass: `center(h) · (r·w) + b`, or without `b`
/// `center(h) · (r·w)` (`(vs, vm, vr)`: shift, mean and `r` splatted). A function, not
/// a closure (see `write_pass!`); each arm of [`write()`] passes a constant `bias`
/// shape, so the choice folds away.
///
/// # Safety
/// `i + W` within `weight`, `bias` and what `h` reads (as `write_pass!`'s vectors).
#[inline(always)]
pub(super) unsafe fn value<K: Kind, S: Simd>(
    s: S,
    h: &mut impl Source<S>,
    i: usize,
    store: Store,
    (vs, vm, vr): (S::V, S::V, S::V),
    weight: &[S::E],
    bias: Option<&[S::E]>,
) -> S::V {
    // SAFETY: per the contract.
    unsafe {
        let d = center::<K, S>(s, h.vec_to(s, i, store), vs, vm);
        let rw = s.mul(vr, s.load_at(weight, i));
        match bias {
            Some(b) => s.mul_add(d, rw, s.load_at(b, i)),
            None => s.mul(d, rw),
        }
    }
}
