//! Bandwidth ceilings for the benchmarks (hidden, not part of the API): the simplest
//! kernels that move the same bytes as a norm, with plain stores and with non-temporal
//! ("streaming") stores, so every benchmark measures its kernels against the same
//! yardsticks in the same run.
//!
//! A plain store first reads the output's cache line from memory (a read for
//! ownership), so writing `n` bytes moves `2n` over the memory bus; a non-temporal store
//! writes the line without reading it. The norms stream outputs far larger than the
//! caches (`simd::Stores`), so out of cache they can beat the plain copy; the
//! `_streaming` ceilings, which store the same way on the same vector path, are the fair
//! yardstick there. All are f32 and run on the calling thread.

use crate::simd::{Path, Simd, SimdOp, run_on, stream_fence};

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
