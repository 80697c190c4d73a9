//! The rescue path: rows whose variance (LayerNorm) or mean square (RmsNorm) overflowed,
//! underflowed, is zero, or is not finite are redone in f64 with the row scaled by its
//! largest magnitude, one body for both norms. Rare, so scalar and out of line.

use super::{Kind, RowParams};
use crate::Float;

/// `1/sqrt(s² · q + eps)` without forming `s²` (which may overflow or underflow).
fn scaled_rsqrt(s: f64, q: f64, eps: f64) -> f64 {
    if s == 0.0 {
        return 1.0 / eps.sqrt();
    }
    let t = (eps / s) / s;
    if t.is_finite() {
        1.0 / (s * (q + t).sqrt())
    } else {
        // s is so small that s²·q is negligible next to eps.
        1.0 / eps.sqrt()
    }
}

/// `c / sqrt(s² · q + eps)` for `|c| <= s`, `s > 0`, without forming `s²` or `1/s`:
/// for f64 rows of subnormals `1/s` (and so `rstd`) overflows although every output is
/// an ordinary number.
fn scaled_div(c: f64, s: f64, q: f64, eps: f64) -> f64 {
    let t = (eps / s) / s;
    if t.is_finite() {
        (c / s) / (q + t).sqrt()
    } else {
        // s is so small that s²·q is negligible next to eps.
        c / eps.sqrt()
    }
}

/// The rescue path of one row: writes `out` and returns the row's statistics
/// ([`Kind::stats`] of the mean and `1/std`, or of `1/rms`).
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
    // LayerNorm: shift by the row's first value, as the fast path does, unless a
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
    let m = if K::CENTER {
        let a = x.iter().fold(0.0f64, |a, &v| a.max(dev(v).abs()));
        if a == 0.0 {
            0.0
        } else {
            a * (x.iter().map(|&v| dev(v) / a).sum::<f64>() / d)
        }
    } else {
        0.0
    };
    let s = x.iter().fold(0.0f64, |s, &v| s.max((dev(v) - m).abs()));
    let q = if s == 0.0 {
        0.0
    } else {
        x.iter()
            .map(|&v| {
                let c = (dev(v) - m) / s;
                c * c
            })
            .sum::<f64>()
            / d
    };
    let r = scaled_rsqrt(s, q, eps);
    for (i, o) in out.iter_mut().enumerate() {
        // 0 * inf = NaN for a constant row with eps = 0 (documented).
        let y = if s == 0.0 && r.is_infinite() {
            f64::NAN
        } else {
            scaled_div(dev(x[i]) - m, s, q, eps)
        };
        let y = y * p.weight[i].to_f64_exact() + p.bias.map_or(0.0, |b| b[i].to_f64_exact());
        *o = F::from_f64_round(y);
    }
    K::stats(F::from_f64_round(shift + m), F::from_f64_round(r))
}
