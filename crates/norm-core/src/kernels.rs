//! Row kernels over contiguous `&[F]` rows: the fast two-pass statistics and the fused
//! normalize+affine write, plus the rare rescue path for rows whose squares overflow or underflow.
//!
//! Nothing here validates: callers (the slice and ndarray layers) check lengths first.

use crate::Float;

/// Independent accumulators per reduction (breaks the add dependency chain; vectorizes).
const LANES: usize = 16;

/// `Σ (x_i - shift)` with `LANES` independent accumulators, combined in a fixed order.
#[inline(always)]
fn sum_shifted<F: Float>(x: &[F], shift: F) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v - shift;
        }
    }
    let mut t = F::zero();
    for &v in tail {
        t += v - shift;
    }
    fold(acc) + t
}

/// `Σ ((x_i - shift) - m)²` with `LANES` independent accumulators.
#[inline(always)]
fn sum_sq_centered<F: Float>(x: &[F], shift: F, m: F) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            let d = (v - shift) - m;
            *a += d * d;
        }
    }
    let mut t = F::zero();
    for &v in tail {
        let d = (v - shift) - m;
        t += d * d;
    }
    fold(acc) + t
}

/// `Σ x_i²` with `LANES` independent accumulators.
#[inline(always)]
fn sum_sq<F: Float>(x: &[F]) -> F {
    let mut acc = [F::zero(); LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += v * v;
        }
    }
    let mut t = F::zero();
    for &v in tail {
        t += v * v;
    }
    fold(acc) + t
}

/// Pairwise fold of the accumulators, in a fixed order.
#[inline(always)]
fn fold<F: Float>(mut acc: [F; LANES]) -> F {
    let mut n = LANES;
    while n > 1 {
        n /= 2;
        for i in 0..n {
            acc[i] += acc[i + n];
        }
    }
    acc[0]
}

/// LayerNorm of one row. Returns `(mean, rstd)` with `rstd = 1/sqrt(var + eps)`.
///
/// Two passes: the mean of `x - x[0]` (the differences are exact for rows with a large
/// offset), then the centered sum of squares; the write pass keeps the shift separate
/// so an offset of 1e6 does not cost output precision.
#[inline(always)]
pub(crate) fn layer_norm_row<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
) -> (F, F) {
    let d = x.len();
    let inv_d = F::one() / F::from_usize(d).unwrap_or_else(F::one);
    let shift = x[0];
    let m = sum_shifted(x, shift) * inv_d;
    let var = sum_sq_centered(x, shift, m) * inv_d;
    if !(var.is_finite() && var >= F::RESCUE_BELOW) {
        return layer_norm_row_rescue(x, weight, bias, eps, out);
    }
    let rstd = F::one() / (var + eps).sqrt();
    match bias {
        Some(b) => {
            for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(b) {
                *o = ((v - shift) - m) * (rstd * w) + b;
            }
        }
        None => {
            for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
                *o = ((v - shift) - m) * (rstd * w);
            }
        }
    }
    (shift + m, rstd)
}

/// RMSNorm of one row. Returns `rrms = 1/sqrt(mean(x²) + eps)`.
#[inline(always)]
pub(crate) fn rms_norm_row<F: Float>(x: &[F], weight: &[F], bias: Option<&[F]>, eps: F, out: &mut [F]) -> F {
    let d = x.len();
    let inv_d = F::one() / F::from_usize(d).unwrap_or_else(F::one);
    let ms = sum_sq(x) * inv_d;
    if !(ms.is_finite() && ms >= F::RESCUE_BELOW) {
        return rms_norm_row_rescue(x, weight, bias, eps, out);
    }
    let rrms = F::one() / (ms + eps).sqrt();
    match bias {
        Some(b) => {
            for (((o, &v), &w), &b) in out.iter_mut().zip(x).zip(weight).zip(b) {
                *o = v * (rrms * w) + b;
            }
        }
        None => {
            for ((o, &v), &w) in out.iter_mut().zip(x).zip(weight) {
                *o = v * (rrms * w);
            }
        }
    }
    rrms
}

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

/// Slow path for rows whose variance overflowed, underflowed, is zero, or is not finite.
/// Works in f64 with the row scaled by its largest magnitude.
#[cold]
#[inline(never)]
fn layer_norm_row_rescue<F: Float>(
    x: &[F],
    weight: &[F],
    bias: Option<&[F]>,
    eps: F,
    out: &mut [F],
) -> (F, F) {
    let d = x.len() as f64;
    let eps = eps.to_f64_exact();
    let nan = F::nan();
    if x.iter().any(|v| !v.is_finite()) {
        out.iter_mut().for_each(|o| *o = nan);
        let m = x.iter().map(|v| v.to_f64_exact()).sum::<f64>() / d;
        return (F::from_f64_round(m), nan);
    }
    let a = x.iter().fold(0.0f64, |a, v| a.max(v.to_f64_exact().abs()));
    let mean = if a == 0.0 {
        0.0
    } else {
        a * (x.iter().map(|v| v.to_f64_exact() / a).sum::<f64>() / d)
    };
    let s = x
        .iter()
        .fold(0.0f64, |s, v| s.max((v.to_f64_exact() - mean).abs()));
    let q = if s == 0.0 {
        0.0
    } else {
        x.iter()
            .map(|v| {
                let c = (v.to_f64_exact() - mean) / s;
                c * c
            })
            .sum::<f64>()
            / d
    };
    let rstd = scaled_rsqrt(s, q, eps);
    for (i, o) in out.iter_mut().enumerate() {
        let c = x[i].to_f64_exact() - mean;
        // 0 * inf = NaN for a constant row with eps = 0 (documented).
        let y = if s == 0.0 && rstd.is_infinite() {
            f64::NAN
        } else {
            c * rstd
        };
        let y = y * weight[i].to_f64_exact() + bias.map_or(0.0, |b| b[i].to_f64_exact());
        *o = F::from_f64_round(y);
    }
    (F::from_f64_round(mean), F::from_f64_round(rstd))
}

/// Slow path for RMSNorm rows whose mean square overflowed, underflowed or is not finite.
#[cold]
#[inline(never)]
fn rms_norm_row_rescue<F: Float>(x: &[F], weight: &[F], bias: Option<&[F]>, eps: F, out: &mut [F]) -> F {
    let d = x.len() as f64;
    let eps = eps.to_f64_exact();
    let nan = F::nan();
    if x.iter().any(|v| !v.is_finite()) {
        out.iter_mut().for_each(|o| *o = nan);
        return nan;
    }
    let s = x.iter().fold(0.0f64, |a, v| a.max(v.to_f64_exact().abs()));
    let q = if s == 0.0 {
        0.0
    } else {
        x.iter()
            .map(|v| {
                let c = v.to_f64_exact() / s;
                c * c
            })
            .sum::<f64>()
            / d
    };
    let rrms = scaled_rsqrt(s, q, eps);
    for (i, o) in out.iter_mut().enumerate() {
        let y = if s == 0.0 && rrms.is_infinite() {
            f64::NAN
        } else {
            x[i].to_f64_exact() * rrms
        };
        let y = y * weight[i].to_f64_exact() + bias.map_or(0.0, |b| b[i].to_f64_exact());
        *o = F::from_f64_round(y);
    }
    F::from_f64_round(rrms)
}
