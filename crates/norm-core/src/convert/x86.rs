//! x86-64 row conversions for the half-precision types: AVX2 (bf16 by integer shifts
//! with ties-to-even rounding, f16 with F16C) and AVX-512 (bf16 with `vcvtneps2bf16`
//! where the CPU has `avx512bf16`, else integer shifts; f16 with the AVX-512F forms of
//! the F16C instructions). Each function returns `false` when the path (or a feature it
//! needs, e.g. F16C beside AVX2) is not there, and the caller runs the scalar loop; all
//! produce the scalar loop's bits (tested in `mod.rs`).
//!
//! Narrowing writes 32 outputs (one 64-byte line) per step. With streaming stores it
//! writes the elements before the output's first line boundary and after its last full
//! line with plain scalar stores, and the whole lines between with non-temporal ones.

use std::arch::x86_64::*;
use std::sync::atomic::{AtomicU8, Ordering};

use super::scalar;
use crate::KernelPath;
use crate::simd::{Path, Store};

/// Outputs per narrowing step: one 64-byte cache line of u16.
const LINE: usize = 32;

/// Whether the CPU has `feature`, detected once per flag slot (0 unknown, 1 no, 2 yes).
macro_rules! cached_feature {
    ($slot:ident, $($f:tt),+) => {{
        static $slot: AtomicU8 = AtomicU8::new(0);
        match $slot.load(Ordering::Relaxed) {
            1 => false,
            2 => true,
            _ => {
                let yes = true $(&& std::arch::is_x86_feature_detected!($f))+;
                $slot.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
                yes
            }
        }
    }};
}

fn has_f16c() -> bool {
    cached_feature!(F16C, "f16c")
}

/// Whether the AVX-512 path converts f32 to bf16 with `vcvtneps2bf16`.
pub(crate) fn has_avx512bf16() -> bool {
    cached_feature!(AVX512BF16, "avx512bf16", "avx512vl", "avx512dq")
}

/// Where a narrowing pass over `dst` streams: `(start, end)` of the whole lines between
/// the first and last cache-line boundaries, or `(0, 0)` for plain stores.
#[inline(always)]
fn stream_span(dst: &[u16], store: Store) -> (usize, usize) {
    if store != Store::Streaming {
        return (0, 0);
    }
    let mis = dst.as_ptr() as usize % 64;
    if !mis.is_multiple_of(2) {
        return (0, 0);
    }
    let a = (64 - mis) % 64 / 2;
    if a + LINE > dst.len() {
        return (0, 0);
    }
    (a, a + (dst.len() - a) / LINE * LINE)
}

/// The narrowing loop: scalars before the streamed span, lines of `LINE` outputs
/// (`$line(i, streaming)` writes `dst[i..i + LINE]`), scalars after the last line.
macro_rules! narrow_loop {
    ($src:expr, $dst:expr, $store:expr, $scalar:path, |$i:ident, $nt:ident| $line:expr) => {{
        let (src, dst) = ($src, $dst);
        let n = dst.len();
        let (start, end) = stream_span(dst, $store);
        for j in 0..start {
            dst[j] = $scalar(src[j]);
        }
        let mut $i = start;
        while $i + LINE <= n {
            let $nt = $i + LINE <= end;
            $line;
            $i += LINE;
        }
        for j in $i..n {
            dst[j] = $scalar(src[j]);
        }
    }};
}

/// bf16 → f32 on `path`; `false` if the path has no vector form here.
pub(super) fn bf16_widen(path: Path, src: &[u16], dst: &mut [f32]) -> bool {
    match path.get() {
        // SAFETY: a `Path` exists only for paths this CPU supports.
        KernelPath::Avx512 => unsafe { bf16_widen_avx512(src, dst) },
        // SAFETY: as above.
        KernelPath::Avx2Fma => unsafe { bf16_widen_avx2(src, dst) },
        _ => return false,
    }
    true
}

/// f32 → bf16 on `path`; `false` if the path has no vector form here.
pub(super) fn bf16_narrow(path: Path, src: &[f32], dst: &mut [u16], store: Store) -> bool {
    match path.get() {
        // SAFETY: a `Path` exists only for paths this CPU supports, and `has_avx512bf16`
        // checked the extra features.
        KernelPath::Avx512 if has_avx512bf16() => unsafe { bf16_narrow_avx512bf16(src, dst, store) },
        // SAFETY: as above.
        KernelPath::Avx512 => unsafe { bf16_narrow_avx512(src, dst, store) },
        // SAFETY: as above.
        KernelPath::Avx2Fma => unsafe { bf16_narrow_avx2(src, dst, store) },
        _ => return false,
    }
    true
}

/// f16 → f32 on `path`; `false` if the path (or F16C) is not there.
pub(super) fn f16_widen(path: Path, src: &[u16], dst: &mut [f32]) -> bool {
    match path.get() {
        // SAFETY: a `Path` exists only for paths this CPU supports (AVX-512F has the
        // 512-bit forms of the F16C instructions).
        KernelPath::Avx512 => unsafe { f16_widen_avx512(src, dst) },
        // SAFETY: as above, and F16C checked.
        KernelPath::Avx2Fma if has_f16c() => unsafe { f16_widen_avx2(src, dst) },
        _ => return false,
    }
    true
}

/// f32 → f16 on `path`; `false` if the path (or F16C) is not there.
pub(super) fn f16_narrow(path: Path, src: &[f32], dst: &mut [u16], store: Store) -> bool {
    match path.get() {
        // SAFETY: as in `f16_widen`.
        KernelPath::Avx512 => unsafe { f16_narrow_avx512(src, dst, store) },
        // SAFETY: as above.
        KernelPath::Avx2Fma if has_f16c() => unsafe { f16_narrow_avx2(src, dst, store) },
        _ => return false,
    }
    true
}

// ---- AVX2 -------------------------------------------------------------------------

#[target_feature(enable = "avx2")]
unsafe fn bf16_widen_avx2(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
            let w = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_castsi256_ps(w));
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = scalar::bf16_to_f32(src[j]);
    }
}

/// Eight f32 rounded to bf16 (ties to even, NaN quieted), in the low 16 bits of each
/// 32-bit lane.
#[inline(always)]
pub(crate) fn rne_bf16_avx2(v: __m256) -> __m256i {
    // SAFETY (all): called only from functions with AVX2 enabled.
    unsafe {
        let b = _mm256_castps_si256(v);
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(b), _mm256_set1_epi32(1));
        let rounded = _mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), lsb);
        let r = _mm256_srli_epi32::<16>(rounded);
        let abs = _mm256_and_si256(b, _mm256_set1_epi32(0x7fff_ffff));
        let nan = _mm256_cmpgt_epi32(abs, _mm256_set1_epi32(0x7f80_0000));
        let q = _mm256_or_si256(_mm256_srli_epi32::<16>(b), _mm256_set1_epi32(0x40));
        _mm256_blendv_epi8(r, q, nan)
    }
}

/// [`rne_bf16_avx2`] without its NaN fix-up, for lanes whose NaNs all have zero low 16
/// bits (see `Simd::store_half_as`): the same bits for such lanes.
#[inline(always)]
pub(crate) fn rne_bf16_avx2_computed(v: __m256) -> __m256i {
    // SAFETY (all): called only from functions with AVX2 enabled.
    unsafe {
        let b = _mm256_castps_si256(v);
        let lsb = _mm256_and_si256(_mm256_srli_epi32::<16>(b), _mm256_set1_epi32(1));
        let rounded = _mm256_add_epi32(_mm256_add_epi32(b, _mm256_set1_epi32(0x7fff)), lsb);
        _mm256_srli_epi32::<16>(rounded)
    }
}

/// Two vectors of 16-bit values in the low halves of their 32-bit lanes (each at most
/// `0xffff`), packed in order, `a`'s eight then `b`'s: `vpackusdw` interleaves them by
/// 128-bit lanes and one `vpermq` puts them back in order (two operations for both
/// vectors, where packing each alone takes two).
#[inline(always)]
pub(crate) fn pack_u16_avx2(a: __m256i, b: __m256i) -> __m256i {
    // SAFETY: called only from functions with AVX2 enabled.
    unsafe { _mm256_permute4x64_epi64::<0b11_01_10_00>(_mm256_packus_epi32(a, b)) }
}

/// Sixteen f32 at `p` rounded to bf16, in order.
#[inline(always)]
unsafe fn bf16x16_avx2(p: *const f32) -> __m256i {
    // SAFETY: `p..p + 16` readable per the contract; AVX2 enabled by the callers.
    unsafe {
        let a = rne_bf16_avx2(_mm256_loadu_ps(p));
        let b = rne_bf16_avx2(_mm256_loadu_ps(p.add(8)));
        pack_u16_avx2(a, b)
    }
}

/// Stores 32 bytes at `p`, non-temporally when `nt` (then `p` is 32-byte aligned).
#[inline(always)]
unsafe fn put256(p: *mut u16, v: __m256i, nt: bool) {
    // SAFETY: `p..p + 16` writable per the contract, aligned when `nt`.
    unsafe {
        if nt {
            _mm256_stream_si256(p.cast(), v);
        } else {
            _mm256_storeu_si256(p.cast(), v);
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn bf16_narrow_avx2(src: &[f32], dst: &mut [u16], store: Store) {
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    narrow_loop!(src, dst, store, scalar::f32_to_bf16, |i, nt| {
        // SAFETY: i + 32 <= n for both slices; streamed lines are 64-byte aligned.
        unsafe {
            put256(d.add(i), bf16x16_avx2(s.add(i)), nt);
            put256(d.add(i + 16), bf16x16_avx2(s.add(i + 16)), nt);
        }
    });
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_widen_avx2(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 8 <= n {
        // SAFETY: i + 8 <= n for both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for j in i..n {
        dst[j] = scalar::f16_to_f32(src[j]);
    }
}

#[target_feature(enable = "avx2,f16c")]
unsafe fn f16_narrow_avx2(src: &[f32], dst: &mut [u16], store: Store) {
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    narrow_loop!(src, dst, store, scalar::f32_to_f16, |i, nt| {
        // SAFETY: i + 32 <= n for both slices; streamed lines are 64-byte aligned.
        unsafe {
            for k in [0, 16] {
                let lo = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.add(i + k)));
                let hi = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm256_loadu_ps(s.add(i + k + 8)));
                put256(d.add(i + k), _mm256_set_m128i(hi, lo), nt);
            }
        }
    });
}

// ---- AVX-512 ------------------------------------------------------------------------

#[target_feature(enable = "avx512f")]
unsafe fn bf16_widen_avx512(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both slices.
        unsafe {
            let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            let w = _mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h));
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_castsi512_ps(w));
        }
        i += 16;
    }
    for j in i..n {
        dst[j] = scalar::bf16_to_f32(src[j]);
    }
}

/// Sixteen f32 rounded to bf16 by integer operations (ties to even, NaN quieted).
#[inline(always)]
pub(crate) fn rne_bf16_avx512(v: __m512) -> __m256i {
    // SAFETY (all): called only from functions with AVX-512F enabled.
    unsafe {
        let b = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
        let rounded = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb);
        let r = _mm512_srli_epi32::<16>(rounded);
        let abs = _mm512_and_si512(b, _mm512_set1_epi32(0x7fff_ffff));
        let nan = _mm512_cmpgt_epi32_mask(abs, _mm512_set1_epi32(0x7f80_0000));
        let q = _mm512_or_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(0x40));
        _mm512_cvtepi32_epi16(_mm512_mask_blend_epi32(nan, r, q))
    }
}

/// [`rne_bf16_avx512`] without its NaN fix-up, for lanes whose NaNs all have zero low
/// 16 bits (see `Simd::store_half_as`): the same bits for such lanes.
#[inline(always)]
pub(crate) fn rne_bf16_avx512_computed(v: __m512) -> __m256i {
    // SAFETY (all): called only from functions with AVX-512F enabled.
    unsafe {
        let b = _mm512_castps_si512(v);
        let lsb = _mm512_and_si512(_mm512_srli_epi32::<16>(b), _mm512_set1_epi32(1));
        let rounded = _mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb);
        _mm512_cvtepi32_epi16(_mm512_srli_epi32::<16>(rounded))
    }
}

/// Stores 64 bytes (`a` then `b`) at `p`, non-temporally when `nt` (then `p` is 64-byte
/// aligned).
#[inline(always)]
unsafe fn put512(p: *mut u16, a: __m256i, b: __m256i, nt: bool) {
    // SAFETY: `p..p + 32` writable per the contract, aligned when `nt`; AVX-512F
    // enabled by the callers.
    unsafe {
        let v = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
        if nt {
            _mm512_stream_si512(p.cast(), v);
        } else {
            _mm512_storeu_si512(p.cast(), v);
        }
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn bf16_narrow_avx512(src: &[f32], dst: &mut [u16], store: Store) {
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    narrow_loop!(src, dst, store, scalar::f32_to_bf16, |i, nt| {
        // SAFETY: i + 32 <= n for both slices; streamed lines are 64-byte aligned.
        unsafe {
            let a = rne_bf16_avx512(_mm512_loadu_ps(s.add(i)));
            let b = rne_bf16_avx512(_mm512_loadu_ps(s.add(i + 16)));
            put512(d.add(i), a, b, nt);
        }
    });
}

/// Sixteen f32 rounded to bf16 with `vcvtneps2bf16`, which rounds to nearest even and
/// quiets NaNs like the scalar form but flushes f32 subnormals to zero: a vector holding
/// one (nonzero, exponent field 0) takes the integer form instead.
#[inline(always)]
pub(crate) fn cvt_bf16_avx512bf16(v: __m512) -> __m256i {
    // SAFETY (all): called only from functions with AVX-512F, AVX512-BF16 and
    // AVX512DQ enabled.
    unsafe {
        // 0x20: the subnormal class (`vfpclassps`, one operation where the two bit
        // tests it replaces took three; AVX512DQ, which every `avx512bf16` CPU has).
        if _mm512_fpclass_ps_mask::<0x20>(v) != 0 {
            return rne_bf16_avx512(v);
        }
        std::mem::transmute::<__m256bh, __m256i>(_mm512_cvtneps_pbh(v))
    }
}

/// Thirty-two f32, `a` then `b`, rounded to bf16 with one `vcvtne2ps2bf16` where
/// [`cvt_bf16_avx512bf16`] takes one per vector (same bits: a pair holding an f32
/// subnormal is rounded one vector at a time by that function), in order.
#[inline(always)]
pub(crate) fn cvt2_bf16_avx512bf16(a: __m512, b: __m512) -> __m512i {
    // SAFETY (all): called only from functions with AVX-512F, AVX512-BF16 and
    // AVX512DQ enabled.
    unsafe {
        if (_mm512_fpclass_ps_mask::<0x20>(a) | _mm512_fpclass_ps_mask::<0x20>(b)) != 0 {
            let (a, b) = (cvt_bf16_avx512bf16(a), cvt_bf16_avx512bf16(b));
            return _mm512_inserti64x4::<1>(_mm512_castsi256_si512(a), b);
        }
        // The first operand fills the upper half.
        std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(b, a))
    }
}

#[target_feature(enable = "avx512f,avx512bf16,avx512vl,avx512dq")]
unsafe fn bf16_narrow_avx512bf16(src: &[f32], dst: &mut [u16], store: Store) {
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    narrow_loop!(src, dst, store, scalar::f32_to_bf16, |i, nt| {
        // SAFETY: i + 32 <= n for both slices; streamed lines are 64-byte aligned.
        unsafe {
            let a = cvt_bf16_avx512bf16(_mm512_loadu_ps(s.add(i)));
            let b = cvt_bf16_avx512bf16(_mm512_loadu_ps(s.add(i + 16)));
            put512(d.add(i), a, b, nt);
        }
    });
}

#[target_feature(enable = "avx512f")]
unsafe fn f16_widen_avx512(src: &[u16], dst: &mut [f32]) {
    let n = src.len().min(dst.len());
    let mut i = 0;
    while i + 16 <= n {
        // SAFETY: i + 16 <= n for both slices.
        unsafe {
            let h = _mm256_loadu_si256(src.as_ptr().add(i).cast());
            _mm512_storeu_ps(dst.as_mut_ptr().add(i), _mm512_cvtph_ps(h));
        }
        i += 16;
    }
    for j in i..n {
        dst[j] = scalar::f16_to_f32(src[j]);
    }
}

#[target_feature(enable = "avx512f")]
unsafe fn f16_narrow_avx512(src: &[f32], dst: &mut [u16], store: Store) {
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    narrow_loop!(src, dst, store, scalar::f32_to_f16, |i, nt| {
        // SAFETY: i + 32 <= n for both slices; streamed lines are 64-byte aligned.
        unsafe {
            let a = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm512_loadu_ps(s.add(i)));
            let b = _mm512_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(_mm512_loadu_ps(s.add(i + 16)));
            put512(d.add(i), a, b, nt);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The integer AVX-512 bf16 form (what CPUs without `avx512bf16` run) against the
    /// scalar one, on a CPU where the native form is what the path picks.
    #[test]
    fn avx512_integer_bf16_matches_scalar() {
        if !KernelPath::Avx512.is_available() {
            return;
        }
        let src: Vec<f32> = (0..4099u32)
            .map(|i| f32::from_bits(i.wrapping_mul(2_654_435_761) ^ (i << 3)))
            .chain([
                f32::from_bits(1),
                -f32::from_bits(0x7fff),
                f32::NAN,
                f32::INFINITY,
                f32::MAX,
            ])
            .collect();
        let want: Vec<u16> = src.iter().map(|&f| scalar::f32_to_bf16(f)).collect();
        for store in [Store::Cached, Store::Streaming] {
            let mut dst = vec![0u16; src.len()];
            // SAFETY: AVX-512F checked above.
            unsafe { bf16_narrow_avx512(&src, &mut dst, store) };
            crate::simd::stream_fence();
            assert_eq!(dst, want);
        }
    }
}
