//! The half-precision rows (`bf16`, `f16` storage, f32 arithmetic): the f32 bodies of
//! both norms, reading 16-bit rows and widening them in registers as they load
//! ([`Halfs`], and [`HalfAddInto`] for the fused residual add), and writing each output
//! rounded once into 16 bits as it stores ([`HalfOut`]). No conversion pass: a half row
//! costs the f32 kernel's passes over half the bytes. Where it measured faster
//! (LayerNorm rows of small calls, `simd::Widening`), a batch's first pass over each row
//! also leaves the widened row in an f32 scratch row ([`HalfsInto`]) that the later passes
//! (the write pass, and the centred pass where it runs) read instead of widening again.
//!
//! The values are the f32 kernel's: the widening is exact, so every pass sees the f32
//! row the f32 kernel would see, sums it in the same order, and computes each output
//! with the same operations; only the store rounds (to nearest, ties to even, as
//! [`narrow`](crate::simd::narrow)). So each output is bit-identical to the f32
//! kernel's output for the widened row, rounded once. Rows that need the rescue path
//! (overflow, underflow, non-finite) are widened into an f32 row for it (rare, `#[cold]`).
//!
//! The rows run on the shared pipelined bodies (`Rows`, `AddRows`) through [`Narrow`],
//! this file's `Io`. The vector conversions are the backend's ([`Simd::load_half`],
//! [`Simd::store_half_as`], for computed values, which lets the x86 backends skip the
//! bf16 NaN fix-up: every NaN these kernels compute keeps zero low 16 bits), run on
//! [`on_half`]'s backends.

use super::fused::AddRows;
use super::rescue::rescue;
use super::stats::Source;
use super::write::Sink;
use super::{Io, Kind, Out, RowParams, Rows};
use crate::convert::Half;
use crate::simd::{HeldHalf, Path, Simd, Store, on_half};

/// A half-precision row, widened to f32 as it is read.
#[derive(Clone, Copy)]
pub(super) struct Halfs<'a, H>(pub(super) &'a [H]);

impl<S: Simd<E = f32>, H: Half> Source<S> for Halfs<'_, H> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.0.len()
    }
    #[inline(always)]
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V {
        // SAFETY: `i + W <= len` per the contract.
        unsafe { s.load_half(self.0.as_ptr().add(i)) }
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> f32 {
        self.0[i].widen1()
    }
}

/// A half-precision row, widened to f32 as it is read and left widened in `buf` (the
/// first pass of a row whose later passes read `buf`: `Rows`, [`Io::tee`]).
pub(super) struct HalfsInto<'a, H> {
    x: &'a [H],
    buf: &'a mut [f32],
}

impl<S: Simd<E = f32>, H: Half> Source<S> for HalfsInto<'_, H> {
    const PURE: bool = false;
    #[inline(always)]
    fn len(&self) -> usize {
        self.x.len().min(self.buf.len())
    }
    #[inline(always)]
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V {
        // SAFETY: `i + W <= len`, the shorter of the two, per the contract.
        unsafe {
            let v = s.load_half(self.x.as_ptr().add(i));
            s.storep(self.buf.as_mut_ptr().add(i), v);
            v
        }
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> f32 {
        let v = self.x[i].widen1();
        self.buf[i] = v;
        v
    }
}

/// The residual sum `h = x + r` of half-precision rows: summed in f32, rounded once to
/// `H` and written to `h` as it is read; the pass sees the rounded `h` (widened again),
/// as the norm of a stored `h` would (`r = None`: `h` holds `r`).
pub(super) struct HalfAddInto<'a, H> {
    x: &'a [H],
    r: Option<&'a [H]>,
    h: &'a mut [H],
    /// `Streaming`: vectors the write pass streams go to `h` non-temporally too (set
    /// only where `write::h_store` allows).
    h_store: Store,
}

impl<S: Simd<E = f32>, H: Half> Source<S> for HalfAddInto<'_, H> {
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
        // SAFETY: `i + W <= len`, the shortest of x, r and h, per the contract;
        // `Streaming` only at a vector boundary of the output, which `h` shares when
        // `h_store` is `Streaming`. The rounded `h` is widened again from a copy of what
        // was stored (`round`), not read back from `h`, which a non-temporal store
        // would have sent to memory. `x + r` of widened 16-bit values: its NaNs have zero
        // low 16 bits (`COMPUTED`).
        unsafe {
            let hp = self.h.as_mut_ptr().add(i);
            let r = match self.r {
                Some(r) => s.load_half(r.as_ptr().add(i)),
                None => s.load_half(hp.cast_const()),
            };
            let v = s.add(s.load_half(self.x.as_ptr().add(i)), r);
            let store = match (store, self.h_store) {
                (Store::Streaming, Store::Streaming) => Store::Streaming,
                _ => Store::Cached,
            };
            if store == Store::Cached {
                s.store_half_as::<H, true>(hp, v, Store::Cached);
                return s.load_half(hp.cast_const());
            }
            let v = round::<S, H>(s, v);
            s.store_half_as::<H, true>(hp, v, Store::Streaming);
            v
        }
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> f32 {
        let r = self.r.map_or(self.h[i], |r| r[i]);
        let h = H::narrow1(self.x[i].widen1() + r.widen1());
        self.h[i] = h;
        h.widen1()
    }
}

/// The lanes of `v` rounded to `H` and widened again (through a copy on the stack); `v`
/// is a sum `x + r` of widened 16-bit values, so its NaNs have zero low 16 bits.
#[inline(always)]
fn round<S: Simd<E = f32>, H: Half>(s: S, v: S::V) -> S::V {
    let mut t = [H::default(); 16];
    debug_assert!(S::W <= t.len());
    // SAFETY: `t` holds 16 >= W values, written before they are read.
    unsafe {
        s.store_half_as::<H, true>(t.as_mut_ptr(), v, Store::Cached);
        s.load_half(t.as_ptr())
    }
}

/// The residual sum `h = x + r` rounded to `H`, computed again wherever it is read
/// (nothing written): the streaming fused rows write `h` only in their write pass.
#[derive(Clone, Copy)]
pub(super) struct HalfSum<'a, H> {
    x: &'a [H],
    r: &'a [H],
}

impl<S: Simd<E = f32>, H: Half> Source<S> for HalfSum<'_, H> {
    #[inline(always)]
    fn len(&self) -> usize {
        self.x.len().min(self.r.len())
    }
    #[inline(always)]
    unsafe fn vec(&mut self, s: S, i: usize) -> S::V {
        // SAFETY: `i + W <= len`, the shorter of the two, per the contract.
        let v = unsafe {
            s.add(
                s.load_half(self.x.as_ptr().add(i)),
                s.load_half(self.r.as_ptr().add(i)),
            )
        };
        round::<S, H>(s, v)
    }
    #[inline(always)]
    fn one(&mut self, i: usize) -> f32 {
        H::narrow1(self.x[i].widen1() + self.r[i].widen1()).widen1()
    }
}

/// A half-precision output row: each f32 output rounded once as it is stored. The
/// scalar elements of a streamed row (its partial lines, where no [`Seam`](super::Seam)
/// takes them: a row alone, the first row's head and the last row's tail of a run) go
/// out in pairs ([`HeldHalf`]); [`Sink::flush`] stores a lone one.
struct HalfOut<'a, H> {
    out: Out<'a, H>,
    held: HeldHalf<H>,
}

impl<S: Simd<E = f32>, H: Half> Sink<S> for HalfOut<'_, H> {
    const PAIRS: bool = true;
    #[inline(always)]
    fn len(&self) -> usize {
        self.out.y.len()
    }
    #[inline(always)]
    fn store(&self) -> Store {
        self.out.store
    }
    #[inline(always)]
    fn geometry(&self) -> (usize, usize) {
        (self.out.y.as_ptr() as usize, std::mem::size_of::<H>())
    }
    #[inline(always)]
    unsafe fn put(&mut self, s: S, i: usize, v: S::V, store: Store) {
        // SAFETY: `i + W <= len` per the contract; with `Streaming`, element `i` is a
        // multiple of `W` elements from a cache-line boundary, so aligned to `2·W` bytes.
        // `v` is computed (`COMPUTED`): `center(h) · (r·w) + b` from widened 16-bit
        // values (`h`, and `w`, `b` widened once per call) and finite statistics (a row
        // whose variance is not finite goes to the rescue path), so each NaN lane is the
        // default NaN or a widened one, with zero low 16 bits.
        unsafe { s.store_half_as::<H, true>(self.out.y.as_mut_ptr().add(i), v, store) }
    }
    #[inline(always)]
    unsafe fn put2(&mut self, s: S, i: usize, a: S::V, b: S::V, store: Store) {
        // SAFETY: `i + 2·W <= len` per the contract; with `Streaming`, element `i` is a
        // multiple of `2·W` elements from a cache-line boundary, so aligned to `4·W`
        // bytes. Both computed, as in `put`.
        unsafe { s.store_half2_as::<H, true>(self.out.y.as_mut_ptr().add(i), a, b, store) }
    }
    #[inline(always)]
    fn leaves(&self) -> [bool; 2] {
        self.out.seam.as_ref().map_or([false; 2], |m| m.takes())
    }
    #[inline(always)]
    fn leave(&mut self, part: usize) {
        if let Some(m) = self.out.seam.as_deref_mut() {
            m.leave(part);
        }
    }
    #[inline(always)]
    fn set(&mut self, s: S, j: usize, v: f32, store: Store) {
        self.held
            .put(s, self.out.y, j, H::narrow1(v), store == Store::Streaming);
    }
    #[inline(always)]
    fn flush(&mut self) {
        self.held.flush(self.out.y);
    }
}

/// Half-precision rows for the shared bodies (`Rows`, `finish`): read through [`Halfs`],
/// written through [`HalfOut`], rescued widened ([`rescue_half`]).
struct Narrow;

impl<H: Half> Io<H, f32> for Narrow {
    #[inline(always)]
    fn src<S: Simd<E = f32>>(x: &[H]) -> impl Source<S> {
        Halfs(x)
    }
    #[inline(always)]
    fn sink<S: Simd<E = f32>>(out: Out<'_, H>) -> impl Sink<S> {
        HalfOut {
            out,
            held: HeldHalf::NONE,
        }
    }
    #[inline(always)]
    fn tee<'a, S: Simd<E = f32>>(x: &'a [H], buf: &'a mut [f32]) -> impl Source<S> {
        HalfsInto { x, buf }
    }
    #[inline(always)]
    fn at(x: &[H], i: usize) -> f32 {
        x[i].widen1()
    }
    #[inline(always)]
    fn rescue<K: Kind>(x: &[H], p: RowParams<'_, f32>, y: &mut [H]) -> (f32, f32) {
        rescue_half::<K, H>(x, p, y)
    }
    #[inline(always)]
    fn add_into<'a, S: Simd<E = f32>>(
        x: &'a [H],
        r: Option<&'a [H]>,
        h: &'a mut [H],
        h_store: Store,
    ) -> impl Source<S> + 'a {
        HalfAddInto { x, r, h, h_store }
    }
    #[inline(always)]
    fn sum<'a, S: Simd<E = f32>>(x: &'a [H], r: &'a [H]) -> impl Source<S> + 'a {
        HalfSum { x, r }
    }
    #[inline(always)]
    fn add_at(x: &[H], r: &[H], i: usize) -> f32 {
        H::narrow1(x[i].widen1() + r[i].widen1()).widen1()
    }
}

/// The rescue path for a half row: widened into an f32 row, rescued, rounded once.
#[cold]
#[inline(never)]
fn rescue_half<K: Kind, H: Half>(h: &[H], p: RowParams<'_, f32>, y: &mut [H]) -> (f32, f32) {
    let hs: Vec<f32> = h.iter().map(|v| v.widen1()).collect();
    let mut ys = vec![0.0f32; y.len()];
    let stats = rescue::<K, f32>(&hs, p, &mut ys);
    for (y, v) in y.iter_mut().zip(ys) {
        *y = H::narrow1(v);
    }
    stats
}

/// Whole half-precision rows `x` of norm `K` on `path` into `out`, pipelined on the
/// f32 rows' body (`Rows`); each row's f32 statistics go to `stats` where given.
/// Returns the last row's f32 statistics (as `norm_rows`).
#[inline(always)]
pub(crate) fn half_rows<K: Kind, H: Half>(
    path: Path,
    x: &[H],
    p: RowParams<'_, f32>,
    out: Out<'_, H>,
    stats: [Option<&mut [f32]>; 2],
) -> (f32, f32) {
    let kind = std::marker::PhantomData::<(K, Narrow)>;
    on_half(
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

/// Fused half-precision rows: `h = x + r` rounded, then norm `K` of `h`, on `path`
/// (`r = None`: the residual is `h`, in place), pipelined on the f32 fused rows' body
/// (`AddRows`).
#[inline(always)]
pub(crate) fn half_add_rows<K: Kind, H: Half>(
    path: Path,
    (x, r): (&[H], Option<&[H]>),
    h: &mut [H],
    p: RowParams<'_, f32>,
    out: Out<'_, H>,
) {
    let kind = std::marker::PhantomData::<(K, Narrow)>;
    on_half(
        path,
        AddRows {
            x,
            r,
            h,
            p,
            out,
            kind,
        },
    );
}
