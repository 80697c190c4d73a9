//! The vector layer behind every row kernel, shared by `norm-core`'s forward kernels and
//! `norm-autograd`'s backward kernels: the [`KernelPath`]s this build knows and their
//! detection (once, cached); [`Path`], a path this CPU has been checked to support; the
//! small vector abstraction ([`Simd`]) the generic kernel bodies are written against; the
//! op trait ([`SimdOp`]) and its dispatcher ([`run_on`]), which runs an op with the
//! backend for a path and element type; and the policy for non-temporal output stores
//! ([`Stores`], [`stream_min_bytes`] from the CPU's last-level cache, [`stream_fence`]),
//! whether consecutive rows run pipelined ([`Pipelining`]: from the CPU's vendor, the
//! store policy and the backend) and whether they prefetch the rows ahead
//! ([`Prefetching`], from the CPU's vendor), and whether the
//! half-precision rows widen once into f32 scratch rows ([`Widening`]).
//! Backends: portable (plain arrays that the compiler vectorizes for the baseline
//! target) and, on x86-64, AVX2+FMA and AVX-512F (in `x86.rs`). Nothing here knows
//! about norms.
//!
//! Hidden (`#[doc(hidden)]`): an internal kernel-author API, public only so that
//! `norm-autograd` can share it instead of keeping a copy. Not covered by semver; only
//! [`KernelPath`] (re-exported at the crate root) is part of the stable API.

use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

use crate::Float;
use crate::convert::Half;

#[cfg(target_arch = "x86_64")]
mod x86;

/// The half-precision row conversions (widen exactly, round once), per path.
pub use crate::convert::{narrow, widen};

/// A row-kernel implementation, chosen at run time from the CPU's features.
///
/// Every path computes the same shifted statistics (the one-pass variance where it is
/// safe, else a centred second pass) with the same per-row shift and rescue; they differ only in vector width and in whether `a·b + c` is fused (FMA), so
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
#[non_exhaustive]
pub enum KernelPath {
    /// Plain Rust over fixed-size arrays, vectorized by the compiler for the baseline
    /// target (SSE2 on x86-64); no FMA. Runs everywhere.
    Portable,
    /// 256-bit AVX2 with fused multiply-add (x86-64 with `avx2` and `fma`, and `f16c`
    /// for the f16 conversions, which every CPU with the other two has).
    Avx2Fma,
    /// 512-bit AVX-512F (which implies FMA) on x86-64.
    Avx512,
}

impl KernelPath {
    /// All paths this build knows, slowest first (a slice: a later release may know more).
    ///
    /// # Example
    /// ```
    /// use norm_core::KernelPath;
    ///
    /// assert_eq!(KernelPath::all()[0], KernelPath::Portable);
    /// assert!(KernelPath::all().contains(&KernelPath::Avx2Fma));
    /// ```
    pub fn all() -> &'static [KernelPath] {
        &[KernelPath::Portable, KernelPath::Avx2Fma, KernelPath::Avx512]
    }

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
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
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
        Self::all().iter().copied().filter(|p| p.is_available()).collect()
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

/// A [`KernelPath`] that this CPU is known to support (checked on construction); the only
/// way to run a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path(KernelPath);

impl Path {
    /// The widest path this CPU supports (detected once, cached); the one the norms use.
    #[inline(always)]
    pub fn detected() -> Self {
        Path(KernelPath::detected())
    }

    /// `path`, if this CPU supports it.
    pub fn new(path: KernelPath) -> Option<Self> {
        path.is_available().then_some(Path(path))
    }

    /// The path.
    pub fn get(self) -> KernelPath {
        self.0
    }
}

/// A vector backend for one element type. A value of the implementing type is a token
/// proving the CPU supports the backend's instructions, so the safe methods are safe.
///
/// [`load`](Simd::load) and [`store`](Simd::store) take slices of at least
/// [`W`](Simd::W) elements (checked; the checks fold away inside the kernels'
/// exact-chunk loops); the `*_at` and `*p` forms skip the check.
pub trait Simd: Copy {
    /// Element type.
    type E: Float;
    /// A vector of `W` elements.
    type V: Copy;
    /// Lanes per vector.
    const W: usize;
    /// All lanes `v`.
    fn splat(self, v: Self::E) -> Self::V;
    /// Loads `s[..W]`.
    fn load(self, s: &[Self::E]) -> Self::V;
    /// Stores `v` to `s[..W]`.
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
    /// Stores `W` elements to `s[i..]` with a non-temporal (streaming) store where the
    /// backend has one (a plain store on the portable backend): the line goes to memory
    /// without being read into the cache first. Call [`stream_fence`] before the data is
    /// read by anyone, or handed to another thread.
    ///
    /// # Safety
    /// `i + W <= s.len()`, and `s[i..]` is aligned to the vector size (`W` elements).
    #[inline(always)]
    unsafe fn stream_at(self, s: &mut [Self::E], i: usize, v: Self::V) {
        // SAFETY: in bounds per the contract.
        unsafe { self.store_at(s, i, v) }
    }
    /// Stores `v` to `s[i]` (checked) with a non-temporal store where the backend has
    /// one (`movnti` on x86-64; a plain store on the portable backend): for the elements
    /// of a streamed row outside its whole cache lines, in the lines it shares with the
    /// rows beside it. A plain store there reads the line from memory first, and the
    /// stores queued behind it wait for that read: once per row, which cost the f32
    /// backward out of cache a tenth to a fifth of its speed on arrays not aligned to a
    /// cache line (see `norm-autograd`'s `Storage::put1`). Call [`stream_fence`] as for
    /// [`stream_at`](Simd::stream_at).
    #[inline(always)]
    fn stream1(self, s: &mut [Self::E], i: usize, v: Self::E) {
        s[i] = v;
    }
    /// Stores the 16-bit values `a` and `b` to `s[i]` and `s[i + 1]` (checked) with one
    /// 4-byte non-temporal store where the backend has one and `s[i]` is 4-byte aligned
    /// (plain stores otherwise): [`stream1`](Simd::stream1) for half-precision rows.
    #[inline(always)]
    fn stream_pair<H: Half>(self, s: &mut [H], i: usize, a: H, b: H) {
        s[i] = a;
        s[i + 1] = b;
    }
    /// Lane-wise `a + b`.
    fn add(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `a - b`.
    fn sub(self, a: Self::V, b: Self::V) -> Self::V;
    /// Lane-wise `a · b`.
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
    /// Whether [`prefetch`](Simd::prefetch) and [`prefetch_far`](Simd::prefetch_far)
    /// issue prefetch instructions (the x86-64 backends); the defaults do nothing.
    const PREFETCHES: bool = false;
    /// Whether each vector is one hardware register, loaded and stored by one
    /// instruction (the x86-64 backends), so that where a vector sits against a cache
    /// line decides whether that access straddles two (the portable backend's arrays
    /// move in pieces of the compiler's choosing). Also why the write pass takes four
    /// vectors a step only on such backends: the compiler vectorized the portable
    /// arrays of a four-vector step across the vectors (`kernels::write::write`).
    const REGISTERS: bool = false;
    /// A hint to bring the cache line at `p` closer (into L1); `p` need not be valid
    /// (prefetches never fault). No effect on results.
    #[inline(always)]
    fn prefetch(self, p: *const Self::E) {
        let _ = p;
    }
    /// A hint to bring the cache line at `p` into L2 only, not L1: for data read later
    /// than the next few hundred cycles, which in L1 would evict the lines in use.
    /// `p` need not be valid. No effect on results.
    #[inline(always)]
    fn prefetch_far(self, p: *const Self::E) {
        let _ = p;
    }
    /// Loads `W` half-precision values from `p`, widened to `E` in registers (exact).
    /// The f32 backends of x86-64 override it with vector conversions (integer shift
    /// for bf16, `vcvtph2ps` for f16); the default converts lane by lane (the portable
    /// backend). The half-precision kernels run only on f32 backends.
    ///
    /// # Safety
    /// `p..p + W` must be valid for reads.
    #[inline(always)]
    unsafe fn load_half<H: Half>(self, p: *const H) -> Self::V {
        let mut t = [<Self::E as num_traits::Zero>::zero(); MAX_W];
        for (l, t) in t.iter_mut().take(Self::W).enumerate() {
            // SAFETY: l < W, in bounds per the contract.
            let h = unsafe { p.add(l).read_unaligned() };
            *t = Self::E::from_f64_round(f64::from(h.widen1()));
        }
        // SAFETY: `t` holds MAX_W >= W elements.
        unsafe { self.loadp(t.as_ptr()) }
    }
    /// Rounds each lane of `v` once to `H` (to nearest, ties to even; NaN stays NaN,
    /// overflow goes to ±∞, exactly as [`narrow`] rounds) and stores the `W` values at
    /// `p`, non-temporally when `store` says so and the backend has such stores. The
    /// default rounds lane by lane (for an f64 backend it would round through f32, so
    /// the half-precision kernels run only on f32 backends).
    ///
    /// # Safety
    /// `p..p + W` must be valid for writes, and with `Streaming` aligned to `2·W`
    /// bytes.
    #[inline(always)]
    unsafe fn store_half<H: Half>(self, p: *mut H, v: Self::V, store: Store) {
        // SAFETY: the same contract.
        unsafe { self.store_half_as::<H, false>(p, v, store) }
    }
    /// [`store_half`](Simd::store_half) for values computed by vector arithmetic from
    /// operands whose NaNs all have zero low 16 bits (the f32 widenings of 16-bit values:
    /// the half-precision forward kernels), or, with `COMPUTED = false`, for any values.
    /// With `COMPUTED`, every NaN lane of `v` is quiet with zero low 16 bits (arithmetic
    /// quiets a NaN operand and keeps its payload, and an invalid operation gives the
    /// default NaN `0xffc0_0000`); rounding such a lane to bf16 by the integer
    /// ties-to-even form adds at most `0x8000` to its low half, which never carries, so
    /// it keeps the high half, the bf16 NaN that the general form's NaN fix-up would
    /// write. The x86 backends skip that fix-up then (five integer operations of ten per
    /// vector on AVX2); the bits stored are those of `store_half` either way.
    ///
    /// # Safety
    /// As [`store_half`](Simd::store_half); with `COMPUTED`, every NaN lane of `v` has
    /// zero low 16 bits (a lane that does not may be stored as ±∞ or -0, never read out
    /// of bounds).
    #[inline(always)]
    unsafe fn store_half_as<H: Half, const COMPUTED: bool>(self, p: *mut H, v: Self::V, store: Store) {
        let _ = store;
        let mut t = [<Self::E as num_traits::Zero>::zero(); MAX_W];
        // SAFETY: `t` holds MAX_W >= W elements.
        unsafe { self.storep(t.as_mut_ptr(), v) };
        for (l, &t) in t.iter().take(Self::W).enumerate() {
            // SAFETY: l < W, in bounds per the contract.
            unsafe { p.add(l).write_unaligned(H::narrow1(t.to_f64_exact() as f32)) };
        }
    }
    /// [`store_half_as`](Simd::store_half_as) of two vectors, `a` to `p..p + W` and `b`
    /// to `p + W..p + 2·W`: the same bits, in fewer operations where a backend rounds
    /// and packs two vectors at once (bf16 on x86-64: `vcvtne2ps2bf16`, or one pack and
    /// one permute for both vectors' integer roundings) and, for AVX-512, one 64-byte
    /// store (a whole line when streamed). The default stores them one by one.
    ///
    /// # Safety
    /// `p..p + 2·W` must be valid for writes, and with `Streaming` aligned to `4·W`
    /// bytes; with `COMPUTED`, as [`store_half_as`](Simd::store_half_as) for both.
    #[inline(always)]
    unsafe fn store_half2_as<H: Half, const COMPUTED: bool>(
        self,
        p: *mut H,
        a: Self::V,
        b: Self::V,
        store: Store,
    ) {
        // SAFETY: the same contract.
        unsafe { store_half_each::<Self, H, COMPUTED>(self, p, a, b, store) }
    }
}

/// [`Simd::store_half2_as`] one vector at a time (its default, and what the x86
/// backends do for f16, which `vcvtps2ph` rounds one vector at a time anyway).
///
/// # Safety
/// As [`Simd::store_half2_as`].
#[inline(always)]
pub(crate) unsafe fn store_half_each<S: Simd, H: Half, const COMPUTED: bool>(
    s: S,
    p: *mut H,
    a: S::V,
    b: S::V,
    store: Store,
) {
    // SAFETY: per the contract, each half aligned to `2·W` bytes when streaming.
    unsafe {
        s.store_half_as::<H, COMPUTED>(p, a, store);
        s.store_half_as::<H, COMPUTED>(p.add(S::W), b, store);
    }
}

/// The most lanes any backend has (AVX-512 f32).
pub(crate) const MAX_W: usize = 16;

/// A 16-bit element of a streamed row held back until its neighbour is known, so that
/// the two go out in one 4-byte non-temporal store ([`Simd::stream_pair`]; `movnti`
/// writes no less): the scalar edges of streamed bf16/f16 rows, in the forward's write
/// pass (where no seam takes them: rows alone, the ends of a run) and in
/// `norm-autograd`'s backward.
#[derive(Clone, Copy, Debug)]
pub struct HeldHalf<X>(Option<(usize, X)>);

impl<X: Copy> HeldHalf<X> {
    /// Nothing held.
    pub const NONE: Self = HeldHalf(None);

    /// Stores the held element, if any, with a plain store.
    #[inline(always)]
    pub fn flush(&mut self, dst: &mut [X]) {
        if let Some((i, v)) = self.0.take() {
            dst[i] = v;
        }
    }
}

impl<H: Half> HeldHalf<H> {
    /// Writes `h` to `dst[i]` (checked): with the held `dst[i - 1]` as one non-temporal
    /// pair; else, after a plain store of any other held element, held itself when
    /// `stream` and `dst[i]` starts an aligned 4-byte word with `dst[i + 1]` in `dst`;
    /// else with a plain store.
    #[inline(always)]
    pub fn put<S: Simd>(&mut self, s: S, dst: &mut [H], i: usize, h: H, stream: bool) {
        if let Some((j, a)) = self.0
            && j + 1 == i
        {
            self.0 = None;
            s.stream_pair(dst, j, a, h);
            return;
        }
        self.flush(dst);
        let at = dst.as_ptr().wrapping_add(i) as usize;
        if stream && at.is_multiple_of(4) && i + 1 < dst.len() {
            self.0 = Some((i, h));
        } else {
            dst[i] = h;
        }
    }
}

/// Orders the non-temporal stores of [`Simd::stream_at`] made so far by this thread
/// before its later stores (`sfence` on x86-64, where those stores are weakly ordered;
/// nothing elsewhere). Kernels that stream call it once before they return.
#[inline(always)]
pub fn stream_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` is part of SSE, which every x86-64 CPU has.
    unsafe {
        std::arch::x86_64::_mm_sfence()
    }
}

/// The streaming threshold when the CPU does not report its last-level cache size.
pub const STREAM_MIN_BYTES: usize = 32 << 20;

/// The smallest threshold [`stream_min_bytes`] returns, whatever the cache.
const STREAM_FLOOR_BYTES: usize = 4 << 20;

/// The largest threshold [`stream_min_bytes`] returns, whatever the cache reported.
const STREAM_CEILING_BYTES: usize = 64 << 20;

/// Outputs of at least this many bytes are written with non-temporal stores
/// ([`Stores::Auto`]): a quarter of the last-level cache as the CPU reports it (x86-64
/// CPUID; at least 4 MiB, at most 64 MiB), or [`STREAM_MIN_BYTES`] where it reports
/// none. Detected once, cached.
///
/// A non-temporal store skips reading the output line into the cache before writing it:
/// one memory transfer less per line, so out of cache a norm moves a third (forward) or
/// a quarter (backward) fewer bytes. But the output is then not in the cache for
/// whoever reads it next, which costs more than it saves while the arrays would have
/// stayed in the caches. Measured with the `stores/*` benchmarks (norm-autograd; a
/// LayerNorm forward or backward followed by a read of its output, plain against
/// streaming stores) on a machine reporting a 260 MiB L3: plain stores won up to 32 MiB
/// per array, the two were even around 64 MiB, streaming won at 128 MiB. On one
/// reporting 480 MiB (Intel Xeon family 6 model 167, a 2-vCPU virtual machine, 5
/// December 2026, forward then read, one run) the arrays did not stay in that cache:
/// plain / streaming GB/s 28.3 / 19.1 at 4 MiB, 26.8 / 18.7 at 16, 17.0 / 17.9 at 32,
/// 11.1 / 15.7 at 64, 11.0 / 17.1 at 128, where a quarter of the reported cache (120
/// MiB) kept 64 MiB outputs on plain stores. Hence the ceiling: a virtual machine's
/// CPUID may report a cache its core does not get.
///
/// # Example
/// ```
/// use norm_core::simd::stream_min_bytes;
///
/// assert!(stream_min_bytes() >= 4 << 20);
/// assert_eq!(stream_min_bytes(), stream_min_bytes());
/// ```
pub fn stream_min_bytes() -> usize {
    static CACHE: AtomicUsize = AtomicUsize::new(0);
    match CACHE.load(Ordering::Relaxed) {
        0 => {
            let t = last_level_cache_bytes().map_or(STREAM_MIN_BYTES, |c| {
                (c / 4).clamp(STREAM_FLOOR_BYTES, STREAM_CEILING_BYTES)
            });
            CACHE.store(t, Ordering::Relaxed);
            t
        }
        t => t,
    }
}

/// The size of the largest data or unified cache level the CPU reports (x86-64: CPUID
/// leaf 4 on Intel, 0x8000_001D on AMD; both describe one cache per sub-leaf as ways ×
/// partitions × line size × sets). `None` elsewhere or when not reported.
// `__cpuid_count` is a safe function in newer Rust and an unsafe one in older releases
// this crate still supports (`rust-version`), hence the allowed unsafe blocks.
#[allow(unused_unsafe)]
fn last_level_cache_bytes() -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid_count;
        // SAFETY (every `__cpuid_count`): CPUID exists on every x86-64 CPU, and leaves
        // beyond the maximum only return zeros or the highest leaf's values.
        let max_basic = unsafe { __cpuid_count(0, 0) }.eax;
        let max_ext = unsafe { __cpuid_count(0x8000_0000, 0) }.eax;
        let leaf = if max_ext >= 0x8000_001D && unsafe { __cpuid_count(0x8000_001D, 0) }.eax & 0x1f != 0 {
            0x8000_001D
        } else if max_basic >= 4 {
            4
        } else {
            return None;
        };
        let mut best: Option<(u32, usize)> = None;
        for sub in 0..16 {
            let r = unsafe { __cpuid_count(leaf, sub) };
            let kind = r.eax & 0x1f; // 0 none, 1 data, 2 instruction, 3 unified
            if kind == 0 {
                break;
            }
            if kind == 2 {
                continue;
            }
            let level = (r.eax >> 5) & 0x7;
            let ways = ((r.ebx >> 22) & 0x3ff) as usize + 1;
            let parts = ((r.ebx >> 12) & 0x3ff) as usize + 1;
            let line = (r.ebx & 0xfff) as usize + 1;
            let sets = r.ecx as usize + 1;
            let size = ways * parts * line * sets;
            if best.is_none_or(|(l, _)| level > l) {
                best = Some((level, size));
            }
        }
        best.map(|(_, size)| size)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        None
    }
}

/// Whether consecutive rows of the backend's own element type (f32, f64) written with
/// plain stores run pipelined (the next row's first reduction beside this row's write
/// pass) on this CPU, when [`Pipelining::Auto`] decides: on AMD CPUs, yes; elsewhere,
/// no. From the `pipelining/*` benchmark groups (the measurements are listed at the
/// kernels' rule, `kernels/mod.rs`): 2-29% faster in cache on an AMD EPYC (Zen 4) on
/// every path, not faster on an Intel Xeon model 207.
pub fn pipelines_wide_rows() -> bool {
    cpu_is_amd()
}

/// Whether the CPU is AMD's ([`cpu_vendor_is_amd`]), detected once, cached.
fn cpu_is_amd() -> bool {
    static CACHE: AtomicU8 = AtomicU8::new(0);
    match CACHE.load(Ordering::Relaxed) {
        0 => {
            let amd = cpu_vendor_is_amd();
            CACHE.store(if amd { 2 } else { 1 }, Ordering::Relaxed);
            amd
        }
        v => v == 2,
    }
}

/// Whether the CPU's vendor string (CPUID leaf 0) is AMD's ("AuthenticAMD").
#[allow(unused_unsafe)]
fn cpu_vendor_is_amd() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: CPUID leaf 0 exists on every x86-64 CPU (see `last_level_cache_bytes`).
        let r = unsafe { std::arch::x86_64::__cpuid_count(0, 0) };
        // "Auth" "enti" "cAMD" in ebx, edx, ecx.
        (r.ebx, r.edx, r.ecx) == (0x6874_7541, 0x6974_6e65, 0x444d_4163)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the row kernels run consecutive rows pipelined: the first reduction of row
/// `i + 1` inside the write pass of row `i` (see `kernels/mod.rs`). Like [`Stores`], the
/// choice never changes a value: each row takes the same steps either way. Rows longer
/// than 8 KiB never run pipelined (four of them no longer fit in L1 together).
///
/// The norm-autograd backward follows it for its rows out of cache (dx streamed):
/// pipelined (its reduction pass of row `i + 1` inside the write pass of row `i`) under
/// `Auto` and `Always`, one by one under `Never`.
///
/// A process-wide setting ([`set_pipelining`]), a benchmark hook: the `pipelining/*`
/// criterion groups (and norm-autograd's `pipelining_backward`) measure both ways side
/// by side on every path, so that the rule [`Auto`](Pipelining::Auto) applies can be
/// checked on any CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pipelining {
    /// bf16/f16 rows pipelined on every CPU; f32/f64 rows written with plain stores
    /// where [`pipelines_wide_rows`] says, and streamed (out of cache) on the x86-64
    /// paths where [`software_prefetch_pays`] (what the public functions do).
    #[default]
    Auto,
    /// Every row that fits pipelined.
    Always,
    /// Rows one after another, each prefetching the next.
    Never,
}

static PIPELINING: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide [`Pipelining`] (a benchmark hook; the default is `Auto`).
/// Changes no value any kernel computes, on any thread.
///
/// # Example
/// ```
/// use norm_core::simd::{Pipelining, pipelining, set_pipelining};
///
/// set_pipelining(Pipelining::Never);
/// assert_eq!(pipelining(), Pipelining::Never);
/// set_pipelining(Pipelining::Auto);
/// ```
pub fn set_pipelining(p: Pipelining) {
    let v = match p {
        Pipelining::Auto => 0,
        Pipelining::Always => 1,
        Pipelining::Never => 2,
    };
    PIPELINING.store(v, Ordering::Relaxed);
}

/// The process-wide [`Pipelining`] in force.
#[inline]
pub fn pipelining() -> Pipelining {
    match PIPELINING.load(Ordering::Relaxed) {
        1 => Pipelining::Always,
        2 => Pipelining::Never,
        _ => Pipelining::Auto,
    }
}

/// Whether the row kernels (forward and backward) issue software prefetches for the
/// rows ahead of the one they work on: the forward's write pass of a row touches the
/// rows ahead of it (one after another, [`Pipelining`], the next row; pipelined, the
/// row after the next, whose predecessor its write pass reduces), the backward's
/// reduction pass reads ahead of itself and its streamed write pass ahead of the next
/// row. Like [`Stores`], the choice never changes a value, only the time. Under `Auto`
/// each kernel follows its own rule ([`prefetches_ahead`]).
///
/// A process-wide setting ([`set_prefetching`]), a benchmark hook: the `prefetching/*`
/// criterion groups (norm-core `benches/prefetching.rs`, norm-autograd
/// `benches/backward.rs`) measure both ways side by side on every path, so that the
/// rule [`Auto`](Prefetching::Auto) applies can be checked on any CPU; the
/// `prefetch_reach/*` groups (norm-core `benches/prefetching.rs`) measure
/// [`IntoL1`](Prefetching::IntoL1) against [`IntoL2`](Prefetching::IntoL2), the rule
/// by which the forward rows prefetch into L1 in cache and into L2 out of cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Prefetching {
    /// Each kernel's own rule ([`prefetches_ahead`]; what the public functions do).
    #[default]
    Auto,
    /// Always prefetch the rows ahead (the forward rows into L1 for a call whose
    /// outputs are written with plain stores, into L2 for one whose outputs stream).
    Always,
    /// Never: leave it to the CPU's hardware prefetchers.
    Never,
    /// Always, and the forward rows (plain and fused) prefetch into L1 whatever their
    /// store policy (`prefetcht0`). The backward takes it as `Always`.
    IntoL1,
    /// Always, and the forward rows (plain and fused) prefetch into L2 only whatever
    /// their store policy ([`Simd::prefetch_far`], `prefetcht1`). The backward takes it
    /// as `Always`.
    IntoL2,
}

static PREFETCHING: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide [`Prefetching`] (a benchmark hook; the default is `Auto`).
/// Changes no value any kernel computes, on any thread.
///
/// # Example
/// ```
/// use norm_core::simd::{Prefetching, prefetching, set_prefetching};
///
/// set_prefetching(Prefetching::Never);
/// assert_eq!(prefetching(), Prefetching::Never);
/// set_prefetching(Prefetching::Auto);
/// ```
pub fn set_prefetching(p: Prefetching) {
    let v = match p {
        Prefetching::Auto => 0,
        Prefetching::Always => 1,
        Prefetching::Never => 2,
        Prefetching::IntoL1 => 3,
        Prefetching::IntoL2 => 4,
    };
    PREFETCHING.store(v, Ordering::Relaxed);
}

/// The process-wide [`Prefetching`] in force.
#[inline]
pub fn prefetching() -> Prefetching {
    match PREFETCHING.load(Ordering::Relaxed) {
        1 => Prefetching::Always,
        2 => Prefetching::Never,
        3 => Prefetching::IntoL1,
        4 => Prefetching::IntoL2,
        _ => Prefetching::Auto,
    }
}

/// How the bf16/f16 forward rows of a batch read their values in the passes after the
/// first: widened again from the 16-bit row in storage on every pass, or from an f32
/// copy of the row that the first pass leaves in a scratch row as it widens (two
/// scratch rows per call). Like [`Stores`], the choice never changes a value: the
/// widening is exact, so every pass sees the same f32 row either way. Under `Auto` the
/// kernels follow their own rule ([`widens_once`]): LayerNorm rows of up to 1024
/// elements written with plain stores widen once in small calls (at most 4 MiB moved,
/// about a core's L2), and in larger ones only where [`widens_once_beyond_l2`] says
/// (AMD CPUs); RmsNorm rows (one later pass only) and rows whose outputs stream (out of
/// cache) widen on every pass.
///
/// By A/B measurement (the `widening/*` criterion groups, norm-core `benches/half.rs`,
/// one thread, AMD EPYC family 25 model 17, Zen 4, three runs, once over every pass):
/// in cache (512×768) LayerNorm 0.93-1.19 (bf16 1.07-1.19 in five of six pairs, f16
/// 1.08-1.17 in five of six), RmsNorm 0.69-1.09 (no gain); out of cache (65536×512,
/// 8192×4096, outputs streamed) 0.62-0.98 for LayerNorm and 0.60-1.23 for RmsNorm,
/// slower in 43 of 48 pairs.
///
/// A process-wide setting ([`set_widening`]), a benchmark hook: the `widening/*` groups
/// measure both ways side by side on every path, so that the rule
/// [`Auto`](Widening::Auto) applies can be checked on any CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Widening {
    /// Each kernel's own rule ([`widens_once`]; what the public functions do).
    #[default]
    Auto,
    /// Every half-precision row of a batch widens once, whatever its norm, length or
    /// store.
    Once,
    /// Every pass widens from the row in storage.
    EveryPass,
}

static WIDENING: AtomicU8 = AtomicU8::new(0);

/// Sets the process-wide [`Widening`] (a benchmark hook; the default is `Auto`).
/// Changes no value any kernel computes, on any thread.
///
/// # Example
/// ```
/// use norm_core::simd::{Widening, set_widening, widening};
///
/// set_widening(Widening::EveryPass);
/// assert_eq!(widening(), Widening::EveryPass);
/// set_widening(Widening::Auto);
/// ```
pub fn set_widening(w: Widening) {
    let v = match w {
        Widening::Auto => 0,
        Widening::Once => 1,
        Widening::EveryPass => 2,
    };
    WIDENING.store(v, Ordering::Relaxed);
}

/// The process-wide [`Widening`] in force.
#[inline]
pub fn widening() -> Widening {
    match WIDENING.load(Ordering::Relaxed) {
        1 => Widening::Once,
        2 => Widening::EveryPass,
        _ => Widening::Auto,
    }
}

/// Whether a batch of half-precision rows widens each row once, as [`widening`] says;
/// under `Auto`, `auto`: the kernel's own rule (see [`Widening`]).
#[inline]
pub fn widens_once(auto: bool) -> bool {
    match widening() {
        Widening::Once => true,
        Widening::EveryPass => false,
        Widening::Auto => auto,
    }
}

/// Whether a row kernel issues software prefetches for the rows ahead, as
/// [`prefetching`] says; under `Auto`, `auto`: the kernel's own rule, which is
/// [`software_prefetch_pays`] for the forward rows and the backward's rows in cache, and
/// yes for the backward's rows out of cache (norm-autograd).
#[inline]
pub fn prefetches_ahead(auto: bool) -> bool {
    match prefetching() {
        Prefetching::Always | Prefetching::IntoL1 | Prefetching::IntoL2 => true,
        Prefetching::Never => false,
        Prefetching::Auto => auto,
    }
}

/// The longest bf16/f16 rows (in elements) whose outputs [`Stores::Auto`] writes with
/// plain stores however large the call, on the CPUs where
/// [`plain_stores_for_half_rows`] says so.
pub const PLAIN_HALF_ROW_MAX: usize = 1024;

/// Whether a bf16/f16 forward over rows of `d` elements writes its outputs with plain
/// stores under [`Stores::Auto`] even where an f32 output of the same bytes would
/// stream: rows of up to [`PLAIN_HALF_ROW_MAX`] elements on AMD CPUs (CPUID vendor).
/// A streamed 16-bit output vector is half a cache line (AVX-512) or a quarter (AVX2),
/// so a line is whole only after two or four of them, and the passes' other stores
/// between them (the LayerNorm rows' scratch rows, `Widening`) cost the
/// write-combining buffers dearly; with plain stores the LayerNorm rows also widen once.
///
/// By A/B measurement (criterion `widening/*`, norm-core `benches/half.rs`, `-plain`
/// against the default streamed entries, one thread, AMD EPYC family 25 model 17, Zen 4,
/// two runs): at 65536×512 plain stores ran 0.91-1.56× the streamed default (bf16
/// LayerNorm widening once 1.26-1.36 on AVX-512 and 0.95-1.14 on AVX2, f16 1.11-1.56
/// in 15 of 16 pairs, bf16 RmsNorm on every pass 0.91-1.08); at 8192×4096 (rows of
/// 8 KiB) 0.62-1.01, so long rows keep streaming. A throwaway program (best of 5, two runs) agreed:
/// LayerNorm 1.10-1.42× at rows of 512-1024 (131072×768, 262144×1024: 512 MiB per
/// array), RmsNorm 1.33-1.52× at 262144×1024, and no clear gain at rows of 2048-4096. Not
/// measured on Intel, where streaming stays.
///
/// # Example
/// ```
/// use norm_core::simd::{PLAIN_HALF_ROW_MAX, plain_stores_for_half_rows};
///
/// // Long rows stream on every CPU.
/// assert!(!plain_stores_for_half_rows(PLAIN_HALF_ROW_MAX + 1));
/// ```
pub fn plain_stores_for_half_rows(d: usize) -> bool {
    d <= PLAIN_HALF_ROW_MAX && cpu_is_amd()
}

/// Whether LayerNorm's bf16/f16 rows widen once under [`Widening::Auto`] in calls larger
/// than a core's L2 (more than 4 MiB moved) whose outputs are written with plain
/// stores: on AMD CPUs (CPUID vendor), where that is what [`plain_stores_for_half_rows`]
/// pairs with; not elsewhere. Smaller calls widen those rows once on every CPU.
///
/// By A/B measurement, one thread, LayerNorm, best of batches. AMD EPYC family 25
/// model 17 (Zen 4), plain stores out of cache, once over the streamed default that
/// widens on every pass: 1.14-1.22× at 65536×512 and 1.18-1.42× at 262144×1024 (every
/// pass with plain stores: 1.00-1.05 and 1.04-1.22). Intel Xeon family 6 model 167
/// (4 December 2026, one binary, `Widening` switched at run time, two rounds, AVX-512
/// and forced AVX2), whose 480 MiB reported L3 keeps 64 MiB outputs on plain stores:
/// once over every pass, per pair of runs, 0.66-0.89× at 65536×512 and 8192×4096
/// (bf16 LayerNorm 65536×512 AVX-512 10.6-12.8 GB/s every pass, 9.0-9.7 once),
/// 0.84-1.00× at 4096×768 and 2048×768 (12 and 6 MiB moved), 0.87-1.09× at 64×768 to
/// 1024×768 (up to 3 MiB: no consistent side). The `widening/*` groups (norm-core
/// `benches/half.rs`) time these shapes side by side.
///
/// # Example
/// ```
/// use norm_core::simd::widens_once_beyond_l2;
///
/// // A property of the CPU, detected once.
/// assert_eq!(widens_once_beyond_l2(), widens_once_beyond_l2());
/// ```
pub fn widens_once_beyond_l2() -> bool {
    cpu_is_amd()
}

/// Whether software prefetches of the rows ahead pay on this CPU where the hardware
/// prefetchers could do the work alone (the forward rows, the backward's rows in
/// cache), when [`Prefetching::Auto`] decides: on every CPU but AMD's. Detected once
/// (CPUID vendor), cached.
///
/// By A/B measurement, one thread, f32, rows one after another. Intel Xeon model 207
/// (earlier runs, out of cache): prefetching 8 KiB ahead made the forward 8-24% faster
/// on the forced AVX2 path (both norms) and AVX-512 RmsNorm, 5-12% slower on AVX-512
/// LayerNorm; the backward's prefetch 10-20% faster. AMD EPYC family 25 model 17 (Zen 4),
/// 4 December 2026, two rounds each, rows/s without over with the prefetch on the AVX2
/// and AVX-512 paths: the forward out of cache (`prefetching/*`, 65536×512 and
/// 8192×4096, outputs streamed) LayerNorm 0.87-1.39 (mostly 1.15-1.39), RmsNorm
/// 0.97-1.30, the fused forms 0.93-1.29 (21 of 24 pairs faster without; the portable
/// path 0.75-1.25, no clear side); the backward (`prefetching_backward`) in cache
/// (512×768) 1.01-1.17 (8 of 8), but out of cache 0.78-0.99, so there it keeps
/// prefetching on every CPU.
pub fn software_prefetch_pays() -> bool {
    !cpu_is_amd()
}

/// How a kernel writes its large outputs. The choice never changes a value: the same
/// element is computed the same way whichever store writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Stores {
    /// Non-temporal stores for calls that move at least twice [`stream_min_bytes`]
    /// (every array read and written, [`stream_moved`](Stores::stream_moved)): for a
    /// forward, outputs of at least [`stream_min_bytes`]; plain stores below (what the
    /// public functions do).
    #[default]
    Auto,
    /// Always plain stores.
    Cached,
    /// Non-temporal stores whatever the size (test and benchmark hook).
    Streaming,
}

impl Stores {
    /// Whether an output of `len` elements of `F` is streamed. Depends only on the
    /// size (and the machine's cache), never on the thread count.
    ///
    /// # Example
    /// ```
    /// use norm_core::simd::{Stores, stream_min_bytes};
    ///
    /// assert!(!Stores::Auto.stream::<f32>(1024));
    /// assert!(Stores::Auto.stream::<f32>(stream_min_bytes() / 4));
    /// assert!(Stores::Streaming.stream::<f64>(1) && !Stores::Cached.stream::<f64>(1 << 30));
    /// ```
    pub fn stream<F>(self, len: usize) -> bool {
        match self {
            Stores::Auto => len.saturating_mul(std::mem::size_of::<F>()) >= stream_min_bytes(),
            Stores::Cached => false,
            Stores::Streaming => true,
        }
    }

    /// Whether a call that moves `bytes` streams its outputs: `bytes` counts every array
    /// the call reads and every array it writes, each once (a forward: `x` and `y`; a
    /// backward: `x`, `dy` and `dx`; a fused forward: `x`, the residual, `h` and `y`).
    /// [`Auto`](Stores::Auto) streams from twice [`stream_min_bytes`] on: for a forward
    /// (as many bytes in as out) that is an output of [`stream_min_bytes`], as
    /// [`stream`](Stores::stream) decides; calls that move more arrays stream at a
    /// smaller output, and a bf16/f16 output streams at the same bytes as an f32 one (at
    /// twice its rows). Depends only on the sizes (and the machine's cache), never on
    /// the thread count.
    ///
    /// # Example
    /// ```
    /// use norm_core::simd::{Stores, stream_min_bytes};
    ///
    /// let t = stream_min_bytes();
    /// // A forward whose output is `t` bytes moves 2t: it streams, as `stream` says.
    /// assert!(Stores::Auto.stream_moved(2 * t) && Stores::Auto.stream::<f32>(t / 4));
    /// // A backward (three arrays) streams from 2t/3 per array on.
    /// assert!(Stores::Auto.stream_moved(3 * (2 * t / 3 + 1)));
    /// assert!(!Stores::Auto.stream_moved(2 * t - 1) && Stores::Streaming.stream_moved(0));
    /// ```
    pub fn stream_moved(self, bytes: usize) -> bool {
        match self {
            Stores::Auto => bytes >= stream_min_bytes().saturating_mul(2),
            Stores::Cached => false,
            Stores::Streaming => true,
        }
    }

    /// How the outputs of a call that moves `bytes` are written (as
    /// [`stream_moved`](Stores::stream_moved)).
    pub fn store_moved(self, bytes: usize) -> Store {
        if self.stream_moved(bytes) {
            Store::Streaming
        } else {
            Store::Cached
        }
    }

    /// How an output of `len` elements of `F` is written (as [`stream`](Stores::stream)).
    ///
    /// # Example
    /// ```
    /// use norm_core::simd::{Store, Stores};
    ///
    /// assert_eq!(Stores::Auto.store::<f32>(16), Store::Cached);
    /// assert_eq!(Stores::Streaming.store::<f32>(16), Store::Streaming);
    /// ```
    pub fn store<F>(self, len: usize) -> Store {
        if self.stream::<F>(len) {
            Store::Streaming
        } else {
            Store::Cached
        }
    }
}

/// How one output is written, as [`Stores`] decided for its size. Never changes a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// Plain stores, through the caches.
    Cached,
    /// Non-temporal stores for whole cache lines (the writer fences with
    /// [`stream_fence`] before it returns).
    Streaming,
}

/// An operation (one row, or a block of rows) that runs with any backend for its element
/// type; the unit of work handed to [`run_on`], which picks the backend for a [`Path`].
pub trait SimdOp<F: Float> {
    /// What the operation returns (row statistics, or `()`).
    type Out;
    /// Runs the operation with backend `s`.
    fn run<S: Simd<E = F>>(self, s: S) -> Self::Out;
}

/// Runs `op` on `path` with the backend for `F`.
///
/// Generic code reaches the `f32`/`f64` backends through the sealed [`Float`] trait (each
/// element type routes to its own dispatcher), so no type is ever reinterpreted. The
/// x86 backends run inside `#[target_feature]` entry points into which the op's
/// `#[inline(always)]` body is inlined; a [`Path`] proves the CPU supports them.
#[inline(always)]
pub fn run_on<F: Float, O: SimdOp<F>>(path: Path, op: O) -> O::Out {
    F::run_on(path, op)
}

/// [`run_on`] for `f32`.
pub(crate) fn on_f32<O: SimdOp<f32>>(path: Path, op: O) -> O::Out {
    match path.0 {
        // SAFETY: a `Path` exists only for paths this CPU supports.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => unsafe { x86::avx512_f32(op) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2Fma => unsafe { x86::avx2_f32(op) },
        _ => op.run(Portable::<f32>::new()),
    }
}

/// [`run_on`] for `f64`.
pub(crate) fn on_f64<O: SimdOp<f64>>(path: Path, op: O) -> O::Out {
    match path.0 {
        // SAFETY: a `Path` exists only for paths this CPU supports.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => unsafe { x86::avx512_f64(op) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2Fma => unsafe { x86::avx2_f64(op) },
        _ => op.run(Portable::<f64>::new()),
    }
}

/// [`run_on`] for the half-precision kernels (`f32` backends whose
/// [`Simd::load_half`] and [`Simd::store_half`] convert in registers): on the AVX-512
/// path, the backend that rounds to bf16 with `vcvtneps2bf16` where the CPU has
/// `avx512bf16`; otherwise the path's `f32` backend. Same arithmetic as [`run_on`] for
/// `f32` on the same path, so the same bits.
pub(crate) fn on_half<O: SimdOp<f32>>(path: Path, op: O) -> O::Out {
    match path.0 {
        // SAFETY: a `Path` exists only for paths this CPU supports, and the extra
        // features were checked.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 if crate::convert::x86::has_avx512bf16() => unsafe { x86::avx512bf16_f32(op) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx512 => unsafe { x86::avx512_f32(op) },
        // SAFETY: as above.
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2Fma => unsafe { x86::avx2_f32(op) },
        _ => op.run(Portable::<f32>::new()),
    }
}

/// Lanes of the portable backend (two SSE registers of f32).
const PW: usize = 8;

/// The portable backend: `[F; 8]` arrays, element-wise, no FMA; the compiler vectorizes
/// it for the baseline target.
#[derive(Clone, Copy, Debug, Default)]
pub struct Portable<F>(std::marker::PhantomData<F>);

impl<F: Float> Portable<F> {
    /// The portable backend (runs everywhere).
    pub fn new() -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;
    use half::{bf16, f16};

    /// `HeldHalf` holds an element only where it starts an aligned 4-byte word with a
    /// neighbour to come, writes the pair when the neighbour comes, and `flush` writes a
    /// held element that never got one (the edge tests cannot see that case: whole rows
    /// never leave an element held).
    #[test]
    fn held_half_pairs_and_flushes() {
        let s = Portable::<f32>::new();
        let v = |x: f32| bf16::from_f32(x);
        let mut dst = [v(0.0); 6];
        let start = usize::from(!(dst.as_ptr() as usize).is_multiple_of(4));
        let mut held = HeldHalf::NONE;
        held.put(s, &mut dst, start, v(1.0), true);
        assert_eq!(dst[start], v(0.0), "held, not yet written");
        held.put(s, &mut dst, start + 1, v(2.0), true);
        assert_eq!(
            (dst[start], dst[start + 1]),
            (v(1.0), v(2.0)),
            "written as a pair"
        );
        held.put(s, &mut dst, start + 2, v(3.0), true);
        held.flush(&mut dst);
        assert_eq!(dst[start + 2], v(3.0), "flushed");
        // Not streamed, or no neighbour in the slice: written at once.
        held.put(s, &mut dst, start + 2, v(4.0), false);
        assert_eq!(dst[start + 2], v(4.0));
        let last = dst.len() - 1;
        held.put(s, &mut dst, last, v(5.0), true);
        assert_eq!(dst[last], v(5.0));
        // A held element whose neighbour never comes is written before the next one.
        held.put(s, &mut dst, start, v(6.0), true);
        held.put(s, &mut dst, start + 3, v(7.0), false);
        assert_eq!((dst[start], dst[start + 3]), (v(6.0), v(7.0)));
    }

    /// Stores `x` in pairs of vectors with `store_half2_as` (to `two`, as `store` says)
    /// and one vector at a time with `store_half_as` (to `one`).
    struct Pairs<'a, H, const COMPUTED: bool> {
        x: &'a [f32],
        one: &'a mut [H],
        two: &'a mut [H],
        store: Store,
    }

    impl<H: Half, const COMPUTED: bool> SimdOp<f32> for Pairs<'_, H, COMPUTED> {
        type Out = ();
        fn run<S: Simd<E = f32>>(self, s: S) {
            let w = S::W;
            assert!(self.one.len() >= self.x.len() && self.two.len() >= self.x.len());
            let mut i = 0;
            while i + 2 * w <= self.x.len() {
                let (a, b) = (s.load(&self.x[i..]), s.load(&self.x[i + w..]));
                // SAFETY: `i + 2·W` within both outputs (asserted); `two` is aligned to
                // 64 bytes by the caller, so every pair to `4·W` bytes.
                unsafe {
                    s.store_half2_as::<H, COMPUTED>(self.two.as_mut_ptr().add(i), a, b, self.store);
                    s.store_half_as::<H, COMPUTED>(self.one.as_mut_ptr().add(i), a, Store::Cached);
                    s.store_half_as::<H, COMPUTED>(self.one.as_mut_ptr().add(i + w), b, Store::Cached);
                }
                i += 2 * w;
            }
            stream_fence();
        }
    }

    /// `x` stored in pairs and one by one on every path this CPU has, plain and
    /// streamed: the same bits, and those of the scalar rounding.
    fn pairs_match<H: Half, const COMPUTED: bool>(x: &[f32]) {
        let want: Vec<H> = x.iter().map(|&v| H::narrow1(v)).collect();
        for path in KernelPath::all().iter().filter_map(|&p| Path::new(p)) {
            for store in [Store::Cached, Store::Streaming] {
                let mut one = vec![H::default(); x.len()];
                // `two` starts at a 64-byte boundary of its buffer.
                let mut buf = vec![H::default(); x.len() + 32];
                let skip = (64 - buf.as_ptr() as usize % 64) % 64 / 2;
                let two = &mut buf[skip..skip + x.len()];
                on_half(
                    path,
                    Pairs::<H, COMPUTED> {
                        x,
                        one: &mut one,
                        two,
                        store,
                    },
                );
                // Compared as bits (NaN lanes too): the widening is exact.
                let bits = |v: &[H]| v.iter().map(|h| h.widen1().to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&one), bits(&want), "{path:?} one by one");
                assert_eq!(
                    bits(&buf[skip..skip + x.len()]),
                    bits(&want),
                    "{path:?} {store:?} in pairs"
                );
            }
        }
    }

    /// Values in every class: ordinary, ties, f32 subnormals in the first or second
    /// vector of a pair or in neither, zeros, infinities, values that round to bf16 or
    /// f16 overflow, and (for the general form) NaNs with payloads in their low bits.
    fn values(nan_payloads: bool) -> Vec<f32> {
        let mut x: Vec<f32> = (0..512u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761) >> 2) * if i % 3 == 0 { -1.0 } else { 1.0 })
            .collect();
        let specials = [
            f32::from_bits(1),
            -f32::from_bits(0x7f_ffff),
            f32::from_bits(0x3f80_8000),
            f32::from_bits(0x3f81_8000),
            0.0,
            -0.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MAX,
            65520.0,
            f32::NAN,
        ];
        // Specials at lanes that fall in the first and in the second vector of a pair
        // on both vector widths, with whole pairs of ordinary values between them.
        for (k, v) in specials.into_iter().enumerate() {
            x[k * 37 % 512] = v;
        }
        if nan_payloads {
            x[300] = f32::from_bits(0x7fc0_1234);
            x[333] = f32::from_bits(0xff80_0001);
        }
        x
    }

    #[test]
    fn pairs_of_half_stores_match_single_stores_and_scalar_rounding() {
        pairs_match::<bf16, false>(&values(true));
        pairs_match::<bf16, true>(&values(false));
        pairs_match::<f16, false>(&values(true));
        pairs_match::<f16, true>(&values(false));
        // A subnormal in the second vector of a pair only (lanes 16-31 on AVX-512,
        // 8-15 on AVX2).
        let mut x = vec![1.5f32; 64];
        x[20] = f32::from_bits(0x0001_8000);
        x[12] = -f32::from_bits(0x0040_0000);
        pairs_match::<bf16, true>(&x);
    }
}
