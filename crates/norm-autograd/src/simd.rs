//! Runtime CPU-feature dispatch for the backward row kernels: a small vector abstraction
//! ([`Simd`]) the generic kernel bodies in `kernels.rs` are written against, its backends
//! (portable arrays everywhere; AVX2+FMA and AVX-512F on x86-64), and [`Path`], a
//! [`KernelPath`] this CPU has been checked to support.
//!
//! The path names and CPU detection are `norm-core`'s public [`KernelPath`]; the vector
//! trait and backends are a minimal copy of `norm-core`'s private ones (that crate keeps
//! them crate-private), so `norm-core` needs no change. Nothing here knows about norms.

use norm_core::{Float, KernelPath};

/// A kernel path this CPU supports (checked on construction), for the row kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Path(KernelPath);

impl Path {
    /// The widest path this CPU supports (detected once by `norm-core`, cached).
    #[inline]
    pub(crate) fn detected() -> Self {
        Path(KernelPath::detected())
    }

    /// `path`, if this CPU supports it.
    pub(crate) fn new(path: KernelPath) -> Option<Self> {
        path.is_available().then_some(Path(path))
    }

    /// The path.
    pub(crate) fn get(self) -> KernelPath {
        self.0
    }
}

/// A vector backend for one element type. A value of the implementing type is a token
/// proving the CPU supports the backend's instructions, so the methods are safe.
///
/// Loads and stores take slices of at least [`W`](Simd::W) elements (checked; the checks
/// fold away inside the kernels' exact-chunk loops).
pub(crate) trait Simd: Copy {
    /// Element type.
    type E: Float;
    /// A vector of `W` elements.
    type V: Copy;
    /// Lanes per vector.
    const W: usize;
    fn splat(self, v: Self::E) -> Self::V;
    fn store(self, s: &mut [Self::E], v: Self::V);
    /// Loads `W` elements from `s[i..]` without a bounds check.
    ///
    /// # Safety
    /// `i + W <= s.len()`.
    #[inline(always)]
    unsafe fn load_at(self, s: &[Self::E], i: usize) -> Self::V {
        debug_assert!(i + Self::W <= s.len());
        // SAFETY: in bounds per the contract.
        unsafe { self.loadp(s.as_ptr().add(i)) }
    }
    /// Stores `W` elements to `s[i..]` without a bounds check.
    ///
    /// # Safety
    /// `i + W <= s.len()`.
    #[inline(always)]
    unsafe fn store_at(self, s: &mut [Self::E], i: usize, v: Self::V) {
        debug_assert!(i + Self::W <= s.len());
        // SAFETY: in bounds per the contract.
        unsafe { self.storep(s.as_mut_ptr().add(i), v) }
    }
    /// Loads `W` elements from `p`.
    ///
    /// # Safety
    /// `p..p + W` must be valid for reads.
    unsafe fn loadp(self, p: *const Self::E) -> Self::V;
    /// Stores `W` elements to `p`.
    ///
    /// # Safety
    /// `p..p + W` must be valid for writes.
    unsafe fn storep(self, p: *mut Self::E, v: Self::V);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`, fused where the backend has FMA.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a·b + c` on scalars, rounded like [`mul_add`](Simd::mul_add) (fused where the
    /// backend fuses), so a row's scalar tail matches its vector body.
    fn mul_add1(self, a: Self::E, b: Self::E, c: Self::E) -> Self::E;
    /// Sum of the lanes, in a fixed (pairwise) order.
    fn sum(self, v: Self::V) -> Self::E;
    /// Whether [`combine`](Simd::combine) is one cheap shuffle, so that a stream of
    /// unaligned vectors is better read as aligned ones and recombined.
    const SHIFT: bool;
    /// What [`combine`](Simd::combine) needs to know about the shift `m`.
    type Shift: Copy;
    /// Prepares a shift of `m < W` lanes.
    fn shift(self, m: usize) -> Self::Shift;
    /// Lanes `m..W` of `a` followed by lanes `0..m` of `b`.
    fn combine(self, a: Self::V, b: Self::V, m: Self::Shift) -> Self::V;
    /// A hint to bring the cache line at `p` into L1; `p` need not be valid (prefetches
    /// never fault). No effect on results.
    #[inline(always)]
    fn prefetch(self, p: *const Self::E) {
        let _ = p;
    }
}

/// An operation over rows that runs with any backend for its element type; the unit of
/// work handed to [`run`], which picks the backend for a [`Path`].
pub(crate) trait RowsOp<F: Float> {
    /// Runs the operation with backend `s`.
    fn run<S: Simd<E = F>>(self, s: S);
}

/// Lanes of the portable backend (two SSE registers of f32).
const PW: usize = 8;

/// The portable backend: `[F; 8]` arrays, element-wise, no FMA; the compiler vectorizes
/// it for the baseline target.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Portable<F>(std::marker::PhantomData<F>);

impl<F: Float> Portable<F> {
    pub(crate) fn new() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<F: Float> Simd for Portable<F> {
    type E = F;
    type V = [F; PW];
    const W: usize = PW;
    #[inline(always)]
    fn splat(self, v: F) -> [F; PW] {
        [v; PW]
    }
    #[inline(always)]
    fn store(self, s: &mut [F], v: [F; PW]) {
        s[..PW].copy_from_slice(&v);
    }
    #[inline(always)]
    unsafe fn loadp(self, p: *const F) -> [F; PW] {
        // SAFETY: valid for `PW` reads per the contract; no alignment needed.
        unsafe { p.cast::<[F; PW]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn storep(self, p: *mut F, v: [F; PW]) {
        // SAFETY: valid for `PW` writes per the contract; no alignment needed.
        unsafe { p.cast::<[F; PW]>().write_unaligned(v) }
    }
    #[inline(always)]
    fn add(self, a: [F; PW], b: [F; PW]) -> [F; PW] {
        std::array::from_fn(|i| a[i] + b[i])
    }
    #[inline(always)]
    fn sub(self, a: [F; PW], b: [F; PW]) -> [F; PW] {
        std::array::from_fn(|i| a[i] - b[i])
    }
    #[inline(always)]
    fn mul(self, a: [F; PW], b: [F; PW]) -> [F; PW] {
        std::array::from_fn(|i| a[i] * b[i])
    }
    #[inline(always)]
    fn mul_add(self, a: [F; PW], b: [F; PW], c: [F; PW]) -> [F; PW] {
        std::array::from_fn(|i| a[i] * b[i] + c[i])
    }
    #[inline(always)]
    fn mul_add1(self, a: F, b: F, c: F) -> F {
        a * b + c
    }
    const SHIFT: bool = false;
    type Shift = usize;
    #[inline(always)]
    fn shift(self, m: usize) -> usize {
        m
    }
    #[inline(always)]
    fn combine(self, a: [F; PW], b: [F; PW], m: usize) -> [F; PW] {
        std::array::from_fn(|l| if m + l < PW { a[m + l] } else { b[m + l - PW] })
    }
    #[inline(always)]
    fn sum(self, v: [F; PW]) -> F {
        ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
    }
}

/// Moves `a` into type `B`.
///
/// # Safety
/// `B` must be `A` with its element type parameter replaced by the same type.
#[inline(always)]
unsafe fn retype<A, B>(a: A) -> B {
    assert_eq!(std::mem::size_of::<A>(), std::mem::size_of::<B>());
    let a = std::mem::ManuallyDrop::new(a);
    // SAFETY: same type per the contract; `a` is never used or dropped again.
    unsafe { std::mem::transmute_copy::<A, B>(&*a) }
}

#[inline(always)]
fn is<F: 'static, T: 'static>() -> bool {
    std::any::TypeId::of::<F>() == std::any::TypeId::of::<T>()
}

fn on_f32<O: RowsOp<f32>>(path: Path, op: O) {
    match path.0 {
        // SAFETY: a `Path` exists only for paths this CPU supports.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => unsafe { x86::avx512_f32(op) },
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2Fma => unsafe { x86::avx2_f32(op) },
        _ => op.run(Portable::<f32>::new()),
    }
}

fn on_f64<O: RowsOp<f64>>(path: Path, op: O) {
    match path.0 {
        // SAFETY: a `Path` exists only for paths this CPU supports.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => unsafe { x86::avx512_f64(op) },
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2Fma => unsafe { x86::avx2_f64(op) },
        _ => op.run(Portable::<f64>::new()),
    }
}

/// Runs the op `$op: $Op<'_, $F>` on `$path`, with the backend for `$F`.
macro_rules! run_on {
    ($path:expr, $F:ty, $Op:ident, $op:expr) => {{
        let op: $Op<'_, $F> = $op;
        if $crate::simd::is_type::<$F, f32>() {
            // SAFETY: $F is f32.
            let op: $Op<'_, f32> = unsafe { $crate::simd::retype_op(op) };
            $crate::simd::run_f32($path, op)
        } else if $crate::simd::is_type::<$F, f64>() {
            // SAFETY: $F is f64.
            let op: $Op<'_, f64> = unsafe { $crate::simd::retype_op(op) };
            $crate::simd::run_f64($path, op)
        } else {
            $crate::simd::RowsOp::run(op, $crate::simd::Portable::<$F>::new())
        }
    }};
}
pub(crate) use run_on;

/// Whether `F` is `T` (for [`run_on!`]).
#[inline(always)]
pub(crate) fn is_type<F: 'static, T: 'static>() -> bool {
    is::<F, T>()
}

/// [`retype`] for [`run_on!`].
///
/// # Safety
/// As [`retype`].
#[inline(always)]
pub(crate) unsafe fn retype_op<A, B>(a: A) -> B {
    // SAFETY: forwarded contract.
    unsafe { retype(a) }
}

/// Runs an `f32` op on `path`.
#[inline]
pub(crate) fn run_f32<O: RowsOp<f32>>(path: Path, op: O) {
    on_f32(path, op)
}

/// Runs an `f64` op on `path`.
#[inline]
pub(crate) fn run_f64<O: RowsOp<f64>>(path: Path, op: O) {
    on_f64(path, op)
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! x86-64 backends (AVX2+FMA and AVX-512F, `f32` and `f64`) and the
    //! `#[target_feature]` entry points that run a generic op with them; the generic
    //! bodies (`#[inline(always)]`) are inlined into these and compiled for the features.

    use std::arch::x86_64::*;

    use super::{RowsOp, Simd};

    macro_rules! backend {
        ($name:ident, $e:ty, $v:ty, $w:expr, $feat:literal,
         splat = $splat:ident, load = $load:ident, store = $store:ident,
         add = $add:ident, sub = $sub:ident, mul = $mul:ident, fma = $fma:ident,
     shift { $($shift:tt)* }) => {
            #[doc = concat!("Token for the `", $feat, "` backend over `", stringify!($e), "`.")]
            #[derive(Clone, Copy, Debug)]
            pub(super) struct $name(());

            impl Simd for $name {
                type E = $e;
                type V = $v;
                const W: usize = $w;
                #[inline(always)]
                fn splat(self, v: $e) -> $v {
                    // SAFETY: the token exists only where the CPU has the features.
                    unsafe { $splat(v) }
                }
                #[inline(always)]
                fn store(self, s: &mut [$e], v: $v) {
                    assert!(s.len() >= $w);
                    // SAFETY: in bounds (checked above); features as above.
                    unsafe { $store(s.as_mut_ptr(), v) }
                }
                #[inline(always)]
                unsafe fn loadp(self, p: *const $e) -> $v {
                    // SAFETY: valid for `W` reads per the contract; features as above.
                    unsafe { $load(p) }
                }
                #[inline(always)]
                unsafe fn storep(self, p: *mut $e, v: $v) {
                    // SAFETY: valid for `W` writes per the contract; features as above.
                    unsafe { $store(p, v) }
                }
                #[inline(always)]
                fn add(self, a: $v, b: $v) -> $v {
                    // SAFETY: features as above.
                    unsafe { $add(a, b) }
                }
                #[inline(always)]
                fn sub(self, a: $v, b: $v) -> $v {
                    // SAFETY: features as above.
                    unsafe { $sub(a, b) }
                }
                #[inline(always)]
                fn mul(self, a: $v, b: $v) -> $v {
                    // SAFETY: features as above.
                    unsafe { $mul(a, b) }
                }
                #[inline(always)]
                fn mul_add(self, a: $v, b: $v, c: $v) -> $v {
                    // SAFETY: features as above.
                    unsafe { $fma(a, b, c) }
                }
                #[inline(always)]
                fn mul_add1(self, a: $e, b: $e, c: $e) -> $e {
                    // Fused like the vector body (the FMA instruction, under the entry
                    // point's target features).
                    a.mul_add(b, c)
                }
                #[inline(always)]
                fn prefetch(self, p: *const $e) {
                    // SAFETY: prefetching never faults, whatever the address.
                    unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
                }
                $($shift)*
                #[inline(always)]
                fn sum(self, v: $v) -> $e {
                    let mut a = [0.0 as $e; $w];
                    self.store(&mut a, v);
                    let mut n = $w;
                    while n > 1 {
                        n /= 2;
                        for i in 0..n {
                            a[i] += a[i + n];
                        }
                    }
                    a[0]
                }
            }
        };
    }

    backend!(
        Avx2F32,
        f32,
        __m256,
        8,
        "avx2,fma",
        splat = _mm256_set1_ps,
        load = _mm256_loadu_ps,
        store = _mm256_storeu_ps,
        add = _mm256_add_ps,
        sub = _mm256_sub_ps,
        mul = _mm256_mul_ps,
        fma = _mm256_fmadd_ps,
        shift {
            const SHIFT: bool = false;
            type Shift = usize;
            #[inline(always)]
            fn shift(self, m: usize) -> usize {
                m
            }
            #[inline(always)]
            fn combine(self, a: Self::V, b: Self::V, m: usize) -> Self::V {
                let mut t = [<Self::E as Default>::default(); 2 * Self::W];
                // SAFETY: t holds 2·W elements; features as above.
                unsafe {
                    self.storep(t.as_mut_ptr(), a);
                    self.storep(t.as_mut_ptr().add(Self::W), b);
                }
                // SAFETY: m < W, so m + W <= 2·W.
                unsafe { self.loadp(t.as_ptr().add(m)) }
            }
        }
    );
    backend!(
        Avx2F64,
        f64,
        __m256d,
        4,
        "avx2,fma",
        splat = _mm256_set1_pd,
        load = _mm256_loadu_pd,
        store = _mm256_storeu_pd,
        add = _mm256_add_pd,
        sub = _mm256_sub_pd,
        mul = _mm256_mul_pd,
        fma = _mm256_fmadd_pd,
        shift {
            const SHIFT: bool = false;
            type Shift = usize;
            #[inline(always)]
            fn shift(self, m: usize) -> usize {
                m
            }
            #[inline(always)]
            fn combine(self, a: Self::V, b: Self::V, m: usize) -> Self::V {
                let mut t = [<Self::E as Default>::default(); 2 * Self::W];
                // SAFETY: t holds 2·W elements; features as above.
                unsafe {
                    self.storep(t.as_mut_ptr(), a);
                    self.storep(t.as_mut_ptr().add(Self::W), b);
                }
                // SAFETY: m < W, so m + W <= 2·W.
                unsafe { self.loadp(t.as_ptr().add(m)) }
            }
        }
    );
    backend!(
        Avx512F32,
        f32,
        __m512,
        16,
        "avx512f",
        splat = _mm512_set1_ps,
        load = _mm512_loadu_ps,
        store = _mm512_storeu_ps,
        add = _mm512_add_ps,
        sub = _mm512_sub_ps,
        mul = _mm512_mul_ps,
        fma = _mm512_fmadd_ps,
        shift {
            const SHIFT: bool = true;
            type Shift = __m512i;
            #[inline(always)]
            fn shift(self, m: usize) -> __m512i {
                let idx: [i32; 16] = std::array::from_fn(|l| (m + l) as i32);
                // SAFETY: 16 i32 in an array; features as above.
                unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
            }
            #[inline(always)]
            fn combine(self, a: __m512, b: __m512, m: __m512i) -> __m512 {
                // SAFETY: features as above.
                unsafe { _mm512_permutex2var_ps(a, m, b) }
            }
        }
    );
    backend!(
        Avx512F64,
        f64,
        __m512d,
        8,
        "avx512f",
        splat = _mm512_set1_pd,
        load = _mm512_loadu_pd,
        store = _mm512_storeu_pd,
        add = _mm512_add_pd,
        sub = _mm512_sub_pd,
        mul = _mm512_mul_pd,
        fma = _mm512_fmadd_pd,
        shift {
            const SHIFT: bool = true;
            type Shift = __m512i;
            #[inline(always)]
            fn shift(self, m: usize) -> __m512i {
                let idx: [i64; 8] = std::array::from_fn(|l| (m + l) as i64);
                // SAFETY: 8 i64 in an array; features as above.
                unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
            }
            #[inline(always)]
            fn combine(self, a: __m512d, b: __m512d, m: __m512i) -> __m512d {
                // SAFETY: features as above.
                unsafe { _mm512_permutex2var_pd(a, m, b) }
            }
        }
    );

    /// Runs `op` with the AVX2+FMA `f32` backend.
    ///
    /// # Safety
    /// The CPU must support `avx2` and `fma`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_f32<O: RowsOp<f32>>(op: O) {
        op.run(Avx2F32(()))
    }

    /// Runs `op` with the AVX2+FMA `f64` backend.
    ///
    /// # Safety
    /// The CPU must support `avx2` and `fma`.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn avx2_f64<O: RowsOp<f64>>(op: O) {
        op.run(Avx2F64(()))
    }

    /// Runs `op` with the AVX-512F `f32` backend.
    ///
    /// # Safety
    /// The CPU must support `avx512f` and `fma`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn avx512_f32<O: RowsOp<f32>>(op: O) {
        op.run(Avx512F32(()))
    }

    /// Runs `op` with the AVX-512F `f64` backend.
    ///
    /// # Safety
    /// The CPU must support `avx512f` and `fma`.
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) unsafe fn avx512_f64<O: RowsOp<f64>>(op: O) {
        op.run(Avx512F64(()))
    }
}
