//! Bandwidth ceilings for the benchmarks (hidden, not part of the API): the simplest
//! kernels that move the same bytes as a norm, with plain stores and with non-temporal
//! ("streaming") stores, so every benchmark measures its kernels against the same
//! yardsticks in the same run; and the bare LayerNorm ([`layer_norm_bare`]), the
//! kernels' arithmetic with nothing else, the yardstick of the algorithm itself.
//!
//! A plain store first reads the output's cache line from memory (a read for
//! ownership), so writing `n` bytes moves `2n` over the memory bus; a non-temporal store
//! writes the line without reading it. The norms stream outputs far larger than the
//! caches (`simd::Stores`), so out of cache they can beat the plain copy; the
//! `_streaming` ceilings, which store the same way on the same vector path, are the fair
//! yardstick there. All are f32 and run on the calling thread.

use crate::simd::{Path, Simd, SimdOp, Store, on_half, run_on, stream_fence};
use crate::{Element, bf16};

/// `y = c·x`: one array read, one written (the forward ceiling), plain stores.
///
/// # Example
/// ```
/// let (x, mut y) = ([1.0f32, 2.0], [0.0f32; 2]);
/// norm_core::ceiling::scale(&x, &mut y, 2.0);
/// assert_eq!(y, [2.0, 4.0]);
/// ```
pub fn scale(x: &[f32], y: &mut [f32], c: f32) {
    for (o, &v) in y.iter_mut().zip(x) {
        *o = v * c;
    }
}

/// [`scale`] with non-temporal stores, on the detected vector path.
///
/// # Example
/// ```
/// let x: Vec<f32> = (0..77).map(|i| i as f32).collect();
/// let mut y = vec![0.0f32; 77];
/// norm_core::ceiling::scale_streaming(&x[1..], &mut y[1..], 2.0);
/// assert!(y[1..].iter().zip(&x[1..]).all(|(y, x)| *y == 2.0 * x));
/// ```
pub fn scale_streaming(x: &[f32], y: &mut [f32], c: f32) {
    streaming([x], [y], Scale(c));
}

/// `z = a + c·b`: two arrays read, one written (the backward ceiling), plain stores.
///
/// # Example
/// ```
/// let mut z = [0.0f32; 2];
/// norm_core::ceiling::axpy(&[1.0, 2.0], &[3.0, 4.0], &mut z, 0.5);
/// assert_eq!(z, [2.5, 4.0]);
/// ```
pub fn axpy(a: &[f32], b: &[f32], z: &mut [f32], c: f32) {
    for ((o, &x), &y) in z.iter_mut().zip(a).zip(b) {
        *o = x + c * y;
    }
}

/// [`axpy`] with non-temporal stores, on the detected vector path.
///
/// # Example
/// ```
/// let a: Vec<f32> = (0..77).map(|i| i as f32).collect();
/// let mut z = vec![0.0f32; 77];
/// norm_core::ceiling::axpy_streaming(&a, &a, &mut z[..], 0.5);
/// assert!(z.iter().zip(&a).all(|(z, a)| *z == 1.5 * a));
/// ```
pub fn axpy_streaming(a: &[f32], b: &[f32], z: &mut [f32], c: f32) {
    streaming([a, b], [z], Axpy(c));
}

/// `h = x + r, y = c·r`: two arrays read, two written (the fused add + norm ceiling),
/// plain stores.
///
/// # Example
/// ```
/// let (mut h, mut y) = ([0.0f32; 2], [0.0f32; 2]);
/// norm_core::ceiling::add_scale(&[1.0, 2.0], &[3.0, 4.0], &mut h, &mut y, 2.0);
/// assert_eq!((h, y), ([4.0, 6.0], [6.0, 8.0]));
/// ```
pub fn add_scale(x: &[f32], r: &[f32], h: &mut [f32], y: &mut [f32], c: f32) {
    for (((h, y), &a), &b) in h.iter_mut().zip(y.iter_mut()).zip(x).zip(r) {
        *h = a + b;
        *y = c * b;
    }
}

/// [`add_scale`] with non-temporal stores, on the detected vector path.
///
/// # Example
/// ```
/// let x: Vec<f32> = (0..77).map(|i| i as f32).collect();
/// let (mut h, mut y) = (vec![0.0f32; 77], vec![0.0f32; 77]);
/// norm_core::ceiling::add_scale_streaming(&x, &x, &mut h, &mut y, 3.0);
/// assert!(h.iter().zip(&y).zip(&x).all(|((h, y), x)| *h == 2.0 * x && *y == 3.0 * x));
/// ```
pub fn add_scale_streaming(x: &[f32], r: &[f32], h: &mut [f32], y: &mut [f32], c: f32) {
    streaming([x, r], [h, y], AddScale(c));
}

/// A copy of 16-bit elements (`bf16`/`f16` bytes): `y = x`, as `copy_from_slice` (the
/// C library's `memcpy`, which picks its own stores; for large copies glibc's are
/// non-temporal). The ceiling of the half-precision forward.
///
/// # Example
/// ```
/// let mut y = [0u16; 3];
/// norm_core::ceiling::copy_u16(&[1, 2, 3], &mut y);
/// assert_eq!(y, [1, 2, 3]);
/// ```
pub fn copy_u16(x: &[u16], y: &mut [u16]) {
    let n = x.len().min(y.len());
    y[..n].copy_from_slice(&x[..n]);
}

/// [`copy_u16`] with non-temporal stores, on the detected vector path (the bytes moved
/// as f32 lanes, no arithmetic; outputs not at the same offset from an f32 boundary as
/// the input go through [`copy_u16`]).
///
/// # Example
/// ```
/// let x: Vec<u16> = (0..77).collect();
/// let mut y = vec![0u16; 77];
/// norm_core::ceiling::copy_u16_streaming(&x[1..], &mut y[1..]);
/// assert_eq!(x[1..], y[1..]);
/// ```
pub fn copy_u16_streaming(x: &[u16], y: &mut [u16]) {
    let n = x.len().min(y.len());
    let (x, y) = (&x[..n], &mut y[..n]);
    // SAFETY: every bit pattern is a valid f32, and `align_to` keeps the alignment.
    let (xa, xm, xb) = unsafe { x.align_to::<f32>() };
    // SAFETY: as above.
    let (ya, ym, yb) = unsafe { y.align_to_mut::<f32>() };
    if xa.len() != ya.len() || xm.len() != ym.len() {
        return copy_u16(x, y);
    }
    ya.copy_from_slice(xa);
    yb.copy_from_slice(xb);
    streaming([xm], [ym], Ident);
}

/// The identity: the bytes of the lanes, moved as they are.
#[derive(Clone, Copy)]
struct Ident;

impl Lanes<1, 1> for Ident {
    #[inline(always)]
    fn vec<S: Simd<E = f32>>(self, _s: S, v: [S::V; 1]) -> [S::V; 1] {
        v
    }
    #[inline(always)]
    fn one(self, v: [f32; 1]) -> [f32; 1] {
        v
    }
}

/// An element-wise map from `I` inputs to `O` outputs, as vectors and as scalars.
trait Lanes<const I: usize, const O: usize>: Copy {
    fn vec<S: Simd<E = f32>>(self, s: S, v: [S::V; I]) -> [S::V; O];
    fn one(self, v: [f32; I]) -> [f32; O];
}

#[derive(Clone, Copy)]
struct Scale(f32);

impl Lanes<1, 1> for Scale {
    #[inline(always)]
    fn vec<S: Simd<E = f32>>(self, s: S, [x]: [S::V; 1]) -> [S::V; 1] {
        [s.mul(x, s.splat(self.0))]
    }
    #[inline(always)]
    fn one(self, [x]: [f32; 1]) -> [f32; 1] {
        [x * self.0]
    }
}

#[derive(Clone, Copy)]
struct Axpy(f32);

impl Lanes<2, 1> for Axpy {
    #[inline(always)]
    fn vec<S: Simd<E = f32>>(self, s: S, [a, b]: [S::V; 2]) -> [S::V; 1] {
        [s.add(a, s.mul(s.splat(self.0), b))]
    }
    #[inline(always)]
    fn one(self, [a, b]: [f32; 2]) -> [f32; 1] {
        [a + self.0 * b]
    }
}

#[derive(Clone, Copy)]
struct AddScale(f32);

impl Lanes<2, 2> for AddScale {
    #[inline(always)]
    fn vec<S: Simd<E = f32>>(self, s: S, [x, r]: [S::V; 2]) -> [S::V; 2] {
        [s.add(x, r), s.mul(s.splat(self.0), r)]
    }
    #[inline(always)]
    fn one(self, [x, r]: [f32; 2]) -> [f32; 2] {
        [x + r, self.0 * r]
    }
}

/// The streaming map as an op for [`run_on`].
struct Streaming<'a, L, const I: usize, const O: usize> {
    ins: [&'a [f32]; I],
    outs: [&'a mut [f32]; O],
    lanes: L,
}

impl<L: Lanes<I, O>, const I: usize, const O: usize> SimdOp<f32> for Streaming<'_, L, I, O> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd<E = f32>>(self, s: S) {
        let Streaming { ins, mut outs, lanes } = self;
        let n = ins
            .iter()
            .map(|v| v.len())
            .chain(outs.iter().map(|v| v.len()))
            .min()
            .unwrap_or(0);
        let vbytes = S::W * 4;
        let mis = |p: *const f32| p as usize % vbytes;
        // Elements before the outputs' first vector boundary (when they share one; else
        // everything goes through plain stores below).
        let head = match outs.first() {
            Some(o) if outs.iter().all(|v| mis(v.as_ptr()) == mis(o.as_ptr())) => {
                ((vbytes - mis(o.as_ptr())) % vbytes / 4).min(n)
            }
            _ => n,
        };
        let body = head + (n - head) / S::W * S::W;
        let one = |i: usize, outs: &mut [&mut [f32]; O]| {
            for (o, v) in outs.iter_mut().zip(lanes.one(std::array::from_fn(|k| ins[k][i]))) {
                o[i] = v;
            }
        };
        for i in (0..head).chain(body..n) {
            one(i, &mut outs);
        }
        // Plain loops, no closures, inside the vector loop: a closure is compiled without
        // the vector features of the `#[target_feature]` entry point (see `kernels/write.rs`).
        let mut i = head;
        while i < body {
            let mut v = [s.splat(0.0); I];
            for (k, v) in v.iter_mut().enumerate() {
                // SAFETY: i + W <= body <= n, the length of every input.
                *v = unsafe { s.load_at(ins[k], i) };
            }
            for (o, v) in outs.iter_mut().zip(lanes.vec(s, v)) {
                // SAFETY: i + W <= n, the length of every output; the outputs are aligned
                // to the vector size at `head` and so at every `i`.
                unsafe { s.stream_at(o, i, v) };
            }
            i += S::W;
        }
        stream_fence();
    }
}

/// Runs `lanes` over the arrays with non-temporal stores on the detected path.
fn streaming<L: Lanes<I, O>, const I: usize, const O: usize>(
    ins: [&[f32]; I],
    outs: [&mut [f32]; O],
    lanes: L,
) {
    run_on(Path::detected(), Streaming { ins, outs, lanes });
}

/// The bare LayerNorm forward, a yardstick for the real kernels (not a norm to use):
/// the arithmetic the norms' vector kernels do per element and nothing else, so that a
/// benchmark can tell the cost of the algorithm on a CPU from the cost of everything
/// the kernels add for exactness and safety. Per row of `d = w.len()` elements: one
/// pass of the shifted sums `Σ (x − s)`, `Σ (x − s)²` (shift `s = x[0]`, four vector
/// accumulators), then the write pass `y = ((x − s) − m) · (r·w) + b` (two subtractions,
/// one multiply, one fused multiply-add, as the kernels), with the next row's sums run
/// beside it (pipelined) and the rows 4 KiB ahead prefetched into L1, plain stores. Left
/// out: the blocked totals, the refusal of a one-pass variance for a centred second
/// pass, the rescue of rows whose sums overflow, statistics out, non-temporal and edge
/// stores, length checks beyond whole rows. So it is fast and usually close, not
/// accurate: rows with a large offset or spread beyond f32's sums can come out wrong.
/// Runs whole rows (`min(x.len(), y.len()) / d` of them) on `path`; nothing if
/// `w` is empty or `b` is shorter than `w`.
///
/// # Example
/// ```
/// use norm_core::simd::Path;
/// let (x, mut y) = ([1.0f32, 2.0, 3.0, 4.0], [0.0f32; 4]);
/// norm_core::ceiling::layer_norm_bare(Path::detected(), &x, &mut y, &[1.0; 4], &[0.0; 4], 0.0);
/// let want = [-1.3416408f32, -0.4472136, 0.4472136, 1.3416408];
/// assert!(y.iter().zip(want).all(|(y, w)| (y - w).abs() < 1e-5));
/// ```
pub fn layer_norm_bare(path: Path, x: &[f32], y: &mut [f32], w: &[f32], b: &[f32], eps: f32) {
    run_on(path, Bare { x, y, w, b, eps });
}

/// [`layer_norm_bare`] over bf16 rows, weight and bias, as the half-precision kernels
/// run them: the weight and bias widened to f32 once per call, the rows widened in
/// registers as they are read and each output rounded once as it is stored (the same
/// vector conversions, on the same backends), f32 arithmetic.
///
/// # Example
/// ```
/// use norm_core::{bf16, simd::Path};
/// let x: Vec<bf16> = [1.0f32, 2.0, 3.0, 4.0].map(bf16::from_f32).to_vec();
/// let (w, b) = ([bf16::ONE; 4], [bf16::ZERO; 4]);
/// let mut y = vec![bf16::ZERO; 4];
/// norm_core::ceiling::layer_norm_bare_bf16(Path::detected(), &x, &mut y, &w, &b, 0.0);
/// assert_eq!(y[3], bf16::from_f32(1.3416408));
/// ```
pub fn layer_norm_bare_bf16(path: Path, x: &[bf16], y: &mut [bf16], w: &[bf16], b: &[bf16], eps: f32) {
    let w: Vec<f32> = w.iter().map(|v| v.to_acc()).collect();
    let b: Vec<f32> = b.iter().map(|v| v.to_acc()).collect();
    on_half(
        path,
        Bare {
            x,
            y,
            w: &w,
            b: &b,
            eps,
        },
    );
}

/// What [`Bare`] reads and writes: f32 rows, or 16-bit rows converted in registers
/// (one element at a time as [`Element`] converts them).
trait BareElem: Element<Acc = f32> {
    /// `W` elements from `p`, as f32 lanes.
    ///
    /// # Safety
    /// `p..p + W` valid for reads.
    unsafe fn load<S: Simd<E = f32>>(s: S, p: *const Self) -> S::V;
    /// `a` to `p..p + W`, `b` to `p + W..p + 2·W`, plain stores.
    ///
    /// # Safety
    /// `p..p + 2·W` valid for writes; every NaN lane with zero low 16 bits (16-bit rows).
    unsafe fn store2<S: Simd<E = f32>>(s: S, p: *mut Self, a: S::V, b: S::V);
}

impl BareElem for f32 {
    #[inline(always)]
    unsafe fn load<S: Simd<E = f32>>(s: S, p: *const f32) -> S::V {
        // SAFETY: the caller's contract.
        unsafe { s.loadp(p) }
    }
    #[inline(always)]
    unsafe fn store2<S: Simd<E = f32>>(s: S, p: *mut f32, a: S::V, b: S::V) {
        // SAFETY: the caller's contract.
        unsafe {
            s.storep(p, a);
            s.storep(p.add(S::W), b);
        }
    }
}

impl BareElem for bf16 {
    #[inline(always)]
    unsafe fn load<S: Simd<E = f32>>(s: S, p: *const bf16) -> S::V {
        // SAFETY: the caller's contract.
        unsafe { s.load_half(p) }
    }
    #[inline(always)]
    unsafe fn store2<S: Simd<E = f32>>(s: S, p: *mut bf16, a: S::V, b: S::V) {
        // SAFETY: the caller's contract (values computed from widened 16-bit rows,
        // weights and biases and f32 statistics, so their NaNs have zero low 16 bits:
        // `COMPUTED`).
        unsafe { s.store_half2_as::<bf16, true>(p, a, b, Store::Cached) }
    }
}

/// The bare LayerNorm as an op for [`run_on`] / [`on_half`].
struct Bare<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    w: &'a [f32],
    b: &'a [f32],
    eps: f32,
}

/// Vectors per step of [`Bare`]'s loops.
const BARE_STEP: usize = 4;

/// How far ahead of the row being written [`Bare`] prefetches.
const BARE_AHEAD_BYTES: usize = 4096;

/// The shifted sums `[Σ (x − s), Σ (x − s)²]` of the group of [`BARE_STEP`] vectors at
/// `p`, added into `acc`.
///
/// # Safety
/// `p..p + BARE_STEP·W` valid for reads.
#[inline(always)]
unsafe fn bare_sums<S: Simd<E = f32>, T: BareElem>(
    s: S,
    p: *const T,
    shift: S::V,
    acc: &mut [[S::V; BARE_STEP]; 2],
) {
    let [sums, squares] = acc;
    for (k, (a, q)) in sums.iter_mut().zip(squares.iter_mut()).enumerate() {
        // SAFETY: the caller's contract.
        let v = s.sub(unsafe { T::load(s, p.add(k * S::W)) }, shift);
        *a = s.add(*a, v);
        *q = s.mul_add(v, v, *q);
    }
}

/// A row's `(shift, mean − shift, 1/std)` from its sums (the scalar tail `from..d`
/// added here).
#[inline(always)]
fn bare_stats<S: Simd<E = f32>, T: BareElem>(
    s: S,
    row: &[T],
    from: usize,
    shift: f32,
    acc: [[S::V; BARE_STEP]; 2],
    eps: f32,
) -> (f32, f32, f32) {
    let fold = |a: [S::V; BARE_STEP]| s.sum(s.add(s.add(a[0], a[1]), s.add(a[2], a[3])));
    let (mut sum, mut sq) = (fold(acc[0]), fold(acc[1]));
    for v in &row[from..] {
        let v = v.to_acc() - shift;
        sum += v;
        sq += v * v;
    }
    let n = row.len() as f32;
    let m = sum / n;
    let var = (sq / n - m * m).max(0.0);
    (shift, m, 1.0 / (var + eps).sqrt())
}

impl<T: BareElem> SimdOp<f32> for Bare<'_, T> {
    type Out = ();
    #[inline(always)]
    fn run<S: Simd<E = f32>>(self, s: S) {
        let Bare { x, y, w, b, eps } = self;
        let d = w.len();
        if d == 0 || b.len() < d {
            return;
        }
        let rows = x.len().min(y.len()) / d;
        let step = BARE_STEP * S::W;
        let body = d / step * step;
        let zero = [[s.splat(0.0); BARE_STEP]; 2];
        // The first row's sums; then each write pass carries the next row's.
        let mut stats = (0.0, 0.0, 0.0);
        if rows > 0 {
            let shift = x[0].to_acc();
            let mut acc = zero;
            let mut i = 0;
            while i < body {
                // SAFETY: i + step <= body <= d, within the first row.
                unsafe { bare_sums(s, x.as_ptr().add(i), s.splat(shift), &mut acc) };
                i += step;
            }
            stats = bare_stats(s, &x[..d], body, shift, acc, eps);
        }
        let ahead = BARE_AHEAD_BYTES / std::mem::size_of::<T>();
        for r in 0..rows {
            let (row, out) = (&x[r * d..(r + 1) * d], &mut y[r * d..(r + 1) * d]);
            let (shift, m, rs) = stats;
            let (sv, mv, rv) = (s.splat(shift), s.splat(m), s.splat(rs));
            let next = x.get((r + 1) * d..(r + 2) * d).unwrap_or(row);
            let nshift = next[0].to_acc();
            let nsv = s.splat(nshift);
            let mut acc = zero;
            let mut i = 0;
            // Plain loops, no closures, inside the vector loop: a closure is compiled
            // without the vector features of the `#[target_feature]` entry point.
            while i < body {
                let mut o = [s.splat(0.0); BARE_STEP];
                for (k, o) in o.iter_mut().enumerate() {
                    let j = i + k * S::W;
                    // SAFETY: j + W <= body <= d: within the row, its weight and bias.
                    unsafe {
                        let v = s.sub(s.sub(T::load(s, row.as_ptr().add(j)), sv), mv);
                        let rw = s.mul(rv, s.loadp(w.as_ptr().add(j)));
                        *o = s.mul_add(v, rw, s.loadp(b.as_ptr().add(j)));
                    }
                }
                for k in (0..BARE_STEP).step_by(2) {
                    // SAFETY: i + (k + 2)·W <= i + step <= d: within the output row;
                    // NaN lanes come from arithmetic on widened values (`store2`).
                    unsafe { T::store2(s, out.as_mut_ptr().add(i + k * S::W), o[k], o[k + 1]) };
                }
                // SAFETY: within the next row (or this one again, for the last row).
                unsafe { bare_sums(s, next.as_ptr().add(i), nsv, &mut acc) };
                let at = row.as_ptr().wrapping_add(i + ahead).cast::<u8>();
                let mut off = 0;
                while off < step * std::mem::size_of::<T>() {
                    s.prefetch(at.wrapping_add(off).cast::<f32>());
                    off += 64;
                }
                i += step;
            }
            for j in body..d {
                let v = (row[j].to_acc() - shift) - m;
                out[j] = T::from_acc(s.mul_add1(v, rs * w[j], b[j]));
            }
            stats = bare_stats(s, next, body, nshift, acc, eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KernelPath;
    use crate::reference::layer_norm_reference;

    /// Rows of order 1 (a multiplicative hash), weight and bias not all 1 and 0.
    fn rows(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let v = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8;
                (v as f32 / (1u32 << 24) as f32) * 4.0 - 2.0
            })
            .collect()
    }

    /// The bare LayerNorm computes LayerNorm (to f32's and bf16's rounding, for rows of
    /// order 1) on every path, for row lengths with and without vector bodies and scalar
    /// tails, writes whole rows only, and writes nothing for an empty weight: so the
    /// yardstick does the work it stands for.
    #[test]
    fn bare_layer_norm_computes_layer_norm_on_every_path() {
        for &kp in &KernelPath::available() {
            let path = Path::new(kp).expect("available");
            for d in [1usize, 5, 64, 100, 768] {
                // Seven whole rows and the longest part of another.
                let (rows_n, extra) = (7, d - 1);
                let x = rows(rows_n * d + extra, 1);
                let w: Vec<f32> = rows(d, 2).iter().map(|v| 1.0 + v / 4.0).collect();
                let b = rows(d, 3);
                let (want, _, _) = layer_norm_reference(&x[..rows_n * d], &w, Some(&b), 1e-5).expect("valid");
                let mut y = vec![9.0f32; rows_n * d + extra];
                layer_norm_bare(path, &x, &mut y, &w, &b, 1e-5);
                for (j, (&y, &r)) in y.iter().zip(&want).enumerate() {
                    assert!((f64::from(y) - r).abs() < 1e-4, "{kp:?} d={d} [{j}]: {y} vs {r}");
                }
                assert!(
                    y[rows_n * d..].iter().all(|&v| v == 9.0),
                    "{kp:?} d={d}: beyond whole rows"
                );
                let xb: Vec<bf16> = x.iter().map(|&v| bf16::from_f32(v)).collect();
                let xw: Vec<f32> = xb.iter().map(|v| v.to_f32()).collect();
                let mut yb = vec![bf16::from_f32(9.0); rows_n * d + extra];
                let (wb, bb): (Vec<bf16>, Vec<bf16>) = (
                    w.iter().map(|&v| bf16::from_f32(v)).collect(),
                    b.iter().map(|&v| bf16::from_f32(v)).collect(),
                );
                let (ww, bw): (Vec<f32>, Vec<f32>) = (
                    wb.iter().map(|v| v.to_f32()).collect(),
                    bb.iter().map(|v| v.to_f32()).collect(),
                );
                layer_norm_bare_bf16(path, &xb, &mut yb, &wb, &bb, 1e-5);
                let (want, _, _) =
                    layer_norm_reference(&xw[..rows_n * d], &ww, Some(&bw), 1e-5).expect("valid");
                for (j, (y, &r)) in yb.iter().zip(&want).enumerate() {
                    let (y, r) = (f64::from(y.to_f32()), r);
                    assert!(
                        (y - r).abs() <= r.abs() / 128.0 + 1e-4,
                        "{kp:?} bf16 d={d} [{j}]: {y} vs {r}"
                    );
                }
                assert!(yb[rows_n * d..].iter().all(|v| v.to_f32() == 9.0));
            }
            let mut y = [9.0f32; 4];
            layer_norm_bare(path, &[1.0; 4], &mut y, &[], &[], 1e-5);
            assert_eq!(y, [9.0; 4], "{kp:?}: empty weight writes nothing");
        }
    }
}
