//! The rescue path: rows whose variance (LayerNorm) or mean square (RmsNorm) overflowed,
//! underflowed, is zero, or is not finite are redone in f64 with the row scaled by a
//! power of two near its largest magnitude, one body for both norms. Rare, so scalar
//! and out of line.
//!
//! Everything between the scaling and the output is done in the scaled units, where the
//! values are of order 1: the centered values `x_i − μ` may overflow f64 although the
//! row and its standard deviation do not (`[−1.1e308, −1.66e308, 1.78e308]`), and the
//! mean of a row of subnormals is not representable on the subnormal grid (`[1, 2, 3,
//! 4]·2⁻¹⁰⁷⁴` has mean 2.5·2⁻¹⁰⁷⁴): in scaled units neither happens.

use super::{Kind, RowParams};
use crate::Float;

/// `2^⌊log₂ a⌋` for a finite `a > 0` (subnormals included): dividing by it is exact
/// and leaves the largest magnitude in `[1, 2)`.
fn pow2_floor(a: f64) -> f64 {
    let bits = a.to_bits();
    let exp = (bits >> 52) & 0x7ff;
    if exp == 0 {
        // Subnormal: the highest set bit of the mantissa.
        f64::from_bits(1u64 << (63 - bits.leading_zeros()))
    } else {
        f64::from_bits(exp << 52)
    }
}

/// The rescue path of one row: writes `out` and returns the row's statistics
/// ([`Kind::stats`] of the mean and `1/std`, or of `1/rms`).
///
/// ```text
/// LayerNorm: shift = x_0 (0 if some x_i − x_0 overflows), a = 2^⌊log₂ max |x_i − shift|⌋
///            u_i = (x_i − shift)/a   (exact),   c_i = u_i − mean(u)
/// RmsNorm:   a = 2^⌊log₂ max |x_i|⌋,  c_i = x_i/a
/// s = max |c_i|,  q = mean((c_i/s)²) ∈ [1/D, 1],  t = ε/(a·s)²  (formed without (a·s)²)
/// y_i = (c_i/s) / √(q + t) · γ_i + β_i,   r = 1/(a·s·√(q + t)),   μ = shift + a·mean(u)
/// ```
///
/// When `t` overflows, `(a·s)²·q` is negligible next to ε and `y_i = a·c_i/√ε`.
#[cold]
#[inline(never)]
pub(super) fn rescue<K: Kind, F: Float>(x: &[F], p: RowParams<'_, F>, out: &mut [F]) -> (F, F) {
    let d = x.len() as f64;
    let eps = p.eps.to_f64_exact();
    let nan = F::nan();
    if x.iter().any(|v| !v.is_finite()) {
        out.iter_mut().for_each(|o| *o = nan);
        let m = if K::CENTER {
            x.iter().map(|v| v.to_f64_exact()).sum::<f64>() / d
        } else {
            0.0
        };
        return K::stats(F::from_f64_round(m), nan);
    }
    // LayerNorm: shift by the row's first value (the fast path shifts by the mean of the
    // first eight; any value of the row serves), unless a
    // difference overflows (|x| near f64::MAX): the mean's error then scales with the
    // spread, not with the offset (f64 rows like 1e200 + 1e192·N(0, 1) land here).
    // RmsNorm: no shift and no mean.
    let x0 = if K::CENTER { x[0].to_f64_exact() } else { 0.0 };
    let shift = if x.iter().all(|v| (v.to_f64_exact() - x0).is_finite()) {
        x0
    } else {
        0.0
    };
    let dev = |v: F| v.to_f64_exact() - shift;
    let big = x.iter().fold(0.0f64, |a, &v| a.max(dev(v).abs()));
    let (a, mu) = if big == 0.0 {
        (1.0, 0.0)
    } else {
        let a = pow2_floor(big);
        let mu = if K::CENTER {
            x.iter().map(|&v| dev(v) / a).sum::<f64>() / d
        } else {
            0.0
        };
        (a, mu)
    };
    let mean = F::from_f64_round(shift + a * mu);
    let c = |v: F| dev(v) / a - mu;
    let s = x.iter().fold(0.0f64, |s, &v| s.max(c(v).abs()));
    let affine = |i: usize, z: f64| {
        F::from_f64_round(z * p.weight[i].to_f64_exact() + p.bias.map_or(0.0, |b| b[i].to_f64_exact()))
    };
    if s == 0.0 {
        // A constant row (LayerNorm) or zeros (RmsNorm): y = 0·r·γ + β, which is NaN
        // (0·∞) for eps = 0 (documented).
        let r = 1.0 / eps.sqrt();
        let z = if r.is_infinite() { f64::NAN } else { 0.0 };
        for (i, o) in out.iter_mut().enumerate() {
            *o = affine(i, z);
        }
        return K::stats(mean, F::from_f64_round(r));
    }
    let q = x
        .iter()
        .map(|&v| {
            let z = c(v) / s;
            z * z
        })
        .sum::<f64>()
        / d;
    // t = eps / (a·s)², without forming (a·s)².
    let t = ((eps / a) / s) / a / s;
    if !t.is_finite() {
        // (a·s)²·q is negligible next to eps.
        let root = eps.sqrt();
        for (i, o) in out.iter_mut().enumerate() {
            *o = affine(i, (c(x[i]) * a) / root);
        }
        return K::stats(mean, F::from_f64_round(1.0 / root));
    }
    let root = (q + t).sqrt();
    for (i, o) in out.iter_mut().enumerate() {
        *o = affine(i, (c(x[i]) / s) / root);
    }
    K::stats(mean, F::from_f64_round(((1.0 / root) / s) / a))
}
