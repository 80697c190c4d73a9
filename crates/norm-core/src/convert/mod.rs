//! Conversions between the half-precision storage types (`bf16`, `f16`) and f32 rows,
//! per kernel path: widening (exact) and narrowing (to nearest, ties to even, NaN kept
//! NaN, overflow to ±∞), with the same bits on every path. The scalar forms here are
//! the portable path and the tails of the vector paths; `x86.rs` has the AVX2 (integer
//! shifts for bf16, F16C for f16) and AVX-512 (`avx512bf16` where the CPU has it)
//! loops. Nothing here knows about norms.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::simd::{Path, Store};

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// Scalar conversions, written with integer operations so the portable loops
/// vectorize; each equals the `half` crate's own conversion bit for bit (tested).
pub(crate) mod scalar {
    /// bf16 bits to f32 (exact: bf16 is the upper half of an f32; a NaN stays NaN with
    /// its payload, not quieted, on every path).
    #[inline(always)]
    pub(crate) fn bf16_to_f32(b: u16) -> f32 {
        f32::from_bits(u32::from(b) << 16)
    }

    /// f32 to bf16 bits, to nearest, ties to even; NaN stays NaN (quieted), values
    /// that round past the largest finite bf16 become ±∞.
    ///
    /// ```text
    /// bits + 0x7fff + (bit 16 of bits)  >> 16      (carries into the exponent: to ∞)
    /// ```
    #[inline(always)]
    pub(crate) fn f32_to_bf16(f: f32) -> u16 {
        let x = f.to_bits();
        if x & 0x7fff_ffff > 0x7f80_0000 {
            ((x >> 16) | 0x40) as u16
        } else {
            ((x + 0x7fff + ((x >> 16) & 1)) >> 16) as u16
        }
    }

    /// f16 bits to f32 (exact, subnormals included; a NaN is quieted, as F16C does).
    #[inline(always)]
    pub(crate) fn f16_to_f32(h: u16) -> f32 {
        let sign = u32::from(h & 0x8000) << 16;
        let e = u32::from((h >> 10) & 0x1f);
        let m = u32::from(h & 0x3ff);
        if e == 0x1f {
            let quiet = if m == 0 { 0 } else { 0x0040_0000 };
            f32::from_bits(sign | 0x7f80_0000 | quiet | (m << 13))
        } else if e == 0 {
            // m · 2⁻²⁴, exact in f32.
            let v = m as f32 * f32::from_bits(0x3380_0000);
            f32::from_bits(sign | v.to_bits())
        } else {
            f32::from_bits(sign | ((e + 112) << 23) | (m << 13))
        }
    }

    /// f32 to f16 bits, to nearest, ties to even; NaN stays NaN (quieted), magnitudes
    /// from 65520 (halfway past 65504, the largest f16) on become ±∞, and magnitudes
    /// below 2⁻¹⁴ land on the subnormal grid of 2⁻²⁴.
    #[inline(always)]
    pub(crate) fn f32_to_f16(f: f32) -> u16 {
        let x = f.to_bits();
        let sign = ((x >> 16) & 0x8000) as u16;
        let a = x & 0x7fff_ffff;
        if a >= 0x7f80_0000 {
            let nan = if a > 0x7f80_0000 {
                0x200 | ((a >> 13) & 0x3ff) as u16
            } else {
                0
            };
            return sign | 0x7c00 | nan;
        }
        if a >= 0x477f_f000 {
            // ≥ 65520: rounds to ∞.
            return sign | 0x7c00;
        }
        if a >= 0x3880_0000 {
            // Normal in f16: drop 13 mantissa bits with ties to even, rebias the
            // exponent by 127 − 15 (a carry out of the mantissa bumps the exponent).
            let r = a + 0x0fff + ((a >> 13) & 1);
            return sign | ((r - 0x3800_0000) >> 13) as u16;
        }
        // Subnormal (or zero) in f16: the multiple of 2⁻²⁴ nearest |f|, ties to even
        // (scaling by 2²⁴ is exact; 1024 is the smallest normal, encoded alike).
        let m = (f32::from_bits(a) * 16_777_216.0).round_ties_even() as u16;
        sign | m
    }
}

mod sealed {
    /// Closes [`Half`](super::Half) to `bf16` and `f16`, and carries their row
    /// conversions on each kernel path.
    pub trait Convert: Sized + Copy {
        /// `bf16` (else `f16`): picks the vector conversions of the fused kernels
        /// (`Simd::load_half`, `Simd::store_half`) at compile time.
        const BF16: bool;
        /// One value widened to f32 (exact; the scalar form every path's edges use).
        fn widen1(self) -> f32;
        /// One f32 rounded to `Self` (to nearest, ties to even; as every path rounds).
        fn narrow1(v: f32) -> Self;
        /// `dst = src` widened to f32 (exact), on `path`.
        fn widen(path: crate::simd::Path, src: &[Self], dst: &mut [f32]);
        /// `dst = src` rounded to `Self` (to nearest, ties to even), on `path`, written
        /// as `store` says (`Streaming`: whole cache lines with non-temporal stores,
        /// the caller fences).
        fn narrow(path: crate::simd::Path, src: &[f32], dst: &mut [Self], store: crate::simd::Store);
    }
}

/// A half-precision storage type (sealed): [`half::bf16`] or [`half::f16`]. The norms
/// store rows, weight and bias in it and compute in f32 (see [`Element`](crate::Element)).
///
/// # Example
/// ```
/// use half::{bf16, f16};
/// use norm_core::Half;
///
/// fn storage_bits<H: Half>() -> usize {
///     8 * std::mem::size_of::<H>()
/// }
/// assert_eq!((storage_bits::<bf16>(), storage_bits::<f16>()), (16, 16));
/// ```
pub trait Half: crate::Element<Acc = f32> + sealed::Convert {}

impl Half for bf16 {}
impl Half for f16 {}

/// `dst[..src.len()] = src` widened to f32 (exact) on `path`: the conversion the
/// half-precision norms run (hidden, re-exported in `simd` for norm-autograd's backward).
///
/// # Example
/// ```
/// use norm_core::{bf16, dispatch::ForcedPath, simd::widen};
///
/// let mut out = [0.0f32; 2];
/// widen(ForcedPath::detected().simd_path(), &[bf16::ONE, bf16::NEG_ONE], &mut out);
/// assert_eq!(out, [1.0, -1.0]);
/// ```
pub fn widen<H: Half>(path: Path, src: &[H], dst: &mut [f32]) {
    H::widen(path, src, dst);
}

/// `dst = src[..dst.len()]` rounded to `H` (to nearest, ties to even) on `path`, written
/// as `store` says (`Streaming`: whole cache lines non-temporally; the caller fences).
///
/// # Example
/// ```
/// use norm_core::{f16, dispatch::ForcedPath, simd::{Store, narrow}};
///
/// let mut out = [f16::ZERO; 2];
/// narrow(ForcedPath::detected().simd_path(), &[1.0f32 + 1.0 / 2048.0, 1e6], &mut out, Store::Cached);
/// assert_eq!(out, [f16::ONE, f16::INFINITY]); // a tie goes to even; past 65504: ∞
/// ```
pub fn narrow<H: Half>(path: Path, src: &[f32], dst: &mut [H], store: Store) {
    H::narrow(path, src, dst, store);
}

/// The scalar loops (the portable path and the vector paths' edges).
#[inline(always)]
fn widen_scalar(src: &[u16], dst: &mut [f32], f: impl Fn(u16) -> f32) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f(s);
    }
}

#[inline(always)]
fn narrow_scalar(src: &[f32], dst: &mut [u16], f: impl Fn(f32) -> u16) {
    for (d, &s) in dst.iter_mut().zip(src) {
        *d = f(s);
    }
}

impl sealed::Convert for bf16 {
    const BF16: bool = true;
    #[inline(always)]
    fn widen1(self) -> f32 {
        scalar::bf16_to_f32(self.to_bits())
    }
    #[inline(always)]
    fn narrow1(v: f32) -> Self {
        bf16::from_bits(scalar::f32_to_bf16(v))
    }
    #[inline]
    fn widen(path: Path, src: &[bf16], dst: &mut [f32]) {
        let (src, dst) = (src.reinterpret_cast(), &mut dst[..src.len()]);
        #[cfg(target_arch = "x86_64")]
        if x86::bf16_widen(path, src, dst) {
            return;
        }
        let _ = path;
        widen_scalar(src, dst, scalar::bf16_to_f32);
    }
    #[inline]
    fn narrow(path: Path, src: &[f32], dst: &mut [bf16], store: Store) {
        let (src, dst) = (&src[..dst.len()], dst.reinterpret_cast_mut());
        #[cfg(target_arch = "x86_64")]
        if x86::bf16_narrow(path, src, dst, store) {
            return;
        }
        let _ = (path, store);
        narrow_scalar(src, dst, scalar::f32_to_bf16);
    }
}

impl sealed::Convert for f16 {
    const BF16: bool = false;
    #[inline(always)]
    fn widen1(self) -> f32 {
        scalar::f16_to_f32(self.to_bits())
    }
    #[inline(always)]
    fn narrow1(v: f32) -> Self {
        f16::from_bits(scalar::f32_to_f16(v))
    }
    #[inline]
    fn widen(path: Path, src: &[f16], dst: &mut [f32]) {
        let (src, dst) = (src.reinterpret_cast(), &mut dst[..src.len()]);
        #[cfg(target_arch = "x86_64")]
        if x86::f16_widen(path, src, dst) {
            return;
        }
        let _ = path;
        widen_scalar(src, dst, scalar::f16_to_f32);
    }
    #[inline]
    fn narrow(path: Path, src: &[f32], dst: &mut [f16], store: Store) {
        let (src, dst) = (&src[..dst.len()], dst.reinterpret_cast_mut());
        #[cfg(target_arch = "x86_64")]
        if x86::f16_narrow(path, src, dst, store) {
            return;
        }
        let _ = (path, store);
        narrow_scalar(src, dst, scalar::f32_to_f16);
    }
}

#[cfg(test)]
mod tests {
    use super::sealed::Convert;
    use super::*;
    use crate::KernelPath;
    use crate::dispatch::ForcedPath;

    /// Every f32 class that matters for rounding: zeros, subnormals of f32 and of f16,
    /// ties of both grids, both ends of f16's range, bf16's overflow edge, inf, NaNs.
    fn edge_values() -> Vec<f32> {
        let mut v = vec![
            0.0,
            -0.0,
            1.0,
            -1.0,
            f32::MIN_POSITIVE,
            f32::from_bits(1),
            f32::from_bits(0x0000_8000),
            f32::from_bits(0x0001_8000),
            f32::from_bits(0x007f_ffff),
            65504.0,
            65519.99,
            65520.0,
            65536.0,
            -65520.0,
            6.0e-8,
            5.960_464_5e-8,
            2.980_232_2e-8,
            2.980_233e-8,
            6.103_515_6e-5,
            6.1e-5,
            f32::MAX,
            f32::from_bits(0x7f7f_8000),
            f32::from_bits(0x7f7f_7fff),
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::from_bits(0x7f80_0001),
            f32::from_bits(0xffc0_1234),
            1.0 + 1.0 / 256.0,
            1.0 + 3.0 / 256.0,
            1.0 + 1.0 / 2048.0,
            1.0 + 3.0 / 2048.0,
        ];
        // A pseudo-random sweep over all exponents.
        let mut s = 0x9e37_79b9u32;
        for _ in 0..4000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            v.push(f32::from_bits(s));
        }
        v
    }

    fn check_narrow<H: Half>(reference: impl Fn(f32) -> u16, bits: impl Fn(&[H]) -> Vec<u16>) {
        let src = edge_values();
        let want: Vec<u16> = src.iter().map(|&f| reference(f)).collect();
        for how in ForcedPath::all() {
            for store in [Store::Cached, Store::Streaming] {
                // Every offset, so heads, vector bodies and tails all meet every value.
                for off in 0..33 {
                    let mut dst = vec![H::default(); src.len() - off];
                    H::narrow(how.simd_path(), &src[off..], &mut dst, store);
                    crate::simd::stream_fence();
                    assert_eq!(bits(&dst), want[off..], "{:?} {store:?} offset {off}", how.path());
                }
            }
        }
    }

    #[test]
    fn narrowing_equals_the_half_crate_on_every_path() {
        check_narrow::<bf16>(
            |f| bf16::from_f32(f).to_bits(),
            |d| d.iter().map(|h| h.to_bits()).collect(),
        );
        check_narrow::<f16>(
            |f| f16::from_f32(f).to_bits(),
            |d| d.iter().map(|h| h.to_bits()).collect(),
        );
    }

    #[test]
    fn widening_is_exact_on_every_path_for_every_bit_pattern() {
        let all: Vec<u16> = (0..=u16::MAX).collect();
        let b: Vec<bf16> = all.iter().map(|&u| bf16::from_bits(u)).collect();
        let h: Vec<f16> = all.iter().map(|&u| f16::from_bits(u)).collect();
        for how in ForcedPath::all() {
            for off in [0, 1, 7] {
                let mut out = vec![0.0f32; all.len() - off];
                bf16::widen(how.simd_path(), &b[off..], &mut out);
                for (o, v) in out.iter().zip(&b[off..]) {
                    assert_eq!(
                        o.to_bits(),
                        u32::from(v.to_bits()) << 16,
                        "{:?} bf16 {:#x}",
                        how.path(),
                        v.to_bits()
                    );
                    assert!(o.to_bits() == v.to_f32().to_bits() || v.is_nan());
                }
                f16::widen(how.simd_path(), &h[off..], &mut out);
                for (o, v) in out.iter().zip(&h[off..]) {
                    assert_eq!(
                        o.to_bits(),
                        v.to_f32().to_bits(),
                        "{:?} f16 {:#x}",
                        how.path(),
                        v.to_bits()
                    );
                }
            }
        }
        assert!(ForcedPath::new(KernelPath::Portable).is_some());
    }

    #[test]
    fn f16_widening_quiets_nans_and_keeps_their_payload() {
        for u in [0x7c01u16, 0x7e00, 0xfe01, 0x7dff] {
            let w = scalar::f16_to_f32(u);
            assert!(w.is_nan() && w.to_bits() & 0x0040_0000 != 0);
            assert_eq!((w.to_bits() >> 13) & 0x3ff, u32::from(u & 0x3ff) | 0x200);
        }
    }
}
