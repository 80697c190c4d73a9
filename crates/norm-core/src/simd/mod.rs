//! Runtime CPU-feature dispatch for the row kernels: the [`KernelPath`]s this build knows,
//! detection (once, cached), and the small vector abstraction ([`Simd`]) the generic kernel
//! bodies in `kernels.rs` are written against. Backends: portable (plain arrays that the
//! compiler vectorizes for the baseline target) and, on x86-64, AVX2+FMA and AVX-512F
//! (in `x86.rs`). Nothing here knows about norms.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::Float;

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// A row-kernel implementation, chosen at run time from the CPU's features.
///
/// Every path computes the same two-pass statistics with the same per-row shift and
/// rescue; they differ only in vector width and in whether `a·b + c` is fused (FMA), so
/// results may differ in the last bits between paths, never between runs or thread
/// counts on one machine.
///
/// # Example
/// ```
/// use norm_core::KernelPath;
///
/// let path = KernelPath::detected();
/// assert!(path.is_available());
/// println!("LayerNorm and RMSNorm run on the {} kernels", path.name());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KernelPath {
    /// Plain Rust over fixed-size arrays, vectorized by the compiler for the baseline
    /// target (SSE2 on x86-64); no FMA. Runs everywhere.
    Portable,
    /// 256-bit AVX2 with fused multiply-add (x86-64 with `avx2` and `fma`).
    Avx2Fma,
    /// 512-bit AVX-512F (which implies FMA) on x86-64.
    Avx512,
}

impl KernelPath {
    /// All paths this build knows, slowest first.
    ///
    /// # Example
    /// ```
    /// use norm_core::KernelPath;
    ///
    /// assert_eq!(KernelPath::ALL[0], KernelPath::Portable);
    /// assert_eq!(KernelPath::ALL.len(), 3);
    /// ```
    pub const ALL: [KernelPath; 3] = [KernelPath::Portable, KernelPath::Avx2Fma, KernelPath::Avx512];

    /// Whether this CPU can run the path.
    ///
    /// # Example
    /// ```
    /// use norm_core::KernelPath;
    ///
    /// assert!(KernelPath::Portable.is_available()); // everywhere
    /// let wide = KernelPath::Avx512.is_available();
    /// assert_eq!(wide, KernelPath::available().contains(&KernelPath::Avx512));
    /// ```
    pub fn is_available(self) -> bool {
        match self {
            KernelPath::Portable => true,
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx2Fma => {
                std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            KernelPath::Avx512 => {
                std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every path this CPU can run, slowest first.
    ///
    /// # Example
    /// ```
    /// use norm_core::KernelPath;
    ///
    /// let paths = KernelPath::available();
    /// assert_eq!(paths[0], KernelPath::Portable);
    /// assert!(paths.iter().all(|p| p.is_available()));
    /// ```
    pub fn available() -> Vec<KernelPath> {
        Self::ALL.into_iter().filter(|p| p.is_available()).collect()
    }

    /// The path the norms use on this CPU: the widest available (detected once, cached).
    ///
    /// # Example
    /// ```
    /// use norm_core::KernelPath;
    ///
    /// assert_eq!(Some(&KernelPath::detected()), KernelPath::available().last());
    /// ```
    pub fn detected() -> KernelPath {
        static CACHE: AtomicU8 = AtomicU8::new(0);
        match CACHE.load(Ordering::Relaxed) {
            1 => KernelPath::Portable,
            2 => KernelPath::Avx2Fma,
            3 => KernelPath::Avx512,
            _ => {
                let best = Self::available().pop().unwrap_or(KernelPath::Portable);
                let code = match best {
                    KernelPath::Portable => 1,
                    KernelPath::Avx2Fma => 2,
                    KernelPath::Avx512 => 3,
                };
                CACHE.store(code, Ordering::Relaxed);
                best
            }
        }
    }

    /// Short name for tables and benchmark ids.
    ///
    /// # Example
    /// ```
    /// use norm_core::KernelPath;
    ///
    /// assert_eq!(KernelPath::Avx2Fma.name(), "avx2-fma");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            KernelPath::Portable => "portable",
            KernelPath::Avx2Fma => "avx2-fma",
            KernelPath::Avx512 => "avx512",
        }
    }
}

/// A vector backend for one element type. A value of the implementing type is a token
/// proving the CPU supports the backend's instructions, so the methods are safe.
///
/// Loads and stores take slices of at least [`W`](Simd::W) elements (checked; the
/// checks fold away inside the kernels' exact-chunk loops).
pub(crate) trait Simd: Copy {
    /// Element type.
    type E: Float;
    /// A vector of `W` elements.
    type V: Copy;
    /// Lanes per vector.
    const W: usize;
    fn splat(self, v: Self::E) -> Self::V;
    fn load(self, s: &[Self::E]) -> Self::V;
    fn store(self, s: &mut [Self::E], v: Self::V);
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    fn mul(self, a: Self::V, b: Self::V) -> Self::V;
    /// `a·b + c`, fused where the backend has FMA.
    fn mul_add(self, a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// Sum of the lanes, in a fixed order.
    fn sum(self, v: Self::V) -> Self::E;
    /// A hint to bring the cache line at `p` closer; `p` need not be valid (prefetches
    /// never fault). No effect on results.
    #[inline(always)]
    fn prefetch(self, p: *const Self::E) {
        let _ = p;
    }
}

/// Lanes of the portable backend (two SSE registers of f32).
const PW: usize = 8;

/// The portable backend: `[F; 8]` arrays, element-wise; no FMA.
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
    fn load(self, s: &[F]) -> [F; PW] {
        let mut v = [F::zero(); PW];
        v.copy_from_slice(&s[..PW]);
        v
    }
    #[inline(always)]
    fn store(self, s: &mut [F], v: [F; PW]) {
        s[..PW].copy_from_slice(&v);
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
    fn sum(self, v: [F; PW]) -> F {
        ((v[0] + v[4]) + (v[2] + v[6])) + ((v[1] + v[5]) + (v[3] + v[7]))
    }
}
