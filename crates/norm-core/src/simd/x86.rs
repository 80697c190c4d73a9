//! x86-64 vector backends (AVX2+FMA and AVX-512F, for `f32` and `f64`) and the
//! `#[target_feature]` entry points that run a generic [`SimdOp`] with them.
//!
//! The generic bodies (`#[inline(always)]`, in `norm-core`'s and `norm-autograd`'s
//! `kernels/` and `kernels.rs`) are inlined into the entry points here and so compiled for these
//! features; callers must have checked the CPU first (a [`Path`](super::Path)).

use std::arch::x86_64::*;

use super::{Simd, SimdOp, Store, store_half_each};
use crate::convert::Half;
#[allow(unused_imports)]
use crate::convert::x86::{
    cvt_bf16_avx512bf16, cvt2_bf16_avx512bf16, pack_u16_avx2, rne_bf16_avx2, rne_bf16_avx2_computed,
    rne_bf16_avx512, rne_bf16_avx512_computed,
};

/// The two-source shuffle of a backend ([`Simd::combine`] and its helpers): `copy`
/// goes through memory (two stores, one unaligned load); `permute $idx, $perm` is one
/// AVX-512 `permutex2var` with lane indices of type `$idx`.
macro_rules! shift_impl {
    (copy) => {
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
    };
    (permute $idx:ty, $perm:ident) => {
        const SHIFT: bool = true;
        type Shift = __m512i;
        #[inline(always)]
        fn shift(self, m: usize) -> __m512i {
            let idx: [$idx; Self::W] = std::array::from_fn(|l| (m + l) as $idx);
            // SAFETY: W indices of 64/W bytes each, 64 bytes in all; features as above.
            unsafe { _mm512_loadu_si512(idx.as_ptr().cast()) }
        }
        #[inline(always)]
        fn combine(self, a: Self::V, b: Self::V, m: __m512i) -> Self::V {
            // SAFETY: features as above.
            unsafe { $perm(a, m, b) }
        }
    };
}

/// The half-precision loads and stores of a backend ([`Simd::load_half`],
/// [`Simd::store_half`]): `none` keeps the lane-by-lane defaults (f64); `avx2` widens
/// bf16 by one byte shuffle (`vpshufb` of the eight values broadcast to both 128-bit
/// lanes) and f16 with F16C, and rounds with the integer ties-to-even form or F16C;
/// `avx512` widens bf16 by a zero-extension and a shift (a word permutation,
/// `vpermt2w` with a zero vector, measured 10% slower in cache on an Intel Xeon family 6
/// model 167) and otherwise likewise with 512-bit vectors; `avx512bf16` rounds to bf16
/// with `vcvtneps2bf16` (same bits: every widening is exact). The conversions are the ones
/// `convert/x86.rs` runs over whole rows, so the fused kernels round exactly like
/// [`narrow`](super::narrow).
macro_rules! half_impl {
    (none) => {};
    (avx2) => {
        #[inline(always)]
        unsafe fn load_half<H: Half>(self, p: *const H) -> __m256 {
            // SAFETY: `p..p + 8` readable per the contract; AVX2 and F16C enabled by the
            // entry points (a `Path` checked them).
            unsafe {
                let h = _mm_loadu_si128(p.cast());
                if H::BF16 {
                    // The eight values broadcast to both 128-bit lanes, each moved to the
                    // upper half of its 32-bit lane (zeros below): one in-lane shuffle,
                    // where a zero-extension and a shift took two operations.
                    let at = _mm256_setr_epi8(
                        -128, -128, 0, 1, -128, -128, 2, 3, -128, -128, 4, 5, -128, -128, 6, 7, -128, -128, 8,
                        9, -128, -128, 10, 11, -128, -128, 12, 13, -128, -128, 14, 15,
                    );
                    _mm256_castsi256_ps(_mm256_shuffle_epi8(_mm256_broadcastsi128_si256(h), at))
                } else {
                    _mm256_cvtph_ps(h)
                }
            }
        }
        #[inline(always)]
        unsafe fn store_half_as<H: Half, const COMPUTED: bool>(self, p: *mut H, v: __m256, store: Store) {
            // SAFETY: `p..p + 8` writable per the contract, 16-byte aligned when
            // streaming; features as above.
            unsafe {
                let h = if H::BF16 {
                    let r = if COMPUTED { rne_bf16_avx2_computed(v) } else { rne_bf16_avx2(v) };
                    _mm_packus_epi32(_mm256_castsi256_si128(r), _mm256_extracti128_si256::<1>(r))
                } else {
                    _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)
                };
                match store {
                    Store::Streaming => _mm_stream_si128(p.cast(), h),
                    Store::Cached => _mm_storeu_si128(p.cast(), h),
                }
            }
        }
        #[inline(always)]
        unsafe fn store_half2_as<H: Half, const COMPUTED: bool>(self, p: *mut H, a: __m256, b: __m256, store: Store) {
            // SAFETY: `p..p + 16` writable per the contract, 32-byte aligned when
            // streaming; features as above.
            unsafe {
                if !H::BF16 {
                    return store_half_each::<Self, H, COMPUTED>(self, p, a, b, store);
                }
                let (a, b) = if COMPUTED {
                    (rne_bf16_avx2_computed(a), rne_bf16_avx2_computed(b))
                } else {
                    (rne_bf16_avx2(a), rne_bf16_avx2(b))
                };
                let h = pack_u16_avx2(a, b);
                match store {
                    Store::Streaming => _mm256_stream_si256(p.cast(), h),
                    Store::Cached => _mm256_storeu_si256(p.cast(), h),
                }
            }
        }
    };
    (avx512 $($bf16:ident)?) => {
        #[inline(always)]
        unsafe fn load_half<H: Half>(self, p: *const H) -> __m512 {
            // SAFETY: `p..p + 16` readable per the contract; AVX-512F enabled by the
            // entry points (a `Path` checked it).
            unsafe {
                let h = _mm256_loadu_si256(p.cast());
                if H::BF16 {
                    _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
                } else {
                    _mm512_cvtph_ps(h)
                }
            }
        }
        #[inline(always)]
        unsafe fn store_half_as<H: Half, const COMPUTED: bool>(self, p: *mut H, v: __m512, store: Store) {
            // SAFETY: `p..p + 16` writable per the contract, 32-byte aligned when
            // streaming; features as above.
            unsafe {
                let h = if H::BF16 {
                    half_impl!(@bf16 v COMPUTED $($bf16)?)
                } else {
                    _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v)
                };
                match store {
                    Store::Streaming => _mm256_stream_si256(p.cast(), h),
                    Store::Cached => _mm256_storeu_si256(p.cast(), h),
                }
            }
        }
        half_impl!(@pair $($bf16)?);
    };
    // Without `avx512bf16` the pair is stored one by one (the default): packing two
    // integer roundings at once needs AVX512BW, which the AVX-512 path does not require.
    (@pair) => {};
    (@pair avx512bf16) => {
        #[inline(always)]
        unsafe fn store_half2_as<H: Half, const COMPUTED: bool>(self, p: *mut H, a: __m512, b: __m512, store: Store) {
            // SAFETY: `p..p + 32` writable per the contract, 64-byte aligned when
            // streaming; features as above.
            unsafe {
                if !H::BF16 {
                    return store_half_each::<Self, H, COMPUTED>(self, p, a, b, store);
                }
                let h = cvt2_bf16_avx512bf16(a, b);
                match store {
                    Store::Streaming => _mm512_stream_si512(p.cast(), h),
                    Store::Cached => _mm512_storeu_si512(p.cast(), h),
                }
            }
        }
    };
    (@bf16 $v:ident $c:ident) => {
        if $c { rne_bf16_avx512_computed($v) } else { rne_bf16_avx512($v) }
    };
    // `vcvtneps2bf16` rounds NaNs right whatever their payload.
    (@bf16 $v:ident $c:ident avx512bf16) => { cvt_bf16_avx512bf16($v) };
}

macro_rules! backend {
    ($name:ident, $e:ty, $v:ty, $w:expr, $feat:literal,
     splat = $splat:ident, load = $load:ident, store = $store:ident,
     add = $add:ident, sub = $sub:ident, mul = $mul:ident, fma = $fma:ident,
     stream = $stream:ident, half = [$($half:tt)*], shift = $($shift:tt)*) => {
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
            fn load(self, s: &[$e]) -> $v {
                assert!(s.len() >= $w);
                // SAFETY: in bounds (checked above); features as above.
                unsafe { $load(s.as_ptr()) }
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
            unsafe fn stream_at(self, s: &mut [$e], i: usize, v: $v) {
                debug_assert!(i + $w <= s.len());
                debug_assert!((s.as_ptr() as usize + i * size_of::<$e>()).is_multiple_of(size_of::<$v>()));
                // SAFETY: in bounds and aligned to the vector size per the contract;
                // features as above.
                unsafe { $stream(s.as_mut_ptr().add(i), v) }
            }
            #[inline(always)]
            fn stream1(self, s: &mut [$e], i: usize, v: $e) {
                let p: *mut $e = &mut s[i];
                // SAFETY: `p` comes from a reference, so it is valid for writes and
                // aligned to its element; `movnti` (SSE2) is part of x86-64.
                unsafe {
                    if size_of::<$e>() == 4 {
                        _mm_stream_si32(p.cast(), v.to_bits() as i32)
                    } else {
                        _mm_stream_si64(p.cast(), v.to_bits() as i64)
                    }
                }
            }
            #[inline(always)]
            fn stream_pair<H: Half>(self, s: &mut [H], i: usize, a: H, b: H) {
                let pair = &mut s[i..i + 2];
                let p = pair.as_mut_ptr();
                if !(p as usize).is_multiple_of(4) {
                    pair.copy_from_slice(&[a, b]);
                    return;
                }
                const { assert!(size_of::<H>() == 2) };
                // SAFETY: `H` is bf16 or f16 (`Half` is sealed), two bytes of plain bits.
                let bits = unsafe {
                    u32::from(std::mem::transmute_copy::<H, u16>(&a))
                        | u32::from(std::mem::transmute_copy::<H, u16>(&b)) << 16
                };
                // SAFETY: `p..p + 2` is the checked pair, 4-byte aligned (tested above);
                // `movnti` (SSE2) is part of x86-64.
                unsafe { _mm_stream_si32(p.cast(), bits as i32) }
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
            const PREFETCHES: bool = true;
            const REGISTERS: bool = true;
            #[inline(always)]
            fn prefetch(self, p: *const $e) {
                // SAFETY: prefetching never faults, whatever the address.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(p.cast::<i8>()) }
            }
            #[inline(always)]
            fn prefetch_far(self, p: *const $e) {
                // SAFETY: as for `prefetch`.
                unsafe { _mm_prefetch::<_MM_HINT_T1>(p.cast::<i8>()) }
            }
            shift_impl!($($shift)*);
            half_impl!($($half)*);
            #[inline(always)]
            fn sum(self, v: $v) -> $e {
                let mut a = [0.0 as $e; $w];
                self.store(&mut a, v);
                // Pairwise, fixed order.
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
    stream = _mm256_stream_ps,
    half = [avx2],
    shift = copy
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
    stream = _mm256_stream_pd,
    half = [none],
    shift = copy
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
    stream = _mm512_stream_ps,
    half = [avx512],
    shift = permute i32, _mm512_permutex2var_ps
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
    stream = _mm512_stream_pd,
    half = [none],
    shift = permute i64, _mm512_permutex2var_pd
);

backend!(
    Avx512Bf16F32,
    f32,
    __m512,
    16,
    "avx512f,avx512bf16,avx512vl,avx512dq",
    splat = _mm512_set1_ps,
    load = _mm512_loadu_ps,
    store = _mm512_storeu_ps,
    add = _mm512_add_ps,
    sub = _mm512_sub_ps,
    mul = _mm512_mul_ps,
    fma = _mm512_fmadd_ps,
    stream = _mm512_stream_ps,
    half = [avx512 avx512bf16],
    shift = permute i32, _mm512_permutex2var_ps
);

/// Runs `op` with the AVX2+FMA `f32` backend.
///
/// # Safety
/// The CPU must support `avx2`, `fma` and `f16c` (a `Path` for `Avx2Fma` checked them).
#[target_feature(enable = "avx2,fma,f16c")]
pub(super) unsafe fn avx2_f32<O: SimdOp<f32>>(op: O) -> O::Out {
    op.run(Avx2F32(()))
}

/// Runs `op` with the AVX2+FMA `f64` backend.
///
/// # Safety
/// The CPU must support `avx2` and `fma`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn avx2_f64<O: SimdOp<f64>>(op: O) -> O::Out {
    op.run(Avx2F64(()))
}

/// Runs `op` with the AVX-512F `f32` backend.
///
/// # Safety
/// The CPU must support `avx512f` and `fma`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn avx512_f32<O: SimdOp<f32>>(op: O) -> O::Out {
    op.run(Avx512F32(()))
}

/// Runs `op` with the AVX-512F `f64` backend.
///
/// # Safety
/// The CPU must support `avx512f` and `fma`.
#[target_feature(enable = "avx512f,avx2,fma")]
pub(super) unsafe fn avx512_f64<O: SimdOp<f64>>(op: O) -> O::Out {
    op.run(Avx512F64(()))
}

/// Runs `op` with the AVX-512F `f32` backend that rounds to bf16 with `vcvtneps2bf16`
/// (the half-precision kernels, [`on_half`](super::on_half)).
///
/// # Safety
/// The CPU must support `avx512f`, `fma`, `avx512bf16`, `avx512vl` and `avx512dq`.
#[target_feature(enable = "avx512f,avx512bf16,avx512vl,avx512dq,avx2,fma,f16c")]
pub(super) unsafe fn avx512bf16_f32<O: SimdOp<f32>>(op: O) -> O::Out {
    op.run(Avx512Bf16F32(()))
}
